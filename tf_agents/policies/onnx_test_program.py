# coding=utf-8
"""Runs an ONNX policy model with onnxruntime alone (a test's child process).

Usage: python onnx_test_program.py MODEL INPUTS_NPZ OUTPUTS_NPZ

`INPUTS_NPZ` holds `steps` (the number of steps), the time-step inputs of
step `t` as `<t>/<input name>` and the initial policy state as
`<input name>` for every other model input. Each step feeds the state
outputs back unchanged, as the model's metadata says (output
`next_<key>` -> input `<key>`). `OUTPUTS_NPZ` gets every output of step `t`
as `<t>/<output name>`.

Imports of `tensorflow` and `tf_agents` fail here, and the program checks
at exit that neither was imported: the model must run without them. The
file imports nothing from this repository, so it runs as a plain script.
"""

import importlib.abc
import json
import sys

_BLOCKED = ('tensorflow', 'tf_agents')
_STATE_OUTPUTS = 'tf_agents.state_outputs'


class _Blocker(importlib.abc.MetaPathFinder):
  """Fails every import of a blocked top-level module."""

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name.split('.')[0] in _BLOCKED:
      raise ImportError('blocked in the ONNX test program: ' + name)
    return None


def main(argv):
  sys.meta_path.insert(0, _Blocker())
  import numpy as np  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top

  model_path, inputs_path, outputs_path = argv[1:4]
  session = onnxruntime.InferenceSession(
      model_path, providers=['CPUExecutionProvider'])
  metadata = session.get_modelmeta().custom_metadata_map
  feedback = json.loads(metadata.get(_STATE_OUTPUTS, '{}'))
  output_names = [o.name for o in session.get_outputs()]
  with np.load(inputs_path) as data:
    inputs = {k: data[k] for k in data.files}
  steps = int(inputs.pop('steps'))
  state = {k: v for k, v in inputs.items() if '/' not in k}
  results = {}
  for t in range(steps):
    feed = dict(state)
    prefix = '{}/'.format(t)
    feed.update({k[len(prefix):]: v for k, v in inputs.items()
                 if k.startswith(prefix)})
    outputs = dict(zip(output_names, session.run(output_names, feed)))
    for name, value in outputs.items():
      results[prefix + name] = value
    state = {feedback[name]: value for name, value in outputs.items()
             if name in feedback}
  np.savez(outputs_path, **results)
  for name in _BLOCKED:
    if name in sys.modules:
      raise AssertionError(name + ' was imported')
  print(json.dumps({'steps': steps, 'outputs': output_names,
                    'feedback': feedback}))


if __name__ == '__main__':
  main(sys.argv)
