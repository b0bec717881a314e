# coding=utf-8
"""Tests for tf_agents.benchmarks.report on a checked-in results file.

`testdata/policy_saver_benchmark_results.json` is the results dict of a
`--fast` run cut to two policies, without its targets, with three changes
to exercise every outcome: `q_mlp_10k`'s in-place update on the `'auto'`
backend failed one of its two served-weights checks (its ratio is below its
threshold), and `actor_normal`'s empty poll made a stat and a listing
besides its one open.
"""

import copy
import json
import os
import struct

import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import figures
from tf_agents.benchmarks import measurement
from tf_agents.benchmarks import report

_FIXTURE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'testdata',
    'policy_saver_benchmark_results.json')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _load_fixture():
  with open(_FIXTURE) as f:
    return json.load(f)


class ReportTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.results = _load_fixture()
    self.results['targets'] = report.evaluate_targets(self.results)

  def _targets(self, metric, policy):
    return [t for t in self.results['targets']
            if t['metric'] == metric and t['policy'] == policy]

  def _target(self, metric, policy, versus=cases.UPSTREAM):
    matching = [t for t in self._targets(metric, policy)
                if t['versus'] == versus]
    self.assertLen(matching, 1, (metric, policy, versus))
    return matching[0]

  def _figure(self, policy, metric):
    return self.results['policies'][policy]['figures'][metric]

  def testEveryFigureHasATarget(self):
    self.assertEqual([], report.figures_without_target(self.results))
    # Every metric of figures.METRICS is in the fixture.
    self.assertEqual([m.key for m in figures.METRICS],
                     list(self.results['policies']['q_mlp_10k']['figures']))

  def testSpecificTargetsReplaceTheDefaultOne(self):
    # The small MLP's repeated save: <= 0.25, not also <= 1.0; plus the
    # ours/ours target of the largest MLP (here the same policy).
    repeated = self._targets('repeated_save', 'q_mlp_10k')
    self.assertEqual(
        sorted([(0.25, cases.UPSTREAM),
                (1.2, figures.OURS_PREFIX + 'save_checkpoint')]),
        sorted((t['threshold'], t['versus']) for t in repeated))
    self.assertEqual(0.5, self._target('runtime_step_saved_model',
                                       'q_mlp_10k')['threshold'])
    # The fastest-backend target, and the NumPy floor of the largest MLP
    # (here the same policy).
    self.assertEqual(
        [figures.FASTEST_EXACT, figures.OURS_PREFIX + 'numpy_step'],
        [t['versus'] for t in self._targets('runtime_step_tflite',
                                            'q_mlp_10k')])
    # Other policies get the default.
    for metric in ('repeated_save', 'runtime_step_saved_model',
                   'save_checkpoint', 'update_in_place_saved_model'):
      self.assertEqual(figures.DEFAULT_THRESHOLD,
                       self._target(metric, 'actor_normal')['threshold'])

  def testTargetCount(self):
    policies = list(self.results['policies'])
    with_upstream = sum(
        1 for p in self.results['policies'].values() for key in p['figures']
        if figures.METRICS_BY_KEY[key].upstream)
    # One target per figure with an upstream side (the default or a specific
    # one instead), two count targets per empty poll, and the largest MLP's
    # (here the small one's) three extra ours/ours targets.
    expected = with_upstream + 2 * len(policies) + 3
    self.assertLen(self.results['targets'], expected)

  def testRatioTargets(self):
    for target in self.results['targets']:
      if target['versus'] == cases.UPSTREAM:
        self.assertEqual(
            self._figure(target['policy'], target['metric'])['ratio'],
            target['value'])
    ours_ours = self._target('repeated_save', 'q_mlp_10k',
                             figures.OURS_PREFIX + 'save_checkpoint')
    self.assertAllClose(
        self._figure('q_mlp_10k', 'repeated_save')['ours']['median']
        / self._figure('q_mlp_10k', 'save_checkpoint')['ours']['median'],
        ours_ours['value'])
    self.assertFalse(ours_ours['met'])
    fastest = self._target('runtime_step_tflite', 'q_mlp_10k',
                           figures.FASTEST_EXACT)
    saved_model = self._figure('q_mlp_10k', 'runtime_step_saved_model')
    tflite = self._figure('q_mlp_10k', 'runtime_step_tflite')
    self.assertAllClose(
        min(saved_model['ours']['median'], tflite['ours']['median'])
        / saved_model['upstream']['median'],
        fastest['value'])
    self.assertTrue(fastest['met'])

  def testMetFollowsTheThreshold(self):
    for target in self.results['targets']:
      if target['met'] is None or target.get('reason'):
        continue
      self.assertEqual(target['value'] <= target['threshold'],
                       target['met'], target)
    self.assertTrue(self._target('export_size', 'q_mlp_10k')['met'])
    self.assertFalse(self._target('construct_auto', 'q_mlp_10k')['met'])

  def testFailedCheckFailsTheTarget(self):
    target = self._target('update_in_place_auto', 'q_mlp_10k')
    self.assertLess(target['value'], target['threshold'])
    self.assertFalse(target['met'])
    self.assertIn('1 of 2', target['reason'])
    self.assertIn('new weights not served', target['reason'])
    # A passed check leaves the ratio to decide.
    self.assertNotIn('reason', self._target('update_in_place_saved_model',
                                            'q_mlp_10k'))

  def testEmptyPollCounts(self):
    reads = self._target('empty_poll', 'q_mlp_10k', figures.FILE_READS)
    self.assertEqual(('count', 1, 1, True),
                     (reads['kind'], reads['value'], reads['threshold'],
                      reads['met']))
    listings = self._target('empty_poll', 'q_mlp_10k', figures.FILE_LISTINGS)
    self.assertEqual((0, 0, True), (listings['value'], listings['threshold'],
                                    listings['met']))
    # actor_normal's poll: an open and a stat, and a listing.
    self.assertEqual(
        (2, False),
        (self._target('empty_poll', 'actor_normal', figures.FILE_READS)
         ['value'],
         self._target('empty_poll', 'actor_normal', figures.FILE_READS)
         ['met']))
    self.assertFalse(self._target('empty_poll', 'actor_normal',
                                  figures.FILE_LISTINGS)['met'])

  def testFigureNotMeasuredByDesignIsNotApplicable(self):
    # A policy with no target of its own on the TFLite step (the fixture's
    # ActorPolicy has one: its fastest equivalent backend).
    results = _load_fixture()
    results['policies']['q_mlp_2m'] = copy.deepcopy(
        results['policies']['actor_normal'])
    target = [t for t in report.evaluate_targets(results)
              if t['metric'] == 'runtime_step_tflite' and
              t['policy'] == 'q_mlp_2m'][0]
    self.assertIsNone(target['value'])
    self.assertIsNone(target['met'])
    self.assertIn('stochastic', target['reason'])

  def testMissingFigureIsNotMet(self):
    results = _load_fixture()
    results['policies']['actor_normal']['figures']['load']['ours'] = None
    results['policies']['actor_normal']['figures']['load']['ratio'] = None
    target = [t for t in report.evaluate_targets(results)
              if t['metric'] == 'load' and t['policy'] == 'actor_normal'][0]
    self.assertFalse(target['met'])
    self.assertEqual('not measured', target['reason'])

  def testNoLargestMlpDropsItsTarget(self):
    results = _load_fixture()
    results['largest_mlp'] = None
    names = [t['name'] for t in report.evaluate_targets(results)]
    self.assertNotIn(figures.SPECIFIC_TARGETS[1].name, names)

  def testMarkdown(self):
    text = report.markdown_report(self.results)
    rows = [line for line in text.splitlines() if line.startswith('| ')]
    for name, policy in self.results['policies'].items():
      for key, figure in policy['figures'].items():
        matching = [r for r in rows if r.startswith(
            '| {} | {} |'.format(name, figure['label']))]
        self.assertLen(matching, 1, (name, key))
        cells = [c.strip() for c in matching[0].strip('|').split('|')]
        self.assertLen(cells, 6)
        self.assertRegex(cells[5], r'(met|met\*\*|n/a)$', (name, key))
        if figure['ratio'] is not None:
          self.assertAllClose(figure['ratio'], float(cells[4]), rtol=1e-2,
                              atol=1e-3)
    poll = [r for r in rows if r.startswith('| actor_normal | empty poll')][0]
    self.assertIn('no counterpart', poll)
    self.assertIn('file reads 2 (<= 1): **not met**', poll)
    self.assertIn('opens 1, stats 1, listings 1, writes 0', poll)
    met = sum(1 for t in self.results['targets'] if t['met'])
    self.assertIn('{} of {} targets met.'.format(
        met, len(self.results['targets'])), text)
    failed = [r for r in rows if r.startswith(
        '| in-place update + action, backend auto | q_mlp_10k |')]
    self.assertLen(failed, 1)
    self.assertIn('**not met** (its actions after the update', failed[0])

  def testFormatRatioShowsAMissThatRoundingWouldHide(self):
    self.assertEqual('1.0001', report.format_ratio(1.0001, 1.0))
    self.assertEqual('1.000', report.format_ratio(1.0, 1.0))
    self.assertEqual('0.250', report.format_ratio(0.25))
    self.assertEqual('13.3', report.format_ratio(13.26))
    self.assertEqual('n/a', report.format_ratio(None))

  def testWriteOutputs(self):
    output_dir = os.path.join(self.create_tempdir().full_path, 'new')
    paths = report.write_outputs(self.results, output_dir)
    self.assertEqual(
        sorted([report.JSON_FILENAME, report.MARKDOWN_FILENAME,
                report.CHART_FILENAME]),
        sorted(os.listdir(output_dir)))
    with open(paths['json']) as f:
      self.assertEqual(self.results, json.load(f))
    with open(paths['markdown']) as f:
      self.assertEqual(report.markdown_report(self.results), f.read())
    with open(paths['chart'], 'rb') as f:
      data = f.read()
    self.assertEqual(_PNG_SIGNATURE, data[:8])
    width, height = struct.unpack('>II', data[16:24])
    self.assertGreater(width, 400)
    self.assertGreater(height, 400)

  def testPolicyFigures(self):
    samples = measurement.Samples()
    samples.add('q_mlp_10k', 'load', cases.OURS, [1.0, 3.0])
    samples.add('q_mlp_10k', 'load', cases.UPSTREAM, 4.0)
    samples.add('q_mlp_10k', 'empty_poll', cases.OURS, 0.5)
    samples.check('q_mlp_10k', 'empty_poll', True)
    samples.check('q_mlp_10k', 'empty_poll', False)
    samples.count_file_operations('q_mlp_10k', 'empty_poll', {'opens': 1})
    samples.note('q_mlp_10k', 'runtime_step_tflite', 'not exact')
    result = report.policy_figures('q_mlp_10k', samples, None)
    self.assertNotIn('peak_memory_first_save', result)
    self.assertEqual(0.5, result['load']['ratio'])
    self.assertEqual(2, result['load'][cases.OURS]['count'])
    poll = result['empty_poll']
    self.assertIsNone(poll[cases.UPSTREAM])
    self.assertIsNone(poll['ratio'])
    self.assertEqual({'checked': 2, 'failed': 1}, poll['checks'])
    self.assertEqual(1, poll['file_operations']['opens'])
    self.assertEqual('not exact', result['runtime_step_tflite']['note'])
    self.assertNotIn('note', result['load'])
    self.assertIn('peak_memory_first_save',
                  report.policy_figures('q_mlp_10k', samples, 'q_mlp_10k'))

  def testEvaluateDoesNotChangeTheResults(self):
    results = _load_fixture()
    before = copy.deepcopy(results)
    report.evaluate_targets(results)
    self.assertEqual(before, results)


if __name__ == '__main__':
  tf.test.main()
