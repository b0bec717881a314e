# coding=utf-8
"""Smoke test of tf_agents.benchmarks.policy_saver_benchmark.

Runs the benchmark's fast mode once (small policies, 2 repetitions, one
peak-memory child per saver) and checks that its JSON, markdown table and
chart hold every figure, for ours and (where there is one) upstream's, as
finite positive numbers, with ratios of the medians and every figure's
targets evaluated. The measured values and whether targets are met are not
asserted (they depend on the machine and on work in progress).
"""

import json
import math
import os
import struct
import tempfile
from unittest import mock

import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import figures
from tf_agents.benchmarks import measurement
from tf_agents.benchmarks import policy_saver_benchmark as benchmark
from tf_agents.benchmarks import report
from tf_agents.benchmarks import runtime_measurements
from tf_agents.benchmarks import saver_measurements

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_STATS = ('median', 'min', 'max')
_RUNTIME_FIGURES = tuple(
    prefix + backend
    for prefix in ('construct_', 'update_checkpoint_', 'update_in_place_')
    for backend in figures.RUNTIME_BACKENDS)


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
    cls.config = measurement.fast_config(cls.output_dir)
    cls.returned = benchmark.PolicySaverBenchmark().run_benchmark(cls.config)
    cls.paths = report.write_outputs(cls.returned, cls.output_dir)
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
    small = [case.name for case in cases.CASES if case.small]
    self.assertEqual(small, list(self.results['policies']))
    self.assertTrue(self.results['config']['fast'])
    self.assertEqual(2, self.results['config']['repetitions'])
    # The JSON file holds what `run_benchmark` returned.
    self.assertEqual(json.loads(json.dumps(self.returned)), self.results)

  def testEveryFigureIsMeasured(self):
    memory_policy = self.results['memory_policy']
    self.assertEqual(cases.SMALL_MLP_CASE, memory_policy)
    for name in self.results['policies']:
      expected = [m.key for m in figures.METRICS
                  if not m.memory_only or name == memory_policy]
      self.assertEqual(
          expected, list(self.results['policies'][name]['figures']), name)
      for key in expected:
        figure = self._figure(name, key)
        where = '{} {}'.format(name, key)
        self.assertEqual(figures.METRICS_BY_KEY[key].unit, figure['unit'])
        if not figures.METRICS_BY_KEY[key].upstream:
          self.assertIsNone(figure[cases.UPSTREAM], where)
          self.assertIsNone(figure['ratio'], where)
        else:
          self._assert_summary(figure[cases.UPSTREAM], where + ' upstream')
        if figure[cases.OURS] is None:
          # Only the TFLite runtime may be missing, and only with a reason.
          self.assertIn(key, ('runtime_step_tflite',
                              'runtime_step_tflite_b64'), where)
          self.assertIn('not exact', figure['note'], where)
          continue
        self._assert_summary(figure[cases.OURS], where + ' ours')
        if figure[cases.UPSTREAM]:
          self.assertAllClose(
              figure[cases.OURS]['median'] / figure[cases.UPSTREAM]['median'],
              figure['ratio'], rtol=1e-9, msg=where)

  def testSamplesPerFigure(self):
    repetitions = self.config.repetitions
    for name in self.results['policies']:
      for key in ('first_save', 'repeated_save', 'save_checkpoint') + (
          _RUNTIME_FIGURES):
        per_repetition = 1
        if key.startswith('update_in_place_'):
          per_repetition = runtime_measurements.IN_PLACE_UPDATES
        elif key == 'save_checkpoint':
          per_repetition = saver_measurements.CHECKPOINTS_PER_REPETITION
        for who in cases.SAVERS:
          self.assertEqual(
              repetitions * per_repetition,
              self._figure(name, key)[who]['count'], (name, key, who))
      for who in cases.SAVERS:
        self.assertEqual(
            repetitions * (1 + self.config.extra_loads),
            self._figure(name, 'load')[who]['count'], name)
      for key in ('action_b1', 'action_b64', 'runtime_step_saved_model'):
        for who in cases.SAVERS:
          self.assertGreaterEqual(
              self._figure(name, key)[who]['count'],
              repetitions * self.config.min_calls)
      self.assertGreaterEqual(
          self._figure(name, 'empty_poll')[cases.OURS]['count'],
          repetitions * self.config.min_calls)
    memory = self._figure(self.results['memory_policy'],
                          'peak_memory_first_save')
    for who in cases.SAVERS:
      self.assertEqual(self.config.memory_repetitions, memory[who]['count'])
    self.assertIn(memory['method'], ('VmHWM', 'ru_maxrss'))

  def testUpdatesAreCheckedForDeterministicPolicies(self):
    repetitions = self.config.repetitions
    for name in self.results['policies']:
      deterministic = cases.CASES_BY_NAME[name].deterministic
      for key in _RUNTIME_FIGURES[2:]:
        checks = self._figure(name, key).get('checks')
        if deterministic:
          self.assertEqual(repetitions, checks['checked'], (name, key))
        else:
          self.assertIsNone(checks, (name, key))
      poll = self._figure(name, 'empty_poll')
      self.assertEqual(repetitions, poll['checks']['checked'])
      self.assertEqual(sorted(measurement.FILE_OPERATION_KINDS),
                       sorted(poll['file_operations']))
      self.assertGreaterEqual(poll['file_operations']['opens'], 1)
      self.assertIn('auto ran', self._figure(name, 'construct_auto')['note'])

  def testRuntimeBackends(self):
    # The greedy MLP is deterministic and exact on TFLite; the stochastic
    # actor policy runs on its stored TFLite model fed with noise, recorded
    # as having the SavedModel's distribution (export_noise).
    small = self._figure(cases.SMALL_MLP_CASE, 'runtime_step_tflite')
    self.assertIsNotNone(small[cases.OURS])
    actor = self._figure('actor_normal', 'runtime_step_tflite')
    self.assertIsNotNone(actor[cases.OURS])
    # Each upstream runtime sample serves both backends' rows.
    pairs = [('runtime_step_saved_model', 'runtime_step_tflite')] + [
        (prefix + 'saved_model', prefix + 'auto')
        for prefix in ('construct_', 'update_checkpoint_',
                       'update_in_place_')]
    for name in self.results['policies']:
      for first, second in pairs:
        self.assertEqual(self._figure(name, first)[cases.UPSTREAM],
                         self._figure(name, second)[cases.UPSTREAM])

  def testEveryFigureHasAnEvaluatedTarget(self):
    self.assertEqual([], report.figures_without_target(self.results))
    self.assertEqual(report.evaluate_targets(self.results),
                     self.results['targets'])
    for target in self.results['targets']:
      self.assertIn(target['met'], (True, False, None), target)
      if target['met'] is None:
        self.assertEqual('runtime_step_tflite', target['metric'], target)
        continue
      if target['kind'] == 'ratio':
        self.assertTrue(_is_positive_number(target['value']), target)
      else:
        self.assertIsInstance(target['value'], int)

  def testMarkdownTable(self):
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
        self.assertLen(cells, 6)
        self.assertTrue(cells[5], (name, figure['label']))
    met = sum(1 for t in self.results['targets'] if t['met'])
    self.assertIn('{} of '.format(met), self.markdown)

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


if __name__ == '__main__':
  tf.test.main()
