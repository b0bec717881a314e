# coding=utf-8
"""Child programs of the publishing tests: a writer and a checking reader.

Run as `python -m tf_agents.policies.publish_test_programs <program> ...`:

* `writer EXPORT_DIR FIRST COUNT PERIOD`: publishes versions `FIRST`,
  `FIRST + 1`, ... of a small policy whose every weight is drawn from a
  generator seeded by the version (`weights_for`), its train step and
  metadata `version` set to it. Version k is published with `save` when k
  is even or the first, `save_checkpoint` otherwise; every fifth version is
  also saved into a new directory `EXPORT_DIR-<k>`. Sleeps `PERIOD` seconds
  between publishes. Prints `published <k>` after each.
* `reader EXPORT_DIR LOADS`: loads `EXPORT_DIR` (published at least once)
  with `SavedPolicy` `LOADS` times, each time also updating it in place from
  `EXPORT_DIR`, and checks that each load and each update is one version
  (`Checker.mismatch`). Prints one JSON line: `{"loads", "updates",
  "versions", "mixed", "mixes", "errors"}`.
"""

import json
import os
import sys
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_errors
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as utils
from tf_agents.policies import saved_policy

_PROBES = 32


def make_policy() -> Any:
  """The policy both programs build: a small greedy Q policy."""
  return utils.make_policy(utils.STATELESS_DETERMINISTIC)


def weights_for(policy: Any, version: int) -> List[np.ndarray]:
  """Weights of `version`: a fresh draw, so actions tell versions apart."""
  rng = np.random.RandomState(version)
  return [rng.uniform(-1.0, 1.0, v.shape).astype(v.dtype.as_numpy_dtype)
          for v in policy.variables()]


def set_version(policy: Any, variables: Sequence[tf.Variable],
                version: int) -> None:
  for variable, value in zip(variables, weights_for(policy, version)):
    variable.assign(value)


def probe_time_step() -> Any:
  return utils.time_steps(_PROBES, 1, seed=7)


def writer(export_dir: str, first: int, count: int, period: float) -> None:
  policy = make_policy()
  train_step = tf.Variable(first, dtype=tf.int64)
  version = tf.Variable(first, dtype=tf.int64)
  saver = policy_saver.PolicySaver(
      policy, batch_size=None, train_step=train_step,
      metadata={'version': version})
  for k in range(first, first + count):
    set_version(policy, policy.variables(), k)
    train_step.assign(k)
    version.assign(k)
    if k % 2 == 0 or k == first:
      saver.save(export_dir)
    else:
      saver.save_checkpoint(export_dir)
    if k % 5 == 0:
      saver.save('{}-{}'.format(export_dir, k))
    print('published', k, flush=True)
    time.sleep(period)


class Checker(object):
  """Tells which version a loaded `SavedPolicy` serves, and whether mixed."""

  def __init__(self):
    self._policy = make_policy()
    self._time_step = probe_time_step()
    self._expected = {}

  def _actions(self, version: int) -> np.ndarray:
    if version not in self._expected:
      set_version(self._policy, self._policy.variables(), version)
      self._expected[version] = self._policy.action(
          self._time_step).action.numpy()
    return self._expected[version]

  def mismatch(self, loaded: saved_policy.SavedPolicy) -> str:
    """'' if train step, metadata, variables and actions are one version."""
    step = int(loaded.get_train_step())
    metadata = int(loaded.get_metadata()['version'].numpy())
    if metadata != step:
      return 'train step {} with metadata {}'.format(step, metadata)
    expected = weights_for(self._policy, step)
    for i, (variable, value) in enumerate(zip(loaded.variables(), expected)):
      if not np.array_equal(variable.numpy(), value):
        return 'train step {} with other values of variable {}'.format(
            step, i)
    time_step = tf.nest.map_structure(lambda t: t.numpy(), self._time_step)
    actions = loaded.action(time_step).action
    if not np.array_equal(actions, self._actions(step)):
      return 'train step {} with other actions ({} backend)'.format(
          step, loaded.backend)
    return ''


def reader(export_dir: str, loads: int) -> Dict[str, Any]:
  """Loads and updates `loads` times; counts mixed versions and errors."""
  checker = Checker()
  result = {'loads': 0, 'updates': 0, 'versions': [], 'mixed': 0,
            'mixes': [], 'errors': []}
  versions = set()

  def check(what, loaded):
    problem = checker.mismatch(loaded)
    if problem:
      result['mixed'] += 1
      result['mixes'].append('{}: {}'.format(what, problem))
    versions.add(int(loaded.get_train_step()))

  while result['loads'] < loads:
    try:
      loaded = saved_policy.SavedPolicy(export_dir, backend='saved_model')
      result['loads'] += 1
      check('load', loaded)
      loaded.update_from_checkpoint(export_dir)
      result['updates'] += 1
      check('update', loaded)
    except Exception as e:  # pylint: disable=broad-except
      result['errors'].append(export_errors.one_line(e))
  result['versions'] = sorted(versions)
  return result


def main(argv: Sequence[str]) -> None:
  program, export_dir = argv[1], argv[2]
  if program == 'writer':
    writer(export_dir, int(argv[3]), int(argv[4]), float(argv[5]))
  elif program == 'reader':
    print(json.dumps(reader(export_dir, int(argv[3]))), flush=True)
  else:
    raise SystemExit('unknown program: {}'.format(program))


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  main(sys.argv)
