# coding=utf-8
"""Tests for tf_agents.policies.saved_policy_cli."""

import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized
import gym
import gymnasium
import numpy as np
import onnxruntime
import tensorflow as tf

from tf_agents.agents.dqn import dqn_agent
from tf_agents.environments import suite_gym
from tf_agents.environments import tf_py_environment
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.policies import fixed_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import q_policy
from tf_agents.policies import saved_policy_cli
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

_ENV = 'CartPole-v0'
_PUSH_RIGHT = 1


def _upstream_policy_saver():
  """Upstream's `policy_saver` module, from the installed distribution.

  This repository's `tf_agents.policies.policy_saver` shadows upstream's, so
  upstream's file (next to `py_tf_eager_policy.py`, which this repository
  does not own) is imported under another name.

  Returns:
    The module.
  """
  upstream_dir = os.path.dirname(py_tf_eager_policy.__file__)
  path = os.path.join(upstream_dir, 'policy_saver.py')
  assert os.path.realpath(path) != os.path.realpath(policy_saver.__file__)
  spec = importlib.util.spec_from_file_location('upstream_policy_saver', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _make_export(export_dir, network, train_step, metadata, constant_action,
                 collect_policy=False, upstream_export_dir=None):
  """Exports a DQN greedy policy; optionally one that always picks an action.

  Args:
    export_dir: Where to save.
    network: A Q-network for CartPole (2 actions).
    train_step: Value of the exported train step.
    metadata: Dict name -> Python value, exported as variables.
    constant_action: If not None, all weights are zeroed and the bias of the
      output layer (the only variable of shape [2]) makes the greedy policy
      always choose this action.
    collect_policy: Export the epsilon-greedy collect policy instead.
    upstream_export_dir: If given, the same policy is also saved there with
      upstream tf-agents' `PolicySaver`.

  Returns:
    The export's model variables' count.
  """
  env = tf_py_environment.TFPyEnvironment(suite_gym.load(_ENV))
  agent = dqn_agent.DqnAgent(
      env.time_step_spec(),
      env.action_spec(),
      q_network=network,
      optimizer=tf.keras.optimizers.Adam(1e-3),
      train_step_counter=tf.Variable(train_step, dtype=tf.int64),
  )
  agent.initialize()
  variables = agent.policy.variables()
  if constant_action is not None:
    output_biases = [v for v in variables if v.shape.as_list() == [2]]
    assert len(output_biases) == 1, [v.name for v in variables]
    for v in variables:
      v.assign(tf.zeros_like(v))
    output_biases[0].assign(tf.one_hot(constant_action, 2))
  policy = agent.collect_policy if collect_policy else agent.policy
  metadata = {k: tf.Variable(v) for k, v in metadata.items()}
  saver = policy_saver.PolicySaver(
      policy, train_step=agent.train_step_counter, metadata=metadata)
  saver.save(export_dir)
  if upstream_export_dir is not None:
    _upstream_policy_saver().PolicySaver(
        policy, train_step=agent.train_step_counter, metadata=metadata
    ).save(upstream_export_dir)
  return len(variables)


def _gym_returns_of_constant_action(action, seeds):
  env = gym.make(_ENV)
  returns = []
  for seed in seeds:
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
      _, reward, done, _ = env.step(action)
      total += reward
    returns.append(total)
  return returns


class _Exports(object):
  """The exports every test uses, made once per process."""

  def __init__(self):
    root = tempfile.mkdtemp(dir=absltest.TEST_TMPDIR.value)
    env = tf_py_environment.TFPyEnvironment(suite_gym.load(_ENV))
    obs_spec, action_spec = env.observation_spec(), env.action_spec()
    self.dense_dir = os.path.join(root, 'dense')
    self.upstream_dense_dir = os.path.join(root, 'upstream_dense')
    self.dense_variables = _make_export(
        self.dense_dir,
        q_network.QNetwork(obs_spec, action_spec, fc_layer_params=(8,)),
        train_step=7,
        metadata={
            'environment_steps': np.int64(42),
            'average_return': np.float32(1.5),
        },
        constant_action=_PUSH_RIGHT,
        upstream_export_dir=self.upstream_dense_dir)
    self.dense_b_dir = os.path.join(root, 'dense_b')
    _make_export(
        self.dense_b_dir,
        q_network.QNetwork(obs_spec, action_spec, fc_layer_params=(8,)),
        train_step=9,
        metadata={
            'environment_steps': np.int64(42),
            'average_return': np.float32(2.5),
        },
        constant_action=None)
    self.rnn_dir = os.path.join(root, 'rnn')
    _make_export(
        self.rnn_dir,
        q_rnn_network.QRnnNetwork(
            obs_spec, action_spec, input_fc_layer_params=(8,),
            lstm_size=(4,), output_fc_layer_params=(8,)),
        train_step=3,
        metadata={},
        constant_action=_PUSH_RIGHT)
    self.stochastic_dir = os.path.join(root, 'stochastic')
    _make_export(
        self.stochastic_dir,
        q_network.QNetwork(obs_spec, action_spec, fc_layer_params=(8,)),
        train_step=0,
        metadata={},
        constant_action=None,
        collect_policy=True)
    self.not_export_dir = os.path.join(root, 'not_an_export')
    os.makedirs(self.not_export_dir)
    with open(os.path.join(self.not_export_dir, 'notes.txt'), 'w') as f:
      f.write('not a SavedModel\n')
    self.plain_saved_model_dir = os.path.join(root, 'plain_saved_model')
    module = tf.Module()
    module.double = tf.function(
        lambda x: 2.0 * x, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, self.plain_saved_model_dir)
    self.missing_dir = os.path.join(root, 'missing')


_EXPORTS = []


class _ExportsTestCase(tf.test.TestCase, parameterized.TestCase):
  """Gives each test the exports of `_Exports` as attributes."""

  def setUp(self):
    super().setUp()
    if not _EXPORTS:
      _EXPORTS.append(_Exports())
    for name, value in vars(_EXPORTS[0]).items():
      setattr(self, name, value)


def _tensors(specs):
  return sorted((s.name, s.shape.as_list(), s.dtype.name)
                for s in tf.nest.flatten(specs))


def _reported(items):
  return sorted((i['name'], i['shape'], i['dtype']) for i in items)


class InspectTest(_ExportsTestCase):

  def test_dense_export(self):
    result = saved_policy_cli.inspect_export(self.dense_dir)

    loaded = tf.saved_model.load(self.dense_dir)
    for name in ('action', 'get_initial_state', 'get_train_step',
                 'get_metadata', 'action_from_observation'):
      signature = loaded.signatures[name]
      self.assertEqual(
          _reported(result['signatures'][name]['inputs']),
          _tensors(signature.structured_input_signature))
      self.assertEqual(
          _reported(result['signatures'][name]['outputs']),
          sorted((k, s.shape.as_list(), s.dtype.name)
                 for k, s in signature.structured_outputs.items()))
    observation = [i for i in result['signatures']['action']['inputs']
                   if i['name'].endswith('observation')]
    self.assertLen(observation, 1)
    # The observation-only signature takes just that input.
    self.assertEqual(
        [i['name'] for i in
         result['signatures']['action_from_observation']['inputs']],
        [observation[0]['name']])
    self.assertEqual(observation[0]['shape'], [None, 4])
    self.assertEqual(observation[0]['dtype'], 'float32')
    self.assertIn('keyword', observation[0])

    specs = result['specs']
    by_path = {s['path']: s for s in specs['time_step_spec']}
    self.assertEqual(by_path['observation']['shape'], [4])
    self.assertEqual(by_path['step_type']['dtype'], 'int32')
    self.assertEqual(specs['action_spec'], [{
        'path': '', 'dtype': 'int64', 'shape': [], 'minimum': 0,
        'maximum': 1}])
    self.assertEqual(specs['policy_state_spec'], [])

    self.assertEqual(result['train_step'], 7)
    self.assertEqual(result['metadata'],
                     {'average_return': 1.5, 'environment_steps': 42})
    self.assertEqual(result['written_by']['tensorflow_version'],
                     tf.__version__)
    self.assertContainsSubset(
        ['action', 'get_initial_state', 'get_train_step', 'get_metadata'],
        result['functions'])
    files = {f['path']: f['bytes'] for f in result['files']}
    self.assertEqual(files['saved_model.pb'],
                     os.path.getsize(os.path.join(self.dense_dir,
                                                  'saved_model.pb')))
    self.assertIn('policy_specs.pbtxt', files)
    self.assertIn(os.path.join('variables', 'variables.index'), files)
    self.assertEqual(result['total_bytes'], sum(files.values()))

  def test_rnn_export(self):
    result = saved_policy_cli.inspect_export(self.rnn_dir)

    loaded = tf.saved_model.load(self.rnn_dir)
    action = loaded.signatures['action']
    self.assertEqual(_reported(result['signatures']['action']['inputs']),
                     _tensors(action.structured_input_signature))
    state_specs = result['specs']['policy_state_spec']
    self.assertEqual([(s['path'], s['shape'], s['dtype'])
                      for s in state_specs],
                     [('0', [4], 'float32'), ('1', [4], 'float32')])
    initial_state_outputs = {
        i['name'] for i in result['signatures']['get_initial_state']['outputs']
    }
    self.assertLen(initial_state_outputs, 2)
    self.assertEqual(
        initial_state_outputs,
        set(loaded.signatures['get_initial_state'].structured_outputs))
    self.assertEqual(result['train_step'], 3)
    self.assertEqual(result['metadata'], {})

  def test_text_output(self):
    result = saved_policy_cli.inspect_export(self.dense_dir)
    text = saved_policy_cli.format_text('inspect', result)
    self.assertIn('Train step: 7', text)
    self.assertIn('average_return: 1.5', text)
    self.assertIn('Written by TensorFlow {}'.format(tf.__version__), text)
    self.assertRegex(text, r'observation\s+float32\s+\[4\]')
    self.assertRegex(text, r'\d+  saved_model.pb')

  def test_upstream_style_export_without_policy_specs_function(self):
    # Specs come from policy_specs.pbtxt when the loaded object has no
    # get_policy_specs (exports written by upstream's saver).
    specs = saved_policy_cli.read_specs(self.rnn_dir, loaded=None)
    self.assertLen(specs['policy_state_spec'], 2)
    self.assertEqual(specs['action_spec'][0]['maximum'], 1)


class EvalTest(_ExportsTestCase):

  @parameterized.named_parameters(('dense', 'dense_dir'), ('rnn', 'rnn_dir'))
  def test_returns_match_gym_with_the_same_actions(self, attribute):
    options = saved_policy_cli.Options(env=_ENV, episodes=2, seed=3)
    result = saved_policy_cli.evaluate_export(getattr(self, attribute),
                                              options)
    # The export always pushes right, so gym alone predicts its returns.
    expected = _gym_returns_of_constant_action(_PUSH_RIGHT, [3, 4])
    self.assertEqual(result['seeds'], [3, 4])
    self.assertEqual(result['returns'], expected)
    self.assertEqual(result['episode_lengths'], [int(r) for r in expected])
    self.assertAlmostEqual(result['average_return'], np.mean(expected))
    self.assertEqual(result['min_return'], min(expected))

  def test_text_output(self):
    options = saved_policy_cli.Options(env=_ENV, episodes=1, seed=0)
    result = saved_policy_cli.evaluate_export(self.dense_dir, options)
    text = saved_policy_cli.format_text('eval', result)
    self.assertIn('CartPole-v0, 1 episodes (seeds 0..0), made with '
                  'Gymnasium', text)
    self.assertIn('Average return: {:.2f}'.format(result['returns'][0]), text)

  def test_gymnasium_ids_first_and_gym_ids_on_request(self):
    # CartPole-v1 (500 steps) is registered by both; a bare id goes to
    # Gymnasium, `gym:` forces gym. Same physics and seeding, so one
    # constant-action return predicts both.
    env = gymnasium.make('CartPole-v1')
    expected = []
    for seed in (5, 6):
      env.reset(seed=seed)
      total, done = 0.0, False
      while not done:
        _, reward, terminated, truncated, _ = env.step(_PUSH_RIGHT)
        total, done = total + reward, terminated or truncated
      expected.append(total)
    for env_id, library in (('CartPole-v1', 'gymnasium'),
                            ('gymnasium:CartPole-v1', 'gymnasium'),
                            ('gym:CartPole-v1', 'gym')):
      result = saved_policy_cli.evaluate_export(
          self.dense_dir,
          saved_policy_cli.Options(env=env_id, episodes=2, seed=5))
      self.assertEqual(library, result['env_library'], env_id)
      self.assertEqual(expected, result['returns'], env_id)
    with self.assertRaisesRegex(saved_policy_cli.CliError,
                                "unknown gymnasium environment 'Nope-v0'"):
      saved_policy_cli.evaluate_export(
          self.dense_dir, saved_policy_cli.Options(env='gymnasium:Nope-v0'))

  def test_id_only_gym_registers_still_runs_in_gym(self):
    gym.envs.registration.register(
        id='GymOnlyCartPole-v0',
        entry_point='gym.envs.classic_control:CartPoleEnv',
        max_episode_steps=200)
    self.addCleanup(gym.envs.registry.env_specs.pop, 'GymOnlyCartPole-v0',
                    None)
    result = saved_policy_cli.evaluate_export(
        self.dense_dir,
        saved_policy_cli.Options(env='GymOnlyCartPole-v0', episodes=2, seed=3))
    self.assertEqual('gym', result['env_library'])
    self.assertEqual(_gym_returns_of_constant_action(_PUSH_RIGHT, [3, 4]),
                     result['returns'])


def _fixed_export(export_dir, observation_shape, action_spec, action):
  """Exports a policy that always takes `action`; returns `export_dir`."""
  time_step_spec = ts.time_step_spec(
      tensor_spec.TensorSpec(observation_shape, tf.float32))
  policy = fixed_policy.FixedPolicy(
      tf.constant(action, action_spec.dtype), time_step_spec, action_spec,
      emit_log_probability=False)
  policy_saver.PolicySaver(policy).save(export_dir)
  return export_dir


_DISCRETE_0_TO_1 = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 1)
_DISCRETE_0_TO_2 = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 2)
_TORQUE = tensor_spec.BoundedTensorSpec([1], tf.float32, -2.0, 2.0)


