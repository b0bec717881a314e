# coding=utf-8
"""Tests for tf_agents.policies.policy_loader."""

import inspect
import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.networks import q_network
from tf_agents.policies import export_errors
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_loader
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import q_policy
from tf_agents.policies import saved_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

_OBS_SPEC = tensor_spec.TensorSpec([4], tf.float32, 'obs')
_ACTION_SPEC = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 2, 'act')
_TIME_STEP_SPEC = ts.time_step_spec(_OBS_SPEC)


def _set_weights(network, seed):
  rng = np.random.RandomState(seed)
  for v in network.variables:
    if len(v.shape) > 1:
      value = rng.uniform(-1.0, 1.0, v.shape)
    else:
      value = np.zeros(v.shape)
    v.assign(value.astype(np.float32))


def _make_policy():
  network = q_network.QNetwork(_OBS_SPEC, _ACTION_SPEC, fc_layer_params=(8,))
  network.create_variables()
  _set_weights(network, 0)
  policy = greedy_policy.GreedyPolicy(
      q_policy.QPolicy(_TIME_STEP_SPEC, _ACTION_SPEC, q_network=network))
  return policy, network


def _time_steps(batch_size=32):
  rng = np.random.RandomState(1)
  return ts.TimeStep(
      step_type=rng.randint(0, 3, size=(batch_size,)).astype(np.int32),
      reward=np.zeros((batch_size,), np.float32),
      discount=np.ones((batch_size,), np.float32),
      observation=rng.uniform(-2, 2, size=(batch_size, 4)).astype(np.float32),
  )


_CHECKPOINT_CASES = (
    ('missing_path', 'missing_path'),
    ('not_a_checkpoint', 'not_a_checkpoint'),
    ('incomplete', 'incomplete'),
    ('truncated_variables', 'truncated_variables'),
    ('flipped_variables', 'flipped_variables'),
    ('flipped_variables_with_manifest', 'flipped_variables_with_manifest'),
    ('manifest_mismatch', 'manifest_mismatch'),
)


def _actions(policy, time_step):
  return py_tf_eager_policy.PyTFEagerPolicy(
      policy, batch_time_steps=False).action(time_step).action


