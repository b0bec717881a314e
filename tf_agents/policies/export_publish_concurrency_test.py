# coding=utf-8
"""One writer publishing while readers load and update: never a mix.

A writer publishes versions of a policy whose every weight, its train step
and a metadata value change with each version (`save` and
`save_checkpoint` alternating into one directory, every fifth version also
`save` into a new one), while readers load the directory with
`SavedPolicy` and update it in place from it, again and again. Each load and
each update must serve exactly one version: train step, metadata,
`variables()` and the actions computed all of that version
(`publish_test_programs.Checker`). No reader may see an error.

On a local disk the writer and three readers are processes; `ram://` lives
in one process, so there they are threads.
"""

import json
import os
import subprocess
import sys
import threading
import time

from absl import logging
import tensorflow as tf

from tf_agents.policies import export_publish
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import publish_test_programs as programs

# Loads per reader: 3 readers, 170 loads and 170 updates each.
_READERS = 3
_LOADS_PER_READER = 170



class ExportPublishConcurrencyTest(tf.test.TestCase):

  def _check(self, results, published):
    loads = sum(r['loads'] for r in results)
    updates = sum(r['updates'] for r in results)
    versions = set()
    for r in results:
      versions.update(r['versions'])
    errors = [e for r in results for e in r['errors']]
    mixes = [m for r in results for m in r['mixes']]
    logging.warning('%d loads and %d updates saw %d versions of %d '
                    'published; mixed: %d (%s); errors: %d, e.g. %s', loads,
                    updates, len(versions), published, len(mixes),
                    mixes[:3], len(errors), errors[:3])
    self.assertGreaterEqual(loads, _READERS * _LOADS_PER_READER)
    self.assertGreaterEqual(updates, _READERS * _LOADS_PER_READER)
    self.assertEqual([], errors[:10])
    self.assertEqual([], mixes[:10])
    # The readers really raced the writer: they saw many versions.
    self.assertGreater(len(versions), 10)

  def testLocalDiskWriterAndReaderProcesses(self):
    root = self.create_tempdir().full_path
    export_dir = os.path.join(root, 'policy')
    workdir = self.create_tempdir().full_path
    command = [sys.executable, '-m', 'tf_agents.policies.publish_test_programs']
    with open(os.path.join(workdir, 'writer.log'), 'w') as writer_log:
      writer = subprocess.Popen(
          command + ['writer', export_dir, '1', '100000', '0.1'],
          stdout=writer_log, stderr=subprocess.STDOUT,
          env=utils.repository_env(), cwd=workdir)
      try:
        deadline = time.time() + 300
        while export_publish.version_id(export_dir) is None:
          self.assertIsNone(writer.poll())
          self.assertLess(time.time(), deadline)
          time.sleep(0.1)
        readers = [
            subprocess.Popen(
                command + ['reader', export_dir, str(_LOADS_PER_READER)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=utils.repository_env(), cwd=workdir, text=True)
            for _ in range(_READERS)
        ]
        outputs = [r.communicate(timeout=1500)[0] for r in readers]
      finally:
        writer.kill()
        writer.wait()
    for reader, output in zip(readers, outputs):
      self.assertEqual(0, reader.returncode, output)
    with open(os.path.join(workdir, 'writer.log')) as f:
      published = f.read().count('published')
    self._check([json.loads(o.strip().splitlines()[-1]) for o in outputs],
                published)
    self.assertGreater(published, 20)

  def testObjectStoreWriterAndReaderThreads(self):
    export_dir = 'ram://export_publish_concurrency_test/policy'
    stop = threading.Event()
    published = []

    def write():
      policy = programs.make_policy()
      train_step = tf.Variable(1, dtype=tf.int64)
      version = tf.Variable(1, dtype=tf.int64)
      saver = policy_saver.PolicySaver(
          policy, batch_size=None, train_step=train_step,
          metadata={'version': version})
      k = 1
      while not stop.is_set():
        programs.set_version(policy, policy.variables(), k)
        train_step.assign(k)
        version.assign(k)
        if k % 2 == 0 or k == 1:
          saver.save(export_dir)
        else:
          saver.save_checkpoint(export_dir)
        if k % 5 == 0:
          saver.save('{}-{}'.format(export_dir, k))
        published.append(k)
        k += 1
        time.sleep(0.1)

    results = [None] * _READERS

    def read(i):
      results[i] = programs.reader(export_dir, _LOADS_PER_READER)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while not published:
      self.assertTrue(writer.is_alive())
      time.sleep(0.05)
    readers = [threading.Thread(target=read, args=(i,), daemon=True)
               for i in range(_READERS)]
    for thread in readers:
      thread.start()
    for thread in readers:
      thread.join(timeout=1500)
    stop.set()
    writer.join(timeout=60)
    self.assertNotIn(None, results)
    self._check(results, len(published))


if __name__ == '__main__':
  tf.test.main()
