# coding=utf-8
r"""Benchmarks this repository's `PolicySaver` side by side with upstream's.

A new module (upstream tf-agents has no counterpart). This repository's
`tf_agents/policies/policy_saver.py` replaces upstream's module of the same
name, so `from tf_agents.policies import policy_saver` gives ours; upstream's
copy is imported from the installed tf-agents distribution under the module
name `upstream_policy_saver` (`load_upstream_policy_saver`). Both savers
export the same policy objects in one process, and every figure is measured
for ours and upstream's alternately (the order flips every repetition), so
slow drifts of the machine hit both alike.

Policies (`CASES`; `--fast` keeps the small ones):

* `q_mlp_10k`, `q_mlp_2m`, `q_mlp_34m`: greedy `QPolicy` (as `DqnAgent.policy`)
  over a `QNetwork` MLP of about 10 thousand, 2 million and 34 million
  parameters;
* `q_rnn_lstm`: greedy `QPolicy` over a `QRnnNetwork` (LSTM);
* `actor_normal`: `ActorPolicy` over an `ActorDistributionNetwork` with a
  `NormalProjectionNetwork` (stochastic, continuous actions).

Figures (`METRICS`), per policy, for ours and upstream's:

* `first_save`: the `PolicySaver` constructor plus the first `save()` into a
  new directory (`first_save_call`: that `save()` alone);
* `repeated_save`: `save()` again by the same saver into the same directory
  after new weights were assigned to the policy's variables;
* `save_checkpoint`: `save_checkpoint()` into a new directory;
* `load`: `tf.saved_model.load` of the export;
* `first_action`: the first `action(time_step, policy_state)` of the loaded
  object (batch 1); `action_b1`, `action_b64`: its steady latency at batch 1
  and 64 (each call timed, the policy state fed back);
* `runtime_step_saved_model`, `runtime_step_tflite`: one step of the Python
  runtime on unbatched numpy time steps (one environment, as `PyDriver`
  drives it): ours is `saved_policy.SavedPolicy(export_dir, backend=...)`
  (`'tflite'` only when that backend is exact for the policy, i.e. when
  `backend='auto'` picks it), upstream's is `py_tf_eager_policy.
  SavedModelPyTFEagerPolicy` on upstream's export (the same upstream samples
  serve both rows);
* `export_size`: bytes of the files of the export, following symlinks (our
  `save()` publishes `export_dir` as a symlink to a hidden version directory;
  only the version it points to is counted);
* `peak_memory_first_save`, `peak_memory_repeated_save` (largest MLP only):
  the peak resident memory during constructor + first `save()`, and during a
  repeated `save()`, above the resident memory just before it. Each saver is
  measured in its own child process (one per saver and repetition), which
  builds the policy, resets the kernel's peak RSS counter (writing `5` to
  `/proc/self/clear_refs`) and reads `VmHWM` from `/proc/self/status`; where
  the counter cannot be reset, `ru_maxrss` of the child is used instead.
  The children run with glibc's mmap threshold fixed
  (`MALLOC_MMAP_THRESHOLD_`), so a large buffer is always counted rather
  than, by chance of the heap's history, reusing resident pages.

Before any measurement every step runs once per saver on the small MLP
(untimed), so process-wide one-time costs (lazy imports, TensorFlow's first
SavedModel write and load, the TFLite converter) are not charged to the saver
that happens to go first; per-policy costs (tracing a new network) are part
of `first_save`. Times are wall-clock (`time.perf_counter`). For each
figure the report gives the median, min and max over all samples (one per
repetition; for `load` also `extra_loads` more per repetition, in rounds
alternating the savers; one per call for steady latencies) and the ratio
ours/upstream of the medians.

Targets (`TARGETS`): repeated save of the small MLP <= 0.25; our `save()`
after new weights of the largest MLP <= 1.2 times our own `save_checkpoint`
of it; Python runtime step of the small MLP at batch 1 with the fastest exact
backend <= 0.05 and with the SavedModel backend <= 0.5 of upstream's
`SavedModelPyTFEagerPolicy`; first save, load, export size (every policy) and
peak memory <= 1.0.

Output, in `--output_dir`: `policy_saver_benchmark.md` (markdown tables),
`policy_saver_benchmark.json` (samples' median, min, max and count, ratios,
targets and the environment) and `policy_saver_benchmark.png` (ratios
ours/upstream, log scale).

Usage:

  tools/bazel run //tf_agents/policies:policy_saver_benchmark
  tools/bazel run //tf_agents/policies:policy_saver_benchmark -- --fast
  tools/bazel run //tf_agents/policies:policy_saver_benchmark -- \
      --repetitions=9 --output_dir=/tmp/bench

Under `bazel run` the default `--output_dir` is
`outputs/policy_saver_benchmark` in the workspace; otherwise a new temporary
directory. A full run takes about 9 minutes on two CPU cores; `--fast`
(2 repetitions, small policies) about a minute (two when the cores are
busy). Timings from a busy machine are noisy; compare ratios from idle runs.
"""

import os

# tf-agents needs Keras 2 (tf_keras) on TensorFlow >= 2.16; `bazel run` does
# not pass the build's environment, so set it before TensorFlow is imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import gc
import importlib.util
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types as py_types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf
# Loading upstream's exports needs TFP's TypeSpecs registered (their
# `distribution` function returns distributions).
import tensorflow_probability as tfp  # pylint: disable=unused-import

from tf_agents.networks import actor_distribution_network
from tf_agents.networks import normal_projection_network
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.policies import actor_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import q_policy
from tf_agents.policies import saved_policy
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
# pylint: enable=g-import-not-at-top,wrong-import-position

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir',
    None,
    'Where to write the table, JSON and chart. Default: '
    '$BUILD_WORKSPACE_DIRECTORY/outputs/policy_saver_benchmark under `bazel '
    'run`, else a new temporary directory.',
)
_REPETITIONS = flags.DEFINE_integer(
    'repetitions',
    None,
    'Repetitions of every figure (per saver). Default: 7, or 2 with --fast.',
)
_FAST = flags.DEFINE_bool(
    'fast',
    False,
    'Few repetitions, small policies only, short latency loops (for CI).',
)
_POLICIES = flags.DEFINE_list(
    'policies',
    None,
    'Policies to run (default: all, or the small ones with --fast). Choices: '
    'q_mlp_10k, q_mlp_2m, q_mlp_34m, q_rnn_lstm, actor_normal.',
)
_MEMORY_REPETITIONS = flags.DEFINE_integer(
    'memory_repetitions',
    None,
    'Child processes per saver for the peak-memory figures. Default: 3, or 1 '
    'with --fast.',
)

