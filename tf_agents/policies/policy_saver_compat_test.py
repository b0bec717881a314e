# coding=utf-8
"""Format compatibility of exports written by policy_saver.

* Fresh processes that never import this repository (plain TensorFlow) use
  the nested `action` loop and the flat signatures.
* `include_distribution=False` exports load without tensorflow_probability.
* `seed` reproducibility across processes.
* Upstream tf-agents' `SavedModelPyTFEagerPolicy` and `policy_loader` (read
  from the installed distribution) load the exports and act the same.
* `policy_specs.pbtxt` is byte-identical to what upstream's saver writes.
"""

import importlib.util
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

# Runs the nested loop and the flat-signature loop of an export and prints
# both action sequences as JSON (in `testdata/`).
_LOOP_PROGRAM = 'export_loop_program.py'


def _steps_as_json(batch_size, count=3):
  steps = []
  for step in range(count):
    time_step = utils.time_steps(batch_size, step)
    steps.append(
        {k: np.asarray(v).tolist() for k, v in time_step._asdict().items()}
    )
  return steps


def _expected_actions(policy, batch_size, count=3):
  state = policy.get_initial_state(batch_size)
  actions = []
  for step in range(count):
    out = policy.action(utils.time_steps(batch_size, step), state)
    state = out.state
    actions.append(out.action.numpy())
  return actions


