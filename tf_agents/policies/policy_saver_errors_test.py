# coding=utf-8
"""Tests for the argument errors of policy_saver.PolicySaver.

Also checks that the module keeps upstream's public API (names and
signatures), since it replaces upstream's module of the same name.
"""

import __future__
import importlib.util
import inspect
import os
import types as python_types
import typing

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import py_tf_eager_policy
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

  # One-line errors for bad constructor arguments, raised before anything is
  # written.

  @parameterized.named_parameters(
      ('Float', lambda: tf.Variable(1.5), 'float32'),
      ('Float64', lambda: tf.Variable(2.0, dtype=tf.float64), 'float64'),
      ('String', lambda: tf.Variable('step'), 'string'),
      ('Bool', lambda: tf.Variable(True), 'bool'),
  )
  def testTrainStepNotInteger(self, make_train_step, dtype_name):
    with self.assertRaises(TypeError) as raised:
      policy_saver.PolicySaver(self._policy, train_step=make_train_step())
    utils.assert_one_line_error(
        self, raised.exception, 'integer', 'dtype ' + dtype_name)
    self.assertIn('train_step', str(raised.exception))

  @parameterized.named_parameters(
      ('Vector', lambda: tf.Variable([1, 2], dtype=tf.int64), '(2,)'),
      ('Matrix', lambda: tf.Variable([[1]], dtype=tf.int64), '(1, 1)'),
      ('UnknownShape',
       lambda: tf.Variable(1, dtype=tf.int64, shape=tf.TensorShape(None)),
       '<unknown>'),
  )
  def testTrainStepNotScalar(self, make_train_step, shape):
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(self._policy, train_step=make_train_step())
    utils.assert_one_line_error(
        self, raised.exception, 'scalar', 'shape ' + shape)
    self.assertIn('train_step', str(raised.exception))

  @parameterized.named_parameters(
      ('PythonFloat', 1.5, '1.5 of type float'),
      ('String', 'step', "'step' of type str"),
  )
  def testTrainStepNotVariableNamesItsType(self, train_step, shown):
    # Not a variable at all: ValueError, as upstream raises.
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(self._policy, train_step=train_step)
    utils.assert_one_line_error(self, raised.exception, 'tf.Variable', shown)

  @parameterized.named_parameters(
      ('Int64', tf.int64), ('Int32', tf.int32), ('Uint8', tf.uint8)
  )
  def testIntegerScalarTrainStep(self, dtype):
    train_step = tf.Variable(7, dtype=dtype)
    saver = policy_saver.PolicySaver(self._policy, train_step=train_step)
    self.assertEqual(7, saver.get_train_step())

  def _spec_named_policy(self, name, part='observation'):
    """A policy whose time step `part` (or policy state) is named `name`."""
    time_step_spec = ts.time_step_spec(_named((2,), tf.float32, 'obs'))
    state_spec = _named((2,), tf.float32, 'memory')
    if part == 'policy_state':
      state_spec = _named((2,), tf.float32, name)
    else:
      time_step_spec = time_step_spec._replace(
          **{part: _named(getattr(time_step_spec, part).shape,
                          getattr(time_step_spec, part).dtype, name)})
    return _ConstantPolicy(
        time_step_spec, _named((), tf.int32, 'act'),
        policy_state_spec=state_spec)

  @parameterized.named_parameters(
      ('Space', '0/step type', 'step_type', "' '"),
      ('Tab', 'a\tb', 'observation', r"'\t'"),
      ('Newline', 'a\nb', 'observation', r"'\n'"),
      ('Colon', 'obs:0', 'observation', "':'"),
      ('LeadingUnderscore', '_obs', 'observation', "starts with '_'"),
      ('LeadingSlash', '/obs', 'observation', "starts with '/'"),
      ('NonAscii', 'beobachtung_ü', 'observation', "'ü'"),
      ('Cjk', '観測', 'reward', "starts with '観'"),
  )
  def testSpecNameTensorFlowRejects(self, name, part, reason):
    policy = self._spec_named_policy(name, part)
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    utils.assert_one_line_error(
        self, raised.exception, 'time_step_spec/' + part, repr(name))
    self.assertIn(reason, str(raised.exception))

  def testPolicyStateNameTensorFlowRejects(self):
    # Policy state names are made parameter names first ('a b' -> 'a_b'), but
    # that keeps non-ASCII letters, which TensorFlow rejects.
    policy_saver.PolicySaver(
        self._spec_named_policy('a b', 'policy_state'),
        use_nest_path_signatures=False)
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(
          self._spec_named_policy('zustand_ä', 'policy_state'),
          use_nest_path_signatures=False)
    utils.assert_one_line_error(
        self, raised.exception, 'policy_state_spec', "'zustand_ä'")

  def testNestPathTensorFlowRejects(self):
    # Nest-path names come from the nest's keys.
    time_step_spec = ts.time_step_spec(
        {'camera image': tf.TensorSpec((2,), tf.float32)})
    policy = _ConstantPolicy(time_step_spec, _named((), tf.int32, 'act'))
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(policy)
    utils.assert_one_line_error(
        self, raised.exception, 'time_step_spec/observation/camera image',
        "'0/observation/camera image'")

  def testInputFnSpecNameTensorFlowRejects(self):

    def input_fn(example):
      return ts.restart(example, batch_size=2), ()

    time_step_spec = ts.time_step_spec(_named((2,), tf.float32, 'obs'))
    policy = _ConstantPolicy(time_step_spec, _named((), tf.int32, 'act'))
    policy_saver.PolicySaver(
        policy, batch_size=2, use_nest_path_signatures=False,
        input_fn_and_spec=(input_fn, _named((2,), tf.float32, 'raw_input')))
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(
          policy, batch_size=2, use_nest_path_signatures=False,
          input_fn_and_spec=(input_fn, _named((2,), tf.float32, 'raw input')))
    utils.assert_one_line_error(
        self, raised.exception, 'input_fn_and_spec[1]', "'raw input'")

  def testSpecNamesTensorFlowAccepts(self):
    # Names that are valid graph node names are fed with sanitized keys.
    names = ['0abc', 'a.b', 'c-d', 'e>f', '.g', 'h\\i']
    time_step_spec = ts.time_step_spec(
        {str(i): _named((), tf.float32, n) for i, n in enumerate(names)})
    policy = _ConstantPolicy(time_step_spec, _named((), tf.int32, 'act'))
    saver = policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    export_dir = self.create_tempdir().full_path
    tf.saved_model.save(saver.policy, export_dir, signatures=saver.signatures)
    loaded = tf.saved_model.load(export_dir)
    _, inputs = loaded.signatures['action'].structured_input_signature
    self.assertContainsSubset(
        ['arg_0abc', 'a_b', 'c_d', 'e_f', 'arg__g', 'h_i'], inputs.keys())

  def testMissingAndCollidingNamesErrorIsOneLine(self):
    time_step_spec = ts.time_step_spec(_named((2,), tf.float32, 'obs'))
    policy = _ConstantPolicy(
        time_step_spec,
        tf.TensorSpec((), tf.int32),
        policy_state_spec=_named((2,), tf.float32, 'obs'),
    )
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    utils.assert_one_line_error(
        self, raised.exception, 'action_spec has no name',
        "name 'obs' of policy_state_spec collides with "
        'time_step_spec/observation')

  def testInputFnMissingNamesErrorIsOneLine(self):
    input_spec = [_named((2,), tf.float32, 'a'), tf.TensorSpec((2,))]
    time_step_spec = ts.time_step_spec(_named((2,), tf.float32, 'obs'))
    policy = _ConstantPolicy(time_step_spec, _named((), tf.int32, 'act'))
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(
          policy, use_nest_path_signatures=False,
          input_fn_and_spec=(lambda x: x, input_spec))
    utils.assert_one_line_error(
        self, raised.exception, 'input_fn_and_spec', '[1]/1 has no name')

  @parameterized.named_parameters(
      ('TwoToThe31', 2**31, '2147483648'),
      ('NumpyTwoToThe31', np.int64(2**31), '2147483648'),
      ('TwoToThe63', 2**63, '9223372036854775808'),
  )
  def testBatchSizeTooLarge(self, batch_size, shown):
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(self._policy, batch_size=batch_size)
    utils.assert_one_line_error(
        self, raised.exception, 'batch_size', shown)
    self.assertIn('2147483647', str(raised.exception))

  def testLargestBatchSize(self):
    saver = policy_saver.PolicySaver(self._policy, batch_size=2**31 - 1)
    _, inputs = saver.signatures['action'].get_concrete_function(
    ).structured_input_signature
    for spec in inputs.values():
      self.assertEqual(2**31 - 1, spec.shape[0])

  def testMetadataKeyEmptyIsQuoted(self):
    with self.assertRaises(ValueError) as raised:
      policy_saver.PolicySaver(self._policy, metadata={'': tf.Variable(1)})
    utils.assert_one_line_error(self, raised.exception, 'metadata', "got ''")