class EvalEnvironmentTest(_ExportsTestCase):
  """Exports run only in gym environments whose actions they fit."""

  @parameterized.named_parameters(
      ('discrete_policy_on_continuous_env', [3], _DISCRETE_0_TO_1, 0,
       'Pendulum-v1', r'Box\(-2\.0, 2\.0, \(1,\), float32\)'),
      ('three_actions_on_two', [4], _DISCRETE_0_TO_2, 0, 'CartPole-v0',
       r'Discrete\(2\)'),
      ('continuous_policy_on_discrete_env', [4], _TORQUE, [0.5],
       'CartPole-v0', r'Discrete\(2\)'),
      ('wider_bounds', [3],
       tensor_spec.BoundedTensorSpec([1], tf.float32, -3.0, 3.0), [0.5],
       'Pendulum-v1', r'Box\(-2\.0, 2\.0'),
      ('other_shape', [3],
       tensor_spec.BoundedTensorSpec([2], tf.float32, -2.0, 2.0), [0.5, 0.5],
       'Pendulum-v1', r'Box\(-2\.0, 2\.0, \(1,\)'),
  )
  def test_action_space_mismatch(self, observation_shape, action_spec,
                                 action, env, space):
    export_dir = _fixed_export(
        os.path.join(self.create_tempdir().full_path, 'export'),
        observation_shape, action_spec, action)
    with self.assertRaises(saved_policy_cli.CliError) as raised:
      saved_policy_cli.evaluate_export(
          export_dir, saved_policy_cli.Options(env=env, episodes=1))
    message = str(raised.exception)
    self.assertEqual(raised.exception.exit_code, 1)
    self.assertNotIn('\n', message)
    self.assertRegex(message, r'action spec .*{}'.format(
        tf.dtypes.as_dtype(action_spec.dtype).name))
    self.assertRegex(message, '{} has action space {}'.format(env, space))

  def test_observation_and_action_mismatch_are_both_named(self):
    with self.assertRaises(saved_policy_cli.CliError) as raised:
      saved_policy_cli.evaluate_export(
          self.dense_dir,
          saved_policy_cli.Options(env='Pendulum-v1', episodes=1))
    message = str(raised.exception)
    self.assertIn('expects observations of shape [4]', message)
    self.assertIn('Pendulum-v1 has action space Box(', message)
    self.assertNotIn('\n', message)

  @parameterized.named_parameters(
      ('continuous', [3], _TORQUE, [1.5], 'Pendulum-v1'),
      ('fewer_actions_than_the_env', [2], _DISCRETE_0_TO_1, 1,
       'MountainCar-v0'),
  )
  def test_compatible_action_space_runs(self, observation_shape, action_spec,
                                        action, env):
    export_dir = _fixed_export(
        os.path.join(self.create_tempdir().full_path, 'export'),
        observation_shape, action_spec, action)
    result = saved_policy_cli.evaluate_export(
        export_dir, saved_policy_cli.Options(env=env, episodes=1, seed=2))
    self.assertLen(result['returns'], 1)
    self.assertEqual(result['episode_lengths'], [200])

  @parameterized.named_parameters(('dense', False), ('rnn', True))
  def test_fixed_batch_size_export(self, recurrent):
    env = tf_py_environment.TFPyEnvironment(suite_gym.load(_ENV))
    obs_spec, action_spec = env.observation_spec(), env.action_spec()
    tf.random.set_seed(11)
    if recurrent:
      network = q_rnn_network.QRnnNetwork(
          obs_spec, action_spec, input_fc_layer_params=(8,),
          lstm_size=(4,), output_fc_layer_params=(8,))
    else:
      network = q_network.QNetwork(obs_spec, action_spec,
                                   fc_layer_params=(8,))
    policy = greedy_policy.GreedyPolicy(q_policy.QPolicy(
        env.time_step_spec(), action_spec, q_network=network))
    root = self.create_tempdir().full_path
    results = []
    for batch_size in (None, 2):
      export_dir = os.path.join(root, 'batch_{}'.format(batch_size))
      policy_saver.PolicySaver(policy, batch_size=batch_size).save(export_dir)
      results.append(saved_policy_cli.evaluate_export(
          export_dir, saved_policy_cli.Options(env=_ENV, episodes=3,
                                               seed=5)))
    unbatched, fixed = results
    self.assertEqual(fixed['returns'], unbatched['returns'])
    self.assertEqual(fixed['episode_lengths'], unbatched['episode_lengths'])


