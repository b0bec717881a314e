# coding=utf-8
"""Tests for tf_agents.policies.saved_policy."""

import collections
import gc
import logging
import os
import re
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.drivers import py_driver
from tf_agents.environments import py_environment
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.policies import export_conversion
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import q_policy
from tf_agents.policies import saved_policy
from tf_agents.policies import saved_policy_backends
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.train import actor
from tf_agents.trajectories import time_step as ts

_OBS_SPEC = tensor_spec.TensorSpec([4], tf.float32, 'obs')
_ACTION_SPEC = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 2, 'act')
_TIME_STEP_SPEC = ts.time_step_spec(_OBS_SPEC)
_LOCATIONS = (('local', 'local'), ('ram', 'ram'))
# Chi-square critical value for 2 degrees of freedom at p = 1e-6: a correct
# sampler exceeds it once in a million runs (and the seeds are fixed).
_CHI2_CRITICAL_DF2 = 27.63


def _q_net(hidden=16, seed=0):
  net = q_network.QNetwork(_OBS_SPEC, _ACTION_SPEC, fc_layer_params=(hidden,))
  net.create_variables()
  _set_weights(net, seed)
  return net


def _set_weights(module, seed, scale=1.0):
  """Deterministic weights (uniform in [-scale, scale]), zero biases."""
  rng = np.random.RandomState(seed)
  for v in module.variables:
    value = scale * rng.uniform(-1.0, 1.0, v.shape)
    v.assign((value if len(v.shape) > 1 else 0 * value).astype(np.float32))


def _make_policy(kind, seed=0):
  """A small TF policy: 'mlp' (greedy), 'stochastic' (Boltzmann) or 'rnn'."""
  if kind == 'mlp':
    return greedy_policy.GreedyPolicy(
        q_policy.QPolicy(_TIME_STEP_SPEC, _ACTION_SPEC, q_network=_q_net(
            seed=seed)))
  if kind == 'wide_mlp':
    return greedy_policy.GreedyPolicy(
        q_policy.QPolicy(_TIME_STEP_SPEC, _ACTION_SPEC, q_network=_q_net(
            hidden=24, seed=seed)))
  if kind == 'stochastic':
    return q_policy.QPolicy(
        _TIME_STEP_SPEC, _ACTION_SPEC, q_network=_q_net(seed=seed))
  if kind == 'rnn':
    net = q_rnn_network.QRnnNetwork(
        _OBS_SPEC, _ACTION_SPEC, input_fc_layer_params=(8,), lstm_size=(4,),
        output_fc_layer_params=(8,))
    net.create_variables()
    _set_weights(net, seed, scale=1.5)
    return greedy_policy.GreedyPolicy(
        q_policy.QPolicy(_TIME_STEP_SPEC, _ACTION_SPEC, q_network=net))
  raise ValueError(kind)


def _time_steps(rng, batch_size=None, step_type=None):
  shape = () if batch_size is None else (batch_size,)
  if step_type is None:
    step_type = rng.randint(0, 3, size=shape)
  return ts.TimeStep(
      step_type=np.asarray(step_type, np.int32).reshape(shape),
      reward=rng.uniform(-1, 1, size=shape).astype(np.float32),
      discount=np.ones(shape, np.float32),
      observation=rng.uniform(-2, 2, size=shape + (4,)).astype(np.float32),
  )


def _copy_variables(source, destination):
  """Copies `source/variables/*` to `destination/variables/`."""
  target = os.path.join(destination, 'variables')
  tf.io.gfile.makedirs(target)
  for name in tf.io.gfile.listdir(os.path.join(source, 'variables')):
    tf.io.gfile.copy(os.path.join(source, 'variables', name),
                     os.path.join(target, name))




def _assert_follows_episode(test_case, loaded, policy, batch_size, steps,
                            seed, state_atol=None):
  """Steps `loaded` and `policy` side by side from their initial states.

  Each feeds its own state back; the actions must be equal at every step and,
  with `state_atol`, the states within it (numpy arrays).

  Returns:
    The actions of `loaded`, one array per step.
  """
  reference = py_tf_eager_policy.PyTFEagerPolicy(
      policy, batch_time_steps=False)
  rng = np.random.RandomState(seed)
  state = loaded.get_initial_state(batch_size)
  ref_state = policy.get_initial_state(batch_size)
  actions = []
  for i in range(steps):
    time_step = _time_steps(rng, batch_size=batch_size,
                            step_type=[min(i, 1)] * batch_size)
    step = loaded.action(time_step, state)
    ref_step = reference.action(time_step, ref_state)
    test_case.assertAllEqual(ref_step.action, step.action, msg='step %d' % i)
    actions.append(step.action)
    if state_atol is not None:
      for got, want in zip(tf.nest.flatten(step.state),
                           tf.nest.flatten(ref_step.state)):
        test_case.assertIsInstance(got, np.ndarray)
        test_case.assertAllClose(want, got, atol=state_atol, rtol=0)
    state, ref_state = step.state, ref_step.state
  return actions


class _CountingEnv(py_environment.PyEnvironment):
  """Episodes of 3 steps; the observation counts steps, reward = action."""

  def __init__(self):
    super(_CountingEnv, self).__init__()
    self._t = 0

  def observation_spec(self):
    return array_spec.ArraySpec((4,), np.float32, 'obs')

  def action_spec(self):
    return array_spec.BoundedArraySpec((), np.int32, 0, 2, 'act')

  def _obs(self):
    return (2 * np.sin(self._t * np.arange(1, 5))).astype(np.float32)

  def _reset(self):
    self._t = 0
    return ts.restart(self._obs())

  def _step(self, action):
    if self.current_time_step() is not None and self.current_time_step(
    ).is_last():
      return self.reset()
    self._t += 1
    reward = np.float32(action)
    if self._t >= 3:
      return ts.termination(self._obs(), reward)
    return ts.transition(self._obs(), reward)


