# coding=utf-8
"""Tests for suite_gymnasium: specs, episode ends, seeding, drivers."""

from absl.testing import parameterized
import gymnasium
from gymnasium import spaces
import numpy as np
import tensorflow as tf

from tf_agents.drivers import py_driver
from tf_agents.environments import suite_gymnasium
from tf_agents.environments import tf_py_environment
from tf_agents.policies import random_py_policy
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

_ENV = 'CartPole-v1'


def _run(env, actions):
  return [env.step(np.asarray(a, np.int64)) for a in actions]


class SpecTest(tf.test.TestCase, parameterized.TestCase):

  def test_cartpole_specs(self):
    env = suite_gymnasium.load(_ENV)
    observation = env.observation_spec()
    self.assertIsInstance(observation, array_spec.BoundedArraySpec)
    self.assertEqual((4,), observation.shape)
    self.assertEqual(np.float32, observation.dtype)
    # Infinite bounds become the dtype's largest value in BoundedArraySpec.
    finite = np.finfo(np.float32).max
    self.assertAllEqual(
        np.clip(env.gymnasium_env.observation_space.high, -finite, finite),
        observation.maximum)
    self.assertEqual(
        array_spec.BoundedArraySpec((), np.int64, 0, 1, 'action'),
        env.action_spec())
    self.assertEqual(ts.time_step_spec(observation), env.time_step_spec())
    first = env.reset()
    self.assertTrue(observation.check_array(first.observation))

  def test_nested_and_other_spaces(self):
    space = spaces.Dict({
        'position': spaces.Box(-2.0, 2.0, (2,), np.float64),
        'parts': spaces.Tuple((spaces.Discrete(3, start=5),
                               spaces.MultiDiscrete([2, 4]),
                               spaces.MultiBinary(3))),
    })
    spec = suite_gymnasium.spec_from_space(space, 'observation')
    self.assertEqual(
        array_spec.BoundedArraySpec((2,), np.float64, -2.0, 2.0,
                                    'observation/position'),
        spec['position'])
    discrete, multi_discrete, multi_binary = spec['parts']
    self.assertEqual((5, 7), (discrete.minimum, discrete.maximum))
    self.assertAllEqual([1, 3], multi_discrete.maximum)
    self.assertEqual((0, 1), (multi_binary.minimum, multi_binary.maximum))
    self.assertEqual('observation/parts/1', multi_discrete.name)
    space.seed(0)
    sample = suite_gymnasium._to_spec(space.sample(), spec)  # pylint: disable=protected-access
    tf.nest.map_structure(
        lambda s, v: self.assertTrue(s.check_array(v), (s, v)), spec, sample)

  def test_unsupported_space_is_named(self):
    with self.assertRaisesRegex(TypeError, r'Text.*for .observation/words'):
      suite_gymnasium.spec_from_space(
          spaces.Dict({'words': spaces.Text(5)}), 'observation')

  def test_registration(self):
    self.assertTrue(suite_gymnasium.is_registered(_ENV))
    self.assertFalse(suite_gymnasium.is_registered('NoSuchEnv-v7'))
    with self.assertRaises(gymnasium.error.Error):
      suite_gymnasium.load('NoSuchEnv-v7')