class ConvertTest(_ExportsTestCase):

  @parameterized.named_parameters(('dense', 'dense_dir'), ('rnn', 'rnn_dir'))
  def test_writes_a_tflite_model_that_runs(self, attribute):
    output = os.path.join(self.create_tempdir().full_path, 'sub',
                          'policy.tflite')
    options = saved_policy_cli.Options(to='tflite', output=output)
    result = saved_policy_cli.convert_export(getattr(self, attribute),
                                             options)

    with open(output, 'rb') as f:
      model = f.read()
    self.assertEqual(result['bytes'], len(model))
    self.assertEqual(model[4:8], b'TFL3')  # The TFLite file identifier.
    self.assertTrue(result['builtin_ops_only'])
    self.assertEqual(result['select_tf_ops'], [])
    self.assertIn('FULLY_CONNECTED', result['ops'])
    self.assertIn('ARG_MAX', result['ops'])
    self.assertEqual(result['ops'], sorted(set(result['ops'])))

    interpreter = tf.lite.Interpreter(model_content=model)
    runner = interpreter.get_signature_runner('action')
    details = runner.get_input_details()
    self.assertCountEqual(details, result['tflite_signature']['inputs'])
    inputs = {}
    for name, detail in details.items():
      shape = [1 if d < 0 else d for d in detail['shape_signature']]
      shape = shape or []
      inputs[name] = np.zeros(shape, dtype=detail['dtype'])
    outputs = runner(**inputs)
    self.assertEqual(outputs['action'].tolist(), [_PUSH_RIGHT])

  def test_reports_select_tf_ops_consistently(self):
    # An epsilon-greedy policy samples; whether its random ops have TFLite
    # builtins depends on the TensorFlow version, the report must agree with
    # the ops in the model either way.
    output = os.path.join(self.create_tempdir().full_path, 'p.tflite')
    result = saved_policy_cli.convert_export(
        self.stochastic_dir, saved_policy_cli.Options(output=output))
    flex_ops = [op[len('Flex'):] for op in result['ops']
                if op.startswith('Flex')]
    self.assertEqual(sorted(flex_ops), sorted(result['select_tf_ops']))
    self.assertEqual(result['builtin_ops_only'], not flex_ops)
    self.assertIn('ARG_MAX', result['ops'])

  def test_unknown_signature(self):
    options = saved_policy_cli.Options(
        output=os.path.join(self.create_tempdir().full_path, 'p.tflite'),
        signature='serve')
    with self.assertRaisesRegex(saved_policy_cli.CliError,
                                "has no signature 'serve'"):
      saved_policy_cli.convert_export(self.dense_dir, options)

  @parameterized.named_parameters(('dense', 'dense_dir'), ('rnn', 'rnn_dir'))
  def test_writes_an_onnx_model_that_runs(self, attribute):
    path = getattr(self, attribute)
    output = os.path.join(self.create_tempdir().full_path, 'sub',
                          'policy.onnx')
    result = saved_policy_cli.convert_export(
        path, saved_policy_cli.Options(to='onnx', output=output))
    with open(output, 'rb') as f:
      model = f.read()
    self.assertEqual(result['format'], 'onnx')
    self.assertEqual(result['bytes'], len(model))
    self.assertIn('MatMul', result['ops'])
    self.assertIn('ArgMax', result['ops'])
    signature = tf.saved_model.load(path).signatures['action']
    self.assertCountEqual(result['inputs'],
                          signature.structured_input_signature[1])
    session = onnxruntime.InferenceSession(
        model, providers=['CPUExecutionProvider'])
    feed = {}
    for spec in session.get_inputs():
      shape = [1] + list(spec.shape[1:])
      dtype = np.int32 if spec.type == 'tensor(int32)' else np.float32
      feed[spec.name] = np.zeros(shape, dtype)
    outputs = dict(zip(result['outputs'],
                       session.run(result['outputs'], feed)))
    self.assertEqual(outputs['action'].tolist(), [_PUSH_RIGHT])
    expected = signature(**{k: tf.constant(v) for k, v in feed.items()})
    for output, state in result['state_outputs'].items():
      self.assertIn(state, feed)
      self.assertAllClose(expected[state], outputs[output], atol=1e-5)
    self.assertEqual(bool(result['state_outputs']), attribute == 'rnn_dir')
    text = saved_policy_cli.format_text('convert', result)
    self.assertIn('ONNX opset', text)

  def test_text_output(self):
    output = os.path.join(self.create_tempdir().full_path, 'p.tflite')
    result = saved_policy_cli.convert_export(
        self.dense_dir, saved_policy_cli.Options(output=output))
    text = saved_policy_cli.format_text('convert', result)
    self.assertIn('TFLite builtin ops only.', text)
    self.assertIn('FULLY_CONNECTED', text)


