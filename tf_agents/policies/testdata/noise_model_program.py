# coding=utf-8
"""Samples a stored stochastic ONNX model; a fresh-process program.

Usage (through `policy_saver_test_utils.run_fresh_process`):
python fresh_process_runner.py BLOCKED noise_model_program.py ARGS

`ARGS` is the JSON list `[version_dir, inputs_npz, outputs_npz]`. Stands in
for a runtime in another language: it reads only the export's
`converted/equivalence.json` and the ONNX model it names, draws each noise
input the record lists (`uniform` on [0, 1) or `standard_normal`, shaped
`(batch,) + shape`) from a NumPy generator seeded with the record's
`noise_seed`, and runs the model on the inputs of `inputs_npz`. Writes the
outputs to `outputs_npz` and prints the noise and output names as JSON on
its last line.
"""

import json
import os
import sys

import numpy as np
import onnxruntime

version_dir, inputs_path, outputs_path = json.loads(sys.argv[1])
with open(os.path.join(version_dir, 'converted', 'equivalence.json')) as f:
  entry = json.load(f)['formats']['onnx']
session = onnxruntime.InferenceSession(
    os.path.join(version_dir, entry['file']),
    providers=['CPUExecutionProvider'])
with np.load(inputs_path) as data:
  feed = {k: data[k] for k in data.files}
batch = next(iter(feed.values())).shape[0]
rng = np.random.default_rng(entry['noise_seed'])
for noise in entry['noise_inputs']:
  draw = {'uniform': rng.random,
          'standard_normal': rng.standard_normal}[noise['distribution']]
  shape = (batch,) + tuple(noise['shape'])
  feed[noise['name']] = draw(shape).astype(noise['dtype'])
names = [o.name for o in session.get_outputs()]
np.savez(outputs_path, **dict(zip(names, session.run(names, feed))))
print(json.dumps({'noise': [n['name'] for n in entry['noise_inputs']],
                  'outputs': names}))