OURS = 'ours'
UPSTREAM = 'upstream'
SAVERS = (OURS, UPSTREAM)

JSON_FILENAME = 'policy_saver_benchmark.json'
MARKDOWN_FILENAME = 'policy_saver_benchmark.md'
CHART_FILENAME = 'policy_saver_benchmark.png'

_UPSTREAM_MODULE_NAME = 'upstream_policy_saver'
_NUM_ACTIONS = 4
_CONTINUOUS_ACTIONS = 2
# Warm-up calls before a steady-latency loop (not recorded).
_WARMUP_CALLS = 3


# -----------------------------------------------------------------------------
# Policies.


@dataclasses.dataclass(frozen=True)
class PolicyCase:
  """A policy to benchmark.

  Attributes:
    name: Short identifier used in the outputs.
    description: One line for the tables.
    kind: `'q_mlp'`, `'q_rnn'` or `'actor_normal'`.
    observation_size: Length of the (float32, [-1, 1]) observation vector.
    fc_layer_params: Hidden layer sizes of the MLP (for `'q_rnn'`: the input
      and output fully connected layers).
    lstm_size: LSTM sizes (`'q_rnn'` only).
    small: Whether `--fast` runs it.
  """

  name: str
  description: str
  kind: str
  observation_size: int
  fc_layer_params: Tuple[int, ...] = ()
  lstm_size: Tuple[int, ...] = ()
  small: bool = True


CASES = (
    PolicyCase(
        'q_mlp_10k',
        'greedy QPolicy, QNetwork MLP 8-96-96-4',
        'q_mlp',
        8,
        fc_layer_params=(96, 96),
    ),
    PolicyCase(
        'q_mlp_2m',
        'greedy QPolicy, QNetwork MLP 64-1400-1400-4',
        'q_mlp',
        64,
        fc_layer_params=(1400, 1400),
        small=False,
    ),
    PolicyCase(
        'q_mlp_34m',
        'greedy QPolicy, QNetwork MLP 64-4096-4096-4096-4',
        'q_mlp',
        64,
        fc_layer_params=(4096, 4096, 4096),
        small=False,
    ),
    PolicyCase(
        'q_rnn_lstm',
        'greedy QPolicy, QRnnNetwork 8-75-40-LSTM(40)-75-40-4',
        'q_rnn',
        8,
        fc_layer_params=(75, 40),
        lstm_size=(40,),
    ),
    PolicyCase(
        'actor_normal',
        'ActorPolicy, ActorDistributionNetwork 8-96-96 + '
        'NormalProjectionNetwork (2-d)',
        'actor_normal',
        8,
        fc_layer_params=(96, 96),
    ),
)
CASES_BY_NAME = {case.name: case for case in CASES}
SMALL_MLP_CASE = 'q_mlp_10k'


def _time_step_spec(case: PolicyCase) -> ts.TimeStep:
  observation_spec = tensor_spec.BoundedTensorSpec(
      (case.observation_size,), tf.float32, minimum=-1.0, maximum=1.0,
      name='observation',
  )
  return ts.time_step_spec(observation_spec)


def _normal_projection(action_spec: Any) -> Any:
  return normal_projection_network.NormalProjectionNetwork(action_spec)


def make_policy(case: PolicyCase) -> tf_policy.TFPolicy:
  """Builds the policy of `case` with its variables created.

  Args:
    case: The policy to build.

  Returns:
    A `TFPolicy`.

  Raises:
    ValueError: If `case.kind` is unknown.
  """
  time_step_spec = _time_step_spec(case)
  observation_spec = time_step_spec.observation
  if case.kind in ('q_mlp', 'q_rnn'):
    action_spec = tensor_spec.BoundedTensorSpec(
        (), tf.int32, minimum=0, maximum=_NUM_ACTIONS - 1, name='action'
    )
    if case.kind == 'q_mlp':
      net = q_network.QNetwork(
          observation_spec, action_spec, fc_layer_params=case.fc_layer_params
      )
    else:
      net = q_rnn_network.QRnnNetwork(
          observation_spec,
          action_spec,
          input_fc_layer_params=case.fc_layer_params,
          lstm_size=case.lstm_size,
          output_fc_layer_params=case.fc_layer_params,
      )
    policy = greedy_policy.GreedyPolicy(
        q_policy.QPolicy(time_step_spec, action_spec, net)
    )
  elif case.kind == 'actor_normal':
    action_spec = tensor_spec.BoundedTensorSpec(
        (_CONTINUOUS_ACTIONS,), tf.float32, minimum=-1.0, maximum=1.0,
        name='action',
    )
    net = actor_distribution_network.ActorDistributionNetwork(
        observation_spec,
        action_spec,
        fc_layer_params=case.fc_layer_params,
        continuous_projection_net=_normal_projection,
    )
    policy = actor_policy.ActorPolicy(time_step_spec, action_spec, net)
  else:
    raise ValueError('Unknown policy kind {!r}.'.format(case.kind))
  policy.action(_tf_time_step(case, 1), policy.get_initial_state(1))
  return policy


def num_parameters(policy: tf_policy.TFPolicy) -> int:
  """Number of scalars in the policy's variables."""
  return int(sum(np.prod(v.shape.as_list()) for v in policy.variables()))


def _tf_time_step(case: PolicyCase, batch_size: int) -> ts.TimeStep:
  """A batch of MID time steps as tensors."""
  rng = np.random.RandomState(batch_size)
  return ts.TimeStep(
      step_type=tf.fill([batch_size], tf.constant(ts.StepType.MID, tf.int32)),
      reward=tf.zeros([batch_size], tf.float32),
      discount=tf.ones([batch_size], tf.float32),
      observation=tf.constant(
          rng.uniform(-1, 1, (batch_size, case.observation_size)).astype(
              np.float32
          )
      ),
  )