class SavedPolicyTest(tf.test.TestCase, parameterized.TestCase):

  def _base(self, location):
    if location == 'ram':
      return 'ram://saved_policy_test/{}'.format(self.id())
    return self.get_temp_dir()

  def _export(self, policy, location='local', name='policy', **saver_kwargs):
    path = os.path.join(self._base(location), name)
    saver = policy_saver.PolicySaver(policy, **saver_kwargs)
    saver.save(path)
    return path, saver

  def _reference_actions(self, policy, time_step, state=()):
    """The original TF policy's step for a batched numpy time step."""
    return py_tf_eager_policy.PyTFEagerPolicy(
        policy, batch_time_steps=False).action(time_step, state)

  @parameterized.named_parameters(*_LOCATIONS)
  def test_specs_come_from_the_export(self, location):
    policy = _make_policy('rnn')
    path, _ = self._export(policy, location)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    self.assertEqual(
        loaded.time_step_spec, tensor_spec.to_array_spec(_TIME_STEP_SPEC))
    self.assertEqual(loaded.action_spec,
                     tensor_spec.to_array_spec(_ACTION_SPEC))
    self.assertIsInstance(loaded.action_spec, array_spec.BoundedArraySpec)
    self.assertEqual(
        loaded.policy_state_spec,
        tensor_spec.to_array_spec(policy.policy_state_spec))
    self.assertEqual(
        loaded.collect_data_spec,
        tensor_spec.to_array_spec(policy.collect_data_spec))
    # The same specs from policy_specs.pbtxt alone.
    from_file = saved_policy.load_specs(path)
    self.assertEqual(from_file['time_step_spec'], loaded.time_step_spec)
    self.assertEqual(from_file['policy_state_spec'], loaded.policy_state_spec)

  @parameterized.named_parameters(
      ('saved_model', 'saved_model'), ('tflite', 'tflite'), ('auto', 'auto'))
  def test_deterministic_policy_identical_actions(self, backend):
    policy = _make_policy('mlp')
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    expected_backend = 'saved_model' if backend == 'saved_model' else 'tflite'
    self.assertEqual(loaded.backend, expected_backend)
    rng = np.random.RandomState(1)
    batched = _time_steps(rng, batch_size=64)
    expected = self._reference_actions(policy, batched).action
    step = loaded.action(batched)
    self.assertEqual(step.action.dtype, np.int32)
    self.assertAllEqual(step.action, expected)
    self.assertEqual(step.state, ())
    self.assertEqual(step.info, ())
    for i in range(3):
      single = _time_steps(rng)
      action = loaded.action(single).action
      self.assertIsInstance(action, np.ndarray)
      self.assertEqual(action.shape, ())
      self.assertAllEqual(
          action,
          self._reference_actions(
              policy, tf.nest.map_structure(lambda x: x[None], single)
          ).action[0], msg='step {}'.format(i))

  def test_auto_uses_saved_model_for_stochastic_policy(self):
    path, _ = self._export(_make_policy('stochastic'), seed=3)
    loaded = saved_policy.SavedPolicy(path)
    self.assertFalse(loaded.is_deterministic)
    self.assertEqual(loaded.backend, 'saved_model')

  def test_auto_choice_is_exact_for_rnn_policy(self):
    # TFLite's LSTM kernels may round differently from TensorFlow's; `auto`
    # must then keep the SavedModel. Either way its outputs match exactly.
    policy = _make_policy('rnn')
    path, _ = self._export(policy)
    auto = saved_policy.SavedPolicy(path, backend='auto')
    reference = saved_policy.SavedPolicy(path, backend='saved_model')
    self.assertTrue(auto.is_deterministic)
    rng = np.random.RandomState(2)
    state_a = auto.get_initial_state(4)
    state_r = reference.get_initial_state(4)
    for _ in range(4):
      time_step = _time_steps(rng, batch_size=4)
      step_a = auto.action(time_step, state_a)
      step_r = reference.action(time_step, state_r)
      self.assertAllEqual(step_a.action, step_r.action)
      for a, r in zip(tf.nest.flatten(step_a.state),
                      tf.nest.flatten(step_r.state)):
        self.assertAllEqual(a, r)
      state_a, state_r = step_a.state, step_r.state

  @parameterized.named_parameters(('saved_model', 'saved_model'),
                                  ('tflite', 'tflite'))
  def test_stochastic_policy_same_distribution(self, backend):
    policy = _make_policy('stochastic', seed=4)
    _set_weights(policy._q_network, seed=4, scale=1.0)  # pylint: disable=protected-access
    path, _ = self._export(policy, seed=11)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(loaded.backend, backend)
    num_samples = 2000
    observation = np.linspace(-1, 1, 4).astype(np.float32)
    time_step = ts.restart(
        np.tile(observation, (num_samples, 1)), batch_size=num_samples)
    probs = policy.distribution(
        ts.restart(tf.constant(observation[None]), batch_size=1)
    ).action.probs_parameter().numpy()[0]
    # The check has power (the distribution is far from uniform and from
    # greedy) and the chi-square approximation holds (no tiny expectations).
    self.assertGreater(probs.max() - probs.min(), 0.2)
    self.assertGreater(probs.min(), 0.05)
    actions = loaded.action(time_step).action
    counts = np.bincount(actions, minlength=3)
    expected = probs * num_samples
    chi2 = float(np.sum((counts - expected)**2 / expected))
    self.assertLess(
        chi2, _CHI2_CRITICAL_DF2,
        msg='counts {} expected {}'.format(counts, expected))
    # Not all the same action: it samples.
    self.assertGreater(np.count_nonzero(counts), 1)

  @parameterized.named_parameters(('saved_model', 'saved_model'),
                                  ('tflite', 'tflite'))
  def test_rnn_policy_state(self, backend):
    policy = _make_policy('rnn')
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    reference = py_tf_eager_policy.PyTFEagerPolicy(
        policy, batch_time_steps=False)
    rng = np.random.RandomState(5)
    # Batched.
    state = loaded.get_initial_state(3)
    ref_state = policy.get_initial_state(3)
    for i in range(3):
      time_step = _time_steps(rng, batch_size=3, step_type=[min(i, 1)] * 3)
      step = loaded.action(time_step, state)
      ref_step = reference.action(time_step, ref_state)
      self.assertAllEqual(step.action, ref_step.action)
      for got, want in zip(tf.nest.flatten(step.state),
                           tf.nest.flatten(ref_step.state)):
        self.assertIsInstance(got, np.ndarray)
        self.assertEqual(got.shape, (3, 4))
        self.assertAllClose(got, want, atol=1e-5)
      state, ref_state = step.state, ref_step.state
    # Unbatched time steps, with an unbatched or a batch-1 state.
    for batch_size in (None, 1):
      state = loaded.get_initial_state(batch_size)
      ref_state = policy.get_initial_state(1)
      for i in range(3):
        time_step = _time_steps(rng, step_type=min(i, 1))
        step = loaded.action(time_step, state)
        ref_step = reference.action(
            tf.nest.map_structure(lambda x: x[None], time_step), ref_state)
        self.assertEqual(step.action.shape, ())
        self.assertAllEqual(step.action, ref_step.action[0])
        for got, want in zip(tf.nest.flatten(step.state),
                             tf.nest.flatten(ref_step.state)):
          self.assertEqual(got.shape, (4,) if batch_size is None else (1, 4))
          self.assertAllClose(got.reshape(1, 4), want, atol=1e-5)
        state, ref_state = step.state, ref_step.state

  def test_get_initial_state_batch_sizes(self):
    policy = _make_policy('rnn')
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    self.assertIsNone(loaded.fixed_batch_size)
    for batch_size, shape in ((None, (4,)), (1, (1, 4)), (3, (3, 4))):
      state = loaded.get_initial_state(batch_size)
      self.assertLen(tf.nest.flatten(state), 2)
      for leaf in tf.nest.flatten(state):
        self.assertEqual(leaf.shape, shape)
        self.assertAllEqual(leaf, np.zeros(shape))
    mlp_path, _ = self._export(_make_policy('mlp'), name='mlp')
    self.assertEqual(
        saved_policy.SavedPolicy(
            mlp_path, backend='saved_model').get_initial_state(2), ())

  @parameterized.named_parameters(('mlp', 'mlp'), ('rnn', 'rnn'))
  def test_session_backend_serves_without_an_eager_load(self, kind):
    policy = _make_policy(kind)
    train_step = tf.Variable(42, dtype=tf.int64)
    path, _ = self._export(policy, train_step=train_step)
    time_step = _time_steps(np.random.RandomState(3), batch_size=3)
    state = ((policy.get_initial_state(3)) if kind == 'rnn' else ())
    expected = self._reference_actions(
        policy, time_step, tf.nest.map_structure(np.asarray, state))
    with mock.patch.object(tf.saved_model, 'load',
                           side_effect=AssertionError('eager load')):
      loaded = saved_policy.SavedPolicy(path, backend='saved_model')
      self.assertTrue(loaded.is_deterministic)
      self.assertEqual(42, loaded.get_train_step())
      initial = loaded.get_initial_state(3)
      for got, want in zip(tf.nest.flatten(initial), tf.nest.flatten(state)):
        self.assertAllEqual(want, got)
      step = loaded.action(time_step, initial)
      self.assertAllEqual(expected.action, step.action)
    # What needs the eager object loads it then, with the served weights.
    variables = loaded.variables()
    self.assertNotEmpty(variables)
    self.assertAllEqual(policy.variables()[0], variables[0])
    self.assertAllEqual(expected.action,
                        loaded.action(time_step, initial).action)

  def test_is_deterministic_from_the_graph_matches_the_loaded_function(self):
    for kind in ('mlp', 'rnn', 'stochastic'):
      path, _ = self._export(_make_policy(kind), name=kind)
      loaded = saved_policy.SavedPolicy(path, backend='saved_model')
      self.assertEqual(
          export_equivalence.is_deterministic(
              loaded.loaded_model.signatures['action']),
          loaded.is_deterministic, kind)
      self.assertEqual(kind != 'stochastic', loaded.is_deterministic, kind)

  def test_eager_load_after_the_version_was_retired(self):
    policy = _make_policy('mlp', seed=1)
    path, saver = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    time_step = _time_steps(np.random.RandomState(4), batch_size=2)
    before = loaded.action(time_step).action
    for variable in policy.variables():
      variable.assign(variable * -2.0 + 0.5)
    with mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0):
      saver.save(path)
      saver.save(path)  # Retires the version `loaded` read.
    self.assertFalse(os.path.exists(loaded._version_dir))  # pylint: disable=protected-access
    # The session keeps serving the old weights; the eager copy takes them.
    variables = loaded.variables()
    self.assertAllEqual(before, loaded.action(time_step).action)
    self.assertNotAllClose(policy.variables()[0], variables[0])

  @parameterized.named_parameters(('saved_model', 'saved_model'),
                                  ('tflite', 'tflite'))
  def test_fixed_batch_size_export(self, backend):
    policy = _make_policy('rnn')
    path, _ = self._export(policy, batch_size=2)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(loaded.fixed_batch_size, 2)
    reference = py_tf_eager_policy.PyTFEagerPolicy(
        policy, batch_time_steps=False)
    rng = np.random.RandomState(6)
    for batch_size in (1, 2, 5):
      state = loaded.get_initial_state(batch_size)
      for leaf in tf.nest.flatten(state):
        self.assertEqual(leaf.shape, (batch_size, 4))
      time_step = _time_steps(rng, batch_size=batch_size, step_type=[1] *
                              batch_size)
      step = loaded.action(time_step, state)
      ref_step = reference.action(time_step,
                                  policy.get_initial_state(batch_size))
      self.assertAllEqual(step.action, ref_step.action)
      for got, want in zip(tf.nest.flatten(step.state),
                           tf.nest.flatten(ref_step.state)):
        self.assertAllClose(got, want, atol=1e-5)
    self.assertEqual(tf.nest.flatten(loaded.get_initial_state())[0].shape,
                     (4,))

  @parameterized.named_parameters(
      ('local_saved_model', 'local', 'saved_model'),
      ('local_tflite', 'local', 'tflite'),
      ('local_onnxruntime', 'local', 'onnxruntime'),
      ('ram_saved_model', 'ram', 'saved_model'),
      ('ram_tflite', 'ram', 'tflite'))
  def test_update_from_checkpoint(self, location, backend):
    policy = _make_policy('mlp', seed=0)
    train_step = tf.Variable(10, dtype=tf.int64)
    path, saver = self._export(policy, location, train_step=train_step)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(loaded.get_train_step(), 10)
    rng = np.random.RandomState(7)
    time_step = _time_steps(rng, batch_size=64)
    before = self._reference_actions(policy, time_step).action
    self.assertAllEqual(loaded.action(time_step).action, before)

    _set_weights(policy.wrapped_policy._q_network, seed=8)  # pylint: disable=protected-access
    train_step.assign(20)
    after = self._reference_actions(policy, time_step).action
    self.assertNotAllEqual(before, after)
    checkpoint = os.path.join(self._base(location), 'checkpoints',
                              'policy_checkpoint_0000000020')
    saver.save_checkpoint(checkpoint)
    loaded.update_from_checkpoint(checkpoint)
    self.assertEqual(loaded.backend, backend)
    self.assertAllEqual(loaded.action(time_step).action, after)
    self.assertEqual(loaded.get_train_step(), 20)
    self.assertEqual(
        loaded.get_train_step_from_last_restored_checkpoint_path(), 20)

    # A full export works as well.
    _set_weights(policy.wrapped_policy._q_network, seed=9)  # pylint: disable=protected-access
    saver.save(os.path.join(self._base(location), 'export_30'))
    loaded.update_from_checkpoint(
        os.path.join(self._base(location), 'export_30'))
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(policy, time_step).action)

  def test_checkpoint_path_argument(self):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    _set_weights(policy.wrapped_policy._q_network, seed=8)  # pylint: disable=protected-access
    checkpoint = os.path.join(self.get_temp_dir(), 'ckpt')
    saver.save_checkpoint(checkpoint)
    loaded = saved_policy.SavedPolicy(path, checkpoint_path=checkpoint)
    self.assertEqual(loaded.backend, 'tflite')
    time_step = _time_steps(np.random.RandomState(1), batch_size=64)
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(policy, time_step).action)

  @parameterized.named_parameters(*_LOCATIONS)
  def test_update_from_directory(self, location):
    policy = _make_policy('mlp', seed=0)
    train_step = tf.Variable(0, dtype=tf.int64)
    path, saver = self._export(policy, location, train_step=train_step)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    directory = os.path.join(self._base(location), 'checkpoints')
    time_step = _time_steps(np.random.RandomState(3), batch_size=64)

    self.assertFalse(loaded.update_from_directory(directory))  # Missing.
    for step, seed in ((5, 1), (40, 2)):
      _set_weights(policy.wrapped_policy._q_network, seed=seed)  # pylint: disable=protected-access
      train_step.assign(step)
      saver.save_checkpoint(
          os.path.join(directory, 'policy_checkpoint_%010d' % step))
    # Newer but incomplete or hidden entries are skipped: no index yet; a
    # manifest without the completion marker (still being published); a
    # saver's hidden staging directory.
    tf.io.gfile.makedirs(
        os.path.join(directory, 'policy_checkpoint_0000000099'))
    latest = os.path.join(directory, 'policy_checkpoint_0000000040')
    for name in ('policy_checkpoint_0000000098',
                 '.policy_checkpoint_0000000097.tmp-host-1-a97'):
      _copy_variables(latest, os.path.join(directory, name))
    with tf.io.gfile.GFile(os.path.join(
        directory, 'policy_checkpoint_0000000098', 'export_manifest.json'),
                           'w') as f:
      f.write('{}')
    self.assertTrue(loaded.update_from_directory(directory))
    self.assertEqual(loaded.get_train_step(), 40)
    self.assertEqual(
        loaded.get_train_step_from_last_restored_checkpoint_path(), 40)
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(policy, time_step).action)
    # Nothing changed: nothing is read.
    with mock.patch.object(saved_policy, 'restore_checkpoint') as restore:
      self.assertFalse(loaded.update_from_directory(directory))
      restore.assert_not_called()

    # A newer export of another network is loaded in full.
    other = _make_policy('wide_mlp', seed=5)
    policy_saver.PolicySaver(other).save(
        os.path.join(directory, 'export_0000000050'))
    self.assertTrue(loaded.update_from_directory(directory))
    self.assertEqual(
        loaded.get_train_step_from_last_restored_checkpoint_path(), 50)
    self.assertEqual(len(loaded.variables()), len(other.variables()))
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(other, time_step).action)

  @parameterized.named_parameters(('saved_model', 'saved_model'),
                                  ('tflite', 'tflite'),
                                  ('onnxruntime', 'onnxruntime'))
  def test_update_reads_the_checkpoint_once(self, backend):
    # The backend in use (session, TFLite or onnxruntime model) takes the
    # checkpoint alone; the eager copy follows when read (variables(), the
    # train step).
    policy = _make_policy('mlp', seed=0)
    train_step = tf.Variable(3, dtype=tf.int64)
    path, saver = self._export(policy, train_step=train_step)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    time_step = _time_steps(np.random.RandomState(10), batch_size=32)
    _set_weights(policy.wrapped_policy._q_network, seed=23)  # pylint: disable=protected-access
    train_step.assign(78)
    checkpoint = os.path.join(self.get_temp_dir(), 'model_ckpt_' + backend)
    saver.save_checkpoint(checkpoint)
    with mock.patch.object(saved_policy, 'restore_checkpoint') as restore:
      loaded.update_from_checkpoint(checkpoint)
      restore.assert_not_called()
    self.assertEqual(backend, loaded.backend)
    expected = self._reference_actions(policy, time_step).action
    self.assertAllEqual(expected, loaded.action(time_step).action)
    self.assertEqual(78, loaded.get_train_step())
    for got, want in zip(loaded.variables(), policy.variables()):
      self.assertAllEqual(want.numpy(), got.numpy())

  def test_session_update_refuses_another_network(self):
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    time_step = _time_steps(np.random.RandomState(9), batch_size=32)
    before = loaded.action(time_step).action
    other = os.path.join(self.get_temp_dir(), 'wide_ckpt')
    policy_saver.PolicySaver(_make_policy('wide_mlp', seed=2)).save_checkpoint(
        other)
    with self.assertRaisesRegex(ValueError, 'incompatible|do not match'):
      loaded.update_from_checkpoint(other)
    self.assertAllEqual(before, loaded.action(time_step).action)
    for got, want in zip(loaded.variables(), policy.variables()):
      self.assertAllEqual(want.numpy(), got.numpy())

  def test_time_step_mismatch_errors(self):
    path, _ = self._export(_make_policy('rnn'))
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    rng = np.random.RandomState(0)
    good = _time_steps(rng, batch_size=2)
    state = loaded.get_initial_state(2)
    with self.assertRaisesRegex(
        ValueError, r'time_step/observation.*\(4,\).*float32.*got shape '
        r'\(2, 3\)'):
      loaded.action(good._replace(observation=np.zeros((2, 3), np.float32)),
                    state)
    with self.assertRaisesRegex(
        ValueError, r'time_step/step_type.*int32.*got.*float32'):
      loaded.action(good._replace(step_type=np.zeros(2, np.float32)), state)
    with self.assertRaisesRegex(ValueError, r'time_step/reward.*batch'):
      loaded.action(good._replace(reward=np.zeros(3, np.float32)), state)
    with self.assertRaisesRegex(ValueError, r'policy_state/0.*\(4,\).*float32'):
      loaded.action(good, [np.zeros((2, 5), np.float32)] * 2)
    with self.assertRaisesRegex(ValueError, r'policy_state'):
      loaded.action(good)
    with self.assertRaisesRegex(ValueError, r'batch size 3.*batch size 2'):
      loaded.action(good, loaded.get_initial_state(3))
    # Values of the same kind are cast.
    step = loaded.action(
        good._replace(observation=good.observation.astype(np.float64)), state)
    self.assertEqual(step.action.shape, (2,))

  @parameterized.named_parameters(*test_utils.EXPORT_DAMAGE_CASES)
  def test_bad_export_raises_export_error(self, case):
    path, _ = self._export(_make_policy('mlp'))
    error, filename = test_utils.damage_export(case, path)
    with self.assertRaises(error) as context:
      saved_policy.SavedPolicy(path, backend='saved_model')
    test_utils.assert_one_line_error(
        self, context.exception, path, filename)

  def test_export_without_manifest_loads(self):
    policy = _make_policy('mlp')
    path, _ = self._export(policy)
    test_utils.remove_manifest(path)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    time_step = _time_steps(np.random.RandomState(2), batch_size=8)
    self.assertAllEqual(loaded.action(time_step).action,
                        self._reference_actions(policy, time_step).action)

  @parameterized.named_parameters(*[
      c for c in test_utils.EXPORT_DAMAGE_CASES
      if c[0] not in ('truncated_saved_model_pb', 'garbled_policy_specs')
  ])
  def test_bad_checkpoint_raises_and_keeps_variables(self, case):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    time_step = _time_steps(np.random.RandomState(5), batch_size=64)
    before = loaded.action(time_step).action
    _set_weights(policy.wrapped_policy._q_network, seed=8)  # pylint: disable=protected-access
    checkpoint = os.path.join(self.get_temp_dir(), 'policy_checkpoint_0008')
    saver.save_checkpoint(checkpoint)
    if case == 'not_an_export':
      case = 'not_a_checkpoint'
      tf.io.gfile.rmtree(os.path.join(checkpoint, 'variables'))
      test_utils.remove_manifest(checkpoint)
      error, filename = (export_errors.NotAnExportError,
                         'variables/variables.index')
    else:
      error, filename = test_utils.damage_export(case, checkpoint)
    with self.assertRaises(error) as context:
      loaded.update_from_checkpoint(checkpoint)
    test_utils.assert_one_line_error(
        self, context.exception, checkpoint, filename)
    self.assertAllEqual(loaded.action(time_step).action, before)
    with self.assertRaises(error) as context:
      saved_policy.SavedPolicy(path, checkpoint_path=checkpoint,
                               backend='saved_model')
    test_utils.assert_one_line_error(
        self, context.exception, checkpoint, filename)

  def test_update_from_directory_raises_for_garbled_checkpoint(self):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    time_step = _time_steps(np.random.RandomState(5), batch_size=64)
    before = loaded.action(time_step).action
    directory = os.path.join(self.get_temp_dir(), 'checkpoints')
    _set_weights(policy.wrapped_policy._q_network, seed=8)  # pylint: disable=protected-access
    checkpoint = os.path.join(directory, 'policy_checkpoint_0000000008')
    saver.save_checkpoint(checkpoint)
    test_utils.flip_bit(checkpoint, test_utils.VARIABLES_DATA_FILE)
    # The manifest checks the data shard's size; its tensors' CRC32C fail.
    with self.assertRaises(export_errors.CorruptExportError) as context:
      loaded.update_from_directory(directory)
    test_utils.assert_one_line_error(
        self, context.exception, checkpoint, test_utils.VARIABLES_DATA_FILE)
    self.assertAllEqual(loaded.action(time_step).action, before)

  @parameterized.named_parameters(
      ('wrong_dtype', 'step_type', np.zeros((2,), np.float32),
       r'^time_step/step_type does not match the policy spec: expected shape '
       r'\(\) .*dtype int32; got shape \(2,\) and dtype float32\.$'),
      ('wrong_shape', 'observation', np.zeros((2, 3), np.float32),
       r'^time_step/observation does not match the policy spec: expected '
       r'shape \(4,\) .*dtype float32; got shape \(2, 3\) and dtype '
       r'float32\.$'),
      ('wrong_rank', 'observation', np.zeros((2, 1, 4), np.float32),
       r'^time_step/observation .*expected shape \(4,\).*got shape '
       r'\(2, 1, 4\)'),
      ('not_an_array', 'reward', 'high',
       r'^time_step/reward .*dtype float32; got shape \(\) and dtype '),
  )
  def test_time_step_mismatch_error_type(self, field, value, regex):
    path, _ = self._export(_make_policy('mlp'))
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    good = _time_steps(np.random.RandomState(0), batch_size=2)
    with self.assertRaisesRegex(
        export_errors.TimeStepMismatchError, regex) as context:
      loaded.action(good._replace(**{field: value}))
    self.assertIsInstance(context.exception, ValueError)
    self.assertNotIn('\n', str(context.exception))
    with self.assertRaisesRegex(export_errors.TimeStepMismatchError,
                                'time_step does not have the structure'):
      loaded.action(good.observation)

  @parameterized.named_parameters(
      ('dict', lambda t: t._asdict(), r'a dict \(keys discount, observation, '
       r'reward, step_type\)'),
      ('plain_tuple', tuple, r'a tuple of 4 items'),
      ('list', list, r'a list of 4 items'),
      ('other_namedtuple',
       lambda t: collections.namedtuple('Step', t._fields)(*t),
       r'a Step \(fields step_type, reward, discount, observation\)'),
  )
  def test_action_needs_a_time_step(self, make, given):
    path, _ = self._export(_make_policy('mlp'))
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    good = _time_steps(np.random.RandomState(0), batch_size=2)
    with self.assertRaisesRegex(
        export_errors.TimeStepMismatchError,
        r'^time_step .*expected a TimeStep.*got ' + given) as context:
      loaded.action(make(good))
    self.assertIsInstance(context.exception, ValueError)
    self.assertNotIn('\n', str(context.exception))
    # A TimeStep still works after the error.
    self.assertEqual(loaded.action(good).action.shape, (2,))

  @parameterized.named_parameters(('saved_model', 'saved_model'),
                                  ('tflite', 'tflite'))
  def test_update_from_full_export_logs_no_checkpoint_warnings(self, backend):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    _set_weights(policy.wrapped_policy._q_network, seed=4)  # pylint: disable=protected-access
    newer = os.path.join(self.get_temp_dir(), 'export_0000000004')
    saver.save(newer)
    checkpoint = os.path.join(self.get_temp_dir(), 'checkpoint_0000000004')
    saver.save_checkpoint(checkpoint)
    gc.collect()  # Earlier objects' warnings are not this test's.

    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    # TensorFlow logs through the `tensorflow` logger, absl through `absl`.
    loggers = [logging.getLogger(name) for name in ('tensorflow', 'absl')]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
      logger.addHandler(handler)
      logger.setLevel(logging.WARNING)
    try:
      for update_path in (newer, checkpoint, newer):
        loaded.update_from_checkpoint(update_path)
        gc.collect()
    finally:
      for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records]
    self.assertEmpty([
        m for m in messages
        if re.search(r'checkpoint|unrestored|restored object', m, re.I)
    ])
    time_step = _time_steps(np.random.RandomState(2), batch_size=8)
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(policy, time_step).action)

  @parameterized.named_parameters(
      ('nested_observation', 'nested', True),
      ('nested_observation_spec_names', 'nested', False),
      ('rnn_spec_names', 'rnn', False))
  def test_signature_naming_variants(self, kind, use_nest_path_signatures):
    rng = np.random.RandomState(9)
    if kind == 'nested':
      obs_spec = {
          'a': tensor_spec.TensorSpec([2], tf.float32, 'obs_a'),
          'b': tensor_spec.TensorSpec([3], tf.float32, 'obs_b'),
      }
      net = q_network.QNetwork(
          obs_spec, _ACTION_SPEC, fc_layer_params=(8,),
          preprocessing_combiner=tf.keras.layers.Lambda(
              lambda d: tf.concat(tf.nest.flatten(d), axis=-1)))
      net.create_variables()
      _set_weights(net, 2)
      policy = greedy_policy.GreedyPolicy(
          q_policy.QPolicy(ts.time_step_spec(obs_spec), _ACTION_SPEC,
                           q_network=net))
      time_step = ts.restart(
          {'a': rng.uniform(-2, 2, (16, 2)).astype(np.float32),
           'b': rng.uniform(-2, 2, (16, 3)).astype(np.float32)},
          batch_size=16)
    else:
      policy = _make_policy('rnn')
      time_step = _time_steps(rng, batch_size=16)
    path, _ = self._export(
        policy, use_nest_path_signatures=use_nest_path_signatures)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    state = loaded.get_initial_state(16)
    step = loaded.action(time_step, state)
    ref_step = self._reference_actions(policy, time_step,
                                       policy.get_initial_state(16))
    self.assertAllEqual(step.action, ref_step.action)
    for got, want in zip(tf.nest.flatten(step.state),
                         tf.nest.flatten(ref_step.state)):
      self.assertAllClose(got, want, atol=1e-5)
    # Unbatched, too.
    single = tf.nest.map_structure(lambda x: x[0], time_step)
    self.assertAllEqual(
        loaded.action(single, loaded.get_initial_state()).action,
        ref_step.action[0])

  def test_observation_only_export_is_rejected_clearly(self):
    def input_fn(observation):
      batch = tf.shape(observation)[:1]
      return ts.TimeStep(
          tf.ones(batch, tf.int32), tf.zeros(batch), tf.ones(batch),
          observation), ()

    path, _ = self._export(
        _make_policy('mlp'), input_fn_and_spec=(input_fn, _OBS_SPEC))
    with self.assertRaisesRegex(ValueError,
                                'time_step/step_type.*action signature'):
      saved_policy.SavedPolicy(path)
    with self.assertRaises(export_errors.ExportSignatureError) as context:
      saved_policy.SavedPolicy(path)
    self.assertIsInstance(context.exception, export_errors.ExportError)
    self.assertNotIn('\n', str(context.exception))
    self.assertIn(path, str(context.exception))

  def test_saved_model_backend_falls_back_to_loaded_signature(self):
    policy = _make_policy('rnn')
    path, saver = self._export(policy)
    with mock.patch.object(
        saved_policy_backends, 'SessionBackend',
        side_effect=RuntimeError('no TF1 loader')) as session_backend:
      loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    session_backend.assert_called_once()
    self.assertEqual(loaded.backend, 'saved_model')
    self.assertEqual(type(loaded._backend).__name__, 'SignatureBackend')  # pylint: disable=protected-access
    rng = np.random.RandomState(3)
    time_step = _time_steps(rng, batch_size=8, step_type=[1] * 8)
    ref_step = self._reference_actions(policy, time_step,
                                       policy.get_initial_state(8))
    step = loaded.action(time_step, loaded.get_initial_state(8))
    self.assertAllEqual(step.action, ref_step.action)
    for got, want in zip(tf.nest.flatten(step.state),
                         tf.nest.flatten(ref_step.state)):
      self.assertAllClose(got, want, atol=1e-5)
    _set_weights(policy.wrapped_policy._q_network, seed=4, scale=1.5)  # pylint: disable=protected-access
    checkpoint = os.path.join(self.get_temp_dir(), 'ckpt')
    saver.save_checkpoint(checkpoint)
    loaded.update_from_checkpoint(checkpoint)
    self.assertAllEqual(
        loaded.action(time_step, loaded.get_initial_state(8)).action,
        self._reference_actions(policy, time_step,
                                policy.get_initial_state(8)).action)

  def test_update_survives_a_failing_session_update(self):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    _set_weights(policy.wrapped_policy._q_network, seed=8)  # pylint: disable=protected-access
    checkpoint = os.path.join(self.get_temp_dir(), 'ckpt')
    saver.save_checkpoint(checkpoint)
    with mock.patch.object(
        saved_policy_backends.SessionBackend, 'sync',
        side_effect=RuntimeError('restore failed')):
      loaded.update_from_checkpoint(checkpoint)
    self.assertEqual(loaded.backend, 'saved_model')
    time_step = _time_steps(np.random.RandomState(1), batch_size=64)
    self.assertAllEqual(
        loaded.action(time_step).action,
        self._reference_actions(policy, time_step).action)

  def test_invalid_arguments(self):
    path, _ = self._export(_make_policy('mlp'))
    with self.assertRaisesRegex(ValueError, 'backend must be one of'):
      saved_policy.SavedPolicy(path, backend='onnx')
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    with self.assertRaisesRegex(ValueError, 'seed'):
      loaded.action(_time_steps(np.random.RandomState(0)), seed=1)

  @parameterized.named_parameters(
      ('saved_model', 'saved_model'), ('tflite', 'tflite'), ('auto', 'auto'),
      ('onnxruntime', 'onnxruntime'))
  def test_weights_assigned_in_place_are_followed(self, backend):
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend=backend)
    time_step = _time_steps(np.random.RandomState(2), batch_size=32)
    own = self._reference_actions(policy, time_step).action
    self.assertAllEqual(own, loaded.action(time_step).action)
    other = _make_policy('mlp', seed=1)
    expected = self._reference_actions(other, time_step).action
    self.assertNotAllEqual(own, expected)
    # As `ReverbVariableContainer.update(policy.variables())` does: the
    # caller holds the list and assigns into it, again and again.
    held = loaded.variables()
    for variable, value in zip(held, other.variables()):
      variable.assign(value)
    self.assertAllEqual(expected, loaded.action(time_step).action)
    for variable, value in zip(held, policy.variables()):
      variable.assign(value)
    self.assertAllEqual(own, loaded.action(time_step).action)

  @parameterized.named_parameters(('tflite', 'tflite'), ('auto', 'auto'))
  def test_tflite_refresh_does_not_convert_again(self, backend):
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    time_step = _time_steps(np.random.RandomState(3), batch_size=16)
    with mock.patch.object(
        export_conversion, 'tflite_model_with_weights',
        wraps=export_conversion.tflite_model_with_weights) as convert:
      loaded = saved_policy.SavedPolicy(path, backend=backend)
      self.assertEqual('tflite', loaded.backend)
      for seed in (1, 2, 3):
        other = _make_policy('mlp', seed=seed)
        checkpoint = os.path.join(self._base('local'), 'ckpt_%d' % seed)
        policy_saver.PolicySaver(other).save_checkpoint(checkpoint)
        loaded.update_from_checkpoint(checkpoint)
        self.assertEqual('tflite', loaded.backend)
        self.assertAllEqual(
            self._reference_actions(other, time_step).action,
            loaded.action(time_step).action)
    self.assertEqual(1, convert.call_count)

  @parameterized.named_parameters(('mlp', 'mlp'), ('rnn', 'rnn'))
  def test_onnxruntime_backend_runs_the_policy(self, kind):
    policy = _make_policy(kind)
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path, backend='onnxruntime')
    self.assertEqual('onnxruntime', loaded.backend)
    actions = _assert_follows_episode(self, loaded, policy, batch_size=8,
                                      steps=4, seed=6, state_atol=1e-5)
    self.assertGreater(len(np.unique(actions)), 1)
    # Unbatched time steps come back unbatched.
    single = loaded.action(_time_steps(np.random.RandomState(6)),
                           loaded.get_initial_state(None))
    self.assertEqual(single.action.shape, ())

  def test_onnxruntime_refresh_does_not_convert_again(self):
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    time_step = _time_steps(np.random.RandomState(3), batch_size=32)
    with mock.patch.object(
        export_conversion, 'convert_action_to_onnx',
        wraps=export_conversion.convert_action_to_onnx) as convert:
      loaded = saved_policy.SavedPolicy(path, backend='onnxruntime')
      checkpoints = os.path.join(self._base('local'), 'checkpoints')
      for seed in (1, 2):
        other = _make_policy('mlp', seed=seed)
        checkpoint = os.path.join(checkpoints, 'ckpt_%d' % seed)
        policy_saver.PolicySaver(other).save_checkpoint(checkpoint)
        if seed == 1:
          loaded.update_from_checkpoint(checkpoint)
        else:
          self.assertTrue(loaded.update_from_directory(checkpoints))
        self.assertEqual('onnxruntime', loaded.backend)
        self.assertAllEqual(
            self._reference_actions(other, time_step).action,
            loaded.action(time_step).action)
    self.assertEqual(1, convert.call_count)

  def test_auto_never_converts_to_onnx(self):
    path, _ = self._export(_make_policy('mlp'))
    with mock.patch.object(
        export_conversion, 'convert_action_to_onnx',
        side_effect=AssertionError('converted')) as convert:
      self.assertEqual('tflite', saved_policy.SavedPolicy(path).backend)
    self.assertEqual(0, convert.call_count)

  def test_stored_tflite_model_is_used(self):
    # A TFLite model stored in the export is used instead of converting; one
    # that does not reproduce the SavedModel is rejected by `auto`.
    other_path, _ = self._export(_make_policy('mlp', seed=1), name='other')
    model, _ = policy_saver.convert_action_to_tflite(other_path)
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    # A file added after the save is not in the integrity manifest.
    test_utils.remove_manifest(path)
    with tf.io.gfile.GFile(
        os.path.join(path, 'assets', saved_policy.TFLITE_MODEL_FILENAME),
        'wb') as f:
      f.write(model)
    time_step = _time_steps(np.random.RandomState(4), batch_size=64)
    other_actions = saved_policy.SavedPolicy(
        other_path, backend='saved_model').action(time_step).action
    own_actions = self._reference_actions(policy, time_step).action
    self.assertNotAllEqual(other_actions, own_actions)
    forced = saved_policy.SavedPolicy(path, backend='tflite')
    self.assertAllEqual(forced.action(time_step).action, other_actions)
    auto = saved_policy.SavedPolicy(path, backend='auto')
    self.assertEqual(auto.backend, 'saved_model')
    self.assertAllEqual(auto.action(time_step).action, own_actions)

  @parameterized.named_parameters(('mlp', 'mlp'), ('rnn', 'rnn'))
  def test_py_driver_and_actor(self, kind):
    policy = _make_policy(kind)
    path, _ = self._export(policy)
    loaded = saved_policy.SavedPolicy(path)
    env = _CountingEnv()
    trajectories = []
    driver = py_driver.PyDriver(
        env, loaded, [trajectories.append], max_steps=7)
    time_step, state = driver.run(env.reset(), loaded.get_initial_state(1))
    self.assertEqual(sum(not t.is_boundary() for t in trajectories), 7)
    self.assertEqual(time_step.observation.shape, (4,))
    if kind == 'rnn':
      for leaf in tf.nest.flatten(state):
        self.assertEqual(leaf.shape, (1, 4))
    # The same actions as the original policy run the same way.
    reference = py_tf_eager_policy.PyTFEagerPolicy(policy)
    ref_trajectories = []
    ref_env = _CountingEnv()
    py_driver.PyDriver(ref_env, reference, [ref_trajectories.append],
                       max_steps=7).run(ref_env.reset(),
                                        reference.get_initial_state(1))
    self.assertAllEqual([t.action for t in trajectories],
                        [t.action for t in ref_trajectories])
    self.assertGreater(len({int(t.action) for t in trajectories}), 1)

    episodes = []
    runner = actor.Actor(
        _CountingEnv(), loaded, tf.Variable(0, dtype=tf.int64),
        steps_per_run=6, observers=[episodes.append])
    runner.run()
    self.assertEqual(sum(not t.is_boundary() for t in episodes), 6)


