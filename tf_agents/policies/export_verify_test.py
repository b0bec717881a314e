# coding=utf-8
"""Tests for export_verify and the `saved_policy_cli verify` command."""

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import saved_policy_cli


def _drop_manifest(export_dir):
  """Removes the manifest and versions, as a hand-edited export lacks them."""
  utils.remove_manifest(export_dir)


def _change_reference_outputs(export_dir):
  """Rewrites reference_io.npz with every recorded output changed."""
  path = os.path.join(export_dir, export_verify.REFERENCE_IO)
  with open(path, 'rb') as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)
    arrays = {k: data[k] for k in data.files}
  outputs = [k for k in arrays if k.startswith('out/')]
  assert outputs, arrays.keys()
  for key in outputs:
    arrays[key] = arrays[key] + np.ones_like(arrays[key])
  _write_npz(path, arrays)
  return sorted(k[len('out/'):] for k in outputs)


def _write_npz(path, arrays):
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with open(path, 'wb') as f:
    f.write(buffer.getvalue())


def _planted_write_file(path):
  with tf.control_dependencies([tf.io.write_file(path, path)]):
    return tf.identity(path)


def _planted_matching_files(pattern):
  return tf.strings.reduce_join(tf.io.matching_files(pattern))


def _planted_numpy_function(value):
  return tf.numpy_function(lambda x: x, [value], tf.string)


