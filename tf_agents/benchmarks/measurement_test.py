# coding=utf-8
"""Tests for tf_agents.benchmarks.measurement."""

import os

import tensorflow as tf

from tf_agents.benchmarks import measurement


class MeasurementTest(tf.test.TestCase):

  def testDirectorySizeFollowsSymlinks(self):
    root = self.create_tempdir().full_path
    version = os.path.join(root, '.export.v1')
    os.makedirs(os.path.join(version, 'variables'))
    with open(os.path.join(version, 'a'), 'wb') as f:
      f.write(b'x' * 10)
    with open(os.path.join(version, 'variables', 'b'), 'wb') as f:
      f.write(b'y' * 5)
    os.symlink('.export.v1', os.path.join(root, 'export'))
    self.assertEqual(
        15, measurement.directory_size(os.path.join(root, 'export')))

  def testSummarize(self):
    self.assertIsNone(measurement.summarize([]))
    self.assertEqual(
        {'median': 2.0, 'min': 1.0, 'max': 5.0, 'count': 3},
        measurement.summarize([5, 1, 2]),
    )

  def testOrderRotates(self):
    self.assertEqual(['a', 'b', 'c'], measurement.order(0, ['a', 'b', 'c']))
    self.assertEqual(['b', 'c', 'a'], measurement.order(1, ['a', 'b', 'c']))
    self.assertEqual(['a', 'b', 'c'], measurement.order(3, ('a', 'b', 'c')))

  def testLatenciesCallCountAndState(self):
    config = measurement.BenchmarkConfig(
        output_dir='', latency_budget_seconds=0.0, min_calls=4, max_calls=9)
    states = []

    def step(state):
      states.append(state)
      return state + 1

    samples = measurement.latencies(step, 0, config)
    self.assertLen(samples, 4)
    # Three warm-up calls, then the timed ones; the state is carried.
    self.assertEqual(list(range(7)), states)
    self.assertTrue(all(s >= 0 for s in samples))
    config.latency_budget_seconds = 10.0
    self.assertLen(measurement.latencies(step, 0, config), 9)

  def testFastConfigRunsTheSmallPolicies(self):
    config = measurement.fast_config('/tmp/x')
    self.assertTrue(config.fast)
    self.assertEqual(2, config.repetitions)
    self.assertEqual(('q_mlp_10k', 'q_rnn_lstm', 'actor_normal'),
                     tuple(config.policies))
    self.assertLen(measurement.BenchmarkConfig('/tmp/x').policies, 5)

  def testSamples(self):
    samples = measurement.Samples()
    samples.add('p', 'f', 'ours', 1)
    samples.add('p', 'f', 'ours', [2, 3])
    self.assertEqual([1.0, 2.0, 3.0], samples.get('p', 'f', 'ours'))
    self.assertEqual([], samples.get('p', 'f', 'upstream'))
    samples.check('p', 'f', True)
    samples.check('p', 'f', False)
    samples.check('p', 'f', True)
    self.assertEqual([3, 1], samples.checks[('p', 'f')])
    samples.count_file_operations('p', 'f', {'opens': 1, 'listings': 2})
    samples.count_file_operations('p', 'f', {'opens': 3, 'listings': 0})
    self.assertEqual({'opens': 3, 'stats': 0, 'listings': 2, 'writes': 0},
                     samples.file_operations[('p', 'f')])

  def testFileOperationsCountsAndRestores(self):
    root = self.create_tempdir().full_path
    path = os.path.join(root, 'file')
    original_gfile = tf.io.gfile.GFile
    original_listdir = tf.io.gfile.listdir
    with open(path, 'w') as f:
      f.write('x')
    with measurement.FileOperations() as operations:
      with tf.io.gfile.GFile(path, 'rb') as f:
        self.assertEqual(b'x', f.read())
      self.assertTrue(tf.io.gfile.exists(path))
      tf.io.gfile.stat(path)
      tf.io.gfile.listdir(root)
      tf.io.gfile.glob(root + '/*')
      tf.io.gfile.makedirs(os.path.join(root, 'new'))
    self.assertEqual({'opens': 1, 'stats': 2, 'listings': 2, 'writes': 1},
                     operations.counts)
    self.assertEqual(1, operations.calls['GFile'])
    self.assertIs(original_gfile, tf.io.gfile.GFile)
    self.assertIs(original_listdir, tf.io.gfile.listdir)
    tf.io.gfile.listdir(root)
    self.assertEqual(2, operations.counts['listings'])


if __name__ == '__main__':
  tf.test.main()
