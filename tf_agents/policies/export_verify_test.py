# coding=utf-8
"""Tests for export_verify and the `saved_policy_cli verify` command."""

import json
import os
import pickle
import subprocess
import sys
from unittest import mock

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import saved_policy_cli


class ExportVerifyTest(tf.test.TestCase):

  def _export(self, kind=utils.STATEFUL_DETERMINISTIC, plant=None):
    policy = utils.make_policy(kind)
    saver = policy_saver.PolicySaver(
        policy, train_step=tf.Variable(5, dtype=tf.int64)
    )
    if plant is not None:
      saver.register_function(
          'planted', plant, tf.TensorSpec([], tf.string), outer_dims=()
      )
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver.save(export_dir)
    return export_dir

  def testOrdinaryExportVerifies(self):
    export_dir = self._export()
    report = export_verify.verify(export_dir)
    self.assertTrue(report.ok, report)
    self.assertEqual('ok', report.manifest)
    self.assertEqual([], report.risky_ops)
    self.assertEqual(['action'], report.replayed)
    self.assertEqual(5, report.train_step)
    # The CLI, as a real process: exit code 0 and the same verdict.
    path = [p for p in sys.path if p and os.path.isdir(p)]
    process = subprocess.run(
        [sys.executable, '-m', 'tf_agents.policies.saved_policy_cli',
         'verify', export_dir, '--json'],
        cwd=self.create_tempdir().full_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)),
        capture_output=True, text=True, check=False,
    )
    self.assertEqual(0, process.returncode, process.stderr[-3000:])
    self.assertTrue(json.loads(process.stdout)['ok'])

  def testPlantedFileAndPythonOpsAreReported(self):
    def plant(path):
      contents = tf.io.read_file(path)
      return tf.py_function(lambda x: x, [contents], tf.string)

    export_dir = self._export(utils.STATELESS_DETERMINISTIC, plant)
    report = export_verify.verify(export_dir, fresh_process=False)
    ops = {op for _, op in report.risky_ops}
    self.assertIn('ReadFile', ops)
    self.assertIn('EagerPyFunc', ops)
    self.assertFalse(report.ok)
    text = saved_policy_cli.format_text('verify', report.to_json())
    self.assertIn('ReadFile', text)
    self.assertIn('FAILED', text)

  def testCorruptedFileIsNamed(self):
    export_dir = self._export(utils.STATELESS_DETERMINISTIC)
    path = os.path.join(export_dir, 'variables', 'variables.index')
    with open(path, 'r+b') as f:
      f.seek(10)
      byte = f.read(1)
      f.seek(10)
      f.write(bytes([byte[0] ^ 0xFF]))
    report = export_verify.verify(export_dir)
    self.assertFalse(report.ok)
    self.assertEqual('mismatch', report.manifest)
    self.assertIn('variables/variables.index', report.problems[0])
    result = saved_policy_cli.run_command(
        'verify', [export_dir], saved_policy_cli.Options()
    )
    self.assertFalse(result['ok'])

  def testNoExportStepPickles(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    saver = policy_saver.PolicySaver(policy)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    forbidden = mock.Mock(side_effect=AssertionError('pickled'))
    with mock.patch.object(pickle, 'dump', forbidden), mock.patch.object(
        pickle, 'dumps', forbidden
    ), mock.patch.object(pickle, 'Pickler', forbidden):
      saver.save(export_dir)
      saver.save(export_dir)
      self.assertEqual('variables_only', saver.last_save_kind)
      saver.save_checkpoint(export_dir)
    forbidden.assert_not_called()
    with open(os.path.join(export_dir, export_verify.REFERENCE_IO), 'rb') as f:
      data = np.load(f, allow_pickle=False)
      self.assertNotEmpty(data.files)

  def testMissingAndNotAnExport(self):
    missing = os.path.join(self.get_temp_dir(), 'missing')
    with self.assertRaises(export_errors.ExportNotFoundError):
      export_verify.verify(missing)
    with self.assertRaisesRegex(saved_policy_cli.CliError, 'missing'):
      saved_policy_cli.run_command(
          'verify', [missing], saved_policy_cli.Options()
      )
    with self.assertRaises(export_errors.NotAnExportError):
      export_verify.verify(self.create_tempdir().full_path)


if __name__ == '__main__':
  tf.test.main()