class PolicyLoaderTest(tf.test.TestCase, parameterized.TestCase):

  def _base(self, location):
    if location == 'ram':
      return 'ram://policy_loader_test/{}'.format(self.id())
    return self.get_temp_dir()

  def _export(self, location, **saver_kwargs):
    """Saves a policy with metadata.

    Args:
      location: 'local' or 'ram'.
      **saver_kwargs: More `PolicySaver` arguments.

    Returns:
      `(path, saver, policy, network, (train_step, metadata))`.
    """
    policy, network = _make_policy()
    train_step = tf.Variable(1, dtype=tf.int64)
    metadata = {
        'env_steps': tf.Variable(100, dtype=tf.int64),
        'episodes': tf.Variable(3, dtype=tf.int64),
    }
    saver = policy_saver.PolicySaver(
        policy, train_step=train_step, metadata=metadata, **saver_kwargs)
    path = os.path.join(self._base(location), 'policy')
    saver.save(path)
    return path, saver, policy, network, (train_step, metadata)

  def test_public_names_match_upstream(self):
    self.assertEqual(
        list(inspect.signature(policy_loader.load).parameters)[:2],
        ['saved_model_path', 'checkpoint_path'])
    self.assertIsNone(
        inspect.signature(policy_loader.load).parameters['checkpoint_path']
        .default)
    self.assertEqual(
        list(inspect.signature(
            policy_loader.materialize_saved_model).parameters),
        ['saved_model_path', 'checkpoint_path', 'output_path'])
    self.assertIs(policy_loader.policy_saver, policy_saver)
    self.assertIs(policy_loader.py_tf_eager_policy, py_tf_eager_policy)

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_load(self, location):
    path, saver, policy, network, (train_step, _) = self._export(location)
    time_step = _time_steps()
    loaded = policy_loader.load(path)
    self.assertIsInstance(loaded, saved_policy.SavedPolicy)
    # The one default of `SavedPolicy` and `load` ('auto').
    self.assertEqual(saved_policy.DEFAULT_BACKEND, 'auto')
    self.assertEqual(
        inspect.signature(policy_loader.load).parameters['backend'].default,
        inspect.signature(saved_policy.SavedPolicy).parameters[
            'backend'].default)
    self.assertEqual(saved_policy.SavedPolicy(path).backend, loaded.backend)
    self.assertEqual(loaded.get_train_step(), 1)
    self.assertAllEqual(loaded.action(time_step).action,
                        _actions(policy, time_step))

    _set_weights(network, 5)
    train_step.assign(7)
    checkpoint = os.path.join(self._base(location), 'policy_checkpoint_07')
    saver.save_checkpoint(checkpoint)
    updated = policy_loader.load(path, checkpoint, backend='auto')
    self.assertEqual(updated.get_train_step(), 7)
    self.assertEqual(
        updated.get_train_step_from_last_restored_checkpoint_path(), 7)
    self.assertAllEqual(updated.action(time_step).action,
                        _actions(policy, time_step))

  @parameterized.named_parameters(
      ('local_saver_checkpoint', 'local', 'saver'),
      ('local_upstream_layout', 'local', 'upstream'),
      ('ram_saver_checkpoint', 'ram', 'saver'),
      ('ram_upstream_layout', 'ram', 'upstream'))
  def test_materialize_with_metadata(self, location, layout):
    path, saver, policy, network, (train_step, metadata) = self._export(
        location)
    # Files added after the save are not in the integrity manifest.
    test_utils.remove_manifest(path)
    tf.io.gfile.makedirs(os.path.join(path, 'assets', 'extra'))
    with tf.io.gfile.GFile(
        os.path.join(path, 'assets', 'extra', 'notes.txt'), 'w') as f:
      f.write('kept')
    with tf.io.gfile.GFile(
        os.path.join(path, 'assets', saved_policy.TFLITE_MODEL_FILENAME),
        'wb') as f:
      f.write(b'stale')
    _set_weights(network, 6)
    train_step.assign(9)
    metadata['env_steps'].assign(900)
    metadata['episodes'].assign(30)
    checkpoint = os.path.join(self._base(location), 'checkpoint_9')
    if layout == 'saver':
      saver.save_checkpoint(checkpoint)
    else:
      # The layout upstream's `save_checkpoint` writes: the metadata only
      # under `policy`, so copying it next to the graph does not load.
      tf.train.Checkpoint(
          policy=saver.policy,
          model_variables=saver.policy.model_variables,
          train_step=train_step,
      ).write(os.path.join(checkpoint, 'variables', 'variables'))
    output = os.path.join(self._base(location), 'materialized')
    policy_loader.materialize_saved_model(path, checkpoint, output)

    raw = tf.saved_model.load(output)
    self.assertEqual(
        {k: int(v) for k, v in raw.get_metadata().items()},
        {'env_steps': 900, 'episodes': 30})
    self.assertEqual(int(raw.get_train_step()), 9)
    loaded = policy_loader.load(output)
    self.assertEqual(
        {k: int(v) for k, v in loaded.get_metadata().items()},
        {'env_steps': 900, 'episodes': 30})
    self.assertEqual(loaded.get_train_step(), 9)
    time_step = _time_steps()
    self.assertAllEqual(loaded.action(time_step).action,
                        _actions(policy, time_step))
    with tf.io.gfile.GFile(
        os.path.join(output, 'assets', 'extra', 'notes.txt')) as f:
      self.assertEqual(f.read(), 'kept')
    self.assertFalse(tf.io.gfile.exists(
        os.path.join(output, 'assets', saved_policy.TFLITE_MODEL_FILENAME)))
    for derived in ('fingerprint.pb', 'export_manifest.json',
                    'export_complete', 'reference_io.npz'):
      self.assertFalse(
          tf.io.gfile.exists(os.path.join(output, derived)), msg=derived)
    self.assertTrue(tf.io.gfile.exists(
        os.path.join(output, policy_saver.POLICY_SPECS_PBTXT)))

  @parameterized.named_parameters(*test_utils.EXPORT_DAMAGE_CASES)
  def test_load_bad_export(self, case):
    path, saver, _, _, _ = self._export('local')
    checkpoint = os.path.join(self.get_temp_dir(), 'checkpoint')
    saver.save_checkpoint(checkpoint)
    error, filename = test_utils.damage_export(case, path)
    with self.assertRaises(error) as context:
      policy_loader.load(path)
    test_utils.assert_one_line_error(
        self, context.exception, path, filename)
    output = os.path.join(self.get_temp_dir(), 'materialized')
    with self.assertRaises(error) as context:
      policy_loader.materialize_saved_model(path, checkpoint, output)
    test_utils.assert_one_line_error(
        self, context.exception, path, filename)

  @parameterized.named_parameters(*_CHECKPOINT_CASES)
  def test_load_bad_checkpoint(self, case):
    path, saver, _, _, _ = self._export('local')
    checkpoint = os.path.join(self.get_temp_dir(), 'checkpoint')
    saver.save_checkpoint(checkpoint)
    error, filename = test_utils.damage_export(case, checkpoint)
    with self.assertRaises(error) as context:
      policy_loader.load(path, checkpoint)
    test_utils.assert_one_line_error(
        self, context.exception, checkpoint, filename)
    output = os.path.join(self.get_temp_dir(), 'materialized')
    with self.assertRaises(error) as context:
      policy_loader.materialize_saved_model(path, checkpoint, output)
    test_utils.assert_one_line_error(
        self, context.exception, checkpoint, filename)

  def test_load_export_without_manifest(self):
    path, saver, policy, network, _ = self._export('ram')
    test_utils.remove_manifest(path)
    time_step = _time_steps()
    self.assertAllEqual(policy_loader.load(path).action(time_step).action,
                        _actions(policy, time_step))
    _set_weights(network, 3)
    checkpoint = os.path.join(self._base('ram'), 'checkpoint_3')
    saver.save_checkpoint(checkpoint)
    test_utils.remove_manifest(checkpoint)
    self.assertAllEqual(
        policy_loader.load(path, checkpoint).action(time_step).action,
        _actions(policy, time_step))

  @parameterized.named_parameters(
      ('wrong_dtype', 'step_type', np.zeros((32,), np.float32),
       r'^time_step/step_type does not match the policy spec: expected shape '
       r'\(\) .*dtype int32; got shape \(32,\) and dtype float32\.$'),
      ('wrong_shape', 'observation', np.zeros((32, 5), np.float32),
       r'^time_step/observation does not match the policy spec: expected '
       r'shape \(4,\) .*dtype float32; got shape \(32, 5\) and dtype '
       r'float32\.$'),
  )
  def test_load_time_step_mismatch(self, field, value, regex):
    path, _, _, _, _ = self._export('local')
    loaded = policy_loader.load(path)
    with self.assertRaisesRegex(
        export_errors.TimeStepMismatchError, regex) as context:
      loaded.action(_time_steps()._replace(**{field: value}))
    self.assertNotIn('\n', str(context.exception))

  def test_materialize_refuses_existing_output(self):
    path, saver, _, _, _ = self._export('local')
    checkpoint = os.path.join(self.get_temp_dir(), 'checkpoint')
    saver.save_checkpoint(checkpoint)
    output = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, 'already exists'):
      policy_loader.materialize_saved_model(path, checkpoint, output)

  def test_materialized_export_loads_in_fresh_process(self):
    path, saver, _, network, (_, metadata) = self._export(
        'local', include_distribution=False)
    _set_weights(network, 7)
    metadata['episodes'].assign(42)
    checkpoint = os.path.join(self.get_temp_dir(), 'checkpoint')
    saver.save_checkpoint(checkpoint)
    output = os.path.join(self.get_temp_dir(), 'materialized')
    policy_loader.materialize_saved_model(path, checkpoint, output)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [sys.executable, test_utils.testdata_path(
            'materialized_export_child.py'), output],
        cwd=self.create_tempdir().full_path,
        env=env,
        capture_output=True,
        text=True,
        check=False)
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn('fresh process ok', result.stdout)


if __name__ == '__main__':
  tf.test.main()
