# coding=utf-8
"""Exports a policy whose variables live on a GPU and compares its actions."""

import os

from absl.testing import parameterized
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils


class PolicySaverGpuTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    if not tf.config.list_physical_devices('GPU'):
      self.skipTest('no GPU visible')

  @parameterized.named_parameters(
      ('Stateless', utils.STATELESS_DETERMINISTIC),
      ('Stateful', utils.STATEFUL_DETERMINISTIC),
  )
  def testSaveLoadActionOnGpu(self, kind):
    with tf.device('/GPU:0'):
      policy = utils.make_policy(kind)
    self.assertTrue(
        all('GPU' in v.device for v in policy.variables()),
        [v.device for v in policy.variables()],
    )
    path = os.path.join(self.create_tempdir().full_path, 'export')
    policy_saver.PolicySaver(policy).save(path)

    for device in ('/GPU:0', '/CPU:0'):
      with tf.device(device):
        loaded = tf.saved_model.load(path)
        state = loaded.get_initial_state(2)
        expected_state = policy.get_initial_state(2)
        for step in range(3):
          time_step = utils.time_steps(2, step)
          out = loaded.action(time_step, state)
          expected = policy.action(time_step, expected_state)
          self.assertAllEqual(expected.action, out.action)
          utils.assert_nests_close(
              self, expected.state, out.state, atol=1e-5
          )
          state, expected_state = out.state, expected.state

  def testDistributionOnGpu(self):
    with tf.device('/GPU:0'):
      policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    path = os.path.join(self.create_tempdir().full_path, 'export')
    policy_saver.PolicySaver(policy, seed=3).save(path)
    loaded = tf.saved_model.load(path)
    time_step = utils.time_steps(2, 0)
    self.assertAllClose(
        policy.distribution(time_step).action.mean(),
        loaded.distribution(time_step).action.mean(),
        atol=1e-5,
    )


if __name__ == '__main__':
  tf.test.main()
