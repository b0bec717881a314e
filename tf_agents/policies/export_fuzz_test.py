# coding=utf-8
"""Fuzz test: mutated exports give a clear error or a correct load.

A child process applies seeded mutations (truncations, byte flips, deleted
and swapped files) to copies of a small export and loads each copy with
`export_verify.load_checked`, writing one JSON line per mutation. The parent
restarts the child after a crash (counted as a failure) and checks every
outcome: this package's `ExportError` with a one-line message naming the
export, or a load whose outputs equal the original's.
"""

import json
import os
import subprocess
import sys
import textwrap

from absl import logging
import tensorflow as tf

from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils

_MUTATIONS_PER_TEST = 250

_CHILD = textwrap.dedent("""
    import json, os, random, shutil, sys
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
    import numpy as np
    import tensorflow as tf
    from tf_agents.policies import export_errors
    from tf_agents.policies import export_verify

    source, workdir, results, seed, start, stop = sys.argv[1:7]
    start, stop = int(start), int(stop)
    feed = json.loads(open(os.path.join(workdir, 'feed.json')).read())
    expected = json.loads(open(os.path.join(workdir, 'expected.json')).read())

    def files(root):
      out = []
      for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
      return sorted(out)

    def mutate(root, rng):
      names = files(root)
      kind = rng.choice(['truncate', 'flip', 'delete', 'swap'])
      name = rng.choice(names)
      path = os.path.join(root, name)
      if kind == 'truncate':
        size = os.path.getsize(path)
        with open(path, 'r+b') as f:
          f.truncate(rng.randrange(size) if size else 0)
      elif kind == 'flip':
        size = os.path.getsize(path)
        if size:
          with open(path, 'r+b') as f:
            offset = rng.randrange(size)
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
      elif kind == 'delete':
        os.remove(path)
      else:
        other = os.path.join(root, rng.choice([n for n in names if n != name]))
        tmp = path + '.swap'
        os.rename(path, tmp)
        os.rename(other, path)
        os.rename(tmp, other)
      return '%s %s' % (kind, name)

    for i in range(start, stop):
      rng = random.Random('%s-%d' % (seed, i))
      target = os.path.join(workdir, 'm%d' % i)
      shutil.copytree(source, target)
      what = mutate(target, rng)
      record = {'i': i, 'mutation': what}
      try:
        loaded = export_verify.load_checked(target)
        fn = loaded.signatures['action']
        out = fn(**{k: tf.constant(v, dtype=fn.structured_input_signature[1][k].dtype)
                    for k, v in feed.items()})
        got = {k: v.numpy().tolist() for k, v in out.items()}
        record['outcome'] = 'load'
        record['correct'] = (
            got == expected['action'] and
            int(loaded.get_train_step().numpy()) == expected['train_step'])
      except export_errors.ExportError as e:
        record['outcome'] = 'error'
        record['type'] = type(e).__name__
        record['message'] = str(e)
      except Exception as e:
        record['outcome'] = 'foreign_error'
        record['type'] = type(e).__name__
        record['message'] = str(e)[:500]
      shutil.rmtree(target, ignore_errors=True)
      with open(results, 'a') as f:
        f.write(json.dumps(record) + '\\n')
    """)


class ExportFuzzTest(tf.test.TestCase):

  def _fuzz(self, seed):
    workdir = self.create_tempdir().full_path
    export_dir = os.path.join(workdir, 'source')
    policy = utils.make_policy(utils.STATEFUL_DETERMINISTIC)
    policy_saver.PolicySaver(
        policy, train_step=tf.Variable(11, dtype=tf.int64)
    ).save(export_dir)
    source = os.path.realpath(export_dir)
    loaded = tf.saved_model.load(source)
    action = loaded.signatures['action']
    _, inputs = action.structured_input_signature
    feed = {
        k: tf.ones([2] + s.shape.as_list()[1:], s.dtype).numpy().tolist()
        for k, s in inputs.items()
    }
    expected = {
        'action': {
            k: v.numpy().tolist()
            for k, v in action(
                **{k: tf.constant(v, inputs[k].dtype) for k, v in feed.items()}
            ).items()
        },
        'train_step': 11,
    }
    with open(os.path.join(workdir, 'feed.json'), 'w') as f:
      json.dump(feed, f)
    with open(os.path.join(workdir, 'expected.json'), 'w') as f:
      json.dump(expected, f)
    script = os.path.join(workdir, 'fuzz_child.py')
    with open(script, 'w') as f:
      f.write(_CHILD)
    results = os.path.join(workdir, 'results.jsonl')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    crashes = 0
    start = 0
    records = []
    while start < _MUTATIONS_PER_TEST:
      proc = subprocess.run(
          [sys.executable, script, source, workdir, results, str(seed),
           str(start), str(_MUTATIONS_PER_TEST)],
          cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
          check=False,
      )
      with open(results) as f:
        records = [json.loads(line) for line in f if line.strip()]
      done = records[-1]['i'] + 1 if records else 0
      if proc.returncode != 0:
        crashes += 1
        logging.error('Fuzz child crashed after mutation %d: %s', done,
                      proc.stderr[-2000:])
        done += 1  # Skip the mutation that crashed it.
      start = done
    failures = [
        r for r in records
        if r['outcome'] == 'foreign_error'
        or (r['outcome'] == 'load' and not r['correct'])
        or (r['outcome'] == 'error' and (
            '\n' in r['message']
            or os.path.join(workdir, 'm%d' % r['i']) not in r['message']))
    ]
    outcomes = {}
    for r in records:
      key = r['outcome'] if r['outcome'] != 'error' else r['type']
      outcomes[key] = outcomes.get(key, 0) + 1
    logging.warning('fuzz seed %d: %d mutations, %d crashes, %d failures, %s',
                 seed, len(records), crashes, len(failures), outcomes)
    self.assertEqual(0, crashes)
    self.assertEqual([], failures[:5])
    self.assertGreater(outcomes.get('load', 0), 0)
    self.assertGreater(outcomes.get('ManifestMismatchError', 0), 0)
    self.assertLen(records, _MUTATIONS_PER_TEST)

  def testFuzz0(self):
    self._fuzz(0)

  def testFuzz1(self):
    self._fuzz(1)


if __name__ == '__main__':
  tf.test.main()