class DiffTest(_ExportsTestCase):

  def test_identical(self):
    result = saved_policy_cli.diff_exports(self.dense_dir, self.dense_dir)
    self.assertTrue(result['identical'])
    self.assertEqual(result['variables']['equal'], self.dense_variables)
    self.assertEqual(result['variables']['changed'], [])
    self.assertIn('The exports are identical.',
                  saved_policy_cli.format_text('diff', result))

  def test_same_architecture_different_values(self):
    result = saved_policy_cli.diff_exports(self.dense_dir, self.dense_b_dir)
    self.assertFalse(result['identical'])
    self.assertEqual(result['signatures'],
                     {'only_in_a': [], 'only_in_b': [], 'changed': {}})
    self.assertEqual(result['specs'], {})
    variables = result['variables']
    self.assertEqual(variables['only_in_a'], [])
    self.assertEqual(variables['only_in_b'], [])
    self.assertNotEmpty(variables['changed'])
    for change in variables['changed']:
      self.assertGreater(change['max_abs_diff'], 0)
    self.assertEqual(result['train_step'],
                     {'a': 7, 'b': 9, 'differs': True})
    self.assertEqual(result['metadata'],
                     {'average_return': {'a': 1.5, 'b': 2.5}})
    text = saved_policy_cli.format_text('diff', result)
    self.assertIn('Train step: 7 vs 9', text)
    self.assertIn('The exports are different.', text)

  def test_dense_against_rnn(self):
    result = saved_policy_cli.diff_exports(self.dense_dir, self.rnn_dir)
    self.assertFalse(result['identical'])
    action_inputs = result['signatures']['changed']['action']['inputs']
    self.assertLen(action_inputs['only_in_b'], 2)
    self.assertEqual(action_inputs['only_in_a'], [])
    self.assertEqual(result['specs']['policy_state_spec']['only_in_b'],
                     ['0', '1'])
    self.assertNotEmpty(result['variables']['only_in_b'])


