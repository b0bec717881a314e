# coding=utf-8
"""Tests for export_publish: versions that never delete and never mix."""

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_loader
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import saved_policy
from tf_agents.policies import saved_policy_cli



def _listing(root):
  """Every path under `root` with its content (files) or None (dirs)."""
  found = {}
  for dirname, dirnames, filenames in os.walk(root):
    for name in dirnames:
      found[os.path.relpath(os.path.join(dirname, name), root)] = None
    for name in filenames:
      path = os.path.join(dirname, name)
      with open(path, 'rb') as f:
        found[os.path.relpath(path, root)] = f.read()
  return found


def _can_mount():
  if not shutil.which('unshare') or not shutil.which('mount'):
    return False
  probe = subprocess.run(
      ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
       'mount -t tmpfs tmpfs /mnt 2>/dev/null || '
       'mount -t tmpfs tmpfs "${TMPDIR:-/tmp}"'],
      capture_output=True, check=False)
  return probe.returncode == 0


class ExportPublishTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self._policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    self._train_step = tf.Variable(1, dtype=tf.int64)
    self._saver = policy_saver.PolicySaver(
        self._policy, batch_size=None, train_step=self._train_step)
    self._time_step = utils.time_steps(8, 1, seed=3)

  def _new_weights(self, step):
    self._train_step.assign(step)
    rng = np.random.RandomState(step)
    for variable in self._policy.variables():
      variable.assign(rng.uniform(-1, 1, variable.shape).astype(
          variable.dtype.as_numpy_dtype))
    return self._policy.action(self._time_step).action.numpy()

  def _assert_serves(self, export_dir, step, actions):
    """This repository's reader and a plain load both serve version `step`."""
    loaded = saved_policy.SavedPolicy(export_dir, backend='saved_model')
    self.assertEqual(step, loaded.get_train_step())
    numpy_step = tf.nest.map_structure(lambda t: t.numpy(), self._time_step)
    self.assertAllEqual(actions, loaded.action(numpy_step).action)
    plain = tf.saved_model.load(export_dir)
    self.assertEqual(step, int(plain.get_train_step().numpy()))
    self.assertAllEqual(actions, plain.action(self._time_step).action)

  # 1. Nothing the saver did not write is deleted.

  def testSaveIntoADirectoryWithUserFilesKeepsThem(self):
    export_dir = self.create_tempdir().full_path
    with open(os.path.join(export_dir, 'notes.txt'), 'w') as f:
      f.write('x')
    actions = self._new_weights(1)
    self._saver.save(export_dir)
    self._assert_serves(export_dir, 1, actions)
    actions = self._new_weights(2)
    self._saver.save_checkpoint(export_dir)
    self._assert_serves(export_dir, 2, actions)
    actions = self._new_weights(3)
    self._saver.save(export_dir)
    self._assert_serves(export_dir, 3, actions)
    with open(os.path.join(export_dir, 'notes.txt')) as f:
      self.assertEqual('x', f.read())

  def testCheckpointsAndLogBesideAnExportSurviveItsSaves(self):
    exports = os.path.join(self.create_tempdir().full_path, 'exports')
    checkpoints = os.path.join(exports, 'checkpoints')
    self._new_weights(100)
    self._saver.save_checkpoint(
        os.path.join(checkpoints, 'policy_checkpoint_100'))
    self._new_weights(200)
    self._saver.save_checkpoint(
        os.path.join(checkpoints, 'policy_checkpoint_200'))
    with open(os.path.join(exports, 'train_log.txt'), 'w') as f:
      f.write('step 200\n')
    before = _listing(checkpoints)
    actions = self._new_weights(300)
    self._saver.save(exports)
    self._saver.save(exports)
    self._assert_serves(exports, 300, actions)
    self.assertEqual(before, _listing(checkpoints))
    with open(os.path.join(exports, 'train_log.txt')) as f:
      self.assertEqual('step 200\n', f.read())
    self.assertEqual(
        os.path.join(checkpoints, 'policy_checkpoint_200'),
        saved_policy.latest_checkpoint_path(checkpoints))

  @parameterized.named_parameters(
      ('SaveOverSavedModel', 'save', 'saved_model.pb'),
      ('SaveOverVariables', 'save', 'variables/variables.index'),
      ('CheckpointOverVariables', 'save_checkpoint',
       'variables/variables.data-00000-of-00001'),
      ('CheckpointOverManifest', 'save_checkpoint', 'export_manifest.json'),
  )
  def testForeignFileUnderAnExportNameIsRefusedBeforeWriting(
      self, method, name):
    export_dir = self.create_tempdir().full_path
    path = os.path.join(export_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(b'written by someone else')
    before = _listing(export_dir)
    with self.assertRaises(export_errors.ExportWriteError) as context:
      getattr(self._saver, method)(export_dir)
    utils.assert_one_line_error(self, context.exception, export_dir, name)
    self.assertEqual(before, _listing(export_dir))

  def testForeignAssetIsRefusedAndTheNewVersionRemoved(self):
    # An asset's name is only known once written: refused at commit.
    export_dir = self.create_tempdir().full_path
    with mock.patch.object(export_publish, '_foreign_files',
                           side_effect=[[], ['assets/vocab.txt']]):
      with self.assertRaisesRegex(export_errors.ExportWriteError,
                                  'assets/vocab.txt'):
        self._saver.save(export_dir)
    self.assertEqual({}, _listing(export_dir))

  # 2. and 3. Mount points and users' links: written through, never moved.

  def testUserSymbolicLinkIsWrittenThrough(self):
    target = self.create_tempdir().full_path
    project = self.create_tempdir().full_path
    link = os.path.join(project, 'policy')
    os.symlink(target, link)
    actions = self._new_weights(1)
    self._saver.save(link)
    actions = self._new_weights(2)
    self._saver.save_checkpoint(link)
    self.assertTrue(os.path.islink(link))
    self.assertEqual(target, os.readlink(link))
    self.assertEqual(['policy'], os.listdir(project))
    self._assert_serves(target, 2, actions)
    self._assert_serves(link, 2, actions)

  def testMountPointIsWrittenInto(self):
    if not _can_mount():
      self.skipTest('cannot mount a tmpfs in a private mount namespace here '
                    '(needs unshare and CAP_SYS_ADMIN)')
    export_dir = os.path.join(self.create_tempdir().full_path, 'volume')
    os.makedirs(export_dir)
    # The writer runs in its own mount namespace with a tmpfs mounted at
    # `export_dir`: renaming or removing `export_dir` fails there with
    # EBUSY, as for a Docker or Kubernetes volume. Then it reads back.
    script = (
        'mount -t tmpfs tmpfs "$1" && echo keep > "$1/notes.txt" && '
        '"$2" -m tf_agents.policies.publish_test_programs writer "$1" 2 3 0 '
        '&& "$2" -m tf_agents.policies.publish_test_programs reader "$1" 2 '
        '&& cat "$1/notes.txt" && mountpoint -q "$1" && echo mounted')
    proc = subprocess.run(
        ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script,
         'sh', export_dir, sys.executable],
        capture_output=True, text=True, env=utils.repository_env(),
        timeout=600, check=False)
    self.assertEqual(0, proc.returncode, proc.stderr[-3000:])
    lines = proc.stdout.split('\n')
    self.assertIn('published 4', lines)
    result = [l for l in lines if l.startswith('{')]
    self.assertLen(result, 1, proc.stdout)
    self.assertIn('"mixed": 0', result[0])
    self.assertIn('"errors": []', result[0])
    self.assertIn('"versions": [4]', result[0])
    self.assertEqual(['keep', 'mounted'], lines[-3:-1])
    # The tmpfs is gone with the namespace; the directory is untouched.
    self.assertEqual([], os.listdir(export_dir))

  # 5. verify is consistent with the variables it reads.

  def testVerifyAfterCheckpointWithNewWeightsAndRelativePath(self):
    parent = self.create_tempdir().full_path
    export_dir = os.path.join(parent, 'policy')
    self._new_weights(1)
    self._saver.save(export_dir)
    self._new_weights(2)
    self._saver.save_checkpoint(export_dir)
    report = export_verify.verify(export_dir)
    self.assertTrue(report.ok, report)
    self.assertEqual(2, report.train_step)
    self.assertEqual(export_publish.version_id(export_dir), report.version)
    self._new_weights(3)
    self._saver.save(export_dir)
    cwd = os.getcwd()
    os.chdir(parent)
    try:
      report = export_verify.verify('policy')
    finally:
      os.chdir(cwd)
    self.assertTrue(report.ok, report)
    self.assertEqual(['action'], report.replayed)
    self.assertEqual(3, report.train_step)
    with mock.patch.dict(os.environ, {'BUILD_WORKING_DIRECTORY': parent}):
      self.assertEqual(0, saved_policy_cli.main(['cli', 'verify', 'policy']))

  def testVerifyListsFilesAddedAfterTheSaveAndReportsADamagedTopLevel(self):
    export_dir = self.create_tempdir().full_path
    self._saver.save(export_dir)
    with open(os.path.join(export_dir, 'output_spec.json'), 'w') as f:
      f.write('{}')
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertTrue(report.ok, report)
    self.assertEqual(['output_spec.json'], report.uncovered_files)
    # A top-level file replaced by another (not through the saver): plain
    # readers would read it, so verify says so.
    index = os.path.join(export_dir, utils.VARIABLES_INDEX_FILE)
    with open(index + '.new', 'wb') as f:
      f.write(b'other')
    os.replace(index + '.new', index)
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertFalse(report.ok)
    self.assertRegex(report.problems[0],
                     'top-level files differ from the current version '
                     'v-.*: variables/variables.index')
    # The saver's next publish repairs it.
    self._saver.save(export_dir)
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)
    # A top-level data shard that is a copy (not the version's file) with a
    # flipped bit: same size, so its tensors' checksums tell.
    shard = os.path.join(export_dir, utils.VARIABLES_DATA_FILE)
    shutil.copyfile(shard, shard + '.copy')
    os.replace(shard + '.copy', shard)
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)
    utils.flip_bit(export_dir, utils.VARIABLES_DATA_FILE)
    report = export_verify.verify(export_dir, fresh_process=False)
    self.assertEqual('ok', report.manifest)
    self.assertRegex(report.problems[0], 'top-level files differ .*cannot '
                     'read variables/variables.data-00000-of-00001')

  # 6. Copies with ordinary tools.

  @parameterized.named_parameters(
      ('Tar', 'tar'), ('CpR', 'cp'), ('TarWithoutVersions', 'tar_top'))
  def testCopyRoundTrip(self, tool):
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    self._new_weights(1)
    self._saver.save(export_dir)
    actions = self._new_weights(2)
    self._saver.save_checkpoint(export_dir)
    copy_parent = self.create_tempdir().full_path
    copy = os.path.join(copy_parent, 'policy')
    if tool == 'cp':
      subprocess.run(['cp', '-r', export_dir, copy], check=True)
    else:
      archive = os.path.join(self.create_tempdir().full_path, 'policy.tar')
      with tarfile.open(archive, 'w') as tar:
        tar.add(export_dir, arcname='policy', filter=(
            (lambda info: None if export_publish.VERSIONS_DIRNAME in
             info.name else info) if tool == 'tar_top' else None))
      subprocess.run(['tar', '-xf', archive, '-C', copy_parent], check=True)
    self.assertFalse(os.path.islink(copy))
    self.assertEqual(
        tool != 'tar_top',
        os.path.isdir(os.path.join(copy, export_publish.VERSIONS_DIRNAME)))
    shutil.rmtree(export_dir)  # The copy needs nothing of the original.
    self._assert_serves(copy, 2, actions)
    self.assertTrue(export_verify.verify(copy).ok)
    # The copy takes further saves (its files are the saver's).
    actions = self._new_weights(3)
    self._saver.save(copy)
    self._assert_serves(copy, 3, actions)

  # 7. Object stores.

  @mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0)
  def testObjectStoreVersionsAndTopLevel(self):
    export_dir = 'ram://export_publish_test/{}/policy'.format(
        self._testMethodName)
    seen = set()
    for step, method in ((1, 'save'), (2, 'save_checkpoint'), (3, 'save'),
                         (4, 'save')):
      actions = self._new_weights(step)
      getattr(self._saver, method)(export_dir)
      version = export_publish.current_version(export_dir)
      self.assertNotIn(version.version_id, seen)
      seen.add(version.version_id)
      self.assertEqual(step, version.train_step)
      self._assert_serves(export_dir, step, actions)
      self.assertTrue(
          export_verify.verify(export_dir, fresh_process=False).ok)
    # The current version and the one before it are kept.
    self.assertLen(export_publish._version_names(export_dir), 2)

  # Writes that fail, paths, retention, identities.

  def testFailedWriteNamesTheExportDirAndKeepsThePreviousVersion(self):
    export_dir = self.create_tempdir().full_path
    actions = self._new_weights(1)
    self._saver.save(export_dir)
    before = _listing(export_dir)
    self._new_weights(2)
    # The saver writes checkpoints with a traced `Checkpoint.write`: a full
    # disk fails its SaveV2 op.
    def full_disk(prefix):
      raise tf.errors.ResourceExhaustedError(
          None, None, 'No space left on device: {}'.format(prefix.numpy()))

    with mock.patch.object(self._saver, '_checkpoint_writer',
                           return_value=full_disk):
      with self.assertRaises(export_errors.ExportWriteError) as context:
        self._saver.save_checkpoint(export_dir)
    message = str(context.exception)
    utils.assert_one_line_error(self, context.exception, export_dir,
                                'No space left on device')
    self.assertNotIn(export_publish.VERSIONS_DIRNAME, message)
    self.assertEqual(before, _listing(export_dir))
    self._assert_serves(export_dir, 1, actions)

  def testExportDirUnderAFileIsAWriteError(self):
    parent = os.path.join(self.create_tempdir().full_path, 'file')
    with open(parent, 'w') as f:
      f.write('x')
    export_dir = os.path.join(parent, 'policy')
    with self.assertRaises(export_errors.ExportWriteError) as context:
      self._saver.save(export_dir)
    utils.assert_one_line_error(self, context.exception, export_dir, None)
    self.assertNotIn(export_publish.VERSIONS_DIRNAME, str(context.exception))

  @parameterized.named_parameters(
      ('Bytes', os.fsencode), ('PathLike', pathlib.Path))
  def testBytesAndPathLikeExportDirs(self, make_path):
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    actions = self._new_weights(1)
    self._saver.save(make_path(export_dir))
    self._new_weights(2)
    self._saver.save_checkpoint(make_path(export_dir))
    self._assert_serves(export_dir, 2, self._new_weights(2))
    del actions

  def testNotAPathIsAWriteError(self):
    with self.assertRaisesRegex(export_errors.ExportWriteError,
                                'str, bytes or os.PathLike'):
      self._saver.save(12)

  def testRecentVersionsAreKeptForReaders(self):
    export_dir = self.create_tempdir().full_path
    for step in range(1, 5):
      self._new_weights(step)
      self._saver.save(export_dir)
    # Every version that stopped being current less than
    # `_RETIRE_AFTER_SECONDS` (10 s) ago is kept.
    self.assertLen(export_publish._version_names(export_dir), 4)

  @mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0)
  def testRetentionAndLeftoversOfDeadWriters(self):
    export_dir = self.create_tempdir().full_path
    self._saver.save(export_dir)
    # An incomplete version of a writer that died (no such process).
    dead = os.path.join(
        export_publish.versions_dir(export_dir),
        'v-00000099-{}-{}-00aa'.format(export_publish._HOST, 2**22 + 7))
    os.makedirs(os.path.join(dead, 'variables'))
    for step in range(2, 6):
      self._new_weights(step)
      self._saver.save(export_dir)
    names = export_publish._version_names(export_dir)
    self.assertLen(names, 2)
    self.assertEqual(export_publish.version_id(export_dir), names[-1])
    self.assertFalse(os.path.exists(dead))

  @mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0)
  def testMaxToKeepRemovesTheOldestCheckpointsOfTheSaverOnly(self):
    saver = policy_saver.PolicySaver(
        self._policy, batch_size=None, train_step=self._train_step,
        max_to_keep=2)
    checkpoints = self.create_tempdir().full_path
    foreign = os.path.join(checkpoints, 'policy_checkpoint_0000000000')
    os.makedirs(foreign)
    other = os.path.join(checkpoints, 'other_0000000001')
    saver.save_checkpoint(other)
    for step in range(1, 6):
      self._new_weights(step)
      saver.save_checkpoint(
          os.path.join(checkpoints, 'policy_checkpoint_%010d' % step))
      if step == 2:
        with open(os.path.join(checkpoints, 'policy_checkpoint_%010d' % step,
                               'notes.txt'), 'w') as f:
          f.write('mine')
    self.assertCountEqual(
        ['policy_checkpoint_0000000000', 'other_0000000001',
         'policy_checkpoint_0000000002', 'policy_checkpoint_0000000004',
         'policy_checkpoint_0000000005'], os.listdir(checkpoints))
    loaded = saved_policy.SavedPolicy(self._full_export(),
                                      backend='saved_model')
    self.assertTrue(loaded.update_from_directory(checkpoints))
    self.assertEqual(5, loaded.get_train_step())

  def _full_export(self):
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    self._saver.save(export_dir)
    return export_dir

  def testMaxToKeepKeepsCheckpointsReadersMayBeLoading(self):
    saver = policy_saver.PolicySaver(
        self._policy, batch_size=None, train_step=self._train_step,
        max_to_keep=1)
    checkpoints = self.create_tempdir().full_path
    for step in range(1, 4):
      saver.save_checkpoint(os.path.join(checkpoints, 'ckpt_%d' % step))
    # Each was superseded less than 10 s ago: all stay for now.
    self.assertLen(os.listdir(checkpoints), 3)

  @parameterized.parameters(0, -1, True, 1.5, '2')
  def testMaxToKeepMustBeAPositiveInteger(self, value):
    with self.assertRaisesRegex(ValueError, 'max_to_keep'):
      policy_saver.PolicySaver(self._policy, max_to_keep=value)

  @parameterized.named_parameters(('Local', 'local'), ('Ram', 'ram'))
  def testServingLayoutNumbersVersionsAndReadersTakeTheHighest(self, where):
    if where == 'local':
      base = os.path.join(self.create_tempdir().full_path, 'serving')
    else:
      base = 'ram://export_publish_test/{}/serving'.format(
          self._testMethodName)
    actions = self._new_weights(1)
    self.assertEqual(os.path.join(base, '1'), self._saver.save_serving(base))
    loaded = saved_policy.SavedPolicy(base, backend='saved_model')
    self.assertEqual('1', loaded.version)
    loaded.update_from_directory(base)
    self.assertFalse(loaded.update_from_directory(base))
    actions = self._new_weights(2)
    self.assertEqual(os.path.join(base, '7'),
                     self._saver.save_serving(base, version=7))
    self.assertTrue(loaded.update_from_directory(base))
    numpy_step = tf.nest.map_structure(lambda t: t.numpy(), self._time_step)
    self.assertAllEqual(actions, loaded.action(numpy_step).action)
    self._assert_serves(os.path.join(base, '7'), 2, actions)
    self.assertEqual(2, saved_policy.SavedPolicy(base).get_train_step())
    # Only numbered versions, no temporary names left; none overwritten.
    self.assertCountEqual(['1', '7'], [
        c.rstrip('/') for c in tf.io.gfile.listdir(base)
        if tf.io.gfile.isdir(os.path.join(base, c.rstrip('/')))])
    with self.assertRaisesRegex(export_errors.ExportWriteError, 'exists'):
      self._saver.save_serving(base, version=7)
    self.assertTrue(
        export_verify.verify(os.path.join(base, '7'), fresh_process=False).ok)

  def testServingVersionBeingWrittenIsNotRead(self):
    base = os.path.join(self.create_tempdir().full_path, 'serving')
    actions = self._new_weights(1)
    self._saver.save_serving(base)
    # A version still being written: hidden, or numbered without marker
    # (as an object-store copy in progress).
    os.makedirs(os.path.join(base, '.tmp-2-host-1-abc', 'variables'))
    partial = os.path.join(base, '3')
    shutil.copytree(os.path.join(base, '1'), partial)
    os.remove(os.path.join(partial, export_publish.COMPLETE_MARKER))
    version = export_publish.current_version(base)
    self.assertEqual('1', version.version_id)
    self._assert_serves(version.path, 1, actions)

  @mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0)
  def testServingLayoutMaxToKeep(self):
    saver = policy_saver.PolicySaver(
        self._policy, batch_size=None, train_step=self._train_step,
        max_to_keep=2)
    base = os.path.join(self.create_tempdir().full_path, 'serving')
    for _ in range(4):
      saver.save_serving(base)
    self.assertCountEqual(['3', '4'], os.listdir(base))

  def testVersionIdChangesWithEveryPublishAndUpdatesFollow(self):
    root = self.create_tempdir().full_path
    export_dir = os.path.join(root, 'policy')
    self._saver.save(export_dir)
    loaded = saved_policy.SavedPolicy(export_dir, backend='saved_model')
    ids = {export_publish.version_id(export_dir)}
    for step in range(2, 8):
      actions = self._new_weights(step)
      if step % 2:
        self._saver.save(export_dir)
      else:
        self._saver.save_checkpoint(export_dir)
      ids.add(export_publish.version_id(export_dir))
      self.assertTrue(loaded.update_from_directory(export_dir))
      self.assertFalse(loaded.update_from_directory(export_dir))
      self.assertEqual(step, loaded.get_train_step())
      numpy_step = tf.nest.map_structure(lambda t: t.numpy(), self._time_step)
      self.assertAllEqual(actions, loaded.action(numpy_step).action)
    self.assertLen(ids, 7)

  def testPollingAnUnchangedExportIsOneSmallRead(self):
    export_dir = self.create_tempdir().full_path
    self._saver.save(export_dir)
    loaded = saved_policy.SavedPolicy(export_dir, backend='saved_model')
    self.assertEqual(export_publish.version_id(export_dir), loaded.version)
    # The version it loaded is no news.
    self.assertFalse(loaded.update_from_directory(export_dir))
    opened = []
    real_gfile = tf.io.gfile.GFile

    def counting_gfile(path, *args, **kwargs):
      opened.append(path)
      return real_gfile(path, *args, **kwargs)

    with mock.patch.object(tf.io.gfile, 'GFile', counting_gfile), \
        mock.patch.object(tf.io.gfile, 'listdir') as listdir, \
        mock.patch.object(tf.io.gfile, 'stat') as stat:
      self.assertFalse(loaded.update_from_directory(export_dir))
    self.assertEqual(
        [os.path.join(export_dir, export_publish.VERSIONS_DIRNAME,
                      export_publish.POINTER_FILENAME)], opened)
    listdir.assert_not_called()
    stat.assert_not_called()
    # A new publish is seen, and `version` names the weights served.
    self._new_weights(2)
    self._saver.save_checkpoint(export_dir)
    self.assertTrue(loaded.update_from_directory(export_dir))
    self.assertEqual(export_publish.version_id(export_dir), loaded.version)
    self.assertEqual(2, loaded.get_train_step())

  def testFileAddedAfterTheSaveDoesNotStopReaders(self):
    export_dir = self.create_tempdir().full_path
    actions = self._new_weights(4)
    self._saver.save(export_dir)
    with open(os.path.join(export_dir, 'output_spec.json'), 'w') as f:
      f.write('{}')
    self._assert_serves(export_dir, 4, actions)
    self.assertEqual(
        4, policy_loader.load(export_dir).get_train_step())
    # As a copy without versions: read against the top-level manifest.
    shutil.rmtree(os.path.join(export_dir, export_publish.VERSIONS_DIRNAME))
    self._assert_serves(export_dir, 4, actions)
    # A changed manifest still stops them.
    with open(os.path.join(export_dir, export_publish.MANIFEST_FILENAME),
              'a') as f:
      f.write(' ')
    with self.assertRaises(export_errors.ManifestMismatchError):
      saved_policy.SavedPolicy(export_dir)

  @mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0)
  def testReaderStartsAgainWhenItsVersionIsRetired(self):
    export_dir = self.create_tempdir().full_path
    self._saver.save(export_dir)
    seen = []

    def read(version):
      seen.append(version.version_id)
      if len(seen) == 1:
        # Two publishes retire the version this read resolved.
        self._new_weights(2)
        self._saver.save(export_dir)
        self._new_weights(3)
        self._saver.save(export_dir)
        self.assertTrue(export_publish.is_retired(version))
        raise tf.errors.NotFoundError(None, None, 'gone')
      return version

    version = export_publish.read_consistent(export_dir, read)
    self.assertLen(seen, 2)
    self.assertEqual(3, version.train_step)
    # A failure of a version that is still current is raised at once.
    with self.assertRaises(ValueError):
      export_publish.read_consistent(
          export_dir, mock.Mock(side_effect=ValueError('bad')))

  def testTopLevelIsTheCurrentVersionHardLinked(self):
    export_dir = self.create_tempdir().full_path
    self._saver.save(export_dir)
    self._new_weights(2)
    self._saver.save_checkpoint(export_dir)
    version = export_publish.current_version(export_dir)
    manifest = export_publish.read_manifest(version.path)
    self.assertEqual('checkpoint', manifest['kind'])
    # The graph was kept, the reference outputs of the old weights dropped.
    self.assertIn('saved_model.pb', manifest['files'])
    self.assertNotIn(export_verify.REFERENCE_IO, manifest['files'])
    self.assertFalse(os.path.exists(
        os.path.join(export_dir, export_verify.REFERENCE_IO)))
    for rel in manifest['files']:
      self.assertTrue(os.path.samefile(os.path.join(version.path, rel),
                                       os.path.join(export_dir, rel)), rel)
    leftovers = [n for n in os.listdir(export_dir) if '.tmp-' in n]
    self.assertEqual([], leftovers)
    # The CLI reads that version and says which.
    result = saved_policy_cli.run_command(
        'inspect', [export_dir], saved_policy_cli.Options())
    self.assertEqual(version.version_id, result['version'])
    self.assertEqual(export_dir, result['export_dir'])
    self.assertEqual(2, result['train_step'])
    self.assertIn('Version: ' + version.version_id,
                  saved_policy_cli.format_text('inspect', result))


if __name__ == '__main__':
  tf.test.main()
