# coding=utf-8
"""Tests the `action_from_observation` signature of `PolicySaver` exports."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

_KEY = policy_saver.ACTION_FROM_OBSERVATION


class _EchoPolicy(tf_policy.TFPolicy):
  """Returns the time step it was given as its info (the action is 0)."""

  def __init__(self):
    observation_spec = tf.TensorSpec((3,), tf.float32, name='obs')
    # A vector reward checks that the filled-in reward gets the spec's shape.
    reward_spec = tf.TensorSpec((2,), tf.float32, name='reward')
    time_step_spec = ts.time_step_spec(observation_spec, reward_spec)
    action_spec = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 1, 'act')
    info_spec = {
        'step_type': time_step_spec.step_type,
        'reward': time_step_spec.reward,
        'discount': time_step_spec.discount,
    }
    super().__init__(time_step_spec, action_spec, info_spec=info_spec)
    # A policy has weights; the exported model_variables are then not empty.
    self._scale = tf.Variable(1, dtype=tf.int32, name='scale')

  def _action(self, time_step, policy_state, seed):
    batch = tf.shape(time_step.observation)[0]
    info = {
        'step_type': time_step.step_type,
        'reward': time_step.reward,
        'discount': time_step.discount,
    }
    action = tf.zeros([batch], tf.int32) * self._scale
    return policy_step.PolicyStep(action, (), info)

  def _distribution(self, time_step, policy_state):
    raise NotImplementedError('not needed')


def _inputs(signature):
  _, inputs = signature.structured_input_signature
  return inputs


def _mid_step_and_state(loaded, batch_size):
  """A mid-episode time step and the state after one step from a restart."""
  initial = loaded.signatures['get_initial_state']
  state = initial(batch_size=tf.constant(batch_size)) if _inputs(
      initial) else initial()
  action = loaded.signatures['action']
  first = action(
      **utils.flat_time_step(action, utils.time_steps(batch_size, 0)),
      **state)
  # A state that is not the initial one, so feeding it in matters.
  state = {key: first[key] for key in state}
  return utils.time_steps(batch_size, 3), state


class ActionFromObservationTest(tf.test.TestCase, parameterized.TestCase):

  def _save_and_load(self, saver):
    path = os.path.join(self.create_tempdir().full_path, 'export')
    saver.save(path)
    return path, tf.saved_model.load(path)

  @parameterized.named_parameters(
      ('StatelessDeterministic', utils.STATELESS_DETERMINISTIC, None, True),
      ('StatefulDeterministic', utils.STATEFUL_DETERMINISTIC, None, True),
      ('StatefulFixedBatch', utils.STATEFUL_DETERMINISTIC, 2, True),
      ('StatelessFixedBatch', utils.STATELESS_DETERMINISTIC, 3, True),
      ('StatefulSpecNames', utils.STATEFUL_DETERMINISTIC, None, False),
  )
  def testSameOutputsAsActionOnAMidEpisodeStep(self, kind, batch_size,
                                                nest_paths):
    policy = utils.make_policy(kind)
    saver = policy_saver.PolicySaver(
        policy, batch_size=batch_size, seed=7,
        use_nest_path_signatures=nest_paths)
    _, loaded = self._save_and_load(saver)
    action = loaded.signatures['action']
    from_observation = loaded.signatures[_KEY]

    # Inputs: the observation and state keys of `action`, nothing else.
    time_step_keys = set(utils.flat_time_step(action, utils.time_steps(1, 1)))
    observation_key = 'arg_0_observation' if nest_paths else 'obs'
    self.assertIn(observation_key, time_step_keys)
    self.assertCountEqual(
        set(_inputs(action)) - time_step_keys | {observation_key},
        _inputs(from_observation))
    self.assertEqual(
        _inputs(action)[observation_key],
        _inputs(from_observation)[observation_key])
    self.assertEqual(action.structured_outputs,
                     from_observation.structured_outputs)

    time_step, state = _mid_step_and_state(loaded, batch_size or 2)
    expected = action(**utils.flat_time_step(action, time_step), **state)
    actual = from_observation(
        **{observation_key: time_step.observation}, **state)
    self.assertCountEqual(expected, actual)
    for key in expected:
      self.assertAllEqual(expected[key], actual[key], msg=key)
    if state:
      # The state outputs are fed back unchanged.
      again = from_observation(
          **{observation_key: time_step.observation},
          **{key: actual[key] for key in state})
      self.assertNotAllClose(
          np.concatenate([np.ravel(actual[k]) for k in state]),
          np.concatenate([np.ravel(again[k]) for k in state]))

  @parameterized.named_parameters(('VariableBatch', None), ('FixedBatch', 3))
  def testFillsInMidStepZeroRewardAndUnitDiscount(self, batch_size):
    saver = policy_saver.PolicySaver(_EchoPolicy(), batch_size=batch_size,
                                     include_distribution=False)
    _, loaded = self._save_and_load(saver)
    observation = tf.constant(
        np.random.RandomState(0).uniform(-1, 1, (3, 3)), tf.float32)
    outputs = loaded.signatures[_KEY](arg_0_observation=observation)
    self.assertAllEqual([ts.StepType.MID] * 3, outputs['info/step_type'])
    self.assertEqual(tf.int32, outputs['info/step_type'].dtype)
    self.assertAllEqual(np.zeros((3, 2)), outputs['info/reward'])
    self.assertAllEqual(np.ones(3), outputs['info/discount'])
    self.assertEqual(tf.float32, outputs['info/discount'].dtype)

  def testFreshProcessPlainLoadGivesTheSameActionAsAction(self):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    # Without `distribution`, so it loads without tensorflow_probability.
    saver = policy_saver.PolicySaver(policy, include_distribution=False)
    path, loaded = self._save_and_load(saver)
    time_step, state = _mid_step_and_state(loaded, 2)
    expected = policy.action(
        time_step, tf.nest.pack_sequence_as(
            policy.policy_state_spec,
            [state[k] for k in sorted(state)])).action
    result = utils.run_fresh_process(
        self, 'action_from_observation_program.py',
        [path, time_step.observation.numpy().tolist(),
         utils.numpy_nest(state)],
        block_modules=['tf_agents', 'tensorflow_probability'])
    self.assertEqual(['action', 'state_0', 'state_1'], result['keys'])
    self.assertEqual(result['action'], result['served'])
    self.assertEqual(expected.numpy().tolist(), result['served'])
    self.assertTrue(result['same_state'])

  def testExportStillVerifies(self):
    saver = policy_saver.PolicySaver(
        utils.make_policy(utils.STATELESS_DETERMINISTIC))
    path, _ = self._save_and_load(saver)
    saver.save(path)  # The variables-only re-save keeps the signature.
    self.assertEqual('variables_only', saver.last_save_kind)
    self.assertIn(_KEY, tf.saved_model.load(path).signatures)
    report = export_verify.verify(path, fresh_process=False)
    self.assertTrue(report.ok, report.problems)


if __name__ == '__main__':
  tf.test.main()