class UpstreamExportTest(_ExportsTestCase):
  """Exports written by upstream tf-agents' own `PolicySaver`.

  `upstream_dense_dir` holds the policy of `dense_dir` (same variables, train
  step and metadata) saved by upstream's saver: written in place, without
  `get_policy_specs`, a manifest or reference inputs.
  """

  def test_written_by_upstream(self):
    self.assertFalse(os.path.islink(self.upstream_dense_dir))
    names = os.listdir(self.upstream_dense_dir)
    self.assertIn('saved_model.pb', names)
    self.assertIn('policy_specs.pbtxt', names)
    self.assertNotIn('export_manifest.json', names)
    self.assertNotIn('reference_io.npz', names)
    loaded = tf.saved_model.load(self.upstream_dense_dir)
    self.assertFalse(hasattr(loaded, 'get_policy_specs'))
    # Upstream keys get_train_step's output by dtype name.
    self.assertIn('int64', loaded.signatures['get_train_step']())

  def test_inspect(self):
    result = saved_policy_cli.inspect_export(self.upstream_dense_dir)
    ours = saved_policy_cli.inspect_export(self.dense_dir)
    self.assertEqual(result['train_step'], 7)
    self.assertEqual(result['metadata'],
                     {'average_return': 1.5, 'environment_steps': 42})
    # Specs from policy_specs.pbtxt, the same as ours from get_policy_specs.
    self.assertEqual(result['specs'], ours['specs'])
    self.assertNotIn('get_policy_specs', result['functions'])
    self.assertContainsSubset(
        ['action', 'get_initial_state', 'get_train_step', 'get_metadata'],
        result['functions'])
    self.assertEqual(result['signatures']['action'],
                     ours['signatures']['action'])
    self.assertEqual(
        [o['name'] for o in result['signatures']['get_train_step']['outputs']],
        ['int64'])
    files = {f['path'] for f in result['files']}
    self.assertNotIn('export_manifest.json', files)
    self.assertIn('policy_specs.pbtxt', files)
    text = saved_policy_cli.format_text('inspect', result)
    self.assertIn('Train step: 7', text)

  def test_eval(self):
    options = saved_policy_cli.Options(env=_ENV, episodes=2, seed=3)
    result = saved_policy_cli.evaluate_export(self.upstream_dense_dir,
                                              options)
    expected = _gym_returns_of_constant_action(_PUSH_RIGHT, [3, 4])
    self.assertEqual(result['returns'], expected)
    self.assertEqual(result['train_step'], 7)
    ours = saved_policy_cli.evaluate_export(self.dense_dir, options)
    self.assertEqual(result['returns'], ours['returns'])

  def test_diff_against_ours(self):
    result = saved_policy_cli.diff_exports(self.dense_dir,
                                           self.upstream_dense_dir)
    # Same policy: same variables, specs, train step and metadata ...
    self.assertEqual(result['variables']['equal'], self.dense_variables)
    self.assertEqual(result['variables']['changed'], [])
    self.assertEqual(result['specs'], {})
    self.assertEqual(result['train_step'], {'a': 7, 'b': 7, 'differs': False})
    self.assertEqual(result['metadata'], {})
    # ... but upstream keys get_train_step's and get_metadata's outputs by
    # dtype name (fix 1 of policy_saver), so the signatures differ.
    signatures = result['signatures']
    # Upstream's saver has no observation-only signature.
    self.assertEqual(signatures['only_in_a'], ['action_from_observation'])
    self.assertEqual(signatures['only_in_b'], [])
    self.assertNotIn('action', signatures['changed'])
    self.assertEqual(
        signatures['changed']['get_train_step']['outputs']['only_in_b'],
        ['int64'])
    self.assertEqual(
        signatures['changed']['get_train_step']['outputs']['only_in_a'],
        ['train_step'])
    self.assertIn('get_metadata', signatures['changed'])
    self.assertFalse(result['identical'])
    self.assertIn('The exports are different.',
                  saved_policy_cli.format_text('diff', result))

  def test_verify(self):
    result = saved_policy_cli.run_command(
        'verify', [self.upstream_dense_dir], saved_policy_cli.Options())
    # Nothing to check against (no manifest, no reference inputs), but it
    # loads in a fresh process with the four signatures and no risky ops.
    self.assertEqual(result['manifest'], 'absent')
    self.assertEqual(result['replayed'], [])
    self.assertEqual(result['risky_ops'], [])
    self.assertEqual(result['problems'], [])
    self.assertEqual(result['train_step'], 7)
    self.assertTrue(result['ok'])
    text = saved_policy_cli.format_text('verify', result)
    self.assertIn('Manifest: absent', text)
    self.assertIn('Replayed: (none)', text)
    self.assertTrue(text.endswith('OK'), text)

  def test_verify_checks_converted_models_again(self):
    export_dir = os.path.join(self.create_tempdir().full_path, 'converted')
    policy_saver.PolicySaver(
        test_utils.make_policy(test_utils.STATELESS_DETERMINISTIC),
        converted_formats=('tflite',)).save(export_dir)
    result = saved_policy_cli.run_command(
        'verify', [export_dir], saved_policy_cli.Options())
    self.assertTrue(result['ok'], result)
    self.assertEqual(
        {'notion': 'bit_exact', 'equivalent': True, 'check': 'agrees'},
        result['converted']['tflite'])
    self.assertIn('tflite: bit_exact, equivalent; checked again: agrees',
                  saved_policy_cli.format_text('verify', result))

  def test_verify_catches_a_corrupted_upstream_export(self):
    export_dir = os.path.join(self.create_tempdir().full_path, 'upstream')
    shutil.copytree(self.upstream_dense_dir, export_dir)
    os.remove(os.path.join(export_dir, 'saved_model.pb'))
    with open(os.path.join(export_dir, 'saved_model.pb'), 'wb') as f:
      f.write(b'not a SavedModel')
    result = saved_policy_cli.run_command(
        'verify', [export_dir], saved_policy_cli.Options())
    self.assertFalse(result['ok'])
    self.assertIn('saved_model.pb', result['problems'][0])


