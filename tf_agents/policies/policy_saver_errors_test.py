# coding=utf-8
"""Tests for the argument errors of policy_saver.PolicySaver."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts


class _ConstantPolicy(tf_policy.TFPolicy):
  """A minimal policy with configurable specs."""

  def _action(self, time_step, policy_state, seed):
    batch = tf.shape(time_step.step_type)[0]
    action = tf.nest.map_structure(
        lambda s: tf.zeros(tf.concat([[batch], s.shape], 0), s.dtype),
        self.action_spec,
    )
    info = tf.nest.map_structure(
        lambda s: tf.zeros(tf.concat([[batch], s.shape], 0), s.dtype),
        self.info_spec,
    )
    return policy_step.PolicyStep(action, policy_state, info)

  def _distribution(self, time_step, policy_state):
    raise NotImplementedError('No distribution.')


def _named(shape, dtype, name):
  return tf.TensorSpec(shape, dtype, name=name)


class PolicySaverErrorsTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self._policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)

  @parameterized.named_parameters(
      ('None', None, 'NoneType'),
      ('Object', object(), 'object'),
      ('String', 'policy', 'str'),
  )
  def testPolicyNotTFPolicy(self, policy, type_name):
    with self.assertRaisesRegex(TypeError, 'TFPolicy.*' + type_name):
      policy_saver.PolicySaver(policy)

  @parameterized.named_parameters(
      ('Zero', 0, '0'),
      ('Negative', -1, '-1'),
      ('Float', 1.5, '1.5'),
      ('String', '3', "'3'"),
      ('True', True, 'True'),
      ('NumpyBool', np.bool_(True), 'True'),
      ('NumpyZero', np.int64(0), '0'),
  )
  def testBadBatchSize(self, batch_size, shown):
    with self.assertRaisesRegex(ValueError, 'batch_size.*' + shown):
      policy_saver.PolicySaver(self._policy, batch_size=batch_size)

  @parameterized.named_parameters(
      ('PythonInt', 3), ('NumpyInt64', np.int64(3)), ('NumpyUint8', np.uint8(3))
  )
  def testGoodBatchSize(self, batch_size):
    saver = policy_saver.PolicySaver(self._policy, batch_size=batch_size)
    _, inputs = saver.signatures['action'].get_concrete_function(
    ).structured_input_signature
    for spec in inputs.values():
      self.assertEqual(3, spec.shape[0])

  def testUnnamedSpec(self):
    time_step_spec = ts.time_step_spec(tf.TensorSpec((2,), tf.float32))
    policy = _ConstantPolicy(
        time_step_spec, _named((), tf.int32, 'act')
    )
    # Nest-path names need no spec names.
    policy_saver.PolicySaver(policy)
    with self.assertRaisesRegex(
        ValueError, r'time_step_spec/observation has no name'
    ):
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)

  def testCollidingSpecNames(self):
    time_step_spec = ts.time_step_spec(_named((2,), tf.float32, 'obs'))
    policy = _ConstantPolicy(
        time_step_spec,
        _named((), tf.int32, 'out'),
        policy_state_spec={'memory': _named((2,), tf.float32, 'obs')},
        info_spec={'extra': _named((), tf.float32, 'out')},
    )
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    message = str(raised.exception)
    self.assertRegex(
        message,
        r"name 'obs' of policy_state_spec/memory collides with "
        r'time_step_spec/observation',
    )
    self.assertRegex(
        message, r"name 'out' of info_spec/extra collides with action_spec"
    )

  def testUnnamedActionAndInfoSpecs(self):
    policy = _ConstantPolicy(
        utils.TIME_STEP_SPEC,
        [tf.TensorSpec((), tf.int32), _named((), tf.int32, 'a')],
        info_spec=tf.TensorSpec((), tf.float32),
    )
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    self.assertIn('action_spec/0 has no name', str(raised.exception))
    self.assertIn('info_spec has no name', str(raised.exception))

  def testSanitizedInputNamesCollide(self):
    # 'a/b' and 'a_b' would both be fed with the key 'a_b'.
    time_step_spec = ts.time_step_spec(
        {'x': _named((), tf.float32, 'a/b'), 'y': _named((), tf.float32, 'a_b')}
    )
    policy = _ConstantPolicy(time_step_spec, _named((), tf.int32, 'act'))
    with self.assertRaisesRegex(ValueError, r"duplicate keys \['a_b'\]"):
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)

  @parameterized.named_parameters(
      ('PythonInt', 3),
      ('Tensor', tf.constant(3, tf.int64)),
      ('NumpyInt', np.int64(3)),
  )
  def testTrainStepNotVariable(self, train_step):
    with self.assertRaisesRegex(ValueError, 'train_step.*tf.Variable.*3'):
      policy_saver.PolicySaver(self._policy, train_step=train_step)

  def testMetadataNotDict(self):
    with self.assertRaisesRegex(TypeError, 'metadata must be a dict.*list'):
      policy_saver.PolicySaver(
          self._policy, metadata=[tf.Variable(1)]
      )

  def testMetadataKeyNotString(self):
    with self.assertRaisesRegex(TypeError, 'keys must be strings.*7'):
      policy_saver.PolicySaver(self._policy, metadata={7: tf.Variable(1)})

  def testMetadataKeyEmpty(self):
    with self.assertRaisesRegex(ValueError, 'non-empty'):
      policy_saver.PolicySaver(self._policy, metadata={'': tf.Variable(1)})

  @parameterized.named_parameters(
      ('Int', 5, 'int'),
      ('Tensor', tf.constant(5), 'EagerTensor'),
      ('Numpy', np.array(5), 'ndarray'),
  )
  def testMetadataValueNotVariable(self, value, type_name):
    with self.assertRaisesRegex(
        TypeError, "tf.Variable.*{}.*'env_step'".format(type_name)
    ):
      policy_saver.PolicySaver(self._policy, metadata={'env_step': value})

  @parameterized.named_parameters(
      ('Action', 'action'),
      ('TrainStep', 'train_step'),
      ('Metadata', 'metadata'),
      ('GetPolicySpecs', 'get_policy_specs'),
      ('ModelVariables', 'model_variables'),
  )
  def testRegisterFunctionNameCollision(self, name):
    saver = policy_saver.PolicySaver(self._policy)
    with self.assertRaisesRegex(ValueError, repr(name)):
      saver.register_function(
          name, lambda x: x, tf.TensorSpec((2,), tf.float32)
      )
    fn = tf.function(lambda x: x)
    fn.get_concrete_function(tf.TensorSpec((2,), tf.float32))
    with self.assertRaisesRegex(ValueError, repr(name)):
      saver.register_concrete_function(name, fn)

  def testRegisterTwiceCollides(self):
    saver = policy_saver.PolicySaver(self._policy)
    saver.register_function('double', lambda x: 2 * x,
                            tf.TensorSpec((2,), tf.float32))
    with self.assertRaisesRegex(ValueError, "'double'"):
      saver.register_function('double', lambda x: 2 * x,
                              tf.TensorSpec((2,), tf.float32))

  def testTrainStepRequiredWhenBuildingInGraph(self):
    with tf.Graph().as_default():
      policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
      with self.assertRaisesRegex(ValueError, 'train_step is required'):
        policy_saver.PolicySaver(policy)

  def testBoundedSpecsKeepWorking(self):
    # Sanity check that a valid spec-names policy passes every check.
    time_step_spec = ts.time_step_spec(
        tensor_spec.BoundedTensorSpec((2,), tf.float32, 0, 1, name='obs')
    )
    policy = _ConstantPolicy(
        time_step_spec,
        tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3, name='act'),
        policy_state_spec=_named((2,), tf.float32, 'memory'),
    )
    saver = policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    self.assertEqual('memory', saver.policy_state_spec.name)


if __name__ == '__main__':
  tf.test.main()
