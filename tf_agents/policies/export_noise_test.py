# coding=utf-8
"""Tests for export_noise: stochastic policies converted with fed noise."""

import functools
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.networks import actor_distribution_network
from tf_agents.networks import normal_projection_network
from tf_agents.networks import q_network
from tf_agents.policies import actor_policy
from tf_agents.policies import boltzmann_policy
from tf_agents.policies import epsilon_greedy_policy
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_noise
from tf_agents.policies import export_publish
from tf_agents.policies import gaussian_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import q_policy
from tf_agents.policies import saved_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

_OBS_SPEC = test_utils.OBSERVATION_SPEC
_TIME_STEP_SPEC = test_utils.TIME_STEP_SPEC
_SCALAR_CONTINUOUS_SPEC = tensor_spec.BoundedTensorSpec(
    (), tf.float32, minimum=-2.0, maximum=3.0, name='act')

# Policy kinds, by the distribution their `action` samples.
MVN_DIAG = 'mvn_diag'
NORMAL = 'normal'
SQUASHED_NORMAL = 'squashed_normal'
CATEGORICAL_LOGITS = 'categorical_logits'
Q_SAMPLED = 'q_sampled'
Q_LOG_PROBABILITY = 'q_log_probability'
BOLTZMANN = 'boltzmann'
EPSILON_GREEDY = 'epsilon_greedy'
RNN_MVN_DIAG = 'rnn_mvn_diag'
KINDS = (MVN_DIAG, NORMAL, SQUASHED_NORMAL, CATEGORICAL_LOGITS, Q_SAMPLED,
         Q_LOG_PROBABILITY, BOLTZMANN, EPSILON_GREEDY, RNN_MVN_DIAG)


def _scale_weights(policy, scale):
  """Spreads the weights, so that the distributions depend on the inputs."""
  rng = np.random.RandomState(5)
  for variable in policy.variables():
    variable.assign(rng.uniform(-scale, scale, variable.shape).astype(
        variable.dtype.as_numpy_dtype))


def _make_policy(kind):
  """A small policy of `kind` with its variables created."""
  if kind == RNN_MVN_DIAG:
    # An LSTM state beside the sampled action.
    policy = test_utils.make_policy(test_utils.STATEFUL_STOCHASTIC)
    _scale_weights(policy, 1.0)
    return policy
  if kind in (MVN_DIAG, NORMAL, SQUASHED_NORMAL, CATEGORICAL_LOGITS):
    action_spec = {
        MVN_DIAG: test_utils.CONTINUOUS_ACTION_SPEC,
        NORMAL: _SCALAR_CONTINUOUS_SPEC,
        SQUASHED_NORMAL: test_utils.CONTINUOUS_ACTION_SPEC,
        CATEGORICAL_LOGITS: test_utils.DISCRETE_ACTION_SPEC,
    }[kind]
    projection = {}
    if kind == SQUASHED_NORMAL:
      # `SquashToSpecNormal`: tanh, then scaled and shifted to the spec.
      projection['continuous_projection_net'] = functools.partial(
          normal_projection_network.NormalProjectionNetwork,
          scale_distribution=True)
    net = actor_distribution_network.ActorDistributionNetwork(
        _OBS_SPEC, action_spec, fc_layer_params=(8,), **projection)
    # The clip of `TFPolicy.action` applies to MVN_DIAG and NORMAL.
    policy = actor_policy.ActorPolicy(_TIME_STEP_SPEC, action_spec, net)
  else:
    spec = test_utils.DISCRETE_ACTION_SPEC
    net = q_network.QNetwork(_OBS_SPEC, spec, fc_layer_params=(6,))
    # Samples a categorical over the Q-values.
    policy = q_policy.QPolicy(
        _TIME_STEP_SPEC, spec, net,
        emit_log_probability=kind == Q_LOG_PROBABILITY)
    if kind == BOLTZMANN:
      policy = boltzmann_policy.BoltzmannPolicy(policy, temperature=0.5)
    elif kind == EPSILON_GREEDY:
      policy = epsilon_greedy_policy.EpsilonGreedyPolicy(policy, epsilon=0.3)
  policy.action(test_utils.time_steps(1, 0), policy.get_initial_state(1))
  _scale_weights(policy, 1.0)
  return policy


