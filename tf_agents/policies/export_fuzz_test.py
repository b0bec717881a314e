# coding=utf-8
"""Fuzz test: mutated exports give a clear error or a correct load.

A child process applies seeded mutations (truncations, byte flips, deleted
and swapped files) to copies of a small export and loads each copy twice:
with `export_verify.load_checked` (the raw SavedModel) and with the runtime,
alternately `policy_loader.load` and `saved_policy.SavedPolicy`. Every third
mutation starts from a copy of the export without its integrity manifest and
completion marker (as upstream's saver writes it), so the checks behind the
manifest (parsing, checksums of the variables, the specs) are fuzzed too.
The child writes one JSON line per mutation. The parent restarts the child
after a crash or a hang (each counted as a failure) and checks every outcome:
this package's `ExportError` with a one-line message naming the export, or a
load whose outputs on a probe input equal the unmutated export's (the raw
`action` signature, the runtime's action and policy state, the train step).
Any other exception type is a failure. The counts are logged (and printed).
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import logging
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import saved_policy

_MUTATIONS_PER_TEST = 250
# A child that records no mutation for this long is killed (a hang).
_HANG_SECONDS = 60.0
_VARIANTS = ('manifest', 'upstream')
_LOADERS = ('load_checked', 'runtime')

# The child process: loads mutated copies, one JSON record per mutation.
_CHILD = utils.testdata_path('export_fuzz_child.py')


def _read_records(results):
  if not os.path.exists(results):
    return []
  with open(results) as f:
    return [json.loads(line) for line in f if line.strip()]


class ExportFuzzTest(tf.test.TestCase, parameterized.TestCase):

  def _run_child(self, script, workdir, results, seed, start, env):
    """Runs the child from mutation `start`; returns (exit code, stderr).

    The exit code is None if the child was killed for making no progress.
    """
    stderr_path = os.path.join(workdir, 'child_stderr.txt')
    with open(stderr_path, 'w') as stderr:
      proc = subprocess.Popen(
          [sys.executable, script, workdir, results, str(seed), str(start),
           str(_MUTATIONS_PER_TEST)],
          cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
      )
      size = os.path.getsize(results) if os.path.exists(results) else 0
      last_progress = time.monotonic()
      hung = False
      while proc.poll() is None:
        time.sleep(0.5)
        new_size = os.path.getsize(results) if os.path.exists(results) else 0
        if new_size != size:
          size, last_progress = new_size, time.monotonic()
        elif time.monotonic() - last_progress > _HANG_SECONDS:
          hung = True
          proc.kill()  # The child this test started.
          proc.wait()
    with open(stderr_path) as f:
      error = f.read()[-2000:]
    return (None if hung else proc.returncode), error

  def _fuzz(self, seed):
    begin = time.monotonic()
    workdir = self.create_tempdir().full_path
    export_dir = os.path.join(workdir, 'export')
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    policy_saver.PolicySaver(
        policy, train_step=tf.Variable(11, dtype=tf.int64)
    ).save(export_dir)
    # The published export (a symlink locally) and a copy as upstream's
    # saver writes it: no manifest, no completion marker.
    manifest = os.path.join(workdir, 'source_manifest')
    upstream = os.path.join(workdir, 'source_upstream')
    shutil.copytree(os.path.realpath(export_dir), manifest)
    shutil.copytree(manifest, upstream)
    for name in ('export_manifest.json', 'export_complete'):
      os.remove(os.path.join(upstream, name))

    loaded = tf.saved_model.load(manifest)
    action = loaded.signatures['action']
    _, inputs = action.structured_input_signature
    feed = {
        k: tf.ones([2] + s.shape.as_list()[1:], s.dtype).numpy().tolist()
        for k, s in inputs.items()
    }
    runtime = saved_policy.SavedPolicy(manifest, backend='saved_model')
    time_step = tf.nest.map_structure(
        lambda s: np.ones((2,) + tuple(s.shape), s.dtype),
        runtime.time_step_spec)
    step = runtime.action(time_step, runtime.get_initial_state(2))
    expected = {
        'action': {
            k: v.numpy().tolist()
            for k, v in action(
                **{k: tf.constant(v, inputs[k].dtype) for k, v in feed.items()}
            ).items()
        },
        'runtime': [
            np.asarray(x).tolist()
            for x in tf.nest.flatten((step.action, step.state))
        ],
        'train_step': 11,
    }
    with open(os.path.join(workdir, 'feed.json'), 'w') as f:
      json.dump(feed, f)
    with open(os.path.join(workdir, 'expected.json'), 'w') as f:
      json.dump(expected, f)
    results = os.path.join(workdir, 'results.jsonl')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    crashes = []
    hangs = []
    start = 0
    records = []
    while start < _MUTATIONS_PER_TEST:
      code, error = self._run_child(_CHILD, workdir, results, seed, start,
                                    env)
      records = _read_records(results)
      done = records[-1]['i'] + 1 if records else 0
      if code != 0:
        (hangs if code is None else crashes).append(done)
        logging.error('Fuzz child %s at mutation %d (exit %s): %s',
                      'hung' if code is None else 'crashed', done, code,
                      error)
        shutil.rmtree(os.path.join(workdir, 'm%d' % done), ignore_errors=True)
        done += 1  # Skip the mutation that crashed it.
      start = done

    def failed(record, loader):
      result = record[loader]
      if result['outcome'] == 'foreign_error':
        return True
      if result['outcome'] == 'load':
        return not result['correct']
      return ('\n' in result['message'] or
              os.path.join(workdir, 'm%d' % record['i'])
              not in result['message'])

    failures = [r for r in records if any(failed(r, l) for l in _LOADERS)]
    counts = {}
    for variant in _VARIANTS:
      for loader in _LOADERS:
        rs = [r for r in records if r['variant'] == variant]
        counts[(variant, loader)] = {
            'tried': len(rs),
            'clean_errors': sum(
                r[loader]['outcome'] == 'error' and not failed(r, loader)
                for r in rs),
            'correct_loads': sum(
                r[loader]['outcome'] == 'load' and r[loader]['correct']
                for r in rs),
            'failures': sum(failed(r, loader) for r in rs),
        }
    error_types = {}
    for r in records:
      for loader in _LOADERS:
        if r[loader]['outcome'] != 'load':
          key = '%s/%s' % (r['variant'], r[loader]['type'])
          error_types[key] = error_types.get(key, 0) + 1
    summary = (
        'fuzz seed {}: {} mutations tried, {} crashes, {} hangs, {} failing '
        'mutations, {:.0f} s; by (export variant, loader): {}; errors: {}'
        .format(seed, len(records) + len(crashes) + len(hangs), len(crashes),
                len(hangs), len(failures), time.monotonic() - begin,
                '; '.join('{}/{}: {}'.format(v, l, c)
                          for (v, l), c in sorted(counts.items())),
                dict(sorted(error_types.items()))))
    logging.warning('%s', summary)
    print(summary)
    for r in failures[:10]:
      logging.error('Fuzz failure: %s', r)
    self.assertEqual([], crashes)
    self.assertEqual([], hangs)
    self.assertEqual([], failures[:5])
    self.assertLen(records, _MUTATIONS_PER_TEST)
    for variant in _VARIANTS:
      for loader in _LOADERS:
        self.assertGreater(counts[(variant, loader)]['correct_loads'], 0)
        self.assertGreater(counts[(variant, loader)]['clean_errors'], 0)
    self.assertGreater(error_types.get('manifest/ManifestMismatchError', 0), 0)
    self.assertGreater(error_types.get('upstream/CorruptExportError', 0), 0)

  @parameterized.parameters(0, 1)
  def testFuzz(self, seed):
    self._fuzz(seed)


if __name__ == '__main__':
  tf.test.main()
