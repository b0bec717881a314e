# coding=utf-8
"""Tests for tf_agents.policies.export_conversion."""

import json
import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf

from tf_agents.policies import export_conversion
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils

_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'onnx_test_program.py')
# How far onnxruntime's LSTM state may drift from TensorFlow's over an
# episode (float32 rounding of other kernels; values are in [-1, 1]).
_STATE_ATOL = 1e-5


def _time_step_feed(signature, batch_size, step, seed=0):
  """Numpy inputs of the flat signature for `test_utils.time_steps`."""
  flat = test_utils.flat_time_step(
      signature, test_utils.time_steps(batch_size, step, seed))
  return {k: v.numpy() for k, v in flat.items()}


def _run_child(test_case, model, inputs):
  """Runs `onnx_test_program.py` in a fresh Python; returns its outputs."""
  workdir = test_case.create_tempdir().full_path
  model_path = os.path.join(workdir, 'policy.onnx')
  with open(model_path, 'wb') as f:
    f.write(model)
  inputs_path = os.path.join(workdir, 'inputs.npz')
  outputs_path = os.path.join(workdir, 'outputs.npz')
  np.savez(inputs_path, **inputs)
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'PYTHONSTARTUP', 'PYTHONHOME')}
  result = subprocess.run(
      [sys.executable, '-u', _PROGRAM, model_path, inputs_path, outputs_path],
      cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  if result.returncode != 0:
    test_case.fail('ONNX child failed ({}):\n{}\n{}'.format(
        result.returncode, result.stdout[-3000:], result.stderr[-3000:]))
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  with np.load(outputs_path) as data:
    return summary, {k: data[k] for k in data.files}


class ONNXConversionTest(tf.test.TestCase, parameterized.TestCase):

  def _export(self, kind):
    policy = test_utils.make_policy(kind)
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    policy_saver.PolicySaver(policy).save(path)
    return path

  def test_greedy_mlp_same_actions_in_fresh_process(self):
    path = self._export(test_utils.STATELESS_DETERMINISTIC)
    model, report = export_conversion.convert_action_to_onnx(path)
    signature = tf.saved_model.load(path).signatures['action']
    inputs = {'steps': np.array(3)}
    expected = []
    for t in range(3):
      feed = _time_step_feed(signature, 32, t + 1, seed=t)
      inputs.update({'{}/{}'.format(t, k): v for k, v in feed.items()})
      expected.append(signature(**feed)['action'].numpy())
    summary, outputs = _run_child(self, model, inputs)
    self.assertEqual(summary['outputs'], ['action'])
    self.assertEqual(report.output_names, ('action',))
    for t, want in enumerate(expected):
      self.assertAllEqual(want, outputs['{}/action'.format(t)])
    # The check has power: the policy picks several actions.
    self.assertGreater(len(np.unique(np.concatenate(expected))), 1)

  def test_lstm_episode_fed_back_in_fresh_process(self):
    path = self._export(test_utils.STATEFUL_DETERMINISTIC)
    model, report = export_conversion.convert_action_to_onnx(path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures['action']
    self.assertEqual(
        dict(report.state_outputs),
        {'next_state_0': 'state_0', 'next_state_1': 'state_1'})
    batch, steps = 8, 12
    initial = loaded.signatures['get_initial_state'](
        batch_size=tf.constant(batch))
    inputs = {'steps': np.array(steps)}
    inputs.update({k: v.numpy() for k, v in initial.items()})
    state = dict(initial)
    expected = []
    for t in range(steps):
      feed = _time_step_feed(signature, batch, t)
      inputs.update({'{}/{}'.format(t, k): v for k, v in feed.items()})
      out = signature(**feed, **state)
      state = {k: out[k] for k in initial}
      expected.append({k: v.numpy() for k, v in out.items()})
    summary, outputs = _run_child(self, model, inputs)
    self.assertEqual(summary['feedback'], dict(report.state_outputs))
    for t, want in enumerate(expected):
      self.assertAllEqual(want['action'], outputs['{}/action'.format(t)],
                          msg='step {}'.format(t))
      for key in initial:
        self.assertAllClose(want[key], outputs['{}/next_{}'.format(t, key)],
                            atol=_STATE_ATOL, rtol=0)
    actions = np.stack([e['action'] for e in expected])
    self.assertGreater(len(np.unique(actions)), 1)
    # The state moves: feeding it back matters.
    self.assertGreater(np.abs(expected[-1]['state_0']).max(), 0.01)

  def test_names_and_metadata(self):
    path = self._export(test_utils.STATEFUL_DETERMINISTIC)
    model, report = export_conversion.convert_action_to_onnx(path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures['action']
    proto = onnx.load_from_string(model)
    self.assertEqual(sorted(i.name for i in proto.graph.input),
                     sorted(signature.structured_input_signature[1]))
    self.assertEqual(sorted(report.input_names),
                     sorted(signature.structured_input_signature[1]))
    self.assertCountEqual(report.output_names,
                          ['action', 'next_state_0', 'next_state_1'])
    metadata = {p.key: p.value for p in proto.metadata_props}
    self.assertEqual(metadata[export_conversion.SIGNATURE_METADATA], 'action')
    self.assertEqual(
        json.loads(metadata[export_conversion.STATE_OUTPUTS_METADATA]),
        dict(report.state_outputs))
    # Every model variable (zero biases included) is a named initializer
    # holding its value.
    variables = loaded.model_variables
    self.assertEqual(report.weight_names,
                     tuple(export_conversion.weight_name(i)
                           for i in range(len(variables))))
    initializers = {i.name: onnx.numpy_helper.to_array(i)
                    for i in proto.graph.initializer}
    for i, variable in enumerate(variables):
      self.assertAllEqual(variable.numpy(),
                          initializers[export_conversion.weight_name(i)])

  def test_weights_replaced_per_session_and_variables_restored(self):
    path = self._export(test_utils.STATELESS_DETERMINISTIC)
    other_path = self._export(test_utils.STATELESS_DETERMINISTIC)
    loaded = tf.saved_model.load(path)
    before = [v.numpy() for v in loaded.model_variables]
    model, report = export_conversion.convert_action_to_onnx(loaded)
    # The conversion put other values into the variables for a while.
    for value, variable in zip(before, loaded.model_variables):
      self.assertAllEqual(value, variable.numpy())
    other = tf.saved_model.load(other_path)
    signature = other.signatures['action']
    feed = _time_step_feed(signature, 64, 1)
    expected = signature(**feed)['action'].numpy()
    own = loaded.signatures['action'](**feed)['action'].numpy()
    self.assertNotAllEqual(expected, own)
    options = onnxruntime.SessionOptions()
    keep = []
    for name in report.weight_names:
      index = int(name.rsplit('_', 1)[1])
      value = onnxruntime.OrtValue.ortvalue_from_numpy(
          other.model_variables[index].numpy())
      options.add_initializer(name, value)
      keep.append(value)
    session = onnxruntime.InferenceSession(
        model, options, providers=['CPUExecutionProvider'])
    self.assertAllEqual(expected, session.run(['action'], feed)[0])
    plain = onnxruntime.InferenceSession(
        model, providers=['CPUExecutionProvider'])
    self.assertAllEqual(own, plain.run(['action'], feed)[0])

  def test_other_signature_key(self):
    path = self._export(test_utils.STATEFUL_DETERMINISTIC)
    model, report = export_conversion.convert_action_to_onnx(
        path, signature_key='get_initial_state')
    self.assertEqual(report.input_names, ('batch_size',))
    session = onnxruntime.InferenceSession(
        model, providers=['CPUExecutionProvider'])
    outputs = dict(zip(report.output_names, session.run(
        list(report.output_names), {'batch_size': np.array(3, np.int32)})))
    self.assertCountEqual(outputs, ['state_0', 'state_1'])
    self.assertAllEqual(outputs['state_0'], np.zeros((3, 4), np.float32))
    with self.assertRaisesRegex(ValueError, "no 'serve' signature"):
      export_conversion.convert_action_to_onnx(path, signature_key='serve')


class TFLiteConversionTest(tf.test.TestCase):

  def test_policy_saver_names_are_the_conversion_module_names(self):
    self.assertIs(policy_saver.convert_action_to_tflite,
                  export_conversion.convert_action_to_tflite)
    self.assertIs(policy_saver.TFLiteConversionReport,
                  export_conversion.TFLiteConversionReport)

  def test_model_with_weights_takes_new_weights(self):
    policy = test_utils.make_policy(test_utils.STATELESS_DETERMINISTIC)
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    policy_saver.PolicySaver(policy).save(path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures['action']
    model = export_conversion.tflite_model_with_weights(loaded, signature)
    interpreter = tf.lite.Interpreter(model_content=model)
    action = interpreter.get_signature_runner('action')
    feed = _time_step_feed(signature, 16, 1)
    before = signature(**feed)['action']
    self.assertAllEqual(before, action(**feed)['action'])
    negated = [-v.numpy() for v in loaded.model_variables]
    interpreter.get_signature_runner(export_conversion.SET_WEIGHTS_SIGNATURE)(
        **{export_conversion.weight_name(i): v
           for i, v in enumerate(negated)})
    for variable, value in zip(loaded.model_variables, negated):
      variable.assign(value)
    after = signature(**feed)['action']
    self.assertNotAllEqual(before, after)
    self.assertAllEqual(after, action(**feed)['action'])


if __name__ == '__main__':
  tf.test.main()
