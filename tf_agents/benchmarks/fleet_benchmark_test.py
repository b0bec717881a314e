# coding=utf-8
"""Tests of the fleet benchmark's report and targets (no Ray)."""

from absl.testing import absltest

from tf_agents.benchmarks import fleet_benchmark


def _row(case, pattern, actors, median, steps, torn=0, updates=100):
  return fleet_benchmark.Row(
      case=case, parameters=10000, pattern=pattern, actors=actors,
      versions=10, updates=updates, median_seconds=median,
      p99_seconds=median * 2, steps_per_second=steps, torn_or_mixed=torn,
      unreached=0)


class FleetBenchmarkTest(absltest.TestCase):

  def test_targets_met(self):
    rows = [
        _row('q_mlp_10k', fleet_benchmark.OURS, 8, 0.1, 9000, updates=600),
        _row('q_mlp_10k', fleet_benchmark.UPSTREAM, 8, 0.4, 3000,
             updates=600),
    ]
    lines = fleet_benchmark.targets(rows)
    self.assertEqual(
        ['- q_mlp_10k at 8 actors: median propagation ratio 0.250 '
         '(target <= 0.5): met',
         '- q_mlp_10k at 8 actors: aggregate steps/s ratio 3.000 '
         '(target >= 1.0): met',
         '- torn or mixed versions: 0 in 1200 actor updates (target: 0 in '
         'at least 1000): met'], lines)
    text = fleet_benchmark.report(rows)
    self.assertIn('| q_mlp_10k | 8 | 0.250 | 3.000 |', text)

  def test_targets_not_met(self):
    rows = [
        _row('q_mlp_34m', fleet_benchmark.OURS, 8, 0.3, 100, torn=1),
        _row('q_mlp_34m', fleet_benchmark.UPSTREAM, 8, 0.4, 200),
    ]
    lines = fleet_benchmark.targets(rows)
    self.assertTrue(all(line.endswith('not met') for line in lines), lines)


if __name__ == '__main__':
  absltest.main()
