# coding=utf-8
"""Tests for policy_saver: export, reload and use of the export."""

import collections
import os
import threading
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import tf_policy
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts


def _flat_state_keys(signature, outputs=False):
  if outputs:
    return sorted(signature.structured_outputs)
  _, inputs = signature.structured_input_signature
  return sorted(inputs)


class _ErrorDistributionPolicy(tf_policy.TFPolicy):
  """Acts with constant actions; `distribution` raises `error`."""

  def __init__(self, error):
    super().__init__(utils.TIME_STEP_SPEC, utils.DISCRETE_ACTION_SPEC)
    self._error = error

  def _action(self, time_step, policy_state, seed):
    batch = tf.shape(time_step.observation)[0]
    return policy_step.PolicyStep(tf.ones([batch], tf.int32), policy_state)

  def _distribution(self, time_step, policy_state):
    if self._error is None:
      # Not a tensor nor a composite tensor: cannot leave a tf.function.
      return policy_step.PolicyStep(object(), policy_state)
    raise self._error


class PolicySaverTest(tf.test.TestCase, parameterized.TestCase):

  def _save_and_load(self, saver, name='export'):
    path = os.path.join(self.create_tempdir().full_path, name)
    saver.save(path)
    return path, tf.saved_model.load(path)

  @parameterized.named_parameters(
      ('StatelessDeterministic', utils.STATELESS_DETERMINISTIC),
      ('StatefulDeterministic', utils.STATEFUL_DETERMINISTIC),
      ('StatelessStochastic', utils.STATELESS_STOCHASTIC),
      ('StatefulStochastic', utils.STATEFUL_STOCHASTIC),
  )
  def testNestedActionLoop(self, kind):
    policy = utils.make_policy(kind)
    _, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    deterministic = 'deterministic' in kind
    batch = 2
    state = loaded.get_initial_state(batch_size=batch)
    expected_state = policy.get_initial_state(batch)
    utils.assert_nests_close(self, expected_state, state)
    for step in range(3):
      time_step = utils.time_steps(batch, step)
      out = loaded.action(time_step, state)
      if deterministic:
        expected = policy.action(time_step, expected_state)
        utils.assert_nests_close(self, expected.action, out.action)
        utils.assert_nests_close(self, expected.state, out.state, atol=1e-5)
        expected_state = expected.state
      else:
        self.assertEqual(out.action.shape, (batch, 2))
        self.assertAllInRange(out.action, -1.0, 1.0)
      tf.nest.assert_same_structure(policy.policy_state_spec, out.state)
      state = out.state
    if not tf.nest.flatten(policy.policy_state_spec):
      # A stateless export also accepts action(time_step).
      out = loaded.action(utils.time_steps(batch, 1))
      self.assertEqual(out.action.shape[0], batch)

  @parameterized.named_parameters(
      ('NestPathsStateless', True, utils.STATELESS_DETERMINISTIC),
      ('NestPathsStateful', True, utils.STATEFUL_DETERMINISTIC),
      ('SpecNamesStateful', False, utils.STATEFUL_DETERMINISTIC),
      ('SpecNamesStochasticStateful', False, utils.STATEFUL_STOCHASTIC),
  )
  def testFlatSignatureLoopFeedsStateBackUnchanged(self, nest_paths, kind):
    policy = utils.make_policy(kind)
    saver = policy_saver.PolicySaver(
        policy, use_nest_path_signatures=nest_paths
    )
    _, loaded = self._save_and_load(saver)
    action_fn = loaded.signatures['action']
    initial_state_fn = loaded.signatures['get_initial_state']
    state = initial_state_fn(batch_size=tf.constant(2))

    # One naming of the state: initial-state outputs, action inputs and
    # action outputs.
    state_names = sorted(state)
    self.assertLen(state_names, len(tf.nest.flatten(policy.policy_state_spec)))
    input_keys = set(_flat_state_keys(action_fn))
    output_keys = set(_flat_state_keys(action_fn, outputs=True))
    self.assertContainsSubset(state_names, input_keys)
    self.assertContainsSubset(state_names, output_keys)
    self.assertCountEqual(
        state_names,
        [s.name for s in tf.nest.flatten(saver.policy_state_spec)],
    )
    if nest_paths:
      expected_names = ['state_0', 'state_1'] if state_names else []
      self.assertEqual(expected_names, state_names)
      self.assertIn('arg_0_observation', input_keys)
      self.assertIn('action', output_keys)
    else:
      self.assertIn('obs', input_keys)
      self.assertIn('act', output_keys)
    action_key = 'action' if nest_paths else 'act'

    expected_state = policy.get_initial_state(2)
    for step in range(3):
      time_step = utils.time_steps(2, step)
      outputs = action_fn(**utils.flat_time_step(action_fn, time_step), **state)
      # Fed back unchanged: the state outputs are the next inputs.
      state = {k: v for k, v in outputs.items() if k in state}
      if 'deterministic' in kind:
        expected = policy.action(time_step, expected_state)
        self.assertAllEqual(expected.action, outputs[action_key])
        utils.assert_nests_close(
            self,
            tf.nest.flatten(expected.state),
            [state[s.name] for s in tf.nest.flatten(saver.policy_state_spec)],
            atol=1e-5,
        )
        expected_state = expected.state
      else:
        self.assertAllInRange(outputs[action_key], -1.0, 1.0)

  def testVariableBatchSize(self):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    _, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    _, inputs = loaded.signatures['action'].structured_input_signature
    for spec in inputs.values():
      self.assertIsNone(spec.shape[0])
    for batch in (1, 5):
      state = loaded.get_initial_state(batch)
      out = loaded.action(utils.time_steps(batch, 0), state)
      self.assertEqual(out.action.shape, (batch,))

  @parameterized.named_parameters(
      ('PythonInt', 2), ('NumpyInt64', np.int64(2)), ('NumpyInt32', np.int32(2))
  )
  def testFixedBatchSize(self, batch_size):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    _, loaded = self._save_and_load(
        policy_saver.PolicySaver(policy, batch_size=batch_size)
    )
    _, inputs = loaded.signatures['action'].structured_input_signature
    for spec in inputs.values():
      self.assertEqual(spec.shape[0], 2)
    # The flat get_initial_state takes no input, as upstream's.
    self.assertEqual(
        loaded.signatures['get_initial_state'].structured_input_signature,
        ((), {}),
    )
    expected = policy.get_initial_state(2)
    for state in (
        loaded.get_initial_state(),
        loaded.get_initial_state(2),
        loaded.get_initial_state(batch_size=2),
        loaded.get_initial_state(tf.constant(2)),
        # What SavedModelPyTFEagerPolicy passes for "no batch size".
        loaded.get_initial_state(0),
    ):
      utils.assert_nests_close(self, expected, state)
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError, 'fixed batch size of 2'
    ):
      loaded.get_initial_state(3)
    out = loaded.action(utils.time_steps(2, 0), loaded.get_initial_state())
    self.assertEqual(out.action.shape, (2,))
    # Fewer rows are padded to the fixed batch inside the graph (upstream's
    # SavedModelPyTFEagerPolicy warms up with one); more are refused.
    one = loaded.action(utils.time_steps(1, 0), policy.get_initial_state(1))
    self.assertAllEqual(
        policy.action(utils.time_steps(1, 0),
                      policy.get_initial_state(1)).action, one.action)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'at most 2'):
      loaded.action(utils.time_steps(3, 0), policy.get_initial_state(3))

  def testSeedMakesStochasticActionReproducibleAcrossReloads(self):
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    path, _ = self._save_and_load(policy_saver.PolicySaver(policy, seed=42))
    time_step = utils.time_steps(2, 0)
    runs = []
    for _ in range(2):
      loaded = tf.saved_model.load(path)
      runs.append([loaded.action(time_step).action.numpy() for _ in range(3)])
    self.assertAllClose(runs[0], runs[1])
    # Still stochastic: successive calls differ.
    self.assertNotAllClose(runs[0][0], runs[0][1])

  def testNoSeedDoesNotFixTheAction(self):
    # No global seed either, so nothing fixes the random ops.
    tf.random.set_seed(None)
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    path, _ = self._save_and_load(policy_saver.PolicySaver(policy, seed=None))
    time_step = utils.time_steps(2, 0)
    first = []
    for _ in range(2):
      loaded = tf.saved_model.load(path)
      first.append(loaded.action(time_step).action.numpy())
    self.assertNotAllClose(first[0], first[1])

  def testActorPolicyDistributionNetwork(self):
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    _, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    time_step = utils.time_steps(2, 0)
    expected = policy.distribution(time_step).action
    actual = loaded.distribution(time_step).action
    self.assertAllClose(expected.mean(), actual.mean())
    self.assertAllClose(expected.stddev(), actual.stddev())
    actual_no_state = loaded.distribution(time_step, ()).action
    self.assertAllClose(expected.mean(), actual_no_state.mean())

  def testStatefulDistribution(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    _, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    time_step = utils.time_steps(2, 0)
    state = policy.get_initial_state(2)
    expected = policy.distribution(time_step, state)
    actual = loaded.distribution(time_step, state)
    self.assertAllClose(expected.action.mean(), actual.action.mean())
    utils.assert_nests_close(self, expected.state, actual.state, atol=1e-5)

  def testIncludeDistributionFalseLeavesDistributionOut(self):
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    saver = policy_saver.PolicySaver(policy, include_distribution=False)
    _, loaded = self._save_and_load(saver)
    self.assertFalse(hasattr(loaded, 'distribution'))
    self.assertEqual(
        loaded.action(utils.time_steps(2, 0)).action.shape, (2, 2)
    )

  def testInputFnAndSpec(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    example_spec = tf.TensorSpec((4,), tf.float32, name='example')

    def input_fn(example):
      batch = tf.shape(example)[0]
      time_step = ts.TimeStep(
          step_type=tf.fill([batch], tf.constant(1, tf.int32)),
          reward=example[:, 0],
          discount=tf.ones([batch]),
          observation=example[:, 1:],
      )
      return time_step, ()

    saver = policy_saver.PolicySaver(
        policy, input_fn_and_spec=(input_fn, example_spec)
    )
    self.assertEqual(saver.action_input_spec, (example_spec,))
    _, loaded = self._save_and_load(saver)
    example = tf.constant(
        np.random.RandomState(0).uniform(-1, 1, (3, 4)), tf.float32
    )
    expected = policy.action(input_fn(example)[0]).action
    self.assertAllEqual(expected, loaded.action(example).action)
    flat = loaded.signatures['action']
    self.assertEqual(list(flat.structured_input_signature[1]), ['example'])
    self.assertAllEqual(expected, flat(example=example)['action'])
    # No time step to fill in: the observation-only signature is left out.
    self.assertNotIn('action_from_observation', loaded.signatures)
    # Deterministic distribution of the greedy policy.
    self.assertAllEqual(
        expected, loaded.distribution(example).action.mode()
    )

  def testInputFnChecksCompatibility(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)

    def bad_input_fn(example):
      time_step = ts.TimeStep(
          step_type=tf.zeros_like(example[:, 0], tf.int32),
          reward=example[:, 0],
          discount=example[:, 0],
          observation=example,  # 5 values, not 3.
      )
      return time_step, ()

    with self.assertRaisesRegex(ValueError, 'incompatible'):
      policy_saver.PolicySaver(
          policy,
          input_fn_and_spec=(bad_input_fn, tf.TensorSpec((5,), tf.float32)),
      )

  def testTrainStepAndMetadataValuesAtSaveTime(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(7, dtype=tf.int64)
    metadata = {
        'env_step': tf.Variable(3, dtype=tf.int64),
        'episodes': tf.Variable(5, dtype=tf.int64),  # Same dtype as env_step.
        'avg_return': tf.Variable(0.5, dtype=tf.float32),
    }
    saver = policy_saver.PolicySaver(
        policy, train_step=train_step, metadata=metadata
    )
    train_step.assign(11)
    metadata['env_step'].assign(30)
    self.assertEqual(11, saver.get_train_step())
    self.assertEqual(
        {'env_step': 30, 'episodes': 5, 'avg_return': 0.5},
        saver.get_metadata(),
    )
    path, loaded = self._save_and_load(saver)
    self.assertEqual(11, loaded.get_train_step().numpy())
    self.assertEqual(11, loaded.train_step.numpy())
    self.assertEqual(
        {'train_step': 11},
        {
            k: v.numpy()
            for k, v in loaded.signatures['get_train_step']().items()
        },
    )
    expected_metadata = {'env_step': 30, 'episodes': 5, 'avg_return': 0.5}
    nested = {k: v.numpy() for k, v in loaded.get_metadata().items()}
    flat = {
        k: v.numpy() for k, v in loaded.signatures['get_metadata']().items()
    }
    attribute = {k: v.numpy() for k, v in loaded.metadata.items()}
    self.assertEqual(expected_metadata, nested)
    self.assertEqual(expected_metadata, flat)
    self.assertEqual(expected_metadata, attribute)

    # Saving again exports the new values.
    train_step.assign(12)
    saver.save(path)
    reloaded = tf.saved_model.load(path)
    self.assertEqual(12, reloaded.get_train_step().numpy())

  def testDefaultTrainStepIsMinusOne(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    self.assertEqual(-1, saver.get_train_step())
    _, loaded = self._save_and_load(saver)
    self.assertEqual(-1, loaded.get_train_step().numpy())
    self.assertEqual({}, loaded.signatures['get_metadata']())

  def testModelVariables(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    _, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    self.assertLen(loaded.model_variables, len(policy.variables()))
    for expected, actual in zip(policy.variables(), loaded.model_variables):
      self.assertAllEqual(expected, actual)

  def testSaveCheckpointUpdatesLoadedExport(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    env_step = tf.Variable(10, dtype=tf.int64)
    saver = policy_saver.PolicySaver(
        policy, train_step=train_step, metadata={'env_step': env_step}
    )
    root = self.create_tempdir().full_path
    export = os.path.join(root, 'export')
    saver.save(export)

    rng = np.random.RandomState(1)
    for v in policy.variables():
      v.assign(rng.normal(size=v.shape).astype(v.dtype.as_numpy_dtype) * 3)
    train_step.assign(2)
    env_step.assign(20)
    checkpoint_dir = os.path.join(root, 'checkpoint')
    saver.save_checkpoint(checkpoint_dir)
    self.assertTrue(
        tf.io.gfile.exists(
            os.path.join(checkpoint_dir, 'variables', 'variables.index')
        )
    )

    time_step = utils.time_steps(8, 1)
    expected = policy.action(time_step).action
    loaded = tf.saved_model.load(export)
    self.assertFalse(
        any(
            np.array_equal(a, b)
            for a, b in zip(policy.variables(), loaded.model_variables)
        )
    )
    status = tf.train.Checkpoint(policy=loaded).read(
        os.path.join(checkpoint_dir, 'variables', 'variables')
    )
    status.assert_existing_objects_matched().expect_partial()
    self.assertAllEqual(expected, loaded.action(time_step).action)
    self.assertEqual(2, loaded.get_train_step().numpy())
    self.assertEqual(20, loaded.get_metadata()['env_step'].numpy())

  def testSaveCheckpointWithOptions(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    path = self.create_tempdir().full_path
    saver.save_checkpoint(
        path,
        options=tf.train.CheckpointOptions(
            experimental_io_device='/job:localhost'
        ),
    )
    self.assertNotEmpty(
        tf.io.gfile.glob(os.path.join(path, 'variables', 'variables.*'))
    )
    saver.save(
        os.path.join(path, 'export'),
        options=tf.saved_model.SaveOptions(
            experimental_io_device='/job:localhost'
        ),
    )
    self.assertTrue(
        tf.io.gfile.exists(os.path.join(path, 'export', 'saved_model.pb'))
    )

  def testSpecsRecoverableFromLoadedObject(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    path, loaded = self._save_and_load(policy_saver.PolicySaver(policy))
    with tf.io.gfile.GFile(
        os.path.join(path, policy_saver.POLICY_SPECS_PBTXT), 'r'
    ) as f:
      self.assertEqual(f.read(), loaded.get_policy_specs().numpy().decode())

    specs = policy_saver.specs_from_saved_model(loaded)
    expected = {
        'time_step_spec': policy.time_step_spec,
        'action_spec': policy.action_spec,
        'policy_state_spec': policy.policy_state_spec,
        'info_spec': policy.info_spec,
    }
    self.assertCountEqual(
        list(expected) + ['collect_data_spec'], list(specs)
    )
    for key, spec in expected.items():
      # Nest structure (up to namedtuple identity), names, shapes, dtypes
      # and bounds.
      tf.nest.assert_same_structure(spec, specs[key], check_types=False)
      for e, a in zip(tf.nest.flatten(spec), tf.nest.flatten(specs[key])):
        self.assertEqual(e.name, a.name, key)
        self.assertEqual(e.shape, a.shape, key)
        self.assertEqual(e.dtype, a.dtype, key)
        self.assertEqual(hasattr(e, 'minimum'), hasattr(a, 'minimum'), key)
        if hasattr(e, 'minimum'):
          self.assertAllEqual(e.minimum, a.minimum)
          self.assertAllEqual(e.maximum, a.maximum)
    self.assertEqual(
        policy.collect_data_spec._fields, specs['collect_data_spec']._fields
    )
    self.assertIsInstance(specs['time_step_spec'], ts.TimeStep)

  def testSpecsFromSavedModelRejectsOtherObjects(self):
    with self.assertRaisesRegex(ValueError, 'get_policy_specs'):
      policy_saver.specs_from_saved_model(tf.Module())

  def testSpecsFromCollectDataSpec(self):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    path, _ = self._save_and_load(policy_saver.PolicySaver(policy))
    specs = policy_saver.specs_from_collect_data_spec(
        tensor_spec.from_pbtxt_file(
            os.path.join(path, policy_saver.POLICY_SPECS_PBTXT)
        )
    )
    self.assertEqual(
        tensor_spec.to_nest_array_spec(policy.action_spec),
        specs['action_spec'],
    )
    self.assertIsInstance(specs['action_spec'], array_spec.BoundedArraySpec)
    self.assertEqual(
        tensor_spec.to_nest_array_spec(policy.policy_state_spec),
        specs['policy_state_spec'],
    )
    self.assertEqual(
        tensor_spec.to_nest_array_spec(policy.time_step_spec),
        specs['time_step_spec'],
    )

  def testPropertiesAndModuleHelpers(self):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    self.assertEqual('policy_specs.pbtxt', policy_saver.POLICY_SPECS_PBTXT)
    self.assertCountEqual(
        ['action', 'get_initial_state', 'get_train_step', 'get_metadata',
         'action_from_observation'],
        list(saver.signatures),
    )
    self.assertIsInstance(saver.policy, tf.Module)
    time_step_names, state_names = saver.action_input_spec
    self.assertEqual(
        ['0/step_type', '0/reward', '0/discount', '0/observation'],
        [s.name for s in tf.nest.flatten(time_step_names)],
    )
    self.assertEqual(
        ['state_0', 'state_1'], [s.name for s in tf.nest.flatten(state_names)]
    )
    self.assertEqual(state_names, saver.policy_state_spec)
    self.assertEqual(
        ['action', 'state_0', 'state_1'],
        [s.name for s in tf.nest.flatten(saver.policy_step_spec)],
    )
    self.assertIsNone(saver.distribution_export_error)

    spec = {
        'a': tensor_spec.BoundedTensorSpec((2,), tf.float32, 0, 1, name='x'),
        'b': [tf.TensorSpec((), tf.int32, name='x')],
    }
    renamed = policy_saver.rename_spec_with_nest_paths(spec)
    self.assertEqual(
        {'a': tf.TensorSpec((2,), tf.float32, name='a'),
         'b': [tf.TensorSpec((), tf.int32, name='b/0')]},
        renamed,
    )
    self.assertEqual(
        tf.TensorSpec((None, 5, 2), tf.float32, name='x'),
        policy_saver.add_batch_dim(spec['a'], [None, 5]),
    )

  def testSpecNamesMode(self):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy, use_nest_path_signatures=False)
    time_step_names, state_names = saver.action_input_spec
    self.assertEqual(
        ['step_type', 'reward', 'discount', 'obs'],
        [s.name for s in tf.nest.flatten(time_step_names)],
    )
    self.assertEqual(
        [s.name for s in tf.nest.flatten(policy.policy_state_spec)],
        [s.name for s in tf.nest.flatten(state_names)],
    )

  @parameterized.named_parameters(
      ('NotImplementedError', NotImplementedError('no distribution here')),
      ('TypeError', TypeError('bad type here')),
      ('ValueError', ValueError('bad value here')),
      ('RuntimeError', RuntimeError('broken here')),
      ('NotCompositeTensor', None),
  )
  def testDistributionExportErrorsFollowOneRule(self, error):
    policy = _ErrorDistributionPolicy(error)
    with self.assertLogs(level='WARNING') as logs:
      saver = policy_saver.PolicySaver(policy)
    self.assertTrue(any('could not be exported' in l for l in logs.output))
    exported_error = saver.distribution_export_error
    self.assertIsNotNone(exported_error)
    expected_type = type(error).__name__ if error else 'TypeError'
    self.assertEqual(expected_type, type(exported_error).__name__)
    _, loaded = self._save_and_load(saver)
    time_step = utils.time_steps(2, 0)
    self.assertAllEqual([1, 1], loaded.action(time_step).action)
    with self.assertRaisesRegex(
        tf.errors.InvalidArgumentError, expected_type
    ):
      loaded.distribution(time_step)
    if error is not None:
      with self.assertRaisesRegex(
          tf.errors.InvalidArgumentError, str(error)
      ):
        loaded.distribution(time_step, ())

  def testRegisterFunction(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    # pylint: disable-next=protected-access
    network = policy.wrapped_policy._q_network

    def q_values(observation):
      return network(observation)[0]

    saver.register_function(
        'q_values', q_values, utils.OBSERVATION_SPEC, outer_dims=(None,)
    )
    observation = tf.constant([[0.1, 0.2, 0.3], [-0.5, 0.0, 0.5]])
    expected = q_values(observation)

    value = tf.Variable(2.0)

    @tf.function
    def scaled(x):
      return x * value

    scaled.get_concrete_function(tf.TensorSpec([None], tf.float32))
    saver.register_concrete_function('scaled', scaled, assets={'v': value})

    _, loaded = self._save_and_load(saver)
    self.assertAllClose(expected, loaded.q_values(observation))
    self.assertAllClose([2.0, 4.0], loaded.scaled(tf.constant([1.0, 2.0])))

  @parameterized.named_parameters(
      ('Stateless', utils.STATELESS_DETERMINISTIC),
      ('Stateful', utils.STATEFUL_DETERMINISTIC),
  )
  def testPolicyIsTracedOncePerExportedFunction(self, kind):
    # `tf.saved_model.save` retraces the tf.functions it exports; upstream's
    # saver so traces the policy in its constructor and again in `save`.
    policy = utils.make_policy(kind)
    calls = collections.Counter()
    for name in ('action', 'distribution'):
      original = getattr(policy, name)

      def counted(*args, name=name, original=original, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)

      setattr(policy, name, counted)
    saver = policy_saver.PolicySaver(policy)
    self.assertEqual({'action': 1, 'distribution': 1}, dict(calls))
    path, loaded = self._save_and_load(saver)
    saver.save(path)
    self.assertEqual('variables_only', saver.last_save_kind)
    self.assertEqual({'action': 1, 'distribution': 1}, dict(calls))
    time_step = ts.TimeStep(
        step_type=tf.constant([1, 1]),
        reward=tf.zeros([2]),
        discount=tf.ones([2]),
        observation=tf.constant(
            np.random.RandomState(4).uniform(-1, 1, (2, 3)), tf.float32),
    )
    state = policy.get_initial_state(2)
    self.assertAllEqual(policy.action(time_step, state).action,
                        loaded.action(time_step, state).action)
    self.assertEqual(2, calls['action'])  # The eager call above.

  def testReferenceIsRecordedAfterTheSavedModelIsWritten(self):
    # Recording runs the exported function for the first time; after the
    # SavedModel is written, its runtime state does not add to the save's
    # peak memory.
    events = []
    original_record = export_verify.reference_io_bytes
    original_save = tf.saved_model.save

    def record(*args):
      events.append(('record', threading.current_thread()))
      return original_record(*args)

    def save(*args, **kwargs):
      events.append(('save_start', threading.current_thread()))
      original_save(*args, **kwargs)
      events.append(('save_end', threading.current_thread()))

    saver = policy_saver.PolicySaver(
        utils.make_policy(utils.STATEFUL_DETERMINISTIC))
    with mock.patch.object(export_verify, 'reference_io_bytes', record), \
        mock.patch.object(tf.saved_model, 'save', save):
      path = self._save_and_load(saver, name='full')[0]
      self.assertEqual('full', saver.last_save_kind)
      saver.save(path)
      self.assertEqual('variables_only', saver.last_save_kind)
    self.assertEqual(['save_start', 'save_end', 'record', 'record'],
                     [name for name, _ in events])
    for _, thread in events:
      self.assertIs(threading.current_thread(), thread)
    self.assertTrue(export_verify.verify(path).ok)

  def testReferenceErrorFailsTheSaveAndLeavesNothing(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    parent = self.create_tempdir().full_path
    path = os.path.join(parent, 'export')
    with mock.patch.object(
        export_verify, 'reference_io_bytes',
        side_effect=RuntimeError('reference failed')):
      with self.assertRaisesRegex(RuntimeError, 'reference failed'):
        saver.save(path)
    self.assertEqual([], os.listdir(parent))
    saver.save(path)
    self.assertTrue(export_verify.verify(path).ok)

  def testSaveErrorIsRaisedRatherThanTheReferenceError(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    saver = policy_saver.PolicySaver(policy)
    parent = self.create_tempdir().full_path
    with mock.patch.object(
        export_verify, 'reference_io_bytes',
        side_effect=RuntimeError('reference failed')), mock.patch.object(
            tf.saved_model, 'save',
            side_effect=tf.errors.ResourceExhaustedError(
                None, None, 'disk full')):
      with self.assertRaisesRegex(export_errors.ExportWriteError,
                                  'disk full'):
        saver.save(os.path.join(parent, 'export'))
    self.assertEqual([], os.listdir(parent))

  def testGraphBuildingInTF2Process(self):
    # As upstream allows: build and save inside a graph with a session.
    path = os.path.join(self.create_tempdir().full_path, 'graph_export')
    observation = np.random.RandomState(3).uniform(-1, 1, (2, 3))
    with tf.Graph().as_default():
      with tf.compat.v1.Session().as_default() as sess:
        policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
        train_step = tf.compat.v1.Variable(5, dtype=tf.int64)
        sess.run(tf.compat.v1.global_variables_initializer())
        saver = policy_saver.PolicySaver(
            policy, train_step=train_step, batch_size=None
        )
        self.assertEqual(5, sess.run(saver.get_train_step()))
        time_step = ts.TimeStep(
            step_type=tf.constant([1, 1]),
            reward=tf.zeros([2]),
            discount=tf.ones([2]),
            observation=tf.constant(observation, tf.float32),
        )
        expected = sess.run(policy.action(time_step).action)
        saver.save(path)
    loaded = tf.saved_model.load(path)
    time_step = ts.TimeStep(
        step_type=tf.constant([1, 1]),
        reward=tf.zeros([2]),
        discount=tf.ones([2]),
        observation=tf.constant(observation, tf.float32),
    )
    self.assertAllEqual(expected, loaded.action(time_step).action)
    self.assertEqual(5, loaded.get_train_step().numpy())


if __name__ == '__main__':
  tf.test.main()