class StoredModelsTest(tf.test.TestCase, parameterized.TestCase):
  """Exports saved with `converted_formats`: chosen from the record."""

  def _export(self, policy, formats=('tflite', 'onnx')):
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    saver = policy_saver.PolicySaver(policy, converted_formats=formats)
    saver.save(path)
    return path, saver

  def _reference_actions(self, policy, time_step, state=()):
    return py_tf_eager_policy.PyTFEagerPolicy(
        policy, batch_time_steps=False).action(time_step, state)

  @parameterized.named_parameters(
      ('auto', 'auto', 'tflite'), ('tflite', 'tflite', 'tflite'),
      ('onnxruntime', 'onnxruntime', 'onnxruntime'))
  def test_stored_model_is_used_without_conversion_or_probe(
      self, backend, expected):
    policy = _make_policy('mlp', seed=0)
    path, _ = self._export(policy)
    with mock.patch.object(
        export_conversion, 'tflite_model_with_weights',
        side_effect=AssertionError('converted')), mock.patch.object(
            export_conversion, 'convert_action_to_onnx',
            side_effect=AssertionError('converted')), mock.patch.object(
                saved_policy.SavedPolicy, '_probe_inputs',
                side_effect=AssertionError('probed')):
      loaded = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(expected, loaded.backend)
    time_step = _time_steps(np.random.RandomState(5), batch_size=32)
    self.assertAllEqual(self._reference_actions(policy, time_step).action,
                        loaded.action(time_step).action)

  def test_auto_runs_a_recurrent_policy_on_its_equivalent_model(self):
    policy = _make_policy('rnn')
    path, _ = self._export(policy, formats=('tflite',))
    loaded = saved_policy.SavedPolicy(path)
    self.assertEqual('tflite', loaded.backend)
    _assert_follows_episode(self, loaded, policy, batch_size=4, steps=20,
                            seed=7)

  def test_auto_runs_a_stochastic_policy_on_its_same_distribution_model(self):
    # Converted with its noise as inputs and checked for the same
    # distribution (export_noise); more in export_noise_test.
    path, _ = self._export(_make_policy('stochastic'), formats=('tflite',))
    loaded = saved_policy.SavedPolicy(path)
    self.assertEqual('tflite', loaded.backend)
    self.assertFalse(loaded.is_deterministic)

  @parameterized.named_parameters(('tflite', 'tflite'),
                                  ('onnxruntime', 'onnxruntime'))
  def test_checkpoint_version_gives_the_stored_model_its_weights(
      self, backend):
    policy = _make_policy('mlp', seed=0)
    path, saver = self._export(policy)
    _set_weights(policy.wrapped_policy._q_network, seed=12)  # pylint: disable=protected-access
    saver.save_checkpoint(path)
    with mock.patch.object(
        export_conversion, 'tflite_model_with_weights',
        side_effect=AssertionError('converted')), mock.patch.object(
            export_conversion, 'convert_action_to_onnx',
            side_effect=AssertionError('converted')):
      loaded = saved_policy.SavedPolicy(path, backend=backend)
    self.assertEqual(backend, loaded.backend)
    time_step = _time_steps(np.random.RandomState(6), batch_size=32)
    self.assertAllEqual(self._reference_actions(policy, time_step).action,
                        loaded.action(time_step).action)

  @parameterized.named_parameters(('auto', 'auto'), ('saved_model',
                                                     'saved_model'),
                                  ('onnxruntime', 'onnxruntime'))
  def test_update_from_values(self, backend):
    policy = _make_policy('mlp', seed=0)
    train_step = tf.Variable(3, dtype=tf.int64)
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    policy_saver.PolicySaver(policy, train_step=train_step,
                             converted_formats=('tflite', 'onnx')).save(path)
    with mock.patch.object(tf.saved_model, 'load',
                           side_effect=AssertionError('eager load')):
      loaded = saved_policy.SavedPolicy(path, backend=backend)
      time_step = _time_steps(np.random.RandomState(8), batch_size=16)
      before = loaded.action(time_step).action
      # The order of `model_variables`: the export's own checkpoint keys.
      current = export_publish.current_version(path).path
      for mine, stored in zip(policy.variables(),
                              export_equivalence.model_weights(current)):
        self.assertAllEqual(mine, stored)
      # Refused whole, before anything changes.
      values = [v.numpy() for v in policy.variables()]
      for bad in (values[:-1], [values[0].T] + values[1:],
                  [values[0].astype(np.float64)] + values[1:]):
        with self.assertRaises(ValueError):
          loaded.update_from_values(bad, version='bad')
      self.assertAllEqual(before, loaded.action(time_step).action)
      _set_weights(policy.wrapped_policy._q_network, seed=21)  # pylint: disable=protected-access
      values = [v.numpy() for v in policy.variables()]
      for value in values:
        value.setflags(write=False)  # As Ray's object store hands them.
      if backend == 'auto':  # TFLite takes them without the eager copy.
        self.assertEqual('tflite', loaded.backend)
        loaded.update_from_values(values, version='v-next', train_step=9)
      expected = self._reference_actions(policy, time_step).action
    if backend != 'auto':
      loaded.update_from_values(values, version='v-next', train_step=9)
    self.assertNotAllEqual(before, expected)
    self.assertAllEqual(expected, loaded.action(time_step).action)
    self.assertEqual('v-next', loaded.version)
    # The eager copy follows when read.
    self.assertEqual(9, loaded.get_train_step())
    for mine, theirs in zip(values, loaded.variables()):
      self.assertAllEqual(mine, theirs)
    self.assertAllEqual(expected, loaded.action(time_step).action)


if __name__ == '__main__':
  tf.test.main()
