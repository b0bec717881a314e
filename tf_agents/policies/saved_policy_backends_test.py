# coding=utf-8
"""Tests of saved_policy_backends: the stored-model choice and the interface."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_equivalence
from tf_agents.policies import export_publish
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import saved_policy
from tf_agents.policies import saved_policy_backends as backends


def _record(**equivalent):
  return export_equivalence.Record(
      signature='action', weights_digest='',
      formats={name: export_equivalence.FormatRecord(
          file='converted/action.' + name, notion='bit_exact',
          equivalent=value, max_abs_deviation=0.0, detail='')
               for name, value in equivalent.items()})


class StoredFormatsTest(parameterized.TestCase):

  @parameterized.parameters(
      ('auto', dict(tflite=True, onnx=True), ['tflite', 'onnx']),
      ('auto', dict(tflite=False, onnx=True), ['onnx']),
      ('auto', dict(tflite=False, onnx=False), []),
      ('tflite', dict(tflite=False, onnx=True), ['tflite']),
      ('onnxruntime', dict(tflite=True), []),
      ('onnxruntime', dict(tflite=True, onnx=False), ['onnx']),
      ('saved_model', dict(tflite=True, onnx=True), []),
  )
  def test_stored_formats(self, requested, equivalent, expected):
    self.assertEqual(expected, backends.stored_formats(
        requested, _record(**equivalent)))

  @parameterized.parameters(*backends.BACKENDS)
  def test_no_record_means_no_stored_model(self, requested):
    self.assertEqual([], backends.stored_formats(requested, None))

  def test_one_default(self):
    self.assertIn(backends.DEFAULT_BACKEND, backends.BACKENDS)
    self.assertEqual(backends.DEFAULT_BACKEND, saved_policy.DEFAULT_BACKEND)


class BackendInterfaceTest(tf.test.TestCase, parameterized.TestCase):
  """Every backend runs `action` and takes new weights without converting."""

  @parameterized.parameters('saved_model', 'tflite', 'onnxruntime')
  def test_run_and_follow_new_weights(self, backend):
    policy = test_utils.make_policy(test_utils.STATELESS_DETERMINISTIC)
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    saver = policy_saver.PolicySaver(
        policy, converted_formats=(export_equivalence.TFLITE,
                                   export_equivalence.ONNX))
    saver.save(path)
    runtime = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(backend, runtime.backend)
    time_step = tf.nest.map_structure(
        np.asarray, test_utils.time_steps(8, 1, seed=3))
    self.assertAllEqual(policy.action(test_utils.time_steps(8, 1, seed=3))
                        .action, runtime.action(time_step).action)
    for variable in policy.variables():
      variable.assign(variable * -1.5 + 0.25)
    saver.save_checkpoint(path)
    runtime.update_from_checkpoint(path)
    self.assertEqual(export_publish.version_id(path), runtime.version)
    self.assertAllEqual(policy.action(test_utils.time_steps(8, 1, seed=3))
                        .action, runtime.action(time_step).action)


if __name__ == '__main__':
  tf.test.main()