def _np_time_step(case: PolicyCase) -> ts.TimeStep:
  """One unbatched MID time step as numpy arrays (one environment)."""
  rng = np.random.RandomState(0)
  return ts.TimeStep(
      step_type=np.asarray(ts.StepType.MID, np.int32),
      reward=np.asarray(0.0, np.float32),
      discount=np.asarray(1.0, np.float32),
      observation=rng.uniform(-1, 1, (case.observation_size,)).astype(
          np.float32
      ),
  )


def assign_new_weights(policy: tf_policy.TFPolicy) -> None:
  """Perturbs every floating-point variable of `policy` in place."""
  for variable in policy.variables():
    if variable.dtype.is_floating:
      variable.assign_add(
          tf.random.normal(variable.shape, stddev=0.01, dtype=variable.dtype)
      )


# -----------------------------------------------------------------------------
# The two savers.


def load_upstream_policy_saver() -> py_types.ModuleType:
  """Imports upstream tf-agents' `policy_saver.py` as `upstream_policy_saver`.

  The file is found next to upstream's `tf_policy.py` (a module this
  repository does not overlay) in the installed distribution.

  Returns:
    The module.

  Raises:
    RuntimeError: If the file found is this repository's module.
  """
  if _UPSTREAM_MODULE_NAME in sys.modules:
    return sys.modules[_UPSTREAM_MODULE_NAME]
  origin = importlib.util.find_spec('tf_agents.policies.tf_policy').origin
  path = os.path.join(os.path.dirname(origin), 'policy_saver.py')
  if os.path.realpath(path) == os.path.realpath(policy_saver.__file__):
    raise RuntimeError(
        'Upstream policy_saver.py not found: {} is this repository\'s '
        'module.'.format(path)
    )
  spec = importlib.util.spec_from_file_location(_UPSTREAM_MODULE_NAME, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[_UPSTREAM_MODULE_NAME] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[_UPSTREAM_MODULE_NAME]
    raise
  return module


def saver_module(who: str) -> py_types.ModuleType:
  """The `policy_saver` module of `who` (`OURS` or `UPSTREAM`)."""
  return policy_saver if who == OURS else load_upstream_policy_saver()


# -----------------------------------------------------------------------------
# Figures and targets.


@dataclasses.dataclass(frozen=True)
class Metric:
  """A figure measured for both savers.

  Attributes:
    key: Identifier in the JSON.
    label: Description for the tables.
    unit: `'s'` (seconds) or `'bytes'`.
    memory_only: Only measured for the peak-memory policy.
  """

  key: str
  label: str
  unit: str
  memory_only: bool = False


METRICS = (
    Metric('first_save', 'constructor + first save()', 's'),
    Metric('first_save_call', 'first save() alone', 's'),
    Metric('repeated_save', 'save() after new weights, same saver & dir', 's'),
    Metric('save_checkpoint', 'save_checkpoint()', 's'),
    Metric('load', 'tf.saved_model.load', 's'),
    Metric('first_action', 'first action() after load, batch 1', 's'),
    Metric('action_b1', 'steady action(), loaded object, batch 1', 's'),
    Metric('action_b64', 'steady action(), loaded object, batch 64', 's'),
    Metric(
        'runtime_step_saved_model',
        'Python runtime step, batch 1: SavedPolicy saved_model backend '
        '(upstream: SavedModelPyTFEagerPolicy)',
        's',
    ),
    Metric(
        'runtime_step_tflite',
        'Python runtime step, batch 1: SavedPolicy tflite backend, if exact '
        '(upstream: SavedModelPyTFEagerPolicy)',
        's',
    ),
    Metric('export_size', 'export size on disk', 'bytes'),
    Metric(
        'peak_memory_first_save',
        'peak RSS above baseline, constructor + first save()',
        'bytes',
        memory_only=True,
    ),
    Metric(
        'peak_memory_repeated_save',
        'peak RSS above baseline, save() after new weights',
        'bytes',
        memory_only=True,
    ),
)
METRICS_BY_KEY = {metric.key: metric for metric in METRICS}


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  """A goal on a ratio of medians.

  Attributes:
    name: Description for the table.
    metric: Metric key of the numerator (ours).
    threshold: The ratio must be <= this.
    policy: Policy name, or `'small_mlp'`, `'largest_mlp'`, `'memory'`
      (resolved per run), or `'*'` for one target per policy.
    versus: `'upstream'` (ratio ours/upstream of `metric`), `'ours:<key>'`
      (ratio of our medians of `metric` and `<key>`), or `'fastest_exact'`
      (our fastest exact runtime backend over upstream's runtime).
  """

  name: str
  metric: str
  threshold: float
  policy: str
  versus: str = UPSTREAM


TARGETS = (
    TargetSpec('repeated save, small MLP', 'repeated_save', 0.25, 'small_mlp'),
    TargetSpec(
        'save() after new weights vs OUR save_checkpoint(), largest MLP',
        'repeated_save',
        1.2,
        'largest_mlp',
        versus='ours:save_checkpoint',
    ),
    TargetSpec(
        'runtime step, small MLP, batch 1, fastest exact backend',
        'runtime_step_tflite',
        0.05,
        'small_mlp',
        versus='fastest_exact',
    ),
    TargetSpec(
        'runtime step, small MLP, batch 1, SavedModel backend',
        'runtime_step_saved_model',
        0.5,
        'small_mlp',
    ),
    TargetSpec('constructor + first save', 'first_save', 1.0, '*'),
    TargetSpec('load', 'load', 1.0, '*'),
    TargetSpec('export size', 'export_size', 1.0, '*'),
    TargetSpec(
        'peak memory, constructor + first save', 'peak_memory_first_save',
        1.0, 'memory',
    ),
    TargetSpec(
        'peak memory, save() after new weights', 'peak_memory_repeated_save',
        1.0, 'memory',
    ),
)


def summarize(samples: Sequence[float]) -> Optional[Dict[str, float]]:
  """Median, min, max and count of `samples` (None if there are none)."""
  if not samples:
    return None
  return {
      'median': float(statistics.median(samples)),
      'min': float(min(samples)),
      'max': float(max(samples)),
      'count': len(samples),
  }


# -----------------------------------------------------------------------------
# Configuration and measurement.


@dataclasses.dataclass
class BenchmarkConfig:
  """Settings of one run; `main` fills them from the flags.

  Attributes:
    output_dir: Where the table, JSON and chart go.
    repetitions: Repetitions of every figure per saver.
    fast: CI mode (recorded in the JSON; the other fields carry its effect).
    policies: Names of the `CASES` to run.
    memory_repetitions: Child processes per saver for peak memory (0: skip).
    extra_loads: `load` samples per saver and repetition beyond the one
      before the action figures, taken in rounds alternating the savers.
    latency_budget_seconds: Time spent per steady-latency loop (per saver,
      figure and repetition), within `min_calls`..`max_calls` calls.
    min_calls: Fewest timed calls per steady-latency loop.
    max_calls: Most timed calls per steady-latency loop.
  """

  output_dir: str
  repetitions: int = 7
  fast: bool = False
  policies: Sequence[str] = tuple(case.name for case in CASES)
  memory_repetitions: int = 3
  extra_loads: int = 2
  latency_budget_seconds: float = 1.0
  min_calls: int = 10
  max_calls: int = 1000


def fast_config(output_dir: str) -> BenchmarkConfig:
  """The `--fast` settings: small policies, 2 repetitions, short loops."""
  return BenchmarkConfig(
      output_dir=output_dir,
      repetitions=2,
      fast=True,
      policies=tuple(case.name for case in CASES if case.small),
      memory_repetitions=1,
      extra_loads=1,
      latency_budget_seconds=0.2,
      min_calls=5,
      max_calls=200,
  )


def _timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def _latencies(
    step: Callable[[Any], Any], state: Any, config: BenchmarkConfig
) -> List[float]:
  """Times calls `state = step(state)` after a warm-up; returns each call's."""
  for _ in range(_WARMUP_CALLS):
    state = step(state)
  samples = []
  deadline = time.perf_counter() + config.latency_budget_seconds
  while len(samples) < config.max_calls and (
      len(samples) < config.min_calls or time.perf_counter() < deadline
  ):
    start = time.perf_counter()
    state = step(state)
    samples.append(time.perf_counter() - start)
  return samples


def directory_size(path: str) -> int:
  """Total bytes of the files under `path`, following symlinks.

  Args:
    path: A local directory or a symlink to one.

  Returns:
    The sum of the sizes of the regular files it (transitively) holds.
  """
  total = 0
  for root, _, files in os.walk(os.path.realpath(path), followlinks=True):
    for name in files:
      total += os.stat(os.path.join(root, name)).st_size
  return total


def _order(repetition: int, items: Sequence[str]) -> List[str]:
  """`items` rotated by `repetition`, so each goes first equally often."""
  shift = repetition % len(items)
  return list(items[shift:]) + list(items[:shift])


class _Samples(object):
  """Samples per (policy, metric, saver)."""

  def __init__(self):
    self.values = {}

  def add(self, policy: str, metric: str, who: str, values: Any) -> None:
    if not isinstance(values, (list, tuple)):
      values = [values]
    key = (policy, metric, who)
    self.values.setdefault(key, []).extend(float(v) for v in values)

  def get(self, policy: str, metric: str, who: str) -> List[float]:
    return self.values.get((policy, metric, who), [])


def _measure_saves_and_loads(
    case: PolicyCase,
    policy: tf_policy.TFPolicy,
    train_step: tf.Variable,
    who: str,
    repetition: int,
    work_dir: str,
    config: BenchmarkConfig,
    samples: _Samples,
) -> str:
  """One repetition of the save, load and action figures for one saver.

  Args:
    case: The policy case.
    policy: Its policy.
    train_step: The train step variable given to the saver.
    who: `OURS` or `UPSTREAM`.
    repetition: Repetition index (names the directories).
    work_dir: Scratch directory.
    config: The run's settings.
    samples: Where the samples go.

  Returns:
    The export directory written.
  """
  module = saver_module(who)
  base = os.path.join(work_dir, case.name, who, 'rep{}'.format(repetition))
  export_dir = os.path.join(base, 'saved_model')
  checkpoint_dir = os.path.join(
      base, 'checkpoints', 'policy_checkpoint_{:010d}'.format(repetition)
  )
  tf.io.gfile.makedirs(base)
  name = case.name

  start = time.perf_counter()
  saver = module.PolicySaver(policy, train_step=train_step)
  constructed = time.perf_counter()
  saver.save(export_dir)
  end = time.perf_counter()
  samples.add(name, 'first_save', who, end - start)
  samples.add(name, 'first_save_call', who, end - constructed)

  assign_new_weights(policy)
  train_step.assign_add(1)
  elapsed, _ = _timed(lambda: saver.save(export_dir))
  samples.add(name, 'repeated_save', who, elapsed)
  if who == OURS and saver.last_save_kind != 'variables_only':
    logging.warning(
        '%s: our repeated save was %r, not variables_only.',
        name, saver.last_save_kind,
    )

  elapsed, _ = _timed(lambda: saver.save_checkpoint(checkpoint_dir))
  samples.add(name, 'save_checkpoint', who, elapsed)
  samples.add(name, 'export_size', who, directory_size(export_dir))
  del saver
  gc.collect()

  elapsed, loaded = _timed(lambda: tf.saved_model.load(export_dir))
  samples.add(name, 'load', who, elapsed)
  time_step_1 = _tf_time_step(case, 1)
  state = loaded.get_initial_state(1)
  elapsed, _ = _timed(lambda: loaded.action(time_step_1, state))
  samples.add(name, 'first_action', who, elapsed)
  for batch_size, key in ((1, 'action_b1'), (64, 'action_b64')):
    time_step = _tf_time_step(case, batch_size)
    samples.add(
        name,
        key,
        who,
        _latencies(
            lambda s, t=time_step: loaded.action(t, s).state,
            loaded.get_initial_state(batch_size),
            config,
        ),
    )
  del loaded
  gc.collect()
  return export_dir


def _measure_loads(
    name: str,
    export_dirs: Dict[str, str],
    repetition: int,
    config: BenchmarkConfig,
    samples: _Samples,
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
    for who in _order(repetition + round_index + 1, SAVERS):
      gc.collect()
      elapsed, loaded = _timed(
          lambda d=export_dirs[who]: tf.saved_model.load(d))
      samples.add(name, 'load', who, elapsed)
      del loaded


def _warm_up(work_dir: str) -> None:
  """Runs every measured step once per saver on the small MLP, untimed.

  Pays the process-wide one-time costs (lazy imports, TensorFlow's first
  SavedModel write and load, the TFLite converter) before any measurement,
  so they are not charged to whichever saver happens to go first.

  Args:
    work_dir: Scratch directory.
  """
  case = CASES_BY_NAME[SMALL_MLP_CASE]
  policy = make_policy(case)
  train_step = tf.Variable(0, dtype=tf.int64)
  config = BenchmarkConfig(
      output_dir=work_dir, latency_budget_seconds=0.0, min_calls=1,
      max_calls=1,
  )
  export_dirs = {}
  for who in SAVERS:
    export_dirs[who] = _measure_saves_and_loads(
        case, policy, train_step, who, 0, os.path.join(work_dir, 'warm_up'),
        config, _Samples(),
    )
  _measure_runtimes(case, export_dirs, config, _Samples(), {})
  shutil.rmtree(os.path.join(work_dir, 'warm_up'), ignore_errors=True)


def _measure_runtimes(
    case: PolicyCase,
    export_dirs: Dict[str, str],
    config: BenchmarkConfig,
    samples: _Samples,
    notes: Dict[str, Dict[str, str]],
) -> None:
  """The Python runtimes' step latency at batch 1, alternating runtimes.

  Args:
    case: The policy case.
    export_dirs: Export directory per saver.
    config: The run's settings.
    samples: Where the samples go.
    notes: Per policy, per metric: why a figure is missing.
  """
  runtimes = {}
  runtimes['runtime_step_saved_model'] = saved_policy.SavedPolicy(
      export_dirs[OURS], backend=saved_policy.BACKEND_SAVED_MODEL
  )
  auto = saved_policy.SavedPolicy(
      export_dirs[OURS], backend=saved_policy.BACKEND_AUTO
  )
  if auto.backend == saved_policy.BACKEND_TFLITE:
    runtimes['runtime_step_tflite'] = auto
  else:
    reason = (
        'the action function is stochastic or stateful'
        if not auto.is_deterministic
        else 'TFLite does not reproduce the SavedModel outputs bit for bit'
    )
    notes.setdefault(case.name, {})['runtime_step_tflite'] = (
        'tflite backend not exact: ' + reason
    )
    del auto
  runtimes[UPSTREAM] = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      export_dirs[UPSTREAM], load_specs_from_pbtxt=True
  )
  time_step = _np_time_step(case)
  for repetition in range(config.repetitions):
    for key in _order(repetition, list(runtimes)):
      runtime = runtimes[key]
      values = _latencies(
          lambda s, r=runtime: r.action(time_step, s).state,
          runtime.get_initial_state(1),
          config,
      )
      if key == UPSTREAM:
        samples.add(case.name, 'runtime_step_saved_model', UPSTREAM, values)
        samples.add(case.name, 'runtime_step_tflite', UPSTREAM, values)
      else:
        samples.add(case.name, key, OURS, values)
  del runtimes
  gc.collect()


def _status_bytes(field: str) -> Optional[int]:
  """A `kB` field of `/proc/self/status` in bytes (None if unavailable)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _reset_peak_rss() -> bool:
  """Resets the kernel's peak RSS (`VmHWM`) to the current RSS."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
  except OSError:
    return False
  return True


def _peak_above(baseline: int, reset: bool) -> int:
  if reset:
    peak = _status_bytes('VmHWM')
  else:
    peak = None
  if peak is None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return max(0, peak - baseline)


def measure_peak_memory(
    who: str, case_name: str, work_dir: str
) -> Dict[str, Any]:
  """Peak memory of one saver's saves; run in a fresh child process.

  Args:
    who: `OURS` or `UPSTREAM`.
    case_name: The policy case.
    work_dir: Scratch directory for the export.

  Returns:
    `{'peak_memory_first_save': bytes, 'peak_memory_repeated_save': bytes,
    'method': 'VmHWM' or 'ru_maxrss'}`.
  """
  case = CASES_BY_NAME[case_name]
  module = saver_module(who)
  policy = make_policy(case)
  train_step = tf.Variable(0, dtype=tf.int64)
  export_dir = os.path.join(work_dir, 'saved_model')
  gc.collect()
  baseline = _status_bytes('VmRSS') or 0
  reset = _reset_peak_rss()
  saver = module.PolicySaver(policy, train_step=train_step)
  saver.save(export_dir)
  first = _peak_above(baseline, reset)
  assign_new_weights(policy)
  train_step.assign_add(1)
  gc.collect()
  baseline = _status_bytes('VmRSS') or 0
  reset = reset and _reset_peak_rss()
  saver.save(export_dir)
  repeated = _peak_above(baseline, reset)
  return {
      'peak_memory_first_save': first,
      'peak_memory_repeated_save': repeated,
      'method': 'VmHWM' if reset else 'ru_maxrss',
  }


def memory_child_main() -> None:
  """Entry point of a peak-memory child: `argv[1:]` = who, case, work dir."""
  who, case_name, work_dir = sys.argv[1:4]
  result = measure_peak_memory(who, case_name, work_dir)
  sys.stdout.write('\n' + json.dumps(result) + '\n')
  sys.stdout.flush()


def _overlay_root() -> str:
  """The directory holding this repository's `tf_agents` package."""
  return os.path.dirname(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  )


def _run_memory_child(
    who: str, case_name: str, work_dir: str
) -> Dict[str, Any]:
  """Runs `measure_peak_memory` in a fresh Python process."""
  tf.io.gfile.makedirs(work_dir)
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (_overlay_root(), env.get('PYTHONPATH')) if p
  )
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env.setdefault('TF_USE_LEGACY_KERAS', '1')
  # glibc's default mmap threshold adapts to what the process freed before,
  # so whether a large buffer (e.g. TensorFlow's 8 MiB checkpoint write
  # buffer) lands on fresh pages or on resident ones freed earlier varies
  # from process to process: a saver's figure then jumps by 1 MiB between
  # children (seen: upstream's repeated save 7.4 or 8.4 MiB). A fixed
  # threshold (its default start, 128 KiB) counts every large buffer.
  env['MALLOC_MMAP_THRESHOLD_'] = str(128 * 1024)
  code = (
      'from tf_agents.policies import policy_saver_benchmark as b; '
      'b.memory_child_main()'
  )
  result = subprocess.run(
      [sys.executable, '-c', code, who, case_name, work_dir],
      env=env,
      capture_output=True,
      text=True,
      timeout=3600,
      check=False,
  )
  if result.returncode != 0:
    raise RuntimeError(
        'The peak-memory child ({}, {}) failed with status {}:\n{}'.format(
            who, case_name, result.returncode, result.stderr[-4000:]
        )
    )
  return json.loads(result.stdout.strip().splitlines()[-1])