class ExportVerifyTest(tf.test.TestCase, parameterized.TestCase):

  def _export(self, kind=utils.STATEFUL_DETERMINISTIC, plant=None,
              return_saver=False):
    policy = utils.make_policy(kind)
    saver = policy_saver.PolicySaver(
        policy, train_step=tf.Variable(5, dtype=tf.int64)
    )
    if plant is not None:
      saver.register_function(
          'planted', plant, tf.TensorSpec([], tf.string), outer_dims=()
      )
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver.save(export_dir)
    if return_saver:
      return export_dir, policy, saver
    return export_dir

  def _assert_fails_with(self, export_dir, problem_regex, manifest='absent'):
    """verify() and the CLI's verify command both report the problem."""
    report = export_verify.verify(export_dir)
    self.assertFalse(report.ok, report)
    self.assertEqual(manifest, report.manifest)
    self.assertTrue(
        any(re.search(problem_regex, p) for p in report.problems),
        'no problem matches {!r}: {}'.format(problem_regex, report.problems))
    text = saved_policy_cli.format_text('verify', report.to_json())
    self.assertRegex(text, re.compile(problem_regex, re.MULTILINE))
    self.assertTrue(text.endswith('FAILED'), text)
    return report

  def testOrdinaryExportVerifies(self):
    export_dir = self._export()
    report = export_verify.verify(export_dir)
    self.assertTrue(report.ok, report)
    self.assertEqual('ok', report.manifest)
    self.assertEqual([], report.risky_ops)
    self.assertEqual(['action'], report.replayed)
    self.assertEqual(5, report.train_step)
    # The CLI, as a real process: exit code 0 and the same verdict.
    path = [p for p in sys.path if p and os.path.isdir(p)]
    process = subprocess.run(
        [sys.executable, '-m', 'tf_agents.policies.saved_policy_cli',
         'verify', export_dir, '--json'],
        cwd=self.create_tempdir().full_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)),
        capture_output=True, text=True, check=False,
    )
    self.assertEqual(0, process.returncode, process.stderr[-3000:])
    self.assertTrue(json.loads(process.stdout)['ok'])

  def testPlantedFileAndPythonOpsAreReported(self):
    def plant(path):
      contents = tf.io.read_file(path)
      return tf.py_function(lambda x: x, [contents], tf.string)

    export_dir = self._export(utils.STATELESS_DETERMINISTIC, plant)
    report = export_verify.verify(export_dir, fresh_process=False)
    ops = {op for _, op in report.risky_ops}
    self.assertIn('ReadFile', ops)
    self.assertIn('EagerPyFunc', ops)
    self.assertFalse(report.ok)
    text = saved_policy_cli.format_text('verify', report.to_json())
    self.assertIn('ReadFile', text)
    self.assertIn('FAILED', text)

  @parameterized.named_parameters(
      ('ChangedVariables', 'variables'),
      ('ChangedReferenceOutputs', 'reference'),
  )
  def testReplayMismatchIsReported(self, change):
    export_dir, policy, saver = self._export(
        utils.STATEFUL_DETERMINISTIC, return_saver=True)
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)
    if change == 'variables':
      # Other weights of the same network, from another export.
      for variable in policy.variables():
        variable.assign(variable + 0.5)
      other_dir = os.path.join(self.create_tempdir().full_path, 'other')
      saver.save(other_dir)
      variables_dir = os.path.join(export_dir, 'variables')
      for name in os.listdir(variables_dir):
        shutil.copyfile(os.path.join(other_dir, 'variables', name),
                        os.path.join(variables_dir, name))
      changed = None
    else:
      changed = _change_reference_outputs(export_dir)
    # With the manifest, the changed file is caught first (and named).
    report = export_verify.verify(export_dir)
    self.assertEqual('mismatch', report.manifest)
    self.assertFalse(report.ok)
    self.assertRegex(
        report.problems[0],
        'variables/variables' if change == 'variables' else 'reference_io')
    self.assertEqual([], report.replayed)
    # Without it, the replay of the recorded inputs catches the change.
    _drop_manifest(export_dir)
    report = self._assert_fails_with(
        export_dir, 'action output .* differs from the reference recorded')
    self.assertEqual(['action'], report.replayed)
    self.assertEqual(5, report.train_step)
    if changed is not None:
      # Every recorded output was changed; each one is reported.
      for name in changed:
        self.assertIn(
            'action output {} differs from the reference recorded at save '
            'time'.format(name), report.problems)

  @parameterized.named_parameters(
      ('Metadata', 'get_metadata'),
      ('Action', 'action'),
  )
  def testMissingSignatureIsReported(self, missing):
    export_dir = self._export(utils.STATELESS_DETERMINISTIC)
    loaded = tf.saved_model.load(export_dir)
    self.assertIn(missing, loaded.signatures)
    # The same export re-saved without one of the four signatures.
    resaved = os.path.join(self.create_tempdir().full_path, 'resaved')
    tf.saved_model.save(
        loaded, resaved,
        signatures={k: v for k, v in loaded.signatures.items()
                    if k != missing})
    for name in ('policy_specs.pbtxt', export_verify.REFERENCE_IO):
      shutil.copyfile(os.path.join(export_dir, name),
                      os.path.join(resaved, name))
    report = self._assert_fails_with(
        resaved, 'missing signatures: {}$'.format(missing))
    self.assertEqual(5, report.train_step)
    self.assertEqual([] if missing == 'action' else ['action'],
                     report.replayed)
    self.assertLen(report.problems, 1, report.problems)

  @parameterized.named_parameters(
      ('Edited', 'edit', 'policy_specs.pbtxt does not match '
       r'get_policy_specs\(\)'),
      ('Deleted', 'delete', 'policy_specs.pbtxt is missing'),
  )
  def testPolicySpecsFileMismatchIsReported(self, change, problem):
    export_dir = self._export(utils.STATEFUL_DETERMINISTIC)
    _drop_manifest(export_dir)
    self.assertTrue(export_verify.verify(export_dir).ok)
    path = os.path.join(export_dir, 'policy_specs.pbtxt')
    if change == 'edit':
      with open(path) as f:
        text = f.read()
      self.assertIn('DT_FLOAT', text)
      # Still a valid specs file, but not the policy that was exported.
      with open(path, 'w') as f:
        f.write(text.replace('DT_FLOAT', 'DT_DOUBLE', 1))
    else:
      os.remove(path)
    report = self._assert_fails_with(export_dir, problem)
    self.assertLen(report.problems, 1, report.problems)
    # The replay itself still passes.
    self.assertEqual(['action'], report.replayed)

  @parameterized.named_parameters(
      ('WriteFile', 'WriteFile', _planted_write_file),
      ('MatchingFiles', 'MatchingFiles', _planted_matching_files),
      ('NumpyFunction', 'PyFunc', _planted_numpy_function),
  )
  def testPlantedOpIsReportedByFullVerify(self, op, plant):
    export_dir = self._export(utils.STATELESS_DETERMINISTIC, plant)
    report = export_verify.verify(export_dir)
    self.assertIn(op, {found for _, found in report.risky_ops})
    self.assertTrue(
        all('planted' in fn for fn, _ in report.risky_ops), report.risky_ops)
    # Nothing else is wrong with the export, but it is not OK.
    self.assertEqual([], report.problems)
    self.assertEqual(['action'], report.replayed)
    self.assertFalse(report.ok)
    self.assertFalse(report.to_json()['ok'])

  def testCorruptedFileIsNamed(self):
    export_dir = self._export(utils.STATELESS_DETERMINISTIC)
    path = os.path.join(export_dir, 'variables', 'variables.index')
    with open(path, 'r+b') as f:
      f.seek(10)
      byte = f.read(1)
      f.seek(10)
      f.write(bytes([byte[0] ^ 0xFF]))
    report = export_verify.verify(export_dir)
    self.assertFalse(report.ok)
    self.assertEqual('mismatch', report.manifest)
    self.assertIn('variables/variables.index', report.problems[0])
    result = saved_policy_cli.run_command(
        'verify', [export_dir], saved_policy_cli.Options()
    )
    self.assertFalse(result['ok'])

  def testNoExportStepPickles(self):
    policy = utils.make_policy(utils.STATEFUL_STOCHASTIC)
    saver = policy_saver.PolicySaver(policy)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    forbidden = mock.Mock(side_effect=AssertionError('pickled'))
    with mock.patch.object(pickle, 'dump', forbidden), mock.patch.object(
        pickle, 'dumps', forbidden
    ), mock.patch.object(pickle, 'Pickler', forbidden):
      saver.save(export_dir)
      saver.save(export_dir)
      self.assertEqual('variables_only', saver.last_save_kind)
      with open(os.path.join(export_dir, export_verify.REFERENCE_IO),
                'rb') as f:
        data = np.load(f, allow_pickle=False)
        self.assertNotEmpty(data.files)
      saver.save_checkpoint(export_dir)
    forbidden.assert_not_called()
    # The reference outputs described the old variables: dropped.
    self.assertFalse(os.path.exists(
        os.path.join(export_dir, export_verify.REFERENCE_IO)))

  def _rewrite_manifest(self, export_dir, edit):
    """Applies `edit` to the manifest dict and re-seals it with its marker."""
    path = os.path.join(export_dir, export_publish.MANIFEST_FILENAME)
    with open(path) as f:
      manifest = json.load(f)
    edit(manifest)
    data = json.dumps(manifest).encode('utf-8')
    with open(path, 'wb') as f:
      f.write(data)
    marker = os.path.join(export_dir, export_publish.COMPLETE_MARKER)
    with open(marker, 'w') as f:
      f.write(hashlib.sha256(data).hexdigest())

  def testDataShardsAreCheckedBySizeAndByTheirTensorsChecksums(self):
    export_dir = self._export()
    files = export_publish.check_manifest(export_dir)['files']
    shard = utils.VARIABLES_DATA_FILE
    self.assertEqual(
        {'size': os.path.getsize(os.path.join(export_dir, shard)),
         'check': export_publish.TENSOR_CRC32C},
        files[shard])
    for rel, entry in files.items():
      if rel != shard:
        self.assertLen(entry['sha256'], 64, rel)
    # A flipped bit keeps the size: the manifest passes, the tensors fail.
    utils.flip_bit(export_dir, shard)
    export_publish.check_manifest(export_dir)
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertEqual('mismatch', report.manifest)
    self.assertRegex(report.problems[0], 'cannot read ' + shard)
    with self.assertRaisesRegex(export_errors.CorruptExportError, shard):
      export_verify.load_checked(export_dir)
    # A shorter shard fails the manifest itself.
    utils.truncate_file(export_dir, shard)
    with self.assertRaisesRegex(export_errors.ManifestMismatchError,
                                shard + ' has the wrong size'):
      export_publish.check_manifest(export_dir)

  def testManifestOfFormat1HashesEveryFile(self):
    export_dir = self._export()
    shard = utils.VARIABLES_DATA_FILE

    def to_format_1(manifest):
      manifest['format'] = 1
      manifest['files'][shard] = export_publish.file_sha256(
          os.path.join(export_dir, shard))

    self._rewrite_manifest(export_dir, to_format_1)
    self.assertEqual(1, export_publish.check_manifest(export_dir)['format'])
    self.assertTrue(export_verify.verify(export_dir).ok)
    utils.flip_bit(export_dir, shard)
    with self.assertRaisesRegex(export_errors.ManifestMismatchError,
                                shard + ' does not match its sha256'):
      export_publish.check_manifest(export_dir)

  def testManifestOfUnknownFormatIsRejected(self):
    export_dir = self._export()
    self._rewrite_manifest(
        export_dir, lambda manifest: manifest.update(format=99))
    with self.assertRaisesRegex(export_errors.ManifestMismatchError,
                                'has format 99; this version checks'):
      export_publish.check_manifest(export_dir)

  def testOnlyADataShardMayGoWithoutSha256(self):
    export_dir = self._export()

    def drop_hash(manifest):
      manifest['files']['saved_model.pb'] = {
          'size': manifest['files']['saved_model.pb']['size'],
          'check': export_publish.TENSOR_CRC32C}

    self._rewrite_manifest(export_dir, drop_hash)
    with self.assertRaisesRegex(export_errors.ManifestMismatchError,
                                'saved_model.pb does not match its sha256'):
      export_publish.check_manifest(export_dir)

  def testReferenceStoresOutputsOnlyAndOldFilesStillReplay(self):
    export_dir = self._export()
    path = os.path.join(export_dir, export_verify.REFERENCE_IO)
    with open(path, 'rb') as f:
      data = np.load(io.BytesIO(f.read()), allow_pickle=False)
      arrays = {k: data[k] for k in data.files}
    signature = tf.saved_model.load(export_dir).signatures['action']
    _, inputs = signature.structured_input_signature
    self.assertEqual(sorted(inputs), arrays['inputs'].tolist())
    self.assertEqual(1, arrays['unknown_dim'])
    self.assertFalse([k for k in arrays if k.startswith('in/')])
    outputs = sorted(k for k in arrays if k.startswith('out/'))
    self.assertIn('out/action', outputs)
    # The file an earlier version wrote: the zero inputs themselves.
    old = {'in/' + k: np.zeros([1 if d is None else d
                                for d in spec.shape.as_list()],
                               spec.dtype.as_numpy_dtype)
           for k, spec in inputs.items()}
    old.update({k: arrays[k] for k in outputs})
    _write_npz(path, old)
    _drop_manifest(export_dir)
    report = export_verify.verify(export_dir)
    self.assertTrue(report.ok, report)
    self.assertEqual(['action'], report.replayed)
    # Inputs that are not the signature's are reported.
    del old['in/' + sorted(inputs)[0]]
    _write_npz(path, old)
    self._assert_fails_with(
        export_dir, 'reference inputs do not match the action signature')

  def testMissingAndNotAnExport(self):
    missing = os.path.join(self.get_temp_dir(), 'missing')
    with self.assertRaises(export_errors.ExportNotFoundError):
      export_verify.verify(missing)
    with self.assertRaisesRegex(saved_policy_cli.CliError, 'missing'):
      saved_policy_cli.run_command(
          'verify', [missing], saved_policy_cli.Options()
      )
    with self.assertRaises(export_errors.NotAnExportError):
      export_verify.verify(self.create_tempdir().full_path)


if __name__ == '__main__':
  tf.test.main()
