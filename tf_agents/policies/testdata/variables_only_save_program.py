# coding=utf-8
"""Runs exports' `action` on ones; a fresh-process program.

Usage (through `policy_saver_test_utils.run_fresh_process`):
python fresh_process_runner.py BLOCKED variables_only_save_program.py ARGS

`ARGS` is the JSON list of export directories. Prints, per export, its train
step and the `action` output for a batch of 2 ones, as JSON on its last line
(policy_saver_atomic_test compares a variables-only re-save with a full
save).
"""

import json
import sys

import numpy as np  # pylint: disable=unused-import
import tensorflow as tf
# Registers the distribution specs.
import tensorflow_probability  # pylint: disable=unused-import

ARGS = json.loads(sys.argv[1])
out = []
for path in ARGS:
  loaded = tf.saved_model.load(path)
  fn = loaded.signatures['action']
  _, inputs = fn.structured_input_signature
  feed = {k: tf.ones([2] + s.shape.as_list()[1:], s.dtype)
          for k, s in inputs.items()}
  out.append([loaded.get_train_step().numpy().item(),
              fn(**feed)['action'].numpy().tolist()])
print(json.dumps(out))