def memory_case(policies: Sequence[str]) -> Optional[str]:
  """The largest MLP among `policies` (the peak-memory policy)."""
  mlps = [
      CASES_BY_NAME[name]
      for name in policies
      if CASES_BY_NAME[name].kind == 'q_mlp'
  ]
  if not mlps:
    return None
  return max(mlps, key=mlp_parameters).name


def mlp_parameters(case: PolicyCase) -> int:
  """Parameters of a `'q_mlp'` case's `QNetwork` (weights and biases)."""
  sizes = (case.observation_size,) + case.fc_layer_params + (_NUM_ACTIONS,)
  return sum((n + 1) * m for n, m in zip(sizes[:-1], sizes[1:]))


# -----------------------------------------------------------------------------
# Results.


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Any:
  if numerator is None or not denominator:
    return None
  return numerator / denominator


def _resolve_policy(spec: TargetSpec, results: Dict[str, Any]) -> List[str]:
  policies = list(results['policies'])
  if spec.policy == '*':
    return policies
  if spec.policy == 'small_mlp':
    return [SMALL_MLP_CASE] if SMALL_MLP_CASE in policies else []
  if spec.policy in ('largest_mlp', 'memory'):
    name = results['memory_policy']
    return [name] if name else []
  return [spec.policy] if spec.policy in policies else []


