# coding=utf-8
"""Tests for export_equivalence: converted models recorded at save time."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_equivalence
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils


def _version_dir(export_dir):
  return export_publish.current_version(export_dir).path


class ExportEquivalenceTest(tf.test.TestCase, parameterized.TestCase):

  def _save(self, kind, formats=export_equivalence.FORMATS):
    policy = test_utils.make_policy(kind)
    saver = policy_saver.PolicySaver(
        policy, batch_size=None, converted_formats=formats)
    export_dir = os.path.join(self.create_tempdir().full_path, 'export')
    saver.save(export_dir)
    return policy, saver, export_dir

  def testDeterministicMlpIsBitExactInEveryFormat(self):
    _, _, export_dir = self._save(test_utils.STATELESS_DETERMINISTIC)
    version = _version_dir(export_dir)
    record = export_equivalence.read(version)
    self.assertEqual(sorted(record.formats), sorted(export_equivalence.FORMATS))
    for name, entry in record.formats.items():
      self.assertEqual(entry.notion, export_equivalence.BIT_EXACT, name)
      self.assertTrue(entry.equivalent, entry.detail)
      self.assertEqual(entry.max_abs_deviation, 0.0)
      self.assertTrue(os.path.isfile(os.path.join(version, entry.file)))
    # The models and the record are covered by the integrity manifest.
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertTrue(report.ok, report)
    manifest = export_publish.read_manifest(version)
    self.assertIn(export_equivalence.RECORD_FILE, manifest['files'])
    self.assertIn(export_equivalence.model_file('tflite'), manifest['files'])

  def testRecurrentPolicyHasSameActionsAndBoundedState(self):
    _, _, export_dir = self._save(test_utils.STATEFUL_DETERMINISTIC)
    record = export_equivalence.read(_version_dir(export_dir))
    for name, entry in record.formats.items():
      self.assertEqual(entry.notion,
                       export_equivalence.SAME_ACTIONS_STATE_BOUNDED, name)
      self.assertTrue(entry.equivalent, entry.detail)
      self.assertLessEqual(entry.max_abs_deviation,
                           export_equivalence.STATE_TOLERANCE)

  def testStochasticPolicyHasSameDistribution(self):
    # Converted with its noise as inputs (export_noise; more in its test).
    _, _, export_dir = self._save(test_utils.STATELESS_STOCHASTIC, ('tflite',))
    record = export_equivalence.read(_version_dir(export_dir))
    entry = record.formats['tflite']
    self.assertEqual(entry.notion, export_equivalence.SAME_DISTRIBUTION)
    self.assertTrue(record.equivalent('tflite'), entry.detail)
    self.assertEqual([n.name for n in entry.noise()], ['noise_action'])
    # Verification checks it again and agrees.
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertTrue(report.ok, report)

  def testStochasticPolicyWithoutNoiseModelIsNotChecked(self):
    _, saver, export_dir = self._save(test_utils.STATELESS_STOCHASTIC,
                                      ('tflite',))
    loaded = tf.saved_model.load(_version_dir(export_dir))
    # The action with its random ops (select TF ops): no sample-wise check.
    model, _ = export_equivalence.convert(loaded, 'tflite')
    entry = export_equivalence.check(loaded, model, 'tflite')
    self.assertEqual(entry.notion, export_equivalence.NOT_CHECKED)
    self.assertFalse(entry.equivalent)
    del saver

  def testCheckFindsAModelWithOtherWeights(self):
    policy, saver, export_dir = self._save(
        test_utils.STATELESS_DETERMINISTIC, ('tflite',))
    loaded = tf.saved_model.load(_version_dir(export_dir))
    stale, _ = export_equivalence.convert(loaded, 'tflite')
    for variable in loaded.model_variables:
      variable.assign(-3.0 * variable)  # Moves the greedy actions.
    entry = export_equivalence.check(loaded, stale, 'tflite')
    self.assertFalse(entry.equivalent)
    self.assertGreater(entry.max_abs_deviation, 0.0)
    del policy, saver

  def testCheckpointCarriesModelsAndNamesItsOwnWeights(self):
    policy, saver, export_dir = self._save(
        test_utils.STATELESS_DETERMINISTIC, ('tflite',))
    first = export_equivalence.read(_version_dir(export_dir))
    for variable in policy.variables():
      variable.assign(variable * 2.0 + 1.0)
    saver.save_checkpoint(export_dir)
    version = _version_dir(export_dir)
    record = export_equivalence.read(version)
    self.assertEqual(record, first)
    self.assertNotEqual(record.weights_digest,
                        export_equivalence.weights_digest(version))
    loaded = tf.saved_model.load(version)
    values = export_equivalence.model_weights(version)
    self.assertLen(values, len(loaded.model_variables))
    for value, variable in zip(values, loaded.model_variables):
      self.assertAllEqual(value, variable.numpy())

  def testVariablesOnlyResaveKeepsTheModels(self):
    policy, saver, export_dir = self._save(
        test_utils.STATELESS_DETERMINISTIC, ('tflite',))
    for variable in policy.variables():
      variable.assign(variable - 1.0)
    saver.save(export_dir)
    version = _version_dir(export_dir)
    self.assertIsNotNone(export_equivalence.read(version))
    self.assertTrue(os.path.isfile(
        os.path.join(version, export_equivalence.model_file('tflite'))))

  def testDefaultSavesNoConvertedModels(self):
    policy = test_utils.make_policy(test_utils.STATELESS_DETERMINISTIC)
    export_dir = os.path.join(self.create_tempdir().full_path, 'export')
    policy_saver.PolicySaver(policy, batch_size=None).save(export_dir)
    version = _version_dir(export_dir)
    self.assertIsNone(export_equivalence.read(version))
    self.assertFalse(os.path.exists(
        os.path.join(version, export_equivalence.DIRECTORY)))

  @parameterized.parameters(('tflite',), (['tflite', 'coreml'],))
  def testRejectsUnknownFormats(self, formats):
    policy = test_utils.make_policy(test_utils.STATELESS_DETERMINISTIC)
    with self.assertRaisesRegex(ValueError, 'converted_formats'):
      policy_saver.PolicySaver(policy, converted_formats=formats)

  def testModelWeightsAreTheModelVariablesInOrder(self):
    _, saver, export_dir = self._save(
        test_utils.STATEFUL_DETERMINISTIC, ('onnx',))
    values = export_equivalence.model_weights(_version_dir(export_dir))
    expected = saver.policy.model_variables
    self.assertLen(values, len(expected))
    for value, variable in zip(values, expected):
      np.testing.assert_array_equal(value, variable.numpy())

  def testVerifyChecksTheRecordAgain(self):
    policy, saver, export_dir = self._save(
        test_utils.STATELESS_DETERMINISTIC, ('tflite',))
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertTrue(report.ok, report)
    self.assertEqual('agrees', report.converted['tflite']['check'])
    # A checkpoint carries the models of the last full save.
    for variable in policy.variables():
      variable.assign(-2.0 * variable)
    saver.save_checkpoint(export_dir)
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertTrue(report.ok, report)
    self.assertEqual('other weights', report.converted['tflite']['check'])

  def testVerifyFindsAModelThatNoLongerMatchesItsRecord(self):
    _, _, export_dir = self._save(
        test_utils.STATELESS_DETERMINISTIC, ('tflite',))
    version = _version_dir(export_dir)
    loaded = tf.saved_model.load(version)
    for variable in loaded.model_variables:
      variable.assign(-3.0 * variable)
    other, _ = export_equivalence.convert(loaded, 'tflite')
    # Without the manifest, which would flag the new file first.
    test_utils.remove_manifest(export_dir)
    version = _version_dir(export_dir)
    with open(os.path.join(version, export_equivalence.model_file('tflite')),
              'wb') as f:
      f.write(other)
    report = export_verify.verify(version, fresh_process=False)
    self.assertEqual('disagrees', report.converted['tflite']['check'])
    self.assertFalse(report.ok)
    self.assertIn('recorded bit_exact as equivalent', report.problems[-1])


if __name__ == '__main__':
  tf.test.main()
