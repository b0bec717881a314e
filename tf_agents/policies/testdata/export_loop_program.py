# coding=utf-8
"""Runs an export's nested and flat-signature loops; policy_saver_compat_test.

Usage (through `policy_saver_test_utils.run_fresh_process`):
python fresh_process_runner.py BLOCKED export_loop_program.py ARGS

`ARGS` is the JSON list `[path, steps, batch_size, pass_batch_size,
import_tfp]`. Prints `{nested, flat, metadata, train_step,
has_distribution}` as JSON on its last line.
"""

# pylint: disable=g-import-not-at-top
import collections
import json
import sys

import numpy as np
import tensorflow as tf

ARGS = json.loads(sys.argv[1])
path, steps, batch_size, pass_batch_size, import_tfp = ARGS
if import_tfp:
  # Exports with `distribution` need TFP's TypeSpecs registered (as upstream).
  import tensorflow_probability  # pylint: disable=unused-import
TimeStep = collections.namedtuple(
    'TimeStep', ['step_type', 'reward', 'discount', 'observation'])
loaded = tf.saved_model.load(path)

def time_step(step):
  return TimeStep(
      tf.constant(step['step_type'], tf.int32),
      tf.constant(step['reward'], tf.float32),
      tf.constant(step['discount'], tf.float32),
      tf.constant(step['observation'], tf.float32))

# Nested functions.
if pass_batch_size:
  state = loaded.get_initial_state(batch_size)
else:
  state = loaded.get_initial_state()
nested = []
for step in steps:
  out = loaded.action(time_step(step), state)
  state = out.state
  nested.append(np.asarray(out.action).tolist())

# Flat signatures: keys read from the signatures, state fed back unchanged.
action_fn = loaded.signatures['action']
initial_state_fn = loaded.signatures['get_initial_state']
if initial_state_fn.structured_input_signature[1]:
  flat_state = initial_state_fn(batch_size=tf.constant(batch_size))
else:
  flat_state = initial_state_fn()
_, input_specs = action_fn.structured_input_signature
flat = []
for step in steps:
  values = time_step(step)._asdict()
  inputs = dict(flat_state)
  for key, spec in input_specs.items():
    if key not in flat_state:
      field = spec.name.split('/')[-1]
      inputs[key] = values[{'obs': 'observation'}.get(field, field)]
  outputs = action_fn(**inputs)
  flat_state = {k: v for k, v in outputs.items() if k in flat_state}
  action_key = 'action' if 'action' in outputs else 'act'
  flat.append(np.asarray(outputs[action_key]).tolist())
metadata = {k: int(v) for k, v in loaded.signatures['get_metadata']().items()}
train_step = int(loaded.signatures['get_train_step']()['train_step'])
print(json.dumps({'nested': nested, 'flat': flat, 'metadata': metadata,
                  'train_step': train_step,
                  'has_distribution': hasattr(loaded, 'distribution')}))
