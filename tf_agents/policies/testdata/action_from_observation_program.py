# coding=utf-8
"""Serves `action_from_observation` next to `action`; a fresh-process program.

Usage (through `policy_saver_test_utils.run_fresh_process`):
python fresh_process_runner.py BLOCKED action_from_observation_program.py ARGS

`ARGS` is the JSON list `[path, observation, state]` (a batch of 2). Prints
the served keys, both signatures' actions and whether the state outputs
agree, as JSON on its last line.
"""

import json
import sys

import numpy as np
import tensorflow as tf

ARGS = json.loads(sys.argv[1])
path, observation, state = ARGS
loaded = tf.saved_model.load(path)
state = {k: tf.constant(v, tf.float32) for k, v in state.items()}
observation = tf.constant(observation, tf.float32)
step = loaded.signatures['action'](
    arg_0_step_type=tf.fill([2], 1), arg_0_reward=tf.zeros([2]),
    arg_0_discount=tf.ones([2]), arg_0_observation=observation,
    **state)
served = loaded.signatures['action_from_observation'](
    arg_0_observation=observation, **state)
print(json.dumps({
    'keys': sorted(served),
    'action': step['action'].numpy().tolist(),
    'served': served['action'].numpy().tolist(),
    'same_state': all(np.array_equal(step[k], served[k])
                      for k in state),
}))