def _upstream_policy_saver():
  """Upstream's `policy_saver.py`, from the installed distribution.

  Ours shadows `tf_agents.policies.policy_saver`, so upstream's file (next to
  `py_tf_eager_policy.py`, which this repository does not own) is imported
  under another name.

  Returns:
    The module.
  """
  path = os.path.join(os.path.dirname(py_tf_eager_policy.__file__),
                      'policy_saver.py')
  assert os.path.realpath(path) != os.path.realpath(policy_saver.__file__)
  spec = importlib.util.spec_from_file_location('upstream_policy_saver', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _is_typing_alias(value):
  return typing.get_origin(value) is not None or any(
      value is getattr(typing, name) for name in typing.__all__)


def _public_names(module):
  """Public names of `module` that are API: no modules or typing aliases."""
  names = set()
  for name, value in vars(module).items():
    if name.startswith('_'):
      continue
    if isinstance(value, python_types.ModuleType):
      continue
    # `from __future__ import ...`: compiler directives, not API.
    if isinstance(value, type(__future__.annotations)):
      continue
    if _is_typing_alias(value) and getattr(typing, name, None) is value:
      continue  # `from typing import Any, ...`.
    names.add(name)
  return names


_UPSTREAM_METHODS = ('__init__', 'save', 'save_checkpoint',
                     'register_function', 'register_concrete_function')
_UPSTREAM_FUNCTIONS = ('rename_spec_with_nest_paths', 'add_batch_dim',
                       'specs_from_collect_data_spec')


class UpstreamApiTest(tf.test.TestCase, parameterized.TestCase):
  """Ours replaces upstream's module everywhere, so it keeps upstream's API."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.upstream = _upstream_policy_saver()

  def testEveryPublicNameOfUpstreamExists(self):
    upstream_names = _public_names(self.upstream)
    # The test's filter keeps the API (and is not vacuous).
    self.assertContainsSubset(
        {'PolicySaver', 'POLICY_SPECS_PBTXT', 'InputFnType',
         'InputFnAndSpecType'} | set(_UPSTREAM_FUNCTIONS), upstream_names)
    self.assertNotIn('tf', upstream_names)
    self.assertNotIn('Optional', upstream_names)
    missing = sorted(n for n in upstream_names if not hasattr(policy_saver, n))
    self.assertEqual([], missing)
    self.assertEqual(self.upstream.POLICY_SPECS_PBTXT,
                     policy_saver.POLICY_SPECS_PBTXT)

  def testEveryPublicMemberOfUpstreamsPolicySaverExists(self):
    upstream_members = {
        n for n in vars(self.upstream.PolicySaver) if not n.startswith('_')}
    self.assertContainsSubset(['save', 'signatures', 'get_train_step'],
                              upstream_members)
    ours = policy_saver.PolicySaver
    missing = sorted(n for n in upstream_members if not hasattr(ours, n))
    self.assertEqual([], missing)
    for name in upstream_members:
      # Properties stay properties, methods stay methods.
      self.assertEqual(
          isinstance(vars(self.upstream.PolicySaver)[name], property),
          isinstance(inspect.getattr_static(ours, name), property), name)

  def _assert_keeps_signature(self, upstream_fn, our_fn, label):
    upstream_params = list(inspect.signature(upstream_fn).parameters.values())
    our_params = list(inspect.signature(our_fn).parameters.values())
    self.assertGreaterEqual(len(our_params), len(upstream_params), label)
    for theirs, ours in zip(upstream_params, our_params):
      self.assertEqual(theirs.name, ours.name, label)
      self.assertEqual(theirs.kind, ours.kind, '{}({})'.format(
          label, theirs.name))
      self.assertEqual(theirs.default, ours.default, '{}({})'.format(
          label, theirs.name))
    # Ours may only append parameters that callers need not pass.
    for added in our_params[len(upstream_params):]:
      self.assertIn(added.kind, (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 inspect.Parameter.KEYWORD_ONLY),
                    '{}({})'.format(label, added.name))
      self.assertIsNot(added.default, inspect.Parameter.empty,
                       '{}({})'.format(label, added.name))

  @parameterized.parameters(*_UPSTREAM_METHODS)
  def testPolicySaverMethodKeepsUpstreamsSignature(self, name):
    self._assert_keeps_signature(
        getattr(self.upstream.PolicySaver, name),
        getattr(policy_saver.PolicySaver, name), 'PolicySaver.' + name)

  @parameterized.parameters(*_UPSTREAM_FUNCTIONS)
  def testModuleFunctionKeepsUpstreamsSignature(self, name):
    self._assert_keeps_signature(
        getattr(self.upstream, name), getattr(policy_saver, name), name)

  def testSignatureCheckIsNotVacuous(self):
    def upstream(a, b=1, *, c=None):
      del a, b, c

    def renamed(a, d=1, *, c=None):
      del a, d, c

    def new_default(a, b=2, *, c=None):
      del a, b, c

    def appended_required(a, b=1, *, c=None, e):
      del a, b, c, e

    def appended_optional(a, b=1, *, c=None, e=0):
      del a, b, c, e

    for bad in (renamed, new_default, appended_required):
      with self.assertRaises(AssertionError, msg=bad.__name__):
        self._assert_keeps_signature(upstream, bad, bad.__name__)
    self._assert_keeps_signature(upstream, appended_optional, 'ok')


if __name__ == '__main__':
  tf.test.main()