def _tflite_ops(model):
  """`(builtin op names, custom op codes)` of a TFLite flatbuffer."""
  # Imported here: the module is TFLite's flatbuffer tooling, not public API.
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  names = {v: k for k, v in vars(schema.BuiltinOperator).items()
           if not k.startswith('_')}
  parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
  builtins, custom = set(), set()
  for code in parsed.operatorCodes:
    op = max(code.builtinCode, code.deprecatedBuiltinCode)
    if op == schema.BuiltinOperator.CUSTOM:
      custom.add(code.customCode.decode() if isinstance(
          code.customCode, bytes) else str(code.customCode))
    else:
      builtins.add(names.get(op, str(op)))
  return builtins, custom


def _version_dir(export_dir):
  return export_publish.current_version(export_dir).path


def _saved_model_samples(version, inputs):
  """Outputs of the SavedModel's `action` for numpy `inputs`."""
  signature = tf.saved_model.load(version).signatures['action']
  return {k: v.numpy() for k, v in signature(
      **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _probe_time_step(rows=2, samples=2000):
  """Probe time steps (numpy), each repeated `samples` times."""
  return tf.nest.map_structure(
      lambda t: np.repeat(t.numpy(), samples, axis=0),
      test_utils.time_steps(rows, 1, seed=3))


def _probe_inputs(version, rows=2, samples=2000):
  """`_probe_time_step` keyed by the `action` signature's inputs."""
  signature = tf.saved_model.load(version).signatures['action']
  flat = test_utils.flat_time_step(signature, tf.nest.map_structure(
      tf.constant, _probe_time_step(rows, samples)))
  return {k: v.numpy() for k, v in flat.items()}


class ExportNoiseTest(tf.test.TestCase, parameterized.TestCase):

  def _save(self, policy, seed=11, formats=export_equivalence.FORMATS,
            **kwargs):
    export_dir = os.path.join(self.create_tempdir().full_path, 'export')
    saver = policy_saver.PolicySaver(policy, seed=seed,
                                     converted_formats=formats, **kwargs)
    saver.save(export_dir)
    return export_dir, saver

  @parameterized.named_parameters(*[(kind, kind) for kind in KINDS])
  def testConvertsWithBuiltinOpsAndSameDistribution(self, kind):
    export_dir, _ = self._save(_make_policy(kind))
    version = _version_dir(export_dir)
    record = export_equivalence.read(version)
    self.assertEqual(sorted(record.formats),
                     sorted(export_equivalence.FORMATS))
    for name, entry in record.formats.items():
      self.assertEqual(entry.notion, export_equivalence.SAME_DISTRIBUTION,
                       '{}: {}'.format(name, entry.detail))
      self.assertTrue(entry.equivalent, '{}: {}'.format(name, entry.detail))
      self.assertNotEmpty(entry.noise_inputs)
      self.assertEqual(entry.noise_seed, 11)
      self.assertGreater(entry.statistics['num_tests'], 0)
      self.assertGreaterEqual(
          entry.statistics['min_p_value'],
          export_equivalence.SIGNIFICANCE_LEVEL /
          entry.statistics['num_tests'])
    with open(os.path.join(version, record.formats['tflite'].file),
              'rb') as f:
      builtins, custom = _tflite_ops(f.read())
    self.assertEmpty(custom)  # No select TF (Flex) ops, no custom ops.
    self.assertNotIn('DELEGATE', builtins)
    with open(os.path.join(version, record.formats['onnx'].file), 'rb') as f:
      onnx_model = f.read()
    import onnx  # pylint: disable=g-import-not-at-top
    domains = {n.domain for n in onnx.load_from_string(onnx_model).graph.node}
    self.assertLessEqual(domains, {'', 'ai.onnx'})
    # The noise inputs are model inputs of both formats.
    names = {n['name'] for n in record.formats['onnx'].noise_inputs}
    self.assertLessEqual(
        names, {i.name for i in onnx.load_from_string(onnx_model).graph.input})

  @parameterized.named_parameters(('tflite', 'tflite'),
                                  ('onnxruntime', 'onnxruntime'))
  def testSeededRuntimesAreReproducible(self, backend):
    policy = _make_policy(MVN_DIAG)
    export_dir, _ = self._save(policy, seed=23)
    runs = []
    for _ in range(2):
      loaded = saved_policy.SavedPolicy(export_dir, backend=backend)
      self.assertEqual(loaded.backend, backend)
      time_step = tf.nest.map_structure(
          lambda t: t.numpy(), test_utils.time_steps(4, 1, seed=2))
      runs.append([loaded.action(time_step).action for _ in range(3)])
    for first, second in zip(*runs):
      self.assertAllEqual(first, second)
    # Still stochastic: successive steps on one input differ.
    self.assertNotAllClose(runs[0][0], runs[0][1])

  @parameterized.named_parameters(('mvn_diag', MVN_DIAG),
                                  ('categorical', CATEGORICAL_LOGITS))
  def testAutoPicksTheStoredModelAndItsSamplesMatch(self, kind):
    export_dir, _ = self._save(_make_policy(kind))
    version = _version_dir(export_dir)
    auto = saved_policy.SavedPolicy(export_dir)
    self.assertEqual(auto.backend, 'tflite')
    self.assertFalse(auto.is_deterministic)
    actions = auto.action(_probe_time_step()).action
    expected = _saved_model_samples(version, _probe_inputs(version))
    result = export_equivalence.compare_samples(
        {'action': expected['action']}, {'action': actions}, probe_rows=2)
    self.assertTrue(result.equivalent, result.detail)

  def testOnnxModelSamplesInAFreshProcessWithoutTfAgents(self):
    export_dir, _ = self._save(_make_policy(SQUASHED_NORMAL), seed=31)
    version = _version_dir(export_dir)
    inputs = _probe_inputs(version)
    inputs_path = os.path.join(self.create_tempdir().full_path, 'in.npz')
    outputs_path = inputs_path + '.out.npz'
    np.savez(inputs_path, **inputs)
    # A runtime knowing nothing but the record: it draws the noise the
    # record names, seeded with the record's seed.
    summary = test_utils.run_fresh_process(
        self, 'noise_model_program.py',
        args=[version, inputs_path, outputs_path],
        block_modules=('tensorflow',))
    self.assertEqual(summary['noise'], ['noise_action'])
    with np.load(outputs_path) as data:
      child = {k: data[k] for k in data.files}
    result = export_equivalence.compare_samples(
        _saved_model_samples(version, inputs), child, probe_rows=2)
    self.assertTrue(result.equivalent, result.detail)
    # Squashed to the spec's bounds, [-1, 1].
    self.assertAllInRange(child['action'], -1.0, 1.0)
    # The same seed gives the same draws as this package's runtime.
    loaded = saved_policy.SavedPolicy(export_dir, backend='onnxruntime')
    self.assertAllClose(loaded.action(_probe_time_step()).action,
                        child['action'], rtol=0.0, atol=1e-6)

  def testInputFnAndSpecWithSeed(self):
    policy = _make_policy(MVN_DIAG)
    example_spec = tf.TensorSpec((4,), tf.float32, name='example')

    def input_fn(example):
      batch = tf.shape(example)[0]
      time_step = ts.TimeStep(
          step_type=tf.fill([batch], tf.constant(1, tf.int32)),
          reward=tf.zeros([batch]),
          discount=tf.ones([batch]),
          observation=example[:, :3] * example[:, 3:])
      return time_step, ()

    export_dir, _ = self._save(policy, seed=5,
                               input_fn_and_spec=(input_fn, example_spec))
    version = _version_dir(export_dir)
    record = export_equivalence.read(version)
    for name, entry in record.formats.items():
      self.assertEqual(entry.notion, export_equivalence.SAME_DISTRIBUTION,
                       name)
      self.assertTrue(entry.equivalent, '{}: {}'.format(name, entry.detail))
      self.assertEqual(entry.noise_seed, 5)
    with open(os.path.join(version, record.formats['tflite'].file),
              'rb') as f:
      self.assertEmpty(_tflite_ops(f.read())[1])
    self.assertEqual(record.formats['onnx'].noise_inputs[0]['name'],
                     'noise_action')

  @parameterized.named_parameters(('tflite', 'tflite'), ('onnx', 'onnx'))
  def testShiftedMeanIsNotEquivalent(self, format_name):
    policy = _make_policy(MVN_DIAG)
    export_dir, saver = self._save(policy, formats=(format_name,))
    loaded = tf.saved_model.load(_version_dir(export_dir))
    # The mean's bias (the projection's last variables) shifted by 0.5: the
    # converted model then samples from a shifted normal.
    noise_action = saver._make_noise_action()  # pylint: disable=protected-access
    bias = [v for v in policy.variables() if 'means' in v.name and
            'bias' in v.name][0]
    original = bias.numpy()
    bias.assign(original + 0.5)
    try:
      wrong, _ = export_equivalence.convert_with_noise(noise_action,
                                                       format_name)
    finally:
      bias.assign(original)
    entry = export_equivalence.check(loaded, wrong, format_name,
                                     noise=noise_action.noise)
    self.assertEqual(entry.notion, export_equivalence.SAME_DISTRIBUTION)
    self.assertFalse(entry.equivalent, entry.detail)
    self.assertLess(entry.statistics['min_p_value'], 1e-6)
    # The right model passes the same check.
    right, _ = export_equivalence.convert_with_noise(noise_action,
                                                     format_name)
    self.assertTrue(export_equivalence.check(
        loaded, right, format_name, noise=noise_action.noise).equivalent)

  def testFixedBatchSizeIsNotChecked(self):
    export_dir, _ = self._save(_make_policy(MVN_DIAG), formats=('tflite',),
                               batch_size=4)
    entry = export_equivalence.read(_version_dir(export_dir)).formats['tflite']
    # No independent samples of one input to test; still builtin ops only.
    self.assertEqual(entry.notion, export_equivalence.NOT_CHECKED)
    self.assertFalse(entry.equivalent)
    self.assertEqual(entry.noise()[0].name, 'noise_action')
    self.assertEqual(saved_policy.SavedPolicy(export_dir).backend,
                     'saved_model')

  def testUnsupportedPolicyKeepsItsRandomOps(self):
    # `GaussianPolicy` adds its noise in its own `_action`.
    policy = gaussian_policy.GaussianPolicy(
        greedy_policy.GreedyPolicy(_make_policy(MVN_DIAG)), scale=0.3,
        clip=False)
    export_dir, _ = self._save(policy, formats=('tflite',))
    entry = export_equivalence.read(_version_dir(export_dir)).formats['tflite']
    self.assertEqual(entry.notion, export_equivalence.NOT_CHECKED)
    self.assertIsNone(entry.noise_inputs)

  def testNoiseDrawsAreDocumentedDistributions(self):
    rng = np.random.default_rng(0)
    uniform = export_noise.NoiseInput('u', export_noise.UNIFORM, (3,),
                                      'float32').draw(rng, 5000)
    normal = export_noise.NoiseInput('z', export_noise.STANDARD_NORMAL, (),
                                     'float64').draw(rng, 5000)
    self.assertEqual(uniform.shape, (5000, 3))
    self.assertEqual(uniform.dtype, np.float32)
    self.assertAllInRange(uniform, 0.0, 1.0)
    self.assertEqual(normal.dtype, np.float64)
    self.assertNear(np.mean(normal), 0.0, 0.1)
    self.assertNear(np.std(normal), 1.0, 0.1)


if __name__ == '__main__':
  tf.test.main()
