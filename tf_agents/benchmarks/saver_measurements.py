# coding=utf-8
"""The saver figures: saves, checkpoints, loads and the loaded `action`.

One call of `measure_saves_and_loads` is one repetition for one saver; the
benchmark alternates the savers. See `figures` for what each figure is.
"""

import gc
import os
import time
from typing import Dict

from absl import logging
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import measurement
from tf_agents.policies import export_publish
from tf_agents.policies import tf_policy


# Successive `save_checkpoint` calls timed per saver and repetition.
CHECKPOINTS_PER_REPETITION = 4


def checkpoint_dir(base: str, number: int) -> str:
  """`<base>/checkpoints/policy_checkpoint_<number>` (the saver's layout)."""
  return os.path.join(
      base, 'checkpoints', 'policy_checkpoint_{:010d}'.format(number))


def export_size(export_dir: str) -> int:
  """Bytes of the files of the export's current version.

  Our saver publishes each save as a version under `.policy_versions/` and
  hard-links its files at the top of `export_dir` (and keeps the previous
  version): the files of one version are what a reader loads and what a
  copy without `.policy_versions` holds. An upstream export is one version.

  Args:
    export_dir: An export directory of either saver.

  Returns:
    The total size of the current version's files.
  """
  return measurement.directory_size(
      export_publish.current_version(export_dir).path)


def _measure_saves(
    case: cases.PolicyCase,
    policy: tf_policy.TFPolicy,
    train_step: tf.Variable,
    who: str,
    base: str,
    samples: measurement.Samples,
) -> str:
  """First save, repeated save after new weights and `save_checkpoint`.

  Args:
    case: The policy case.
    policy: Its policy (gets new weights).
    train_step: The train step variable given to the saver.
    who: `cases.OURS` or `cases.UPSTREAM`.
    base: This repetition's directory for `who`.
    samples: Where the samples go.

  Returns:
    The export directory written.
  """
  module = cases.saver_module(who)
  export_dir = os.path.join(base, 'saved_model')
  name = case.name

  start = time.perf_counter()
  saver = module.PolicySaver(policy, train_step=train_step)
  constructed = time.perf_counter()
  saver.save(export_dir)
  end = time.perf_counter()
  samples.add(name, 'first_save', who, end - start)
  samples.add(name, 'first_save_call', who, end - constructed)

  cases.assign_new_weights(policy)
  train_step.assign_add(1)
  elapsed, _ = measurement.timed(lambda: saver.save(export_dir))
  samples.add(name, 'repeated_save', who, elapsed)
  if who == cases.OURS and saver.last_save_kind != 'variables_only':
    logging.warning(
        '%s: our repeated save was %r, not variables_only.',
        name, saver.last_save_kind,
    )

  # The learner's steady state: a checkpoint of new weights every few
  # hundred steps from the same saver, each one a sample.
  for number in range(1, CHECKPOINTS_PER_REPETITION + 1):
    cases.assign_new_weights(policy)
    train_step.assign_add(1)
    elapsed, _ = measurement.timed(
        lambda n=number: saver.save_checkpoint(checkpoint_dir(base, n)))
    samples.add(name, 'save_checkpoint', who, elapsed)
  samples.add(name, 'export_size', who, export_size(export_dir))
  return export_dir


def _measure_loaded_actions(
    case: cases.PolicyCase,
    export_dir: str,
    who: str,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """`tf.saved_model.load`, first and steady `action` of the loaded object."""
  name = case.name
  elapsed, loaded = measurement.timed(lambda: tf.saved_model.load(export_dir))
  samples.add(name, 'load', who, elapsed)
  time_step_1 = cases.tf_time_step(case, 1)
  state = loaded.get_initial_state(1)
  elapsed, _ = measurement.timed(lambda: loaded.action(time_step_1, state))
  samples.add(name, 'first_action', who, elapsed)
  for batch_size, key in ((1, 'action_b1'), (64, 'action_b64')):
    time_step = cases.tf_time_step(case, batch_size)
    samples.add(
        name,
        key,
        who,
        measurement.latencies(
            lambda s, t=time_step: loaded.action(t, s).state,
            loaded.get_initial_state(batch_size),
            config,
        ),
    )


def measure_saves_and_loads(
    case: cases.PolicyCase,
    policy: tf_policy.TFPolicy,
    train_step: tf.Variable,
    who: str,
    base: str,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> str:
  """One repetition of the save, load and action figures for one saver.

  Args:
    case: The policy case.
    policy: Its policy (gets new weights).
    train_step: The train step variable given to the saver.
    who: `cases.OURS` or `cases.UPSTREAM`.
    base: A new directory for this repetition and saver.
    config: The run's settings.
    samples: Where the samples go.

  Returns:
    The export directory written.
  """
  tf.io.gfile.makedirs(base)
  export_dir = _measure_saves(case, policy, train_step, who, base, samples)
  gc.collect()
  _measure_loaded_actions(case, export_dir, who, config, samples)
  gc.collect()
  return export_dir


def measure_loads(
    name: str,
    export_dirs: Dict[str, str],
    repetition: int,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """More `load` samples: `config.extra_loads` rounds, alternating savers.

  A load of the largest MLP is mostly the restore of its 129 MiB of
  variables, the same work for both savers, so one sample per repetition
  left its ratio to the machine's noise; rounds that alternate the savers
  back to back compare them under the same conditions.

  Args:
    name: The policy case's name.
    export_dirs: This repetition's export directory per saver.
    repetition: Repetition index (rotates which saver goes first).
    config: The run's settings.
    samples: Where the samples go.
  """
  for round_index in range(config.extra_loads):
    for who in measurement.order(repetition + round_index + 1, cases.SAVERS):
      gc.collect()
      elapsed, loaded = measurement.timed(
          lambda d=export_dirs[who]: tf.saved_model.load(d))
      samples.add(name, 'load', who, elapsed)
      del loaded
