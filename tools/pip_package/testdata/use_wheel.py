# coding=utf-8
"""Uses the installed tf-agents wheel end to end; wheel_install_test's child.

Usage: python use_wheel.py EXPORT_DIR

Runs in the wheel's virtual environment (copied outside the repository
first): saves a small greedy Q policy to EXPORT_DIR with the installed
`PolicySaver`, reloads it and prints one JSON document: where the modules
came from, the installed version, the actions before and after the save and
the train step.
"""

import importlib.metadata
import json
import sys

import tensorflow as tf

from tf_agents.networks import q_network
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import q_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

export_dir = sys.argv[1]
tf.random.set_seed(0)
obs_spec = tensor_spec.TensorSpec([2], tf.float32, name="obs")
action_spec = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 2, "act")
net = q_network.QNetwork(obs_spec, action_spec, fc_layer_params=(4,))
policy = greedy_policy.GreedyPolicy(q_policy.QPolicy(
    ts.time_step_spec(obs_spec), action_spec, q_network=net))
train_step = tf.Variable(7, dtype=tf.int64)
policy_saver.PolicySaver(
    policy, batch_size=None, train_step=train_step).save(export_dir)

loaded = tf.saved_model.load(export_dir)
step = ts.restart(
    tf.constant([[0.5, -1.0], [2.0, 3.0], [-4.0, 0.25]]), batch_size=3)
want = policy.action(step).action.numpy()
got = loaded.action(step, ()).action.numpy()
print(json.dumps({
    "policy_saver": policy_saver.__file__,
    "q_network": q_network.__file__,
    "version": importlib.metadata.version("tf-agents"),
    "want": want.tolist(),
    "got": got.tolist(),
    "train_step": int(loaded.get_train_step().numpy()),
    "has_specs_from_saved_model": hasattr(
        policy_saver, "specs_from_saved_model"),
}))