def _upstream_module(name):
  """Imports upstream's `tf_agents/policies/<name>.py` under another name."""
  upstream_dir = os.path.dirname(py_tf_eager_policy.__file__)
  spec = importlib.util.spec_from_file_location(
      'upstream_' + name, os.path.join(upstream_dir, name + '.py')
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class PolicySaverCompatTest(tf.test.TestCase, parameterized.TestCase):

  def _export(self, policy, name='export', **kwargs):
    path = os.path.join(self.create_tempdir().full_path, name)
    saver = policy_saver.PolicySaver(policy, **kwargs)
    saver.save(path)
    return path, saver

  @parameterized.named_parameters(
      ('NestPathsVariableBatch', True, None, False),
      ('SpecNamesVariableBatch', False, None, False),
      ('NestPathsFixedBatch', True, 2, False),
      ('WithDistributionNestPaths', True, None, True),
      ('WithDistributionSpecNamesFixedBatch', False, 2, True),
  )
  def testFreshProcessNestedAndFlatLoops(
      self, nest_paths, batch_size, include_distribution
  ):
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    metadata = {
        'env_step': tf.Variable(3, dtype=tf.int64),
        'episodes': tf.Variable(4, dtype=tf.int64),
    }
    path, _ = self._export(
        policy,
        batch_size=batch_size,
        use_nest_path_signatures=nest_paths,
        train_step=tf.Variable(9, dtype=tf.int64),
        metadata=metadata,
        include_distribution=include_distribution,
    )
    # With a fixed batch size, get_initial_state() is called without one.
    # Without `distribution` the child imports nothing but TensorFlow.
    result = utils.run_fresh_process(
        self,
        _LOOP_PROGRAM,
        [path, _steps_as_json(2), 2, batch_size is None, include_distribution],
        block_modules=(
            [] if include_distribution else ['tensorflow_probability']
        ),
    )
    expected = _expected_actions(policy, 2)
    self.assertAllEqual(expected, result['nested'])
    self.assertAllEqual(expected, result['flat'])
    self.assertEqual({'env_step': 3, 'episodes': 4}, result['metadata'])
    self.assertEqual(9, result['train_step'])
    self.assertEqual(include_distribution, result['has_distribution'])

  @parameterized.named_parameters(
      ('StatefulStochastic', utils.STATEFUL_STOCHASTIC),
      ('StatelessStochastic', utils.STATELESS_STOCHASTIC),
  )
  def testLoadsWithoutTensorflowProbability(self, kind):
    policy = utils.make_policy(kind)
    path, _ = self._export(policy, include_distribution=False, seed=1)
    result = utils.run_fresh_process(
        self,
        _LOOP_PROGRAM,
        [path, _steps_as_json(2), 2, True, False],
        block_modules=['tensorflow_probability'],
    )
    self.assertFalse(result['has_distribution'])
    actions = np.asarray(result['nested'])
    self.assertEqual((3, 2, 2), actions.shape)
    self.assertAllInRange(actions, -1.0, 1.0)
    self.assertAllInRange(np.asarray(result['flat']), -1.0, 1.0)

  def testSeedReproducibleAcrossProcesses(self):
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    seeded_path, _ = self._export(policy, name='seeded', seed=5)
    tf.random.set_seed(None)  # Nothing else fixes the unseeded export.
    unseeded_path, _ = self._export(
        utils.make_policy(utils.STATELESS_STOCHASTIC), name='unseeded'
    )
    steps = _steps_as_json(2)
    seeded = [
        utils.run_fresh_process(
            self, _LOOP_PROGRAM, [seeded_path, steps, 2, True, True]
        )
        for _ in range(2)
    ]
    self.assertAllClose(seeded[0]['nested'], seeded[1]['nested'])
    self.assertAllClose(seeded[0]['flat'], seeded[1]['flat'])
    unseeded = [
        utils.run_fresh_process(
            self, _LOOP_PROGRAM, [unseeded_path, steps, 2, True, True]
        )
        for _ in range(2)
    ]
    self.assertNotAllClose(unseeded[0]['nested'], unseeded[1]['nested'])

  @parameterized.named_parameters(
      ('Stateless', utils.STATELESS_DETERMINISTIC),
      ('Stateful', utils.STATEFUL_DETERMINISTIC),
  )
  def testUpstreamSavedModelPyTFEagerPolicyAndLoader(self, kind):
    policy = utils.make_policy(kind)
    path, _ = self._export(policy)
    upstream_loader = _upstream_module('policy_loader')
    for loaded in (
        py_tf_eager_policy.SavedModelPyTFEagerPolicy(
            path, load_specs_from_pbtxt=True
        ),
        upstream_loader.load(path),
    ):
      self.assertIsInstance(
          loaded, py_tf_eager_policy.SavedModelPyTFEagerPolicy
      )
      self.assertEqual(-1, loaded.get_train_step())
      state = loaded.get_initial_state(batch_size=1)
      expected_state = policy.get_initial_state(1)
      for step in range(3):
        time_step = utils.time_steps(1, step)
        out = loaded.action(
            tf.nest.map_structure(lambda t: t.numpy()[0], time_step), state
        )
        expected = policy.action(time_step, expected_state)
        self.assertAllEqual(expected.action.numpy()[0], out.action)
        state, expected_state = out.state, expected.state

  def testUpstreamSavedModelPyTFEagerPolicyWithFixedBatchSize(self):
    # Upstream's fixed-batch export fails here: its get_initial_state takes
    # no argument but SavedModelPyTFEagerPolicy passes one.
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    path, _ = self._export(policy, batch_size=1)
    loaded = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        path, load_specs_from_pbtxt=True
    )
    for state in (loaded.get_initial_state(), loaded.get_initial_state(1)):
      utils.assert_nests_close(self, policy.get_initial_state(1), state)
    time_step = utils.time_steps(1, 0)
    out = loaded.action(
        tf.nest.map_structure(lambda t: t.numpy()[0], time_step),
        loaded.get_initial_state(),
    )
    self.assertAllEqual(
        policy.action(time_step, policy.get_initial_state(1)).action[0],
        out.action,
    )

  @parameterized.named_parameters(
      ('Stateless', utils.STATELESS_DETERMINISTIC),
      ('Stateful', utils.STATEFUL_DETERMINISTIC),
  )
  def testUpstreamSavedModelPyTFEagerPolicyWithFixedBatchSizeAbove1(self, kind):
    # Its constructor warms up with a batch of 1: the nested `action` of a
    # batch-2 export takes it (padded inside the graph).
    policy = utils.make_policy(kind)
    path, _ = self._export(policy, batch_size=2)
    loaded = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        path, load_specs_from_pbtxt=True, batch_time_steps=False
    )
    state = loaded.get_initial_state(2)
    utils.assert_nests_close(self, policy.get_initial_state(2), state)
    expected_state = policy.get_initial_state(2)
    for step in range(3):
      time_step = utils.time_steps(2, step, seed=step)
      out = loaded.action(
          tf.nest.map_structure(lambda t: t.numpy(), time_step), state)
      expected = policy.action(time_step, expected_state)
      self.assertAllEqual(expected.action, out.action)
      state, expected_state = out.state, expected.state
    # The flat signature keeps the fixed batch; three rows are refused.
    raw = tf.saved_model.load(path)
    _, inputs = raw.signatures['action'].structured_input_signature
    for spec in inputs.values():
      self.assertEqual(2, spec.shape[0])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                'at most 2'):
      raw.action(utils.time_steps(3, 1),
                 tf.nest.map_structure(lambda t: tf.concat([t, t[:1]], 0),
                                       policy.get_initial_state(2)))

  def testUpstreamCheckpointUpdateAndMaterialize(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    env_step = tf.Variable(100, dtype=tf.int64)
    path, saver = self._export(
        policy, train_step=train_step, metadata={'env_step': env_step}
    )
    rng = np.random.RandomState(2)
    for v in policy.variables():
      v.assign(rng.normal(size=v.shape).astype(v.dtype.as_numpy_dtype) * 3)
    train_step.assign(2)
    env_step.assign(200)
    root = self.create_tempdir().full_path
    checkpoint = os.path.join(root, 'checkpoint_2')
    saver.save_checkpoint(checkpoint)
    time_step = utils.time_steps(6, 1)
    expected = policy.action(time_step).action.numpy()
    py_time_step = tf.nest.map_structure(lambda t: t.numpy(), time_step)

    upstream_loader = _upstream_module('policy_loader')
    updated = upstream_loader.load(path, checkpoint)
    self.assertEqual(2, updated.get_train_step())
    self.assertEqual(
        200, updated.get_metadata()['env_step'].numpy()
    )
    # No batching by the py policy: time steps are already batched.
    batched = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        path, load_specs_from_pbtxt=True, batch_time_steps=False
    )
    batched.update_from_checkpoint(checkpoint)
    self.assertAllEqual(expected, batched.action(py_time_step).action)

    # Upstream's materialize + metadata fails to load with upstream's
    # checkpoint; ours lists the metadata where the SavedModel expects it.
    materialized = os.path.join(root, 'materialized')
    upstream_loader.materialize_saved_model(path, checkpoint, materialized)
    loaded = tf.saved_model.load(materialized)
    self.assertEqual(200, loaded.get_metadata()['env_step'].numpy())
    self.assertEqual(2, loaded.get_train_step().numpy())
    self.assertAllEqual(expected, loaded.action(time_step).action)

  def testPolicySpecsPbtxtWrittenAsUpstream(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    ours, _ = self._export(policy, name='ours')
    upstream_saver = _upstream_module('policy_saver')
    theirs = os.path.join(self.create_tempdir().full_path, 'theirs')
    upstream_saver.PolicySaver(policy).save(theirs)
    read = lambda d: tf.io.gfile.GFile(  # pylint: disable=g-long-lambda
        os.path.join(d, policy_saver.POLICY_SPECS_PBTXT), 'rb'
    ).read()
    self.assertEqual(read(theirs), read(ours))
    self.assertFalse(
        tf.io.gfile.exists(
            os.path.join(ours, policy_saver.POLICY_SPECS_PBTXT + '_temp')
        )
    )
    self.assertIsInstance(
        policy_saver.specs_from_saved_model(tf.saved_model.load(ours))[
            'time_step_spec'
        ],
        ts.TimeStep,
    )


if __name__ == '__main__':
  tf.test.main()