class ErrorsTest(_ExportsTestCase):

  @parameterized.named_parameters(
      ('missing_directory', 'inspect', ['missing_dir'], {}, 1,
       'no such directory'),
      ('not_an_export', 'inspect', ['not_export_dir'], {}, 1,
       'has no saved_model.pb'),
      ('saved_model_but_not_policy', 'inspect', ['plain_saved_model_dir'], {},
       1, 'not a policy export'),
      ('eval_missing_directory', 'eval', ['missing_dir'], {}, 1,
       'no such directory'),
      ('unknown_env', 'eval', ['dense_dir'], {'env': 'NoSuchEnv-v0'}, 1,
       "unknown gym environment 'NoSuchEnv-v0'"),
      ('incompatible_env', 'eval', ['dense_dir'], {'env': 'MountainCar-v0'},
       1, 'expects observations of shape [4]'),
      ('zero_episodes', 'eval', ['dense_dir'], {'episodes': 0}, 2,
       '--episodes'),
      ('convert_without_output', 'convert', ['dense_dir'], {}, 2,
       '--output'),
      ('convert_to_unknown_format', 'convert', ['dense_dir'],
       {'to': 'caffe', 'output': 'x'}, 2, '--to must be one of tflite, onnx'),
      ('diff_not_an_export', 'diff', ['dense_dir', 'not_export_dir'], {}, 1,
       'has no saved_model.pb'),
      ('unknown_command', 'show', ['dense_dir'], {}, 2, 'unknown command'),
      ('too_many_arguments', 'inspect', ['dense_dir', 'rnn_dir'], {}, 2,
       'takes 1 directory argument'),
  )
  def test_error(self, command, dirs, options, exit_code, message):
    args = [getattr(self, d) for d in dirs]
    with self.assertRaises(saved_policy_cli.CliError) as raised:
      saved_policy_cli.run_command(command, args,
                                   saved_policy_cli.Options(**options))
    self.assertEqual(raised.exception.exit_code, exit_code)
    self.assertIn(message, str(raised.exception))
    self.assertNotIn('\n', str(raised.exception))


class ResolvePathTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('relative_under_bazel_run', 'exp', {'BUILD_WORKING_DIRECTORY': '/wd'},
       '/wd/exp'),
      ('absolute', '/abs/exp', {'BUILD_WORKING_DIRECTORY': '/wd'},
       '/abs/exp'),
      ('url', 'gs://bucket/exp', {'BUILD_WORKING_DIRECTORY': '/wd'},
       'gs://bucket/exp'),
      ('relative_without_bazel', 'exp', {'BUILD_WORKING_DIRECTORY': ''},
       'exp'),
  )
  def test_resolve_path(self, path, environ, expected):
    with mock.patch.dict(os.environ, environ):
      self.assertEqual(saved_policy_cli.resolve_path(path), expected)


class HelpTest(parameterized.TestCase):
  """`COMMAND --help` prints that command's help; `--help` the tool's."""

  _OWN = {
      'inspect': ('inspect DIR', '--json'),
      'eval': ('eval DIR', '--env', '--episodes', '--seed', '--max_steps',
               '--json'),
      'convert': ('convert DIR', '--to', '--output', '--signature',
                  '--json'),
      'diff': ('diff DIR_A DIR_B', 'DIR_B', '--json'),
      'verify': ('verify DIR', '--json'),
  }

  def _help(self, *args):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), self.assertRaises(
        SystemExit) as raised:
      saved_policy_cli.parse_flags([saved_policy_cli.PROGRAM] + list(args))
    self.assertEqual(raised.exception.code, 0)
    return stdout.getvalue()

  @parameterized.parameters(*saved_policy_cli.COMMANDS)
  def test_command_help(self, command):
    for args in ([command, '--help'], ['--help', command], [command, '-h'],
                 ['--json', command, 'some_dir', '--helpshort'],
                 ['--env', 'CartPole-v1', command, '--help']):
      text = self._help(*args)
      self.assertStartsWith(
          text, 'Usage: {} {}'.format(saved_policy_cli.PROGRAM, command))
      self.assertIn('--help', text)
      for own in self._OWN[command]:
        self.assertIn(own, text, msg=args)
      for other, texts in self._OWN.items():
        if other != command:
          self.assertNotIn(texts[0], text, msg=args)
          for flag in set(texts) - set(self._OWN[command]):
            self.assertNotIn(flag, text, msg=args)

  @parameterized.parameters([['--help'], ['-h'], ['show', '--help']])
  def test_tool_help(self, *args):
    text = self._help(*args)
    for usage in ('inspect DIR', 'eval DIR', 'convert DIR', 'diff DIR_A DIR_B',
                  'verify DIR', '--json', '--episodes', '--output',
                  'Exit codes'):
      self.assertIn(usage, text)


