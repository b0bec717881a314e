# coding=utf-8
"""Tests for tf_agents.policies.policy_saver_benchmark.

Runs the benchmark's fast mode once (small policies, 2 repetitions, one
peak-memory child per saver) and checks that its JSON, markdown table and
chart hold every figure for ours and upstream's as finite positive numbers,
with ratios ours/upstream of the medians and every target evaluated. The
measured values themselves are not asserted (they depend on the machine).
"""

import json
import math
import os
import struct
import tempfile
from unittest import mock

import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_benchmark as benchmark

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_STATS = ('median', 'min', 'max')


def _is_positive_number(value):
  return (
      isinstance(value, (int, float))
      and not isinstance(value, bool)
      and math.isfinite(value)
      and value > 0
  )


class PolicySaverBenchmarkTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.output_dir = tempfile.mkdtemp(
        prefix='benchmark_output_', dir=os.environ.get('TEST_TMPDIR')
    )
    cls.config = benchmark.fast_config(cls.output_dir)
    cls.returned = benchmark.PolicySaverBenchmark().run_benchmark(cls.config)
    cls.paths = benchmark.write_outputs(cls.returned, cls.output_dir)
    with open(cls.paths['json']) as f:
      cls.results = json.load(f)
    with open(cls.paths['markdown']) as f:
      cls.markdown = f.read()

  def _figure(self, policy, metric):
    return self.results['policies'][policy]['figures'][metric]

  def _assert_summary(self, summary, where):
    self.assertIsNotNone(summary, where)
    for stat in _STATS:
      self.assertTrue(
          _is_positive_number(summary[stat]),
          '{} {}: {!r}'.format(where, stat, summary[stat]),
      )
    self.assertLessEqual(summary['min'], summary['median'], where)
    self.assertLessEqual(summary['median'], summary['max'], where)
    self.assertGreaterEqual(summary['count'], 1, where)

  def testFastModeRunsTheSmallPoliciesOnly(self):
    small = [case.name for case in benchmark.CASES if case.small]
    self.assertEqual(small, list(self.results['policies']))
    self.assertIn(benchmark.SMALL_MLP_CASE, small)
    self.assertTrue(self.results['config']['fast'])
    self.assertEqual(2, self.results['config']['repetitions'])
    for name, policy in self.results['policies'].items():
      self.assertLess(policy['num_parameters'], 100000, name)
      self.assertGreater(policy['num_parameters'], 1000, name)
    # The JSON file holds what `run_benchmark` returned.
    self.assertEqual(
        json.loads(json.dumps(self.returned)), self.results
    )

  def testEveryFigureIsMeasuredForOursAndUpstream(self):
    memory_policy = self.results['memory_policy']
    self.assertEqual(benchmark.SMALL_MLP_CASE, memory_policy)
    for name in self.results['policies']:
      expected = [
          m.key
          for m in benchmark.METRICS
          if not m.memory_only or name == memory_policy
      ]
      self.assertEqual(
          expected, list(self.results['policies'][name]['figures']), name
      )
      for key in expected:
        figure = self._figure(name, key)
        where = '{} {}'.format(name, key)
        self.assertEqual(benchmark.METRICS_BY_KEY[key].unit, figure['unit'])
        self._assert_summary(figure[benchmark.UPSTREAM], where + ' upstream')
        if figure[benchmark.OURS] is None:
          # Only the TFLite runtime may be missing, and only with a reason.
          self.assertEqual('runtime_step_tflite', key, where)
          self.assertIn('not exact', figure['note'], where)
          self.assertIsNone(figure['ratio'], where)
          continue
        self._assert_summary(figure[benchmark.OURS], where + ' ours')
        self.assertTrue(_is_positive_number(figure['ratio']), where)
        self.assertAllClose(
            figure[benchmark.OURS]['median']
            / figure[benchmark.UPSTREAM]['median'],
            figure['ratio'],
            rtol=1e-9,
            msg=where,
        )

  def testSamplesPerFigure(self):
    repetitions = self.config.repetitions
    for name in self.results['policies']:
      for key in ('first_save', 'repeated_save', 'save_checkpoint'):
        for who in benchmark.SAVERS:
          self.assertEqual(
              repetitions, self._figure(name, key)[who]['count'], name + key
          )
      for who in benchmark.SAVERS:
        self.assertEqual(
            repetitions * (1 + self.config.extra_loads),
            self._figure(name, 'load')[who]['count'], name,
        )
      for key in ('action_b1', 'action_b64', 'runtime_step_saved_model'):
        for who in benchmark.SAVERS:
          self.assertGreaterEqual(
              self._figure(name, key)[who]['count'],
              repetitions * self.config.min_calls,
          )
    memory = self._figure(self.results['memory_policy'],
                          'peak_memory_first_save')
    for who in benchmark.SAVERS:
      self.assertEqual(self.config.memory_repetitions, memory[who]['count'])
    self.assertIn(memory['method'], ('VmHWM', 'ru_maxrss'))

  def testMemoryChildRunsWithAFixedMmapThreshold(self):
    calls = []

    def run(args, env, **kwargs):
      del kwargs
      calls.append((args, env))
      return mock.Mock(returncode=0, stdout='log line\n{"method": "VmHWM"}\n')

    work_dir = self.create_tempdir().full_path
    with mock.patch.object(benchmark.subprocess, 'run', run):
      result = benchmark._run_memory_child(benchmark.OURS, 'q_mlp_10k',
                                           work_dir)
    self.assertEqual({'method': 'VmHWM'}, result)
    (args, env), = calls
    self.assertEqual([benchmark.OURS, 'q_mlp_10k', work_dir], args[-3:])
    self.assertEqual(str(128 * 1024), env['MALLOC_MMAP_THRESHOLD_'])
    # The child imports this repository's modules first.
    self.assertEqual(
        os.path.realpath(os.path.dirname(os.path.dirname(os.path.dirname(
            policy_saver.__file__)))),
        os.path.realpath(env['PYTHONPATH'].split(os.pathsep)[0]),
    )

  def testRuntimeBackends(self):
    # The greedy MLP is deterministic and exact on TFLite; the actor policy
    # is stochastic, so its TFLite backend is not exact.
    small = self._figure(benchmark.SMALL_MLP_CASE, 'runtime_step_tflite')
    self.assertIsNotNone(small[benchmark.OURS])
    actor = self._figure('actor_normal', 'runtime_step_tflite')
    self.assertIsNone(actor[benchmark.OURS])
    self.assertIn('stochastic', actor['note'])
    # Both runtime rows compare with the same upstream samples.
    for name in self.results['policies']:
      self.assertEqual(
          self._figure(name, 'runtime_step_saved_model')[benchmark.UPSTREAM],
          self._figure(name, 'runtime_step_tflite')[benchmark.UPSTREAM],
      )

  def testTargetsAreEvaluated(self):
    targets = self.results['targets']
    policies = list(self.results['policies'])
    expected = []
    for spec in benchmark.TARGETS:
      count = len(policies) if spec.policy == '*' else 1
      expected += [spec.name] * count
    self.assertEqual(expected, [t['name'] for t in targets])
    for target in targets:
      self.assertTrue(_is_positive_number(target['ratio']), target)
      self.assertEqual(target['ratio'] <= target['threshold'], target['met'])
    by_name = {}
    for target in targets:
      by_name.setdefault(target['name'], []).append(target)

    # Ours/ours: save() after new weights over our own save_checkpoint().
    largest = by_name[benchmark.TARGETS[1].name][0]
    self.assertEqual(self.results['memory_policy'], largest['policy'])
    self.assertAllClose(
        self._figure(largest['policy'], 'repeated_save')['ours']['median']
        / self._figure(largest['policy'], 'save_checkpoint')['ours']['median'],
        largest['ratio'],
        rtol=1e-9,
    )
    # Fastest exact backend over upstream's SavedModelPyTFEagerPolicy.
    fastest = by_name[benchmark.TARGETS[2].name][0]
    saved_model = self._figure(
        benchmark.SMALL_MLP_CASE, 'runtime_step_saved_model'
    )
    tflite = self._figure(benchmark.SMALL_MLP_CASE, 'runtime_step_tflite')
    self.assertAllClose(
        min(saved_model['ours']['median'], tflite['ours']['median'])
        / saved_model['upstream']['median'],
        fastest['ratio'],
        rtol=1e-9,
    )
    # Ratios ours/upstream elsewhere.
    for target in by_name['load']:
      self.assertEqual(
          self._figure(target['policy'], 'load')['ratio'], target['ratio']
      )

  def testMarkdownTable(self):
    self.assertIn('| policy | figure | ours | upstream | ratio |',
                  self.markdown)
    self.assertIn('| target | policy | ratio |', self.markdown)
    rows = [line for line in self.markdown.splitlines()
            if line.startswith('| ')]
    for name, policy in self.results['policies'].items():
      for figure in policy['figures'].values():
        matching = [
            row for row in rows
            if row.startswith('| {} | {} |'.format(name, figure['label']))
        ]
        self.assertLen(matching, 1, (name, figure['label']))
        cells = [c.strip() for c in matching[0].strip('|').split('|')]
        self.assertLen(cells, 5)
        self.assertNotEqual('n/a', cells[3])
        if figure['ratio'] is not None:
          self.assertAllClose(figure['ratio'], float(cells[4]), rtol=1e-2,
                              atol=1e-3)
    for target in self.results['targets']:
      expected = 'met |' if target['met'] else '**not met** |'
      matching = [
          row for row in rows
          if row.startswith('| {} | {} |'.format(target['name'],
                                                 target['policy']))
      ]
      self.assertLen(matching, 1, target)
      self.assertTrue(matching[0].endswith(expected), matching[0])

  def testChartIsPng(self):
    with open(self.paths['chart'], 'rb') as f:
      data = f.read()
    self.assertEqual(_PNG_SIGNATURE, data[:8])
    self.assertEqual(b'IHDR', data[12:16])
    width, height = struct.unpack('>II', data[16:24])
    self.assertGreater(width, 400)
    self.assertGreater(height, 400)

  def testReportWritesOneBenchmarkEntryPerFigure(self):
    prefix = os.path.join(self.create_tempdir().full_path, 'report_')
    with mock.patch.dict(os.environ, {'TEST_REPORT_FILE_PREFIX': prefix}):
      benchmark.PolicySaverBenchmark().report(self.results)
    expected = sorted(
        'report_PolicySaverBenchmark.policy_saver.{}.{}'.format(name, key)
        for name, policy in self.results['policies'].items()
        for key in policy['figures']
    )
    self.assertEqual(expected, sorted(os.listdir(os.path.dirname(prefix))))

  def testUpstreamSaverIsLoadedFromTheDistribution(self):
    upstream = benchmark.load_upstream_policy_saver()
    self.assertIsNot(upstream, policy_saver)
    self.assertEqual('upstream_policy_saver', upstream.__name__)
    self.assertNotEqual(
        os.path.realpath(upstream.__file__),
        os.path.realpath(policy_saver.__file__),
    )
    # Ours has the variables-only fast path; upstream's does not.
    self.assertTrue(hasattr(policy_saver.PolicySaver, 'last_save_kind'))
    self.assertFalse(hasattr(upstream.PolicySaver, 'last_save_kind'))
    self.assertIs(upstream, benchmark.saver_module(benchmark.UPSTREAM))
    self.assertIs(policy_saver, benchmark.saver_module(benchmark.OURS))

  def testDirectorySizeFollowsSymlinks(self):
    root = self.create_tempdir().full_path
    version = os.path.join(root, '.export.v1')
    os.makedirs(os.path.join(version, 'variables'))
    with open(os.path.join(version, 'a'), 'wb') as f:
      f.write(b'x' * 10)
    with open(os.path.join(version, 'variables', 'b'), 'wb') as f:
      f.write(b'y' * 5)
    os.symlink('.export.v1', os.path.join(root, 'export'))
    self.assertEqual(15, benchmark.directory_size(os.path.join(root,
                                                               'export')))

  def testSummarize(self):
    self.assertIsNone(benchmark.summarize([]))
    self.assertEqual(
        {'median': 2.0, 'min': 1.0, 'max': 5.0, 'count': 3},
        benchmark.summarize([5, 1, 2]),
    )


if __name__ == '__main__':
  tf.test.main()
