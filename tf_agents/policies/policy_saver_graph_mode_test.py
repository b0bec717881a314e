# coding=utf-8
"""PolicySaver refuses TF1 graph mode (eager disabled process-wide).

This is its own test target because disabling eager execution is global to
the process.
"""

import tensorflow as tf

# Before anything else runs: the whole process is in TF1 graph mode.
tf.compat.v1.disable_eager_execution()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl.testing import parameterized

from tf_agents.policies import policy_saver
from tf_agents.policies import random_tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
# pylint: enable=g-import-not-at-top,wrong-import-position


class PolicySaverGraphModeTest(tf.test.TestCase, parameterized.TestCase):

  def testEagerIsDisabled(self):
    self.assertFalse(tf.executing_eagerly())

  @parameterized.named_parameters(
      ('NotAPolicy', object(), None),
      ('NoneAndBadBatchSize', None, -1),
      ('NotAPolicyAndStringBatchSize', 'policy', '3'),
  )
  def testNotImplementedBeforeOtherChecks(self, policy, batch_size):
    with self.assertRaisesRegex(NotImplementedError, 'eager execution'):
      policy_saver.PolicySaver(
          policy,
          batch_size=batch_size,
          use_nest_path_signatures=False,
          train_step=3,
          metadata={1: 2},
      )

  def testNotImplementedForARealPolicy(self):
    # RandomTFPolicy builds fine in graph mode; the saver still refuses it.
    observation_spec = tensor_spec.TensorSpec((2,), tf.float32, name='obs')
    action_spec = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 1, name='a')
    policy = random_tf_policy.RandomTFPolicy(
        ts.time_step_spec(observation_spec), action_spec
    )
    with self.assertRaises(NotImplementedError):
      policy_saver.PolicySaver(
          policy, train_step=tf.compat.v1.Variable(0, dtype=tf.int64)
      )


if __name__ == '__main__':
  tf.test.main()