class CommandLineTest(_ExportsTestCase):
  """Runs the tool as a real process: exit codes, stdout and stderr."""

  def _run(self, *args):
    path = [p for p in sys.path if p and os.path.isdir(p)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    return subprocess.run(
        [sys.executable, '-m', 'tf_agents.policies.saved_policy_cli'] +
        list(args),
        cwd=self.create_tempdir().full_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=False)

  def test_inspect_json(self):
    process = self._run('inspect', self.dense_dir, '--json')
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertEqual(result['train_step'], 7)
    self.assertIn('action', result['signatures'])

  def test_help(self):
    process = self._run('--help')
    self.assertEqual(process.returncode, 0, process.stderr)
    for usage in ('inspect DIR', 'eval DIR', 'convert DIR', 'diff DIR_A DIR_B',
                  '--json', '--episodes', 'Exit codes'):
      self.assertIn(usage, process.stdout)

  def test_command_help(self):
    process = self._run('eval', '--help')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertStartsWith(process.stdout, 'Usage: saved_policy_cli eval DIR')
    for text in ('--env', '--episodes', '--seed', '--max_steps', '--json',
                 'DIR', 'gym environment'):
      self.assertIn(text, process.stdout)
    for text in ('--output', '--signature', 'convert DIR', 'diff DIR_A'):
      self.assertNotIn(text, process.stdout)

  @parameterized.named_parameters(
      ('missing_directory', ['inspect', 'missing_dir'], 1,
       'no such directory'),
      ('not_an_export', ['inspect', 'not_export_dir'], 1,
       'is not a policy export'),
      ('unknown_env', ['eval', 'dense_dir', '--env=NoSuchEnv-v0'], 1,
       'unknown gym environment'),
      ('incompatible_action_space', ['eval', 'dense_dir', '--env',
                                     'Pendulum-v1'], 1,
       'Pendulum-v1 has action space Box('),
      ('unknown_command', ['show', 'dense_dir'], 2, 'unknown command'),
      ('bad_flag_value', ['eval', 'dense_dir', '--episodes=many'], 2,
       '--episodes'),
  )
  def test_error_is_one_line_and_exit_code(self, args, exit_code, message):
    args = [getattr(self, a) if a.endswith('_dir') else a for a in args]
    process = self._run(*args)
    self.assertEqual(process.returncode, exit_code, process.stderr)
    self.assertNotIn('Traceback', process.stderr)
    lines = process.stderr.strip().splitlines()
    self.assertLen(lines, 1, process.stderr)
    self.assertStartsWith(lines[0], 'saved_policy_cli: error: ')
    self.assertIn(message, lines[0])
    self.assertEqual(process.stdout, '')

  def test_eval_json(self):
    process = self._run('eval', self.dense_dir, '--episodes=2', '--seed=3',
                        '--json')
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertEqual(result['seeds'], [3, 4])
    self.assertEqual(result['returns'],
                     _gym_returns_of_constant_action(_PUSH_RIGHT, [3, 4]))
    self.assertEqual(result['train_step'], 7)

  def test_convert_json(self):
    output = os.path.join(self.create_tempdir().full_path, 'policy.tflite')
    process = self._run('convert', self.dense_dir, '--to=tflite',
                        '--output=' + output, '--json')
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertEqual(result['output'], output)
    self.assertEqual(result['bytes'], os.path.getsize(output))
    self.assertTrue(result['builtin_ops_only'])
    self.assertIn('ARG_MAX', result['ops'])
    with open(output, 'rb') as f:
      self.assertEqual(f.read()[4:8], b'TFL3')

  def test_convert_to_onnx_json(self):
    output = os.path.join(self.create_tempdir().full_path, 'policy.onnx')
    process = self._run('convert', self.rnn_dir, '--to=onnx',
                        '--output=' + output, '--json')
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertEqual(result['format'], 'onnx')
    self.assertEqual(result['bytes'], os.path.getsize(output))
    self.assertEqual(result['state_outputs'],
                     {'next_state_0': 'state_0', 'next_state_1': 'state_1'})
    session = onnxruntime.InferenceSession(
        output, providers=['CPUExecutionProvider'])
    self.assertCountEqual([i.name for i in session.get_inputs()],
                          result['inputs'])

  def test_diff_json(self):
    process = self._run('diff', self.dense_dir, self.dense_b_dir, '--json')
    # diff exits 0 whether or not the exports differ.
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertFalse(result['identical'])
    self.assertEqual(result['train_step'], {'a': 7, 'b': 9, 'differs': True})
    self.assertEqual(result['metadata'],
                     {'average_return': {'a': 1.5, 'b': 2.5}})
    self.assertNotEmpty(result['variables']['changed'])

  def test_verify_json_of_upstream_export(self):
    process = self._run('verify', self.upstream_dense_dir, '--json')
    self.assertEqual(process.returncode, 0, process.stderr)
    result = json.loads(process.stdout)
    self.assertTrue(result['ok'])
    self.assertEqual(result['manifest'], 'absent')
    self.assertEqual(result['train_step'], 7)

  @parameterized.named_parameters(('text', False), ('json', True))
  def test_verify_of_corrupted_export_exits_1(self, as_json):
    export_dir = os.path.join(self.create_tempdir().full_path, 'copy')
    shutil.copytree(self.dense_dir, export_dir)
    # The current version's data (what every check reads first).
    data = os.path.join(test_utils.current_files(export_dir), 'variables',
                        'variables.data-00000-of-00001')
    with open(data, 'r+b') as f:
      byte = f.read(1)
      f.seek(0)
      f.write(bytes([byte[0] ^ 0xFF]))
    process = self._run('verify', export_dir, *(['--json'] if as_json else []))
    self.assertEqual(process.returncode, 1, process.stderr)
    self.assertNotIn('Traceback', process.stderr)
    if as_json:
      result = json.loads(process.stdout)
      self.assertFalse(result['ok'])
      self.assertEqual(result['manifest'], 'mismatch')
      self.assertIn('variables/variables.data-00000-of-00001',
                    result['problems'][0])
    else:
      self.assertIn('Manifest: mismatch', process.stdout)
      self.assertIn('variables/variables.data-00000-of-00001', process.stdout)
      self.assertEqual(process.stdout.strip().splitlines()[-1], 'FAILED')

  def test_error_with_json(self):
    process = self._run('inspect', self.missing_dir, '--json')
    self.assertEqual(process.returncode, 1)
    self.assertEqual(json.loads(process.stdout), {
        'error': 'no such directory: {}'.format(self.missing_dir),
        'exit_code': 1,
    })


class DamagedExportTest(_ExportsTestCase):
  """Commands that read a policy load it checked; `verify` reports damage."""

  def _damaged_copy(self):
    """A copy of `dense_dir` whose variables index fails the manifest."""
    export_dir = os.path.join(self.create_tempdir().full_path, 'damaged')
    shutil.copytree(self.dense_dir, export_dir)
    _, filename = test_utils.damage_export('manifest_mismatch', export_dir)
    return export_dir, filename

  @parameterized.named_parameters(
      ('inspect', 'inspect', 1, 0, {}),
      ('eval', 'eval', 1, 0, {'episodes': 1}),
      ('convert', 'convert', 1, 0, {'output': 'unused.tflite'}),
      ('diff_a', 'diff', 2, 0, {}),
      ('diff_b', 'diff', 2, 1, {}),
  )
  def test_damaged_export_is_refused(self, command, count, damaged, options):
    export_dir, filename = self._damaged_copy()
    if 'output' in options:
      options['output'] = os.path.join(self.create_tempdir().full_path,
                                       options['output'])
    args = [self.dense_dir] * count
    args[damaged] = export_dir
    with self.assertRaises(saved_policy_cli.CliError) as raised:
      saved_policy_cli.run_command(command, args,
                                   saved_policy_cli.Options(**options))
    self.assertEqual(raised.exception.exit_code, saved_policy_cli.EXIT_FAILURE)
    self.assertIn(filename, str(raised.exception))
    self.assertIn('manifest', str(raised.exception))
    self.assertNotIn('\n', str(raised.exception))
    if 'output' in options:
      self.assertFalse(os.path.exists(options['output']))

  def test_verify_reads_the_damaged_export_and_reports_it(self):
    export_dir, filename = self._damaged_copy()
    result = saved_policy_cli.run_command('verify', [export_dir],
                                          saved_policy_cli.Options())
    self.assertFalse(result['ok'])
    self.assertEqual(result['manifest'], 'mismatch')
    self.assertIn(filename, result['problems'][0])


class CommandTableTest(parameterized.TestCase):
  """`COMMAND_TABLE` alone drives dispatch, help, checks and formatting."""

  def test_commands_are_the_table(self):
    self.assertEqual(saved_policy_cli.COMMANDS,
                     tuple(c.name for c in saved_policy_cli.COMMAND_TABLE))
    self.assertLen(set(saved_policy_cli.COMMANDS),
                   len(saved_policy_cli.COMMAND_TABLE))

  @parameterized.parameters(*saved_policy_cli.COMMAND_TABLE)
  def test_every_command_is_complete(self, command):
    with self.assertRaises(dataclasses.FrozenInstanceError):
      command.name = 'other'  # pytype: disable=not-writable
    self.assertTrue(command.usage)
    self.assertTrue(command.summary)
    self.assertNotEmpty(command.arguments)
    self.assertTrue(callable(command.run))
    self.assertTrue(callable(command.format_text))
    for flag in command.flags:
      self.assertIn(flag, saved_policy_cli.flags.FLAGS)
    usage = saved_policy_cli._command_usage(command.name)
    self.assertStartsWith(usage, 'Usage: {} {} {}'.format(
        saved_policy_cli.PROGRAM, command.name, command.usage.split()[0]))
    for name, _ in command.arguments:
      self.assertIn('  {}: '.format(name), usage)
    for flag in command.flags:
      self.assertIn('--{}: '.format(flag), usage)

  def test_tool_help_lists_every_command(self):
    text = saved_policy_cli._usage()
    for command in saved_policy_cli.COMMAND_TABLE:
      self.assertIn('{} {} {}'.format(saved_policy_cli.PROGRAM, command.name,
                                      command.usage.split()[0]), text)
      self.assertRegex(text, r'\n  {} +{}'.format(
          command.name, command.summary.split()[0]))

  def test_a_new_command_is_one_entry(self):
    """A command added to the table runs, formats, checks and has help."""
    ran = []
    echo = saved_policy_cli.Command(
        name='echo',
        arguments=(('DIR', 'Any directory.'),),
        flags=('signature',),
        usage='DIR [--signature=action] [--json]',
        summary='Echoes its directory.',
        run=lambda args, options: ran.append(args) or {'dir': args[0]},
        format_text=lambda result: 'Dir: ' + result['dir'],
        exit_code=lambda result: 3)
    table = saved_policy_cli.COMMAND_TABLE + (echo,)
    with mock.patch.multiple(
        saved_policy_cli, COMMAND_TABLE=table,
        COMMANDS=tuple(c.name for c in table),
        _COMMANDS_BY_NAME={c.name: c for c in table}):
      self.assertEqual(
          saved_policy_cli.run_command('echo', ['d'],
                                       saved_policy_cli.Options()),
          {'dir': 'd'})
      self.assertEqual(ran, [['d']])
      self.assertEqual(saved_policy_cli.format_text('echo', {'dir': 'd'}),
                       'Dir: d')
      with self.assertRaises(saved_policy_cli.CliError) as raised:
        saved_policy_cli.run_command('echo', [], saved_policy_cli.Options())
      self.assertEqual(raised.exception.exit_code,
                       saved_policy_cli.EXIT_USAGE)
      self.assertIn('echo takes 1 directory argument', str(raised.exception))
      usage = saved_policy_cli._command_usage('echo')
      self.assertStartsWith(usage, 'Usage: saved_policy_cli echo DIR')
      self.assertIn('--signature: ', usage)
      self.assertNotIn('--episodes', usage)
      self.assertIn('echo     Echoes its directory.', saved_policy_cli._usage())
      with flagsaver.flagsaver(json=False), contextlib.redirect_stdout(
          io.StringIO()) as stdout:
        exit_code = saved_policy_cli.main(['saved_policy_cli', 'echo', 'd'])
      self.assertEqual(exit_code, 3)
      self.assertEqual(stdout.getvalue(), 'Dir: d\n')


if __name__ == '__main__':
  tf.test.main()
