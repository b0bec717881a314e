# coding=utf-8
"""The Python runtime figures: steps, construction, updates and polls.

Ours is `saved_policy.SavedPolicy`; upstream's is
`py_tf_eager_policy.SavedModelPyTFEagerPolicy(load_specs_from_pbtxt=True)`.
See `figures` for what each figure is.
"""

import gc
import shutil
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import figures
from tf_agents.benchmarks import measurement
from tf_agents.benchmarks import saver_measurements
from tf_agents.policies import export_equivalence
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import saved_policy
from tf_agents.policies import tf_policy

# Time steps on which an updated runtime's actions are compared.
_PROBE_STEPS = 8
# Seeds of the new weights: in checkpoints, and assigned in place.
_CHECKPOINT_SEED = 1000
_IN_PLACE_SEED = 2000
# In-place updates timed per repetition (each with new values).
IN_PLACE_UPDATES = 3


def make_runtime(kind: str, export_dir: str) -> Any:
  """A runtime for `export_dir`.

  Args:
    kind: A `saved_policy` backend (ours) or `cases.UPSTREAM`.
    export_dir: The export.

  Returns:
    `SavedPolicy(export_dir, backend=kind)`, or upstream's
    `SavedModelPyTFEagerPolicy(export_dir, load_specs_from_pbtxt=True)`.
  """
  if kind == cases.UPSTREAM:
    return py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        export_dir, load_specs_from_pbtxt=True)
  return saved_policy.SavedPolicy(export_dir, backend=kind)


def _tflite_runtime(
    case: cases.PolicyCase, export_dir: str, samples: measurement.Samples
) -> Any:
  """Our `'auto'` runtime if it picks TFLite, else None (with a note)."""
  auto = make_runtime(saved_policy.BACKEND_AUTO, export_dir)
  if auto.backend == saved_policy.BACKEND_TFLITE:
    return auto
  reason = (
      'the action function is stochastic or stateful'
      if not auto.is_deterministic
      else 'TFLite does not reproduce the SavedModel outputs bit for bit'
  )
  samples.note(case.name, 'runtime_step_tflite',
               'tflite backend not exact: ' + reason)
  return None


def runtime_export(policy: tf_policy.TFPolicy, train_step: tf.Variable,
                   export_dir: str) -> str:
  """Saves `policy` with its converted models (`converted_formats`).

  Args:
    policy: The policy.
    train_step: Its train step variable.
    export_dir: Where to save.

  Returns:
    `export_dir`.
  """
  policy_saver.PolicySaver(
      policy, train_step=train_step,
      converted_formats=export_equivalence.FORMATS).save(export_dir)
  return export_dir


