# coding=utf-8
"""Tests for converting exported `action` signatures to TFLite."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.trajectories import time_step as ts


def _run_both(test_case, export_dir, model, saved_inputs):
  """Runs the SavedModel's and the TFLite model's `action` on the inputs.

  Args:
    test_case: The calling test.
    export_dir: The export.
    model: The TFLite model bytes.
    saved_inputs: Dict keyed like the SavedModel `action` signature.

  Returns:
    `(saved_model_outputs, tflite_outputs)`, both dicts of numpy arrays keyed
    by output name.
  """
  loaded = tf.saved_model.load(export_dir)
  signature = loaded.signatures['action']
  saved_outputs = {
      k: v.numpy() for k, v in signature(**saved_inputs).items()
  }
  _, input_specs = signature.structured_input_signature
  # TFLite names the inputs by the spec names.
  tflite_inputs = {
      input_specs[k].name: np.asarray(v) for k, v in saved_inputs.items()
  }
  interpreter = tf.lite.Interpreter(model_content=model)
  listed = interpreter.get_signature_list()['action']
  test_case.assertCountEqual(listed['inputs'], list(tflite_inputs))
  test_case.assertCountEqual(listed['outputs'], list(saved_outputs))
  runner = interpreter.get_signature_runner('action')
  return saved_outputs, runner(**tflite_inputs)


class PolicySaverTFLiteTest(tf.test.TestCase, parameterized.TestCase):

  def _export(self, policy, **kwargs):
    path = os.path.join(self.create_tempdir().full_path, 'export')
    policy_saver.PolicySaver(policy, **kwargs).save(path)
    return path

  def _saved_inputs(self, export_dir, batch_size, step=1):
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures['action']
    inputs = utils.flat_time_step(
        signature, utils.time_steps(batch_size, step)
    )
    initial_state = loaded.signatures['get_initial_state']
    _, initial_inputs = initial_state.structured_input_signature
    if initial_inputs:
      state = initial_state(batch_size=tf.constant(batch_size))
    else:
      state = initial_state()
    # Non-zero state, so that the state inputs matter.
    inputs.update({k: v + 0.5 for k, v in state.items()})
    return inputs

  @parameterized.named_parameters(
      ('StatelessVariableBatchNestPaths', False, None, True),
      ('StatelessVariableBatchSpecNames', False, None, False),
      ('StatelessFixedBatchNestPaths', False, 2, True),
      ('StatelessFixedBatchSpecNames', False, 2, False),
      ('StatefulVariableBatchNestPaths', True, None, True),
      ('StatefulVariableBatchSpecNames', True, None, False),
      ('StatefulFixedBatchNestPaths', True, 2, True),
      ('StatefulFixedBatchSpecNames', True, 2, False),
  )
  def testDeterministicConvertsWithBuiltinOpsOnly(
      self, stateful, batch_size, nest_paths
  ):
    kind = (
        utils.STATEFUL_DETERMINISTIC
        if stateful
        else utils.STATELESS_DETERMINISTIC
    )
    path = self._export(
        utils.make_policy(kind),
        batch_size=batch_size,
        use_nest_path_signatures=nest_paths,
    )
    model, report = policy_saver.convert_action_to_tflite(path)
    self.assertTrue(report.builtin_ops_only, str(report))
    self.assertEqual((), report.select_tf_ops)
    self.assertEqual('TFLite builtin ops only.', str(report))
    # The builtins-only interpreter runs it and agrees with the SavedModel.
    saved, lite = _run_both(self, path, model, self._saved_inputs(path, 2))
    self.assertCountEqual(list(saved), list(lite))
    for key in saved:
      self.assertAllClose(saved[key], lite[key], atol=1e-5, msg=key)
    action_key = 'action' if nest_paths else 'act'
    self.assertAllEqual(saved[action_key], lite[action_key])

  def testDeterministicWithNumericInputFn(self):
    def input_fn(example):
      batch = tf.shape(example)[0]
      return (
          ts.TimeStep(
              step_type=tf.ones([batch], tf.int32),
              reward=example[:, 0],
              discount=tf.ones([batch]),
              observation=example[:, 1:],
          ),
          (),
      )

    path = self._export(
        utils.make_policy(utils.STATELESS_DETERMINISTIC),
        input_fn_and_spec=(
            input_fn,
            tf.TensorSpec((4,), tf.float32, name='example'),
        ),
    )
    model, report = policy_saver.convert_action_to_tflite(path)
    self.assertTrue(report.builtin_ops_only, str(report))
    example = np.random.RandomState(0).uniform(-1, 1, (3, 4)).astype(
        np.float32
    )
    saved, lite = _run_both(self, path, model, {'example': example})
    self.assertAllEqual(saved['action'], lite['action'])

  @parameterized.named_parameters(
      ('Stateless', utils.STATELESS_STOCHASTIC),
      ('Stateful', utils.STATEFUL_STOCHASTIC),
  )
  def testStochasticConverts(self, kind):
    path = self._export(utils.make_policy(kind), seed=7)
    model, report = policy_saver.convert_action_to_tflite(path)
    # Builtin ops where TFLite has them, otherwise select TF ops; the report
    # says which.
    self.assertEqual(report.builtin_ops_only, not report.select_tf_ops)
    if report.builtin_ops_only:
      self.assertEqual('', report.converter_message)
    else:
      self.assertNotEmpty(report.converter_message)
      for op in report.select_tf_ops:
        self.assertIn(op, str(report))
    saved, lite = _run_both(self, path, model, self._saved_inputs(path, 2))
    self.assertEqual(saved['action'].shape, lite['action'].shape)
    self.assertAllInRange(lite['action'], -1.0, 1.0)

  def testSelectTFOpsAreReported(self):
    # Parsing strings has no TFLite builtin: the converter needs TF kernels.
    def input_fn(example):
      values = tf.strings.to_number(example, tf.float32)
      batch = tf.shape(values)[0]
      return (
          ts.TimeStep(
              step_type=tf.ones([batch], tf.int32),
              reward=values[:, 0],
              discount=tf.ones([batch]),
              observation=values[:, 1:],
          ),
          (),
      )

    path = self._export(
        utils.make_policy(utils.STATELESS_DETERMINISTIC),
        input_fn_and_spec=(
            input_fn,
            tf.TensorSpec((4,), tf.string, name='example'),
        ),
    )
    model, report = policy_saver.convert_action_to_tflite(path)
    self.assertFalse(report.builtin_ops_only)
    self.assertIn('StringToNumber', report.select_tf_ops)
    self.assertIn('StringToNumber', report.converter_message)
    self.assertIn('select TF ops: StringToNumber', str(report))
    example = np.array(
        [['0.5', '0.1', '-0.2', '0.3'], ['0', '1', '0.5', '-1']], dtype=object
    )
    try:
      saved, lite = _run_both(self, path, model, {'example': example})
    except RuntimeError as e:
      # Newer TF wheels ship a Python interpreter without the Flex delegate;
      # the failure is then the one the report predicted.
      self.assertIn('FlexStringToNumber', str(e))
    else:
      self.assertAllEqual(saved['action'], lite['action'])


if __name__ == '__main__':
  tf.test.main()
