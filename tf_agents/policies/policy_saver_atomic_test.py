# coding=utf-8
"""Crash-safety tests of PolicySaver: versions, kills, two writers, errors.

The kill test runs a child process that saves a few-MB policy over and over
into one directory and kills it with SIGKILL at seeded random moments; after
every kill the current version (what this repository's readers read) must
load as exactly the previous or the new export, the leftovers of killed
writers must be removed by the next writer's saves (the test never cleans up
itself), and after the last kill one more save must make the top level (what
plain `tf.saved_model.load` reads) whole again. It is parameterized over
nine seeds of `_KILLS_PER_TEST` kills each, which Bazel's sharding
(`shard_count` in BUILD) spreads over shards, one seed per shard.
"""

import errno
import os
import random
import signal
import subprocess
import sys
import time
from unittest import mock

from absl import logging
from absl.testing import parameterized

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils

_KILLS_PER_TEST = 6

# Child process shared by the kill and two-writer tests: builds a greedy Q
# policy with ~1M parameters, then saves it with train step `start`,
# `start + 1`, ... setting every variable to `base * (1 + step / 100)`, and
# appends each saved step to the progress file. Every third save passes
# SaveOptions, which forces a full SavedModel write; the others take the
# variables-only fast path.
_WRITER = utils.testdata_path('policy_saver_atomic_writer.py')


def make_large_policy():
  """A greedy Q policy with ~1M parameters, its train step and base values."""
  net = utils.q_network.QNetwork(
      utils.OBSERVATION_SPEC,
      utils.DISCRETE_ACTION_SPEC,
      fc_layer_params=(1000, 1000),
  )
  policy = utils.greedy_policy.GreedyPolicy(
      utils.q_policy.QPolicy(
          utils.TIME_STEP_SPEC, utils.DISCRETE_ACTION_SPEC, net
      )
  )
  policy.action(utils.time_steps(1, 0))
  bases = [
      np.random.RandomState(i).uniform(-0.1, 0.1, v.shape).astype(np.float32)
      for i, v in enumerate(policy.variables())
  ]
  return policy, tf.Variable(0, dtype=tf.int64), bases


def set_step(policy, train_step, bases, step):
  train_step.assign(step)
  for variable, base in zip(policy.variables(), bases):
    variable.assign(base * (1.0 + step / 100.0))



def _versions(export_dir):
  """The version directories of the export (`_temporaries` has the rest)."""
  directory = export_publish.versions_dir(export_dir)
  if not os.path.isdir(directory):
    return []
  return sorted(c for c in os.listdir(directory) if c.startswith('v-'))


def _temporaries(export_dir):
  """Hidden temporary files a publish leaves only when killed."""
  found = []
  for dirname, _, filenames in os.walk(export_dir):
    found += [os.path.join(dirname, f) for f in filenames if '.tmp-' in f]
  return sorted(found)


def _train_step_of(export_dir):
  loaded = tf.saved_model.load(export_dir)
  return int(loaded.get_train_step().numpy())


def _read_progress(path):
  with open(path) as f:
    lines = f.read().split()
  return [int(line) for line in lines if line.isdigit()], 'ready' in lines


# Most versions a writer killed after its first save can leave: the current
# one, the one before it (kept for readers still loading it), and an
# interrupted save's new version.
_MAX_VERSIONS_AFTER_A_SAVE = 3


class PolicySaverAtomicTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._reference = None

  def setUp(self):
    super().setUp()
    # As in the writer processes: no grace before a version is retired.
    self.enter_context(
        mock.patch.object(export_publish, '_RETIRE_AFTER_SECONDS', 0.0))

  def _reference_policy(self):
    if PolicySaverAtomicTest._reference is None:
      PolicySaverAtomicTest._reference = make_large_policy()
    return PolicySaverAtomicTest._reference

  def _assert_export_is_step(self, export_dir, allowed_steps):
    """Loads the current version; checks it is one of `allowed_steps`."""
    path = export_publish.current_version(export_dir).path
    export_publish.check_manifest(path)
    loaded = tf.saved_model.load(path)
    step = int(loaded.get_train_step().numpy())
    self.assertIn(step, allowed_steps)
    policy, train_step, bases = self._reference_policy()
    set_step(policy, train_step, bases, step)
    time_step = utils.time_steps(4, 1)
    self.assertAllEqual(
        policy.action(time_step).action, loaded.action(time_step).action
    )
    for variable, base in zip(loaded.model_variables, bases):
      self.assertAllClose(base * (1.0 + step / 100.0), variable.numpy())
    return step

  def _start_writer(self, export_dir, progress, start, count):
    workdir = self.create_tempdir().full_path
    # stderr goes to a file: an unread pipe would block the writer.
    self._stderr_path = os.path.join(workdir, 'stderr')
    with open(self._stderr_path, 'wb') as stderr:
      return subprocess.Popen(
          [sys.executable, _WRITER, export_dir, progress, str(start),
           str(count)],
          cwd=workdir,
          env=utils.repository_env(),
          stdout=subprocess.DEVNULL,
          stderr=stderr,
      )

  def _assert_alive(self, proc):
    if proc.poll() is not None:
      with open(self._stderr_path) as f:
        self.fail('Writer exited early:\n' + f.read()[-3000:])

  @parameterized.parameters(range(9))
  def testKill(self, seed):
    """Kills `_KILLS_PER_TEST` writers; checks the export after each.

    Only the writers' own saves clean up: after a writer has published once,
    every leftover of the writers killed before it is gone and at most
    `_MAX_VERSIONS_AFTER_A_SAVE` versions remain.

    Args:
      seed: Seeds the kill delays; also selects the train steps written.
    """
    rng = random.Random(1234 + seed)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    verified = None
    next_step = 1000 * (seed + 1)
    kill_points = set()
    cleanups_checked = 0
    for kill in range(_KILLS_PER_TEST):
      before = set(_versions(export_dir)) if verified is not None else set()
      current_before = export_publish.version_id(export_dir)
      temporaries_before = set(_temporaries(export_dir))
      progress = os.path.join(self.create_tempdir().full_path, 'progress')
      open(progress, 'w').close()
      proc = self._start_writer(export_dir, progress, next_step, 10000)
      deadline = time.time() + 120
      while not _read_progress(progress)[1]:
        self._assert_alive(proc)
        self.assertLess(time.time(), deadline)
        time.sleep(0.05)
      if verified is None or kill % 2 == 1:
        # The first writer must publish once before it is killed; so do odd
        # restarts, whose first save must clean up after the killed writers
        # (even restarts may also be killed before or during that save).
        while not _read_progress(progress)[0]:
          self._assert_alive(proc)
          self.assertLess(time.time(), deadline)
          time.sleep(0.02)
      delay = rng.uniform(0.0, 1.5)
      time.sleep(delay)
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      saved, _ = _read_progress(progress)
      # Exactly the last export the writer reported or the one after it.
      allowed = {saved[-1], saved[-1] + 1} if saved else {verified, next_step}
      kill_points.add((len(saved), round(delay, 3)))
      verified = self._assert_export_is_step(export_dir, allowed)
      versions = set(_versions(export_dir))
      self.assertIn(export_publish.version_id(export_dir), versions)
      if saved:
        # This writer's first save (cleanup included) completed: the killed
        # writers' leftovers are gone without any explicit cleanup.
        removed = before - {current_before}
        if len(saved) >= 2:
          removed = before
        self.assertEmpty(
            removed & versions,
            'kill %d: leftovers of killed writers survived %d saves: %s' %
            (kill, len(saved), sorted(versions)))
        self.assertLessEqual(
            len(versions), _MAX_VERSIONS_AFTER_A_SAVE,
            'kill %d: %s' % (kill, sorted(versions)))
        self.assertEmpty(temporaries_before & set(_temporaries(export_dir)))
        if before:
          cleanups_checked += 1
      next_step = verified + 1
    self.assertLen(kill_points, _KILLS_PER_TEST)
    # Odd kills come after a first save that had leftovers to remove.
    self.assertGreaterEqual(cleanups_checked, _KILLS_PER_TEST // 2)
    # One more save makes the top level whole for plain readers again.
    policy, train_step, bases = self._reference_policy()
    set_step(policy, train_step, bases, next_step)
    policy_saver.PolicySaver(
        policy, batch_size=None, train_step=train_step).save(export_dir)
    self.assertEqual(next_step, _train_step_of(export_dir))
    self.assertEqual([], _temporaries(export_dir))
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)
    logging.warning('kill test %d: %d kills survived at %s; %d cleanups '
                    'checked', seed, _KILLS_PER_TEST, sorted(kill_points),
                    cleanups_checked)

  def testTwoWritersOneCompleteExportWins(self):
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    progress = [
        os.path.join(self.create_tempdir().full_path, 'progress%d' % i)
        for i in range(2)
    ]
    procs = [
        self._start_writer(export_dir, progress[0], 100, 6),
        self._start_writer(export_dir, progress[1], 200, 6),
    ]
    for proc in procs:
      self.assertEqual(0, proc.wait(timeout=300))
    step = self._assert_export_is_step(export_dir, {105, 205})
    self.assertIn(step, (105, 205))
    # Pointer switches and mirrors take turns: the top level is the current
    # version.
    self.assertEqual(step, _train_step_of(export_dir))
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)
    # Both writers are gone: a new save keeps only itself and the version
    # it replaced (for readers still loading it).
    replaced = export_publish.version_id(export_dir)
    policy, train_step, bases = self._reference_policy()
    set_step(policy, train_step, bases, 300)
    policy_saver.PolicySaver(
        policy, batch_size=None, train_step=train_step).save(export_dir)
    self.assertEqual(300, _train_step_of(export_dir))
    self.assertCountEqual([export_publish.version_id(export_dir), replaced],
                          _versions(export_dir))

  def testFailedSaveKeepsPreviousExport(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver.save(export_dir)
    train_step.assign(2)
    real_save = tf.saved_model.save

    def disk_full(obj, path, **kwargs):
      real_save(obj, path, **kwargs)  # Partial output left in the staging.
      raise OSError(28, 'No space left on device')

    def manifest_full(*unused_args, **unused_kwargs):
      raise tf.errors.ResourceExhaustedError(None, None, 'disk quota exceeded')

    cases = [
        mock.patch.object(tf.saved_model, 'save', disk_full),
        mock.patch.object(export_publish, 'write_manifest', manifest_full),
    ]
    for case in cases:
      with case:
        with self.assertRaises(export_errors.ExportWriteError) as error:
          saver.save(export_dir, options=tf.saved_model.SaveOptions())
      message = str(error.exception)
      self.assertIn(export_dir, message)
      self.assertNotIn('\n', message)
      loaded = tf.saved_model.load(export_dir)
      self.assertEqual(1, loaded.get_train_step().numpy())
      self.assertEqual([export_publish.version_id(export_dir)],
                       _versions(export_dir))
    with mock.patch.object(export_publish, 'write_manifest', manifest_full):
      with self.assertRaises(export_errors.ExportWriteError):
        saver.save_checkpoint(export_dir)
    self.assertEqual(
        1, _train_step_of(export_dir)
    )
    saver.save(export_dir)
    self.assertEqual(
        2, _train_step_of(export_dir)
    )

  def _assert_previous_export_intact(self, export_dir, error, step, action,
                                     versions):
    """Checks a failed save: its error, and the export it did not replace."""
    message = str(error)
    self.assertIn(export_dir, message)
    self.assertNotIn('\n', message)
    self.assertNotIn(export_publish.VERSIONS_DIRNAME, message)
    for path in (export_publish.current_version(export_dir).path, export_dir):
      export_publish.check_manifest(path)
      loaded = tf.saved_model.load(path)
      self.assertEqual(step, loaded.get_train_step().numpy())
      self.assertAllEqual(action,
                          loaded.action(utils.time_steps(4, 1)).action)
    # The failed save left nothing behind, not even for the next save.
    self.assertEqual(versions, _versions(export_dir))
    self.assertEqual([], _temporaries(export_dir))

  @parameterized.named_parameters(
      # Mirroring: os.replace (a new name onto each top-level name); then
      # the pointer switch (tf.io.gfile.rename).
      ('FirstReplace', export_publish.os, 'replace', 1),
      ('LaterReplace', export_publish.os, 'replace', 4),
      ('PointerSwitch', tf.io.gfile, 'rename', 1),
  )
  def testWriteErrorInPublishKeepsPreviousExport(self, module, call, fail_at):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver.save(export_dir)
    versions = _versions(export_dir)
    old_action = policy.action(utils.time_steps(4, 1)).action.numpy()
    train_step.assign(2)
    for variable in policy.variables():
      variable.assign(variable * -2.0 + 0.5)
    calls = []
    real = getattr(module, call)

    def fail(*args, **kwargs):
      calls.append(args)
      if len(calls) == fail_at:
        raise OSError(errno.EIO, 'Input/output error')
      return real(*args, **kwargs)

    with mock.patch.object(module, call, fail):
      with self.assertRaises(export_errors.ExportWriteError) as error:
        saver.save(export_dir, options=tf.saved_model.SaveOptions())
    self.assertGreaterEqual(len(calls), fail_at)
    self.assertIn('Input/output error', str(error.exception))
    self._assert_previous_export_intact(
        export_dir, error.exception, 1, old_action, versions)
    # The next save publishes normally; no leftover of the failed one stays.
    saver.save(export_dir)
    self.assertEqual(2, _train_step_of(export_dir))
    self.assertLen(_versions(export_dir), 2)
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)

  def testWithoutHardLinksFilesAreCopied(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    refuse = mock.Mock(side_effect=OSError(errno.EPERM,
                                           'Operation not permitted'))
    with mock.patch.object(export_publish.os, 'link', refuse):
      saver.save(export_dir)
      train_step.assign(2)
      saver.save_checkpoint(export_dir)
    self.assertTrue(refuse.called)
    version = export_publish.current_version(export_dir)
    self.assertFalse(os.path.samefile(
        os.path.join(version.path, 'saved_model.pb'),
        os.path.join(export_dir, 'saved_model.pb')))
    self.assertEqual(2, _train_step_of(export_dir))
    self.assertTrue(export_verify.verify(export_dir, fresh_process=False).ok)

  @parameterized.named_parameters(
      ('DiskFull', lambda: OSError(errno.ENOSPC, 'No space left on device')),
      ('QuotaExceeded', lambda: tf.errors.ResourceExhaustedError(
          None, None, 'disk quota exceeded')),
  )
  def testWriteErrorInVariablesOnlySaveKeepsPreviousExport(self, make_error):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(1, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver.save(export_dir)
    self.assertEqual('full', saver.last_save_kind)
    versions = _versions(export_dir)
    old_action = policy.action(utils.time_steps(4, 1)).action.numpy()
    train_step.assign(2)
    for variable in policy.variables():
      variable.assign(variable * -2.0 + 0.5)
    new_action = policy.action(utils.time_steps(4, 1)).action.numpy()
    real_write = saver._export_variables_writer()  # pylint: disable=protected-access
    writes = []

    def write_then_fail(prefix):
      # The variables are (partly) written into the staging directory.
      writes.append(prefix.numpy().decode())
      real_write(prefix)
      raise make_error()

    # The fast path writes through a traced `Checkpoint.write`.
    with mock.patch.object(saver, '_export_variables_writer',
                           return_value=write_then_fail):
      with self.assertRaises(export_errors.ExportWriteError) as error:
        saver.save(export_dir)
    # The fast path wrote the variables into the new version's directory.
    self.assertLen(writes, 1)
    self.assertStartsWith(
        os.path.relpath(writes[0], export_dir),
        export_publish.VERSIONS_DIRNAME + '/v-')
    self.assertEqual('full', saver.last_save_kind)
    self._assert_previous_export_intact(
        export_dir, error.exception, 1, old_action, versions)
    # The fast path still works afterwards and publishes the new values.
    saver.save(export_dir)
    self.assertEqual('variables_only', saver.last_save_kind)
    loaded = tf.saved_model.load(export_dir)
    self.assertEqual(2, loaded.get_train_step().numpy())
    self.assertAllEqual(new_action,
                        loaded.action(utils.time_steps(4, 1)).action)

  def testFastPathEqualsFullSave(self):
    policy = utils.make_policy(utils.STATELESS_STOCHASTIC)
    train_step = tf.Variable(0, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step, seed=7)
    root = self.create_tempdir().full_path
    fast_dir = os.path.join(root, 'fast')
    saver.save(fast_dir)
    self.assertEqual('full', saver.last_save_kind)
    for variable in policy.variables():
      variable.assign(variable * 1.5 + 0.25)
    train_step.assign(9)
    saver.save(fast_dir)
    self.assertEqual('variables_only', saver.last_save_kind)
    manifest = export_publish.check_manifest(fast_dir)
    self.assertEqual('variables_only', manifest['kind'])
    full_dir = os.path.join(root, 'full')
    policy_saver.PolicySaver(policy, train_step=train_step, seed=7).save(
        full_dir
    )
    self.assertEqual('full', export_publish.check_manifest(full_dir)['kind'])
    time_step = utils.time_steps(3, 1)
    outputs = []
    for path in (fast_dir, full_dir):
      loaded = tf.saved_model.load(path)
      self.assertEqual(9, loaded.get_train_step().numpy())
      outputs.append(
          (loaded.action(time_step).action.numpy(),
           [v.numpy() for v in loaded.model_variables])
      )
    utils.assert_nests_close(self, outputs[1], outputs[0], atol=0, rtol=0)
    fresh = utils.run_fresh_process(
        self,
        'variables_only_save_program.py',
        args=[fast_dir, full_dir],
    )
    self.assertEqual(fresh[0], fresh[1])
    self.assertEqual(9, fresh[0][0])
    # A new trace (register_function) changes the graph: full save again.
    saver.register_function(
        'extra', lambda x: x * 2.0, tf.TensorSpec([1], tf.float32)
    )
    saver.save(fast_dir)
    self.assertEqual('full', saver.last_save_kind)
    loaded = tf.saved_model.load(fast_dir)
    self.assertAllEqual([[4.0]], loaded.extra(tf.constant([[2.0]])))

  def testNonLocalFileSystemPublishesWithMarker(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    train_step = tf.Variable(3, dtype=tf.int64)
    saver = policy_saver.PolicySaver(policy, train_step=train_step)
    export_dir = 'ram://policy_saver_atomic_test/policy'
    saver.save(export_dir)
    train_step.assign(4)
    saver.save(export_dir, options=tf.saved_model.SaveOptions())
    self.assertEqual(
        ['policy'], tf.io.gfile.listdir('ram://policy_saver_atomic_test')
    )
    version = export_publish.current_version(export_dir)
    for path in (version.path, export_dir):
      self.assertTrue(tf.io.gfile.exists(
          os.path.join(path, export_publish.COMPLETE_MARKER)))
      self.assertEqual(4, export_publish.check_manifest(path)['train_step'])
    # A top level whose copy was interrupted (marker removed first, written
    # last) is incomplete to a reader of a copy without versions; this
    # repository's readers read the version.
    tf.io.gfile.remove(os.path.join(export_dir, export_publish.COMPLETE_MARKER))
    with self.assertRaises(export_errors.NotAnExportError):
      export_publish.check_manifest(export_dir)
    self.assertEqual(version, export_publish.current_version(export_dir))

  def testManifestDetectsChangedFile(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    policy_saver.PolicySaver(policy).save(export_dir)
    manifest = export_publish.check_manifest(export_dir)
    self.assertIn('saved_model.pb', manifest['files'])
    self.assertIn('policy_specs.pbtxt', manifest['files'])
    path = os.path.join(export_dir, 'policy_specs.pbtxt')
    with open(path, 'ab') as f:
      f.write(b' ')
    with self.assertRaisesRegex(
        export_errors.ManifestMismatchError, 'policy_specs.pbtxt'
    ):
      export_publish.check_manifest(export_dir)

  def testCleanupRemovesOnlyDeadWritersLeftovers(self):
    policy = utils.make_policy(utils.STATELESS_DETERMINISTIC)
    export_dir = os.path.join(self.create_tempdir().full_path, 'policy')
    saver = policy_saver.PolicySaver(policy)
    saver.save(export_dir)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    host = export_publish._HOST  # pylint: disable=protected-access
    versions = export_publish.versions_dir(export_dir)
    stale = 'v-00000050-{}-{}-abc'.format(host, dead.pid)
    live = 'v-00000051-{}-{}-abc'.format(host, os.getppid())
    user = 'my_notes'
    for name in (stale, live, user):
      os.makedirs(os.path.join(versions, name, 'variables'))
    stale_file = os.path.join(export_dir, 'variables',
                              '.variables.index.tmp-{}-{}-abc'.format(
                                  host, dead.pid))
    live_file = os.path.join(export_dir, '.saved_model.pb.tmp-{}-{}-abc'.format(
        host, os.getppid()))
    for path in (stale_file, live_file):
      with open(path, 'w') as f:
        f.write('partial')
    saver.save(export_dir)
    children = os.listdir(versions)
    self.assertNotIn(stale, children)
    self.assertIn(live, children)
    self.assertIn(user, children)
    self.assertFalse(os.path.exists(stale_file))
    self.assertTrue(os.path.exists(live_file))


if __name__ == '__main__':
  tf.test.main()
