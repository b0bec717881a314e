# coding=utf-8
"""Tests for tf_agents.benchmarks.memory_child (the parent side)."""

import os
from unittest import mock

from absl import app
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import memory_child
from tf_agents.policies import policy_saver


class MemoryChildTest(tf.test.TestCase):

  def testRunStartsTheModuleWithAFixedMmapThreshold(self):
    calls = []

    def run(args, env, **kwargs):
      del kwargs
      calls.append((args, env))
      return mock.Mock(returncode=0, stdout='log line\n{"method": "VmHWM"}\n')

    work_dir = os.path.join(self.create_tempdir().full_path, 'child')
    with mock.patch.object(memory_child.subprocess, 'run', run):
      result = memory_child.run(cases.OURS, 'q_mlp_10k', work_dir)
    self.assertEqual({'method': 'VmHWM'}, result)
    self.assertTrue(os.path.isdir(work_dir))
    (args, env), = calls
    self.assertEqual(
        ['-m', 'tf_agents.benchmarks.memory_child', cases.OURS, 'q_mlp_10k',
         work_dir], args[1:])
    self.assertEqual(str(128 * 1024), env['MALLOC_MMAP_THRESHOLD_'])
    # The child imports this repository's modules first.
    self.assertEqual(
        os.path.realpath(os.path.dirname(os.path.dirname(os.path.dirname(
            policy_saver.__file__)))),
        os.path.realpath(env['PYTHONPATH'].split(os.pathsep)[0]),
    )
    self.assertTrue(os.path.isfile(os.path.join(
        env['PYTHONPATH'].split(os.pathsep)[0], 'tf_agents', 'benchmarks',
        'memory_child.py')))

  def testRunReportsAFailedChild(self):
    failed = mock.Mock(returncode=1, stdout='', stderr='Traceback: boom')
    with mock.patch.object(memory_child.subprocess, 'run',
                           return_value=failed):
      with self.assertRaisesRegex(RuntimeError, 'boom'):
        memory_child.run(cases.UPSTREAM, 'q_mlp_10k',
                         self.create_tempdir().full_path)

  def testMainRejectsBadArguments(self):
    with self.assertRaises(app.UsageError):
      memory_child.main(['memory_child', 'neither', 'q_mlp_10k', '/tmp'])
    with self.assertRaises(app.UsageError):
      memory_child.main(['memory_child', cases.OURS])


if __name__ == '__main__':
  tf.test.main()
