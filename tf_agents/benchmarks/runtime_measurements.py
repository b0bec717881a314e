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
from tf_agents.policies import export_publish
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import saved_policy
from tf_agents.policies import tf_policy

# Time steps on which an updated runtime's actions are compared.
_PROBE_STEPS = 8
# Seeds of the new weights: in checkpoints, and assigned in place.
_CHECKPOINT_SEED = 1000
_IN_PLACE_SEED = 2000
# The batch size of the batched runtime step figures.
_BATCH = 64
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
  for figure in ('runtime_step_tflite', 'runtime_step_tflite_b64'):
    samples.note(case.name, figure, 'tflite backend not exact: ' + reason)
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


def _numpy_forward(weights: List[np.ndarray]) -> Any:
  """A plain NumPy greedy forward pass of an MLP Q network's weights.

  The floor a runtime of the same weights can reach: each step reads every
  weight once (memory bandwidth) and does the same multiplications.

  Args:
    weights: `(kernel, bias)` pairs of the dense layers in order (the
      export's `model_variables` of a `QNetwork` MLP).

  Returns:
    A function of a `[batch, observation]` float32 array to the greedy
    actions.
  """
  layers = list(zip(weights[0::2], weights[1::2]))

  def forward(observation):
    x = observation
    for index, (kernel, bias) in enumerate(layers):
      x = x @ kernel + bias
      if index + 1 < len(layers):
        np.maximum(x, 0.0, out=x)
    return np.argmax(x, axis=-1)

  return forward


def measure_runtime_steps(
    case: cases.PolicyCase,
    export_dirs: Dict[str, str],
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> None:
  """The Python runtimes' step latency at batch 1 and 64, alternating.

  Batch 1 is one unbatched environment, as `PyDriver` drives it; batch 64 a
  batched environment. For MLPs, a NumPy forward pass of the same weights
  is timed too (ours only: the floor).

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
  forward = None
  if case.kind == 'q_mlp':
    forward = _numpy_forward(export_equivalence.model_weights(
        export_publish.current_version(export_dirs[cases.OURS]).path))
  for batch, suffix in ((None, ''), (_BATCH, '_b64')):
    time_step = (cases.np_time_step(case) if batch is None else
                 cases.np_batched_time_step(case, batch))
    if batch is not None:
      # Upstream's runtime adds a batch dimension unless told not to.
      runtimes[cases.UPSTREAM] = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
          export_dirs[cases.UPSTREAM], load_specs_from_pbtxt=True,
          batch_time_steps=False)
    keys = list(runtimes) + (['numpy_step'] if forward else [])
    for repetition in range(config.repetitions):
      for key in measurement.order(repetition, keys):
        if key == 'numpy_step':
          observation = time_step.observation.reshape(
              -1, case.observation_size)
          samples.add(case.name, key + suffix, cases.OURS,
                      measurement.latencies(
                          lambda s, o=observation: (forward(o), s)[1], (),
                          config))
          continue
        runtime = runtimes[key]
        values = measurement.latencies(
            lambda s, r=runtime, t=time_step: r.action(t, s).state,
            runtime.get_initial_state(batch or 1),
            config,
        )
        if key == cases.UPSTREAM:
          for figure in ('runtime_step_saved_model', 'runtime_step_tflite'):
            samples.add(case.name, figure + suffix, cases.UPSTREAM, values)
        else:
          samples.add(case.name, key + suffix, cases.OURS, values)
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
