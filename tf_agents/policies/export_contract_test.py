# coding=utf-8
"""Tests of export_contract: the writer's names are the readers' names."""

import os

from absl.testing import parameterized
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import saved_policy
from tf_agents.utils import nest_utils

_CASES = tuple(
    ('{}_{}'.format(kind, 'nest_paths' if nest_paths else 'legacy'), kind,
     nest_paths)
    for kind in test_utils.ALL_KINDS for nest_paths in (True, False))


def _leaves(spec):
  return nest_utils.flatten_with_joined_paths(spec)


def _matches(candidates, keys):
  """The keys some candidate names (either spelling of an input key)."""
  wanted = {export_contract.signature_key(c) for c in candidates}
  return [k for k in keys if export_contract.signature_key(k) in wanted]


class ExportContractTest(tf.test.TestCase, parameterized.TestCase):

  def _export(self, kind, nest_paths, **kwargs):
    policy = test_utils.make_policy(kind)
    path = os.path.join(self.create_tempdir().full_path, 'policy')
    saver = policy_saver.PolicySaver(
        policy, batch_size=None, use_nest_path_signatures=nest_paths,
        train_step=tf.Variable(3, dtype=tf.int64), **kwargs)
    saver.save(path)
    return policy, saver, path

  def _signatures(self, path):
    proto, _ = export_verify.check_current(path)
    return proto.meta_graphs[0].signature_def

  def _assert_one_to_one(self, fields, keys, what):
    """Every field names exactly one key and every key is named once."""
    named = []
    for where, candidates in fields:
      found = _matches(candidates, keys)
      self.assertLen(found, 1, '{}: {} -> {} of {}'.format(
          what, where, found, sorted(keys)))
      named.extend(found)
    self.assertCountEqual(keys, named, what)

  @parameterized.named_parameters(*_CASES)
  def test_every_signature_key_is_one_the_readers_look_for(
      self, kind, nest_paths):
    policy, _, path = self._export(kind, nest_paths)
    signatures = self._signatures(path)
    self.assertContainsSubset(export_contract.REQUIRED_SIGNATURES,
                              set(signatures))
    time_step = [(p, export_contract.time_step_names(p, s.name))
                 for p, s in _leaves(policy.time_step_spec)]
    state = [(p, export_contract.state_names(p, s.name))
             for p, s in _leaves(policy.policy_state_spec)]
    action = [(p, export_contract.output_names(
        export_contract.ACTION_PREFIX, p, s.name))
              for p, s in _leaves(policy.action_spec)]
    info = [(p, export_contract.output_names(
        export_contract.INFO_PREFIX, p, s.name))
            for p, s in _leaves(policy.info_spec)]
    action_signature = signatures[export_contract.ACTION]
    self._assert_one_to_one(time_step + state, list(action_signature.inputs),
                            'action inputs')
    self._assert_one_to_one(action + state + info,
                            list(action_signature.outputs), 'action outputs')
    initial = signatures[export_contract.GET_INITIAL_STATE]
    self.assertEqual([export_contract.BATCH_SIZE_KEY], list(initial.inputs))
    self._assert_one_to_one(state, list(initial.outputs),
                            'get_initial_state outputs')
    self.assertEqual(
        [export_contract.TRAIN_STEP_KEY],
        list(signatures[export_contract.GET_TRAIN_STEP].outputs))
    if nest_paths and state:
      # A state output feeds back unchanged: the same key both ways.
      for p, _ in _leaves(policy.policy_state_spec):
        self.assertIn(export_contract.state_key(p), action_signature.inputs)
        self.assertIn(export_contract.state_key(p), action_signature.outputs)
    # The reader resolves the same keys.
    loaded = saved_policy.SavedPolicy(path, backend='saved_model')
    self.assertCountEqual(
        [export_contract.signature_key(k) for k in action_signature.inputs],
        loaded._input_keys)  # pylint: disable=protected-access
    self.assertCountEqual(action_signature.outputs, loaded._output_keys)  # pylint: disable=protected-access

  @parameterized.named_parameters(
      ('stateless', test_utils.STATELESS_DETERMINISTIC),
      ('stateful', test_utils.STATEFUL_DETERMINISTIC))
  def test_files_specs_and_checkpoint_keys(self, kind):
    policy, saver, path = self._export(kind, True)
    version = export_publish.current_version(path).path
    for name in (export_contract.SAVED_MODEL_FILENAME,
                 export_contract.POLICY_SPECS_PBTXT,
                 export_contract.FINGERPRINT_FILENAME,
                 export_contract.REFERENCE_IO,
                 export_contract.VARIABLES_INDEX,
                 export_contract.VARIABLES_DATA):
      self.assertTrue(os.path.exists(os.path.join(version, name)), name)
    self.assertEqual(export_contract.POLICY_SPECS_PBTXT,
                     policy_saver.POLICY_SPECS_PBTXT)
    specs = export_contract.read_specs_pbtxt(version)
    self.assertCountEqual(export_contract.SPEC_KEYS, specs)
    for key, spec in (('time_step_spec', policy.time_step_spec),
                      ('action_spec', policy.action_spec),
                      ('policy_state_spec', policy.policy_state_spec),
                      ('info_spec', policy.info_spec)):
      tf.nest.assert_same_structure(spec, specs[key])
      for want, got in zip(tf.nest.flatten(spec), tf.nest.flatten(specs[key])):
        self.assertEqual(want.shape, got.shape, key)
        self.assertEqual(want.dtype, got.dtype, key)
    checkpoint = os.path.join(self.create_tempdir().full_path, 'checkpoint')
    saver.save_checkpoint(checkpoint)
    count = len(policy.variables())
    for directory in (version, export_publish.current_version(checkpoint).path):
      reader = tf.compat.v1.train.NewCheckpointReader(
          export_contract.variables_prefix(directory))
      keys = set(reader.get_variable_to_shape_map())
      for index in range(count):
        self.assertIn(export_contract.MODEL_VARIABLE_KEY.format(index), keys)
      self.assertNotIn(export_contract.MODEL_VARIABLE_KEY.format(count), keys)
      self.assertIn(export_contract.TRAIN_STEP_CHECKPOINT_KEY, keys)
      self.assertEqual(3, reader.get_tensor(
          export_contract.TRAIN_STEP_CHECKPOINT_KEY))

  @parameterized.parameters(
      ('0/step_type', 'arg_0_step_type'), ('state', 'state'),
      ('state/0', 'state_0'), ('observation/a.b', 'observation_a_b'),
      ('_x', 'arg__x'))
  def test_signature_key(self, name, key):
    self.assertEqual(key, export_contract.signature_key(name))


if __name__ == '__main__':
  tf.test.main()
