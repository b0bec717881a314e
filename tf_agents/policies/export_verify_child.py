# coding=utf-8
"""Loads an export in a fresh process for `export_verify.verify`.

Usage: python export_verify_child.py EXPORT_DIR REFERENCE_IO SPECS_NAME
    REQUIRED_SIGNATURES

`REFERENCE_IO` and `SPECS_NAME` are file names inside `EXPORT_DIR`;
`REQUIRED_SIGNATURES` is comma-separated. Loads the export with plain
`tf.saved_model.load`, checks the required signatures and that
`get_policy_specs()` matches `SPECS_NAME`, replays the recorded reference
inputs through the `action` signature and prints one JSON document
`{"problems": [...], "replayed": [...], "train_step": ...}` on its last
stdout line.

It imports only the standard library, NumPy, TensorFlow and, if installed,
TensorFlow Probability, and asserts at exit that `tf_agents` was never
imported: the export must load without this package. It ships in the wheel
next to `export_verify.py`, which runs it as a plain script (not as a module
of the package, which would import `tf_agents`).
"""

import io
import json
import os
import sys

# Run as a script, the directory of this file (tf_agents/policies; Python
# resolves a symlinked script, e.g. in Bazel's runfiles, to its target) is
# first on sys.path; drop it so no module of the package can be imported by a
# top-level name (which would run the package's code after all).
if sys.path and os.path.realpath(sys.path[0] or os.curdir) == (
    os.path.dirname(os.path.realpath(__file__))):
  del sys.path[0]

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import tensorflow as tf

try:
  # Registers the TypeSpecs of exported distributions.
  import tensorflow_probability  # pylint: disable=unused-import
except ImportError:
  pass
# pylint: enable=g-import-not-at-top,wrong-import-position


def _replay(loaded, data, problems, replayed):
  """Feeds the recorded inputs to `action` and compares its outputs."""
  action = loaded.signatures['action']
  _, inputs = action.structured_input_signature
  if 'inputs' in data.files:  # Zeros, not stored.
    fill = int(data['unknown_dim'])
    feed = {k: tf.zeros([fill if d is None else d
                         for d in inputs[k].shape.as_list()],
                        inputs[k].dtype)
            for k in data['inputs'].tolist() if k in inputs}
    recorded = data['inputs'].tolist()
  else:  # Written by an earlier version: the inputs themselves.
    feed = {k[3:]: tf.constant(data[k]) for k in data.files
            if k.startswith('in/')}
    recorded = list(feed)
  if sorted(recorded) != sorted(inputs):
    problems.append('reference inputs do not match the action signature')
    return
  outputs = action(**feed)
  for k in data.files:
    if not k.startswith('out/'):
      continue
    name = k[4:]
    if name not in outputs:
      problems.append('action output %s is missing' % name)
    elif not np.allclose(outputs[name].numpy(), data[k],
                         rtol=1e-5, atol=1e-6):
      problems.append('action output %s differs from the reference '
                      'recorded at save time' % name)
  replayed.append('action')


def main(argv):
  export_dir, reference, specs_name, required = (
      argv[1], argv[2], argv[3], argv[4].split(','))
  result = {'problems': [], 'replayed': [], 'train_step': None}
  problems = result['problems']
  loaded = tf.saved_model.load(export_dir)
  missing = [s for s in required if s not in loaded.signatures]
  if missing:
    problems.append('missing signatures: ' + ', '.join(missing))
  if hasattr(loaded, 'get_train_step'):
    result['train_step'] = int(loaded.get_train_step().numpy())
  specs_path = os.path.join(export_dir, specs_name)
  if not tf.io.gfile.exists(specs_path):
    problems.append(specs_name + ' is missing')
  elif hasattr(loaded, 'get_policy_specs'):
    with tf.io.gfile.GFile(specs_path, 'rb') as f:
      if f.read() != loaded.get_policy_specs().numpy():
        problems.append(specs_name + ' does not match get_policy_specs()')
  reference_path = os.path.join(export_dir, reference)
  if tf.io.gfile.exists(reference_path) and 'action' in loaded.signatures:
    with tf.io.gfile.GFile(reference_path, 'rb') as f:
      data = np.load(io.BytesIO(f.read()), allow_pickle=False)
    _replay(loaded, data, problems, result['replayed'])
  assert 'tf_agents' not in sys.modules
  print(json.dumps(result))


if __name__ == '__main__':
  main(sys.argv)