class EpisodeEndTest(tf.test.TestCase):

  def test_termination_is_last_with_discount_zero_then_auto_reset(self):
    env = suite_gymnasium.load(_ENV)
    env.seed(0)
    self.assertEqual(ts.StepType.FIRST, env.reset().step_type)
    # Pushing left all the time drops the pole within a few dozen steps.
    steps = []
    while not steps or not steps[-1].is_last():
      steps.append(env.step(np.int64(0)))
      self.assertLess(len(steps), 100)
    for step in steps[:-1]:
      self.assertEqual(ts.StepType.MID, step.step_type)
      self.assertEqual(1.0, step.discount)
    self.assertEqual(0.0, steps[-1].discount)
    self.assertEqual(1.0, steps[-1].reward)
    self.assertEqual(np.float32, steps[-1].reward.dtype)
    restarted = env.step(np.int64(0))
    self.assertEqual(ts.StepType.FIRST, restarted.step_type)
    self.assertEqual(0.0, restarted.reward)

  def test_truncation_is_last_with_discount_one(self):
    env = suite_gymnasium.load(_ENV, max_episode_steps=3)
    env.seed(0)
    env.reset()
    steps = _run(env, [0, 1, 0])
    self.assertEqual([ts.StepType.MID, ts.StepType.MID, ts.StepType.LAST],
                     [int(s.step_type) for s in steps])
    self.assertEqual([1.0, 1.0, 1.0], [float(s.discount) for s in steps])
    self.assertEqual(ts.StepType.FIRST, env.step(np.int64(0)).step_type)

  def test_truncation_keeps_the_given_discount(self):
    env = suite_gymnasium.load(_ENV, max_episode_steps=2, discount=0.5)
    env.reset()
    self.assertEqual([0.5, 0.5], [float(s.discount) for s in _run(env, [0, 1])])

  def test_max_episode_steps_zero_removes_the_time_limit(self):
    env = suite_gymnasium.load(_ENV, max_episode_steps=0).gymnasium_env
    while isinstance(env, gymnasium.Wrapper):
      self.assertNotIsInstance(env, gymnasium.wrappers.TimeLimit)
      env = env.env
    with self.assertRaisesRegex(ValueError, 'max_episode_steps'):
      suite_gymnasium.load(_ENV, max_episode_steps=-2)


class SeedTest(tf.test.TestCase):

  def _episode_observations(self, seed, episodes=2):
    env = suite_gymnasium.load(_ENV)
    self.assertEqual(seed, env.seed(seed))
    rng = np.random.RandomState(0)
    observations = [env.reset().observation]
    ends = 0
    while ends < episodes:
      step = env.step(np.int64(rng.randint(2)))
      observations.append(step.observation)
      ends += int(step.is_last())
    return np.stack(observations)

  def test_same_seed_same_episodes_other_seed_other_episodes(self):
    first = self._episode_observations(3)
    self.assertAllEqual(first, self._episode_observations(3))
    other = self._episode_observations(4)
    self.assertNotAllClose(first[0], other[0])

  def test_seed_applies_to_the_next_reset_only(self):
    env = suite_gymnasium.load(_ENV)
    env.seed(5)
    one = env.reset().observation
    two = env.reset().observation
    self.assertNotAllClose(one, two)
    env.seed(5)
    self.assertAllEqual(one, env.reset().observation)


class DriverTest(tf.test.TestCase):

  def test_py_driver_runs_whole_episodes(self):
    env = suite_gymnasium.load(_ENV, max_episode_steps=20)
    env.seed(1)
    policy = random_py_policy.RandomPyPolicy(env.time_step_spec(),
                                             env.action_spec(), seed=1)
    trajectories = []
    driver = py_driver.PyDriver(env, policy, [trajectories.append],
                                max_episodes=3)
    final_step, _ = driver.run(env.reset())
    self.assertEqual(3, sum(int(t.is_last()) for t in trajectories))
    self.assertTrue(trajectories[0].is_first())
    self.assertLessEqual(len(trajectories), 3 * 21)
    # Each LAST is followed by the boundary (LAST -> FIRST), then the FIRST
    # step of the next episode.
    for before, after in zip(trajectories, trajectories[1:]):
      self.assertEqual(bool(before.is_last()), bool(after.is_boundary()))
      self.assertEqual(bool(before.is_boundary()), bool(after.is_first()))
    self.assertTrue(final_step.is_first())

  def test_tf_py_environment(self):
    env = tf_py_environment.TFPyEnvironment(
        suite_gymnasium.load(_ENV, max_episode_steps=2))
    self.assertEqual(
        tensor_spec.BoundedTensorSpec((), tf.int64, 0, 1, 'action'),
        env.action_spec())
    self.assertEqual(tf.float32, env.observation_spec().dtype)
    first = env.reset()
    self.assertEqual((1, 4), tuple(first.observation.shape))
    action = tf.constant([1], tf.int64)
    steps = [env.step(action) for _ in range(3)]
    self.assertEqual([ts.StepType.MID, ts.StepType.LAST, ts.StepType.FIRST],
                     [int(s.step_type[0]) for s in steps])
    self.assertEqual([1.0, 1.0], [float(s.discount[0]) for s in steps[:2]])


if __name__ == '__main__':
  tf.test.main()