def _median(results: Dict[str, Any], policy: str, metric: str,
            who: str) -> Optional[float]:
  figure = results['policies'][policy]['figures'].get(metric)
  if not figure or not figure.get(who):
    return None
  return figure[who]['median']


def evaluate_targets(results: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Evaluates `TARGETS` on the figures of `results`.

  Args:
    results: The results dict built by `PolicySaverBenchmark.run_benchmark`.

  Returns:
    One dict per target and policy: name, policy, metric, versus, ratio (None
    when a figure is missing), threshold and met.
  """
  targets = []
  for spec in TARGETS:
    for policy in _resolve_policy(spec, results):
      if spec.versus == UPSTREAM:
        ratio = results['policies'][policy]['figures'][spec.metric]['ratio']
        versus = 'upstream ' + spec.metric
      elif spec.versus.startswith('ours:'):
        other = spec.versus.split(':', 1)[1]
        ratio = _ratio(
            _median(results, policy, spec.metric, OURS),
            _median(results, policy, other, OURS),
        )
        versus = 'our ' + other
      elif spec.versus == 'fastest_exact':
        ours = [
            m
            for m in (
                _median(results, policy, 'runtime_step_saved_model', OURS),
                _median(results, policy, 'runtime_step_tflite', OURS),
            )
            if m is not None
        ]
        ratio = _ratio(
            min(ours) if ours else None,
            _median(results, policy, 'runtime_step_saved_model', UPSTREAM),
        )
        versus = 'upstream SavedModelPyTFEagerPolicy step'
      else:
        raise ValueError('Unknown versus {!r}.'.format(spec.versus))
      targets.append({
          'name': spec.name,
          'policy': policy,
          'metric': spec.metric,
          'versus': versus,
          'ratio': ratio,
          'threshold': spec.threshold,
          'met': ratio is not None and ratio <= spec.threshold,
      })
  return targets


def _format_value(value: Optional[float], unit: str) -> str:
  if value is None:
    return 'n/a'
  if unit == 's':
    if value < 1e-3:
      return '{:.1f} us'.format(value * 1e6)
    if value < 1.0:
      return '{:.2f} ms'.format(value * 1e3)
    return '{:.3f} s'.format(value)
  if value >= 1 << 20:
    return '{:.2f} MiB'.format(value / (1 << 20))
  return '{:.1f} KiB'.format(value / 1024)


def _format_summary(summary: Optional[Dict[str, float]], unit: str) -> str:
  if summary is None:
    return 'n/a'
  median = _format_value(summary['median'], unit)
  if summary['min'] == summary['max']:
    return median
  return '{} ({} – {})'.format(
      median,
      _format_value(summary['min'], unit),
      _format_value(summary['max'], unit),
  )


def _format_ratio(
    ratio: Optional[float], threshold: Optional[float] = None
) -> str:
  """Formats a ratio; with more digits if rounding would hide a miss."""
  if ratio is None:
    return 'n/a'
  if ratio >= 10:
    return '{:.1f}'.format(ratio)
  for digits in (3, 4, 5, 6):
    text = '{:.{}f}'.format(ratio, digits)
    if threshold is None or (float(text) <= threshold) == (
        ratio <= threshold
    ):
      return text
  return text


def markdown_report(results: Dict[str, Any]) -> str:
  """The markdown tables of `results` (figures, then targets).

  Args:
    results: The results dict built by `PolicySaverBenchmark.run_benchmark`.

  Returns:
    Markdown text.
  """
  env = results['environment']
  lines = [
      '# PolicySaver benchmark: ours vs upstream tf-agents 0.19.0',
      '',
      'TensorFlow {}, Python {}, {} CPUs; {} repetitions{}; medians with '
      '(min – max); ratio = ours/upstream of the medians.'.format(
          env['tensorflow'],
          env['python'],
          env['cpu_count'],
          results['config']['repetitions'],
          ' (fast mode)' if results['config']['fast'] else '',
      ),
      '',
      '## Policies',
      '',
      '| policy | description | parameters |',
      '| --- | --- | ---: |',
  ]
  for name, policy in results['policies'].items():
    lines.append('| {} | {} | {:,} |'.format(
        name, policy['description'], policy['num_parameters']))
  lines += [
      '',
      '## Figures',
      '',
      '| policy | figure | ours | upstream | ratio |',
      '| --- | --- | ---: | ---: | ---: |',
  ]
  for name, policy in results['policies'].items():
    for key, figure in policy['figures'].items():
      unit = figure['unit']
      ours = _format_summary(figure[OURS], unit)
      if figure.get('note'):
        ours = '{} ({})'.format(ours, figure['note'])
      lines.append('| {} | {} | {} | {} | {} |'.format(
          name,
          figure['label'],
          ours,
          _format_summary(figure[UPSTREAM], unit),
          _format_ratio(figure['ratio']),
      ))
  lines += [
      '',
      '## Targets',
      '',
      '| target | policy | ratio | versus | target ratio | met |',
      '| --- | --- | ---: | --- | ---: | --- |',
  ]
  for target in results['targets']:
    lines.append('| {} | {} | {} | {} | <= {} | {} |'.format(
        target['name'],
        target['policy'],
        _format_ratio(target['ratio'], target['threshold']),
        target['versus'],
        target['threshold'],
        'met' if target['met'] else '**not met**',
    ))
  met = sum(1 for t in results['targets'] if t['met'])
  lines += [
      '',
      '{} of {} targets met.'.format(met, len(results['targets'])),
      '',
  ]
  return '\n'.join(lines)


def write_chart(results: Dict[str, Any], path: str) -> None:
  """Writes a PNG bar chart of the ratios ours/upstream (log scale).

  Args:
    results: The results dict built by `PolicySaverBenchmark.run_benchmark`.
    path: The PNG file to write.
  """
  labels = []
  ratios = []
  for name, policy in results['policies'].items():
    for key, figure in policy['figures'].items():
      if figure['ratio'] is not None:
        labels.append('{}: {}'.format(name, key))
        ratios.append(figure['ratio'])
  figure = Figure(figsize=(9, 1.5 + 0.22 * max(1, len(labels))))
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  positions = np.arange(len(labels))
  colors = ['tab:green' if r <= 1.0 else 'tab:red' for r in ratios]
  axes.barh(positions, ratios, color=colors)
  axes.set_yticks(positions)
  axes.set_yticklabels(labels, fontsize=7)
  axes.invert_yaxis()
  axes.set_xscale('log')
  axes.axvline(1.0, color='black', linewidth=0.8)
  axes.set_xlabel('ours / upstream (median; < 1 is better)')
  axes.set_title('PolicySaver: ours vs upstream tf-agents 0.19.0')
  axes.grid(axis='x', which='both', alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, format='png', dpi=100)


def write_outputs(results: Dict[str, Any], output_dir: str) -> Dict[str, str]:
  """Writes the JSON, markdown and PNG files; returns their paths."""
  tf.io.gfile.makedirs(output_dir)
  paths = {
      'json': os.path.join(output_dir, JSON_FILENAME),
      'markdown': os.path.join(output_dir, MARKDOWN_FILENAME),
      'chart': os.path.join(output_dir, CHART_FILENAME),
  }
  with open(paths['json'], 'w') as f:
    json.dump(results, f, indent=2, sort_keys=False, allow_nan=False)
    f.write('\n')
  with open(paths['markdown'], 'w') as f:
    f.write(markdown_report(results))
  write_chart(results, paths['chart'])
  return paths


# -----------------------------------------------------------------------------
# The benchmark.


class PolicySaverBenchmark(tf.test.Benchmark):
  """Ours vs upstream's `PolicySaver`, its exports and Python runtimes."""

  def run_benchmark(self, config: BenchmarkConfig) -> Dict[str, Any]:
    """Measures every figure and evaluates the targets.

    Args:
      config: The run's settings.

    Returns:
      The results: `config`, `environment`, `policies` (per policy: its
      description, parameter count and `figures`, each with `label`, `unit`,
      `ours` and `upstream` summaries (median, min, max, count; None when not
      measured), `ratio` (ours/upstream of the medians) and optionally a
      `note`), `memory_policy` and `targets`.

    Raises:
      ValueError: If a policy name is unknown or `repetitions` < 1.
    """
    unknown = [name for name in config.policies if name not in CASES_BY_NAME]
    if unknown:
      raise ValueError('Unknown policies {}; choose from {}.'.format(
          unknown, sorted(CASES_BY_NAME)))
    if config.repetitions < 1:
      raise ValueError('repetitions must be >= 1, got {}.'.format(
          config.repetitions))
    load_upstream_policy_saver()
    samples = _Samples()
    notes = {}
    parameters = {}
    work_dir = tempfile.mkdtemp(prefix='policy_saver_benchmark_')
    started = time.perf_counter()
    try:
      _warm_up(work_dir)
      for name in config.policies:
        case = CASES_BY_NAME[name]
        logging.info('Benchmarking %s.', name)
        policy = make_policy(case)
        parameters[name] = num_parameters(policy)
        train_step = tf.Variable(0, dtype=tf.int64)
        kept = {}
        for repetition in range(config.repetitions):
          exports = {}
          for who in _order(repetition, SAVERS):
            export_dir = _measure_saves_and_loads(
                case, policy, train_step, who, repetition, work_dir, config,
                samples,
            )
            kept.setdefault(who, export_dir)
            exports[who] = export_dir
          _measure_loads(name, exports, repetition, config, samples)
          if repetition:
            shutil.rmtree(
                os.path.join(work_dir, name, OURS, 'rep%d' % repetition))
            shutil.rmtree(
                os.path.join(work_dir, name, UPSTREAM, 'rep%d' % repetition))
        _measure_runtimes(case, kept, config, samples, notes)
        shutil.rmtree(os.path.join(work_dir, name))
        del policy
        gc.collect()
      memory_name = memory_case(config.policies)
      if memory_name and config.memory_repetitions > 0:
        logging.info('Peak memory of saving %s (child processes).',
                     memory_name)
        methods = set()
        for repetition in range(config.memory_repetitions):
          for who in _order(repetition, SAVERS):
            child_dir = os.path.join(
                work_dir, 'memory', '{}{}'.format(who, repetition))
            result = _run_memory_child(who, memory_name, child_dir)
            shutil.rmtree(child_dir, ignore_errors=True)
            methods.add(result.pop('method'))
            for key, value in result.items():
              samples.add(memory_name, key, who, value)
        notes.setdefault(memory_name, {})
        for key in ('peak_memory_first_save', 'peak_memory_repeated_save'):
          notes[memory_name][key + ':method'] = '/'.join(sorted(methods))
      else:
        memory_name = None
    finally:
      shutil.rmtree(work_dir, ignore_errors=True)

    results = {
        'config': {
            'repetitions': config.repetitions,
            'fast': config.fast,
            'policies': list(config.policies),
            'memory_repetitions': config.memory_repetitions,
            'extra_loads': config.extra_loads,
            'latency_budget_seconds': config.latency_budget_seconds,
            'min_calls': config.min_calls,
            'max_calls': config.max_calls,
        },
        'environment': {
            'tensorflow': tf.__version__,
            'python': platform.python_version(),
            'platform': platform.platform(),
            'cpu_count': os.cpu_count(),
            'upstream_policy_saver': 'tf_agents/policies/policy_saver.py of '
                                     'the installed tf-agents distribution',
        },
        'policies': {},
        'memory_policy': memory_name,
        'wall_time_seconds': time.perf_counter() - started,
    }
    for name in config.policies:
      figures = {}
      for metric in METRICS:
        if metric.memory_only and name != memory_name:
          continue
        ours = summarize(samples.get(name, metric.key, OURS))
        upstream = summarize(samples.get(name, metric.key, UPSTREAM))
        figure = {
            'label': metric.label,
            'unit': metric.unit,
            OURS: ours,
            UPSTREAM: upstream,
            'ratio': _ratio(
                ours and ours['median'], upstream and upstream['median']
            ),
        }
        note = notes.get(name, {}).get(metric.key)
        if note:
          figure['note'] = note
        method = notes.get(name, {}).get(metric.key + ':method')
        if method:
          figure['method'] = method
        figures[metric.key] = figure
      results['policies'][name] = {
          'description': CASES_BY_NAME[name].description,
          'num_parameters': parameters[name],
          'figures': figures,
      }
    results['targets'] = evaluate_targets(results)
    return results

  def report(self, results: Dict[str, Any]) -> None:
    """Reports every figure through `tf.test.Benchmark.report_benchmark`.

    One entry per policy and figure, named
    `PolicySaverBenchmark.policy_saver.<policy>.<figure>`:
    `iters` is our sample count, `wall_time` our median (time figures) and
    `extras` hold the medians, minima and maxima of both savers and the
    ratio. The entries go to files when `TEST_REPORT_FILE_PREFIX` is set (as
    TensorFlow's benchmark tooling does), else to stdout.

    Args:
      results: The results dict built by `run_benchmark`.
    """
    for name, policy in results['policies'].items():
      for key, figure in policy['figures'].items():
        extras = {
            '{}_{}'.format(who, stat): figure[who][stat]
            for who in SAVERS
            if figure[who]
            for stat in ('median', 'min', 'max')
        }
        if figure['ratio'] is not None:
          extras['ratio'] = figure['ratio']
        ours = figure[OURS]
        self.report_benchmark(
            name='policy_saver.{}.{}'.format(name, key),
            iters=ours['count'] if ours else 0,
            wall_time=ours['median'] if ours and figure['unit'] == 's'
            else None,
            extras=extras,
        )

  def benchmark_policy_saver_fast(self) -> None:
    """`tf.test.Benchmark` entry point: the `--fast` run."""
    config = fast_config(tempfile.mkdtemp(prefix='policy_saver_benchmark_'))
    results = self.run_benchmark(config)
    write_outputs(results, config.output_dir)
    self.report(results)


def default_output_dir() -> str:
  """`outputs/policy_saver_benchmark` under `bazel run`, else a temp dir."""
  workspace = os.environ.get('BUILD_WORKSPACE_DIRECTORY')
  if workspace:
    return os.path.join(workspace, 'outputs', 'policy_saver_benchmark')
  return tempfile.mkdtemp(prefix='policy_saver_benchmark_')


def config_from_flags() -> BenchmarkConfig:
  """Builds the run's settings from the command-line flags."""
  output_dir = _OUTPUT_DIR.value or default_output_dir()
  if _FAST.value:
    config = fast_config(output_dir)
  else:
    config = BenchmarkConfig(output_dir=output_dir)
  if _REPETITIONS.value is not None:
    config.repetitions = _REPETITIONS.value
  if _POLICIES.value:
    config.policies = tuple(_POLICIES.value)
  if _MEMORY_REPETITIONS.value is not None:
    config.memory_repetitions = _MEMORY_REPETITIONS.value
  return config


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: {}'.format(argv[1:]))
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.INFO)
  config = config_from_flags()
  benchmark = PolicySaverBenchmark()
  results = benchmark.run_benchmark(config)
  paths = write_outputs(results, config.output_dir)
  if os.environ.get('TEST_REPORT_FILE_PREFIX'):
    benchmark.report(results)
  print(markdown_report(results))
  print('Wrote:')
  for kind, path in paths.items():
    print('  {:9s} {}'.format(kind + ':', path))
  print('Benchmark wall time: {:.1f} s'.format(results['wall_time_seconds']))
  return 0


if __name__ == '__main__':
  app.run(main)