def measure_runtime_steps(
    case: cases.PolicyCase,
    export_dirs: Dict[str, str],
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """The Python runtimes' step latency at batch 1, alternating runtimes.

  Args:
    case: The policy case.
    export_dirs: Export directory per saver (each runtime runs its saver's).
    config: The run's settings.
    samples: Where the samples go.
  """
  runtimes = {
      'runtime_step_saved_model': make_runtime(
          saved_policy.BACKEND_SAVED_MODEL, export_dirs[cases.OURS]),
  }
  tflite = _tflite_runtime(case, export_dirs[cases.OURS], samples)
  if tflite is not None:
    runtimes['runtime_step_tflite'] = tflite
  runtimes[cases.UPSTREAM] = make_runtime(
      cases.UPSTREAM, export_dirs[cases.UPSTREAM])
  time_step = cases.np_time_step(case)
  for repetition in range(config.repetitions):
    for key in measurement.order(repetition, list(runtimes)):
      runtime = runtimes[key]
      values = measurement.latencies(
          lambda s, r=runtime: r.action(time_step, s).state,
          runtime.get_initial_state(1),
          config,
      )
      if key == cases.UPSTREAM:
        for figure in ('runtime_step_saved_model', 'runtime_step_tflite'):
          samples.add(case.name, figure, cases.UPSTREAM, values)
      else:
        samples.add(case.name, key, cases.OURS, values)
  del runtimes
  gc.collect()


def probe_actions(runtime: Any, case: cases.PolicyCase) -> np.ndarray:
  """The runtime's actions on `_PROBE_STEPS` time steps, from initial state."""
  actions = []
  for seed in range(1, _PROBE_STEPS + 1):
    step = runtime.action(cases.np_time_step(case, seed),
                          runtime.get_initial_state(1))
    actions.append(np.asarray(step.action).reshape(-1))
  return np.concatenate(actions)


def _add(samples: measurement.Samples, name: str, prefix: str, kind: str,
         seconds: float) -> None:
  """Adds a runtime sample; upstream's serves every backend's figure."""
  if kind == cases.UPSTREAM:
    for backend in figures.RUNTIME_BACKENDS:
      samples.add(name, prefix + backend, cases.UPSTREAM, seconds)
  else:
    samples.add(name, prefix + kind, cases.OURS, seconds)


def _measure_empty_polls(
    runtime: saved_policy.SavedPolicy,
    export_dir: str,
    name: str,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """`update_from_directory(export_dir)` with nothing new: time and calls."""
  runtime.update_from_directory(export_dir)  # Now the last update.
  with measurement.FileOperations() as operations:
    changed = runtime.update_from_directory(export_dir)
  samples.count_file_operations(name, 'empty_poll', operations.counts)
  samples.check(name, 'empty_poll', not changed)

  def poll(state):
    runtime.update_from_directory(export_dir)
    return state

  samples.add(name, 'empty_poll', cases.OURS,
              measurement.latencies(poll, None, config))


def _measure_one_runtime(
    kind: str,
    case: cases.PolicyCase,
    export_dir: str,
    checkpoint: str,
    repetition: int,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> Dict[str, Any]:
  """Construction, checkpoint update, in-place update (and poll) of one.

  Args:
    kind: A backend of ours, or `cases.UPSTREAM`.
    case: The policy case.
    export_dir: The export every runtime loads.
    checkpoint: A checkpoint of that policy with new weights.
    repetition: Repetition index (seeds the values assigned in place).
    config: The run's settings.
    samples: Where the samples go.

  Returns:
    The runtime's probe actions after each update (`'update_checkpoint_'`,
    `'update_in_place_'`) and, for ours, its `'backends'` after
    construction and after the checkpoint update.
  """
  name = case.name
  gc.collect()
  seconds, runtime = measurement.timed(lambda: make_runtime(kind, export_dir))
  _add(samples, name, 'construct_', kind, seconds)
  time_step = cases.np_time_step(case)
  runtime.action(time_step, runtime.get_initial_state(1))  # Serving.
  backends = [getattr(runtime, 'backend', None)]
  seconds, _ = measurement.timed(
      lambda: runtime.update_from_checkpoint(checkpoint))
  _add(samples, name, 'update_checkpoint_', kind, seconds)
  backends.append(getattr(runtime, 'backend', None))
  result = {'update_checkpoint_': probe_actions(runtime, case),
            'backends': backends}

  # As `ReverbVariableContainer.update(policy.variables())`: the variables
  # are taken once and assigned again and again (the steady state).
  variables = runtime.variables()
  state = runtime.get_initial_state(1)
  for update in range(IN_PLACE_UPDATES):
    values = cases.fresh_values(
        variables, _IN_PLACE_SEED + IN_PLACE_UPDATES * repetition + update)

    def update_in_place(values=values):
      for variable, value in zip(variables, values):
        variable.assign(value)
      return runtime.action(time_step, state)

    seconds, _ = measurement.timed(update_in_place)
    _add(samples, name, 'update_in_place_', kind, seconds)
  result['update_in_place_'] = probe_actions(runtime, case)
  if kind == saved_policy.BACKEND_SAVED_MODEL:
    _measure_empty_polls(runtime, export_dir, name, config, samples)
  return result


def _check_served(
    case: cases.PolicyCase,
    results: Dict[str, Dict[str, Any]],
    samples: measurement.Samples,
) -> None:
  """Checks that ours acted as upstream after each update (deterministic)."""
  if not case.deterministic:
    return
  for prefix in ('update_checkpoint_', 'update_in_place_'):
    reference = results[cases.UPSTREAM][prefix]
    for backend in figures.RUNTIME_BACKENDS:
      samples.check(case.name, prefix + backend,
                    np.array_equal(results[backend][prefix], reference))


def _write_checkpoint(
    saver: policy_saver.PolicySaver,
    policy: tf_policy.TFPolicy,
    path: str,
    seed: int,
) -> None:
  """Gives `policy` new weights and writes them with `save_checkpoint`."""
  variables = policy.variables()
  for variable, value in zip(variables, cases.fresh_values(variables, seed)):
    variable.assign(value)
  saver.save_checkpoint(path)


def _note_backends(
    case: cases.PolicyCase,
    backends: List[List[Any]],
    samples: measurement.Samples,
) -> None:
  """Notes which backend `'auto'` ran at load and after the update."""
  for index, figure in enumerate(('construct_auto', 'update_checkpoint_auto')):
    chosen = sorted({str(b[index]) for b in backends})
    samples.note(case.name, figure, '{}: {}'.format(
        'auto ran' if index == 0 else 'auto ran after it',
        '/'.join(chosen)))


def measure_runtime_updates(
    case: cases.PolicyCase,
    policy: tf_policy.TFPolicy,
    export_dir: str,
    work_dir: str,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """Construction, update and empty-poll figures of the runtimes.

  Each repetition writes a checkpoint with new weights (our
  `save_checkpoint`), then, for our backends and upstream's runtime in
  rotating order: constructs the runtime on `export_dir`, steps it once,
  updates it from that checkpoint, then assigns new values to its variables
  and steps it once; our `'saved_model'` runtime then polls `export_dir`.

  Args:
    case: The policy case.
    policy: Its policy (gets new weights; same variables as the export).
    export_dir: An export of `policy` written by our saver.
    work_dir: Scratch directory for the checkpoints.
    config: The run's settings.
    samples: Where the samples go.
  """
  saver = policy_saver.PolicySaver(
      policy, train_step=tf.Variable(0, dtype=tf.int64))
  kinds = list(figures.RUNTIME_BACKENDS) + [cases.UPSTREAM]
  backends = []
  for repetition in range(config.repetitions):
    checkpoint = saver_measurements.checkpoint_dir(work_dir, repetition + 1)
    _write_checkpoint(saver, policy, checkpoint,
                      _CHECKPOINT_SEED + repetition)
    results = {}
    for kind in measurement.order(repetition, kinds):
      results[kind] = _measure_one_runtime(
          kind, case, export_dir, checkpoint, repetition, config, samples)
      gc.collect()  # The runtime is gone before the next one loads.
    _check_served(case, results, samples)
    backends.append(results[saved_policy.BACKEND_AUTO]['backends'])
    shutil.rmtree(checkpoint, ignore_errors=True)
  _note_backends(case, backends, samples)
