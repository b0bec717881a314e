# coding=utf-8
"""Tests that upstream tf-agents 0.19.0 runs on the locked stack of each config.

The locks relax pins tf-agents declares (tensorflow-probability, typing-
extensions) to run it on newer TensorFlow; this proves its policies, networks,
agents and the gym suite import and run there.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_agents.agents.dqn import dqn_agent
from tf_agents.agents.ppo import ppo_clip_agent
from tf_agents.environments import suite_gym
from tf_agents.environments import tf_py_environment
from tf_agents.networks import actor_distribution_network
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.networks import value_network
from tf_agents.policies import q_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import common


def _specs():
  obs = tensor_spec.TensorSpec([3], tf.float32, "obs")
  action = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 2, "action")
  return ts.time_step_spec(obs), action


def _time_step(batch_size):
  return ts.restart(tf.ones([batch_size, 3], tf.float32), batch_size)


class UpstreamStackTest(tf.test.TestCase, parameterized.TestCase):

  def test_tfp_is_usable(self):
    dist = tfp.distributions.Categorical(logits=[0.0, 1.0])
    self.assertAllClose(tf.reduce_sum(dist.probs_parameter()), 1.0)

  def test_q_policy_acts_within_bounds(self):
    time_step_spec, action_spec = _specs()
    net = q_network.QNetwork(time_step_spec.observation, action_spec,
                             fc_layer_params=(4,))
    policy = q_policy.QPolicy(time_step_spec, action_spec, q_network=net)
    action = policy.action(_time_step(5)).action
    self.assertEqual(action.shape, [5])
    self.assertAllInRange(action, 0, 2)

  def test_rnn_policy_carries_state(self):
    time_step_spec, action_spec = _specs()
    net = q_rnn_network.QRnnNetwork(time_step_spec.observation, action_spec,
                                    lstm_size=(3,))
    policy = q_policy.QPolicy(time_step_spec, action_spec, q_network=net)
    state = policy.get_initial_state(2)
    step = policy.action(_time_step(2), state)
    self.assertNotAllClose(tf.nest.flatten(step.state)[0],
                           tf.nest.flatten(state)[0])

  def test_dqn_agent_trains(self):
    time_step_spec, action_spec = _specs()
    net = q_network.QNetwork(time_step_spec.observation, action_spec,
                             fc_layer_params=(4,))
    agent = dqn_agent.DqnAgent(
        time_step_spec, action_spec, q_network=net,
        optimizer=tf.keras.optimizers.Adam(1e-2))
    agent.initialize()
    experience = tensor_spec.sample_spec_nest(
        agent.collect_data_spec, outer_dims=(4, 2), seed=1)
    loss = agent.train(experience).loss
    self.assertTrue(np.isfinite(loss.numpy()))
    self.assertEqual(agent.train_step_counter.numpy(), 1)

  def test_ppo_agent_builds_stochastic_policy(self):
    time_step_spec, action_spec = _specs()
    actor = actor_distribution_network.ActorDistributionNetwork(
        time_step_spec.observation, action_spec, fc_layer_params=(4,))
    value = value_network.ValueNetwork(time_step_spec.observation,
                                       fc_layer_params=(4,))
    agent = ppo_clip_agent.PPOClipAgent(
        time_step_spec, action_spec, actor_net=actor, value_net=value,
        optimizer=tf.keras.optimizers.Adam(1e-3), num_epochs=1)
    dist = agent.collect_policy.distribution(_time_step(3)).action
    self.assertEqual(dist.sample().shape, [3])

  def test_gym_cartpole_runs(self):
    env = tf_py_environment.TFPyEnvironment(suite_gym.load("CartPole-v0"))
    time_step = env.reset()
    steps = 0
    while not time_step.is_last() and steps < 300:
      time_step = env.step(tf.constant([steps % 2], tf.int64))
      steps += 1
    self.assertTrue(time_step.is_last())
    self.assertEqual(time_step.observation.shape, [1, 4])

  def test_common_function_compiles(self):
    fn = common.function(lambda x: x * 2)
    self.assertAllEqual(fn(tf.constant([1, 2])), [2, 4])


if __name__ == "__main__":
  tf.test.main()
