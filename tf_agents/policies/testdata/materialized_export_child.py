# coding=utf-8
"""Loads a materialized export without tf_agents; policy_loader_test's child.

Usage: python materialized_export_child.py EXPORT_DIR

Checks the restored metadata and that `action` runs on a batch of 2, asserts
`tf_agents` was never imported and prints `fresh process ok`.
"""

# pylint: disable=unused-import
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
metadata = loaded.signatures['get_metadata']()
assert int(metadata['episodes']) == 42, metadata
assert int(metadata['env_steps']) == 100, metadata
signature = loaded.signatures['action']
action = signature(**{
    k: tf.zeros([2] + s.shape[1:].as_list(), s.dtype)
    for k, s in signature.structured_input_signature[1].items()
})['action']
assert action.shape == (2,), action
assert 'tf_agents' not in sys.modules
print('fresh process ok')
