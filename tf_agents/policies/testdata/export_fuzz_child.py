# coding=utf-8
"""Loads mutated copies of two exports; the child process of export_fuzz_test.

Usage: python export_fuzz_child.py WORKDIR RESULTS SEED START STOP

`WORKDIR` holds the sources (`source_manifest`, `source_upstream`),
`feed.json` and `expected.json`. For each mutation `i` in [START, STOP) it
copies a source, damages one file (truncate, flip a bit, delete, swap two
files), loads the copy with `export_verify.load_checked` and with the runtime
(`policy_loader.load` or `SavedPolicy`), and appends one JSON record per
mutation to `RESULTS`, so a crash or hang loses only the mutation at fault.
"""

# pylint: disable=g-import-not-at-top,g-multiple-import,missing-function-docstring
import json, os, random, shutil, sys
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
import numpy as np
import tensorflow as tf
from tf_agents.policies import export_errors
from tf_agents.policies import export_verify
from tf_agents.policies import policy_loader
from tf_agents.policies import saved_policy

workdir, results, seed, start, stop = sys.argv[1:6]
start, stop = int(start), int(stop)
sources = {v: os.path.join(workdir, 'source_' + v)
           for v in ('manifest', 'upstream')}
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

def load_checked(target):
  loaded = export_verify.load_checked(target)
  fn = loaded.signatures['action']
  inputs = fn.structured_input_signature[1]
  out = fn(**{k: tf.constant(v, dtype=inputs[k].dtype)
              for k, v in feed.items()})
  got = {k: v.numpy().tolist() for k, v in out.items()}
  return (got == expected['action'] and
          int(loaded.get_train_step().numpy()) == expected['train_step'])

def runtime(target, use_loader):
  if use_loader:
    # The SavedModel backend: damage is the point, not the fastest runtime.
    policy = policy_loader.load(target, backend='saved_model')
  else:
    policy = saved_policy.SavedPolicy(target, backend='saved_model')
  got = probe(policy)
  return (len(got) == len(expected['runtime']) and
          all(np.array_equal(np.asarray(a), np.asarray(b))
              for a, b in zip(got, expected['runtime'])) and
          int(policy.get_train_step()) == expected['train_step'])

def probe(policy):
  time_step = tf.nest.map_structure(
      lambda s: np.ones((2,) + tuple(s.shape), s.dtype),
      policy.time_step_spec)
  step = policy.action(time_step, policy.get_initial_state(2))
  return [np.asarray(x).tolist()
          for x in tf.nest.flatten((step.action, step.state))]

def outcome(fn, *args):
  try:
    return {'outcome': 'load', 'correct': bool(fn(*args))}
  except export_errors.ExportError as e:
    return {'outcome': 'error', 'type': type(e).__name__,
            'message': str(e)}
  except Exception as e:
    return {'outcome': 'foreign_error', 'type': type(e).__name__,
            'message': str(e)[:500]}

for i in range(start, stop):
  rng = random.Random('%s-%d' % (seed, i))
  # Upstream-style exports cost more (most mutations reach the full
  # load), so they get a third of the mutations.
  variant = ('manifest', 'upstream', 'manifest')[i % 3]
  target = os.path.join(workdir, 'm%d' % i)
  shutil.copytree(sources[variant], target)
  record = {'i': i, 'variant': variant, 'mutation': mutate(target, rng)}
  record['load_checked'] = outcome(load_checked, target)
  record['runtime_loader'] = (
      'policy_loader.load' if i % 4 < 2 else 'SavedPolicy')
  record['runtime'] = outcome(runtime, target, i % 4 < 2)
  shutil.rmtree(target, ignore_errors=True)
  with open(results, 'a') as f:
    f.write(json.dumps(record) + '\n')
