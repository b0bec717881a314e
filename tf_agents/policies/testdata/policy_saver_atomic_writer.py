# coding=utf-8
"""Saves a large policy again and again; the writer of policy_saver_atomic_test.

Usage: python policy_saver_atomic_writer.py EXPORT_DIR PROGRESS START COUNT

Writes `ready` to `PROGRESS`, then saves train steps START..START+COUNT-1 to
`EXPORT_DIR` (every third with explicit `SaveOptions`), appending each step
to `PROGRESS` once its save returned. The test kills it at random moments.
"""

# pylint: disable=g-import-not-at-top,g-multiple-import,protected-access
import os, sys
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
import numpy as np
import tensorflow as tf
from tf_agents.policies import export_publish
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_atomic_test as t
# Versions are retired as soon as two newer ones exist (no grace), so
# the leftovers the test counts are few.
export_publish._RETIRE_AFTER_SECONDS = 0.0

export_dir, progress, start, count = sys.argv[1:5]
start, count = int(start), int(count)
policy, train_step, bases = t.make_large_policy()
saver = policy_saver.PolicySaver(policy, batch_size=None,
                                 train_step=train_step)
with open(progress, 'a') as f:
  f.write('ready\n')
for step in range(start, start + count):
  t.set_step(policy, train_step, bases, step)
  options = tf.saved_model.SaveOptions() if step % 3 == 0 else None
  saver.save(export_dir, options=options)
  with open(progress, 'a') as f:
    f.write('%d\n' % step)
