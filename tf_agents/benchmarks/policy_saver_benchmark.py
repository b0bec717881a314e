# coding=utf-8
r"""Benchmarks this repository's policy export side by side with upstream's.

Saves, loads and runs the same policies (`cases`) with this repository's
`PolicySaver` and `SavedPolicy` and with upstream tf-agents 0.19.0's
`PolicySaver` (read from the installed distribution) and
`SavedModelPyTFEagerPolicy`, in one process, alternating (the order rotates
every repetition, so slow drifts of the machine hit both alike). What is
measured and the target of every figure are in `figures`; each target is
reported as met or not, never asserted (the program exits 0 either way).

Before any measurement every step runs once per saver and runtime on the
small MLP (untimed), so process-wide one-time costs (lazy imports,
TensorFlow's first SavedModel write and load, the TFLite converter) are not
charged to whichever goes first; per-policy costs (tracing a new network)
are part of the figures.

Output, in `--output_dir`: `policy_saver_benchmark.md` (markdown tables),
`policy_saver_benchmark.json` (every figure's median, min, max and count,
ratios, targets and the environment) and `policy_saver_benchmark.png`
(ratios ours/upstream with their targets, log scale).

Usage:

  tools/bazel run //tf_agents/benchmarks:policy_saver_benchmark
  tools/bazel run //tf_agents/benchmarks:policy_saver_benchmark -- --fast
  tools/bazel run //tf_agents/benchmarks:policy_saver_benchmark -- \
      --repetitions=9 --output_dir=/tmp/bench

Under `bazel run` the default `--output_dir` is
`outputs/policy_saver_benchmark` in the workspace; otherwise a new temporary
directory. `--fast` runs the small policies with 2 repetitions. Timings from
a busy machine are noisy; compare ratios from idle runs.
"""

import os

# tf-agents needs Keras 2 (tf_keras) on TensorFlow >= 2.16; `bazel run` does
# not pass the build's environment, so set it before TensorFlow is imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import gc
import platform
import shutil
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
# Loading upstream's exports needs TFP's TypeSpecs registered (their
# `distribution` function returns distributions).
import tensorflow_probability as tfp  # pylint: disable=unused-import

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import measurement
from tf_agents.benchmarks import memory_child
from tf_agents.benchmarks import report as report_lib
from tf_agents.benchmarks import runtime_measurements
from tf_agents.benchmarks import saver_measurements
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
    + ', '.join(case.name for case in cases.CASES) + '.',
)
_MEMORY_REPETITIONS = flags.DEFINE_integer(
    'memory_repetitions',
    None,
    'Child processes per saver for the peak-memory figures. Default: 3, or 1 '
    'with --fast.',
)

OURS = cases.OURS
UPSTREAM = cases.UPSTREAM


def warm_up(work_dir: str) -> None:
  """Runs every measured step once per saver and runtime, untimed.

  Pays the process-wide one-time costs (lazy imports, TensorFlow's first
  SavedModel write and load, the TFLite converter) before any measurement,
  so they are not charged to whichever saver or runtime happens to go first.

  Args:
    work_dir: Scratch directory.
  """
  case = cases.CASES_BY_NAME[cases.SMALL_MLP_CASE]
  policy = cases.make_policy(case)
  train_step = tf.Variable(0, dtype=tf.int64)
  config = measurement.warm_up_config(work_dir)
  base = os.path.join(work_dir, 'warm_up')
  samples = measurement.Samples()
  exports = {
      who: saver_measurements.measure_saves_and_loads(
          case, policy, train_step, who, os.path.join(base, who), config,
          samples)
      for who in cases.SAVERS
  }
  exports[OURS] = runtime_measurements.runtime_export(
      policy, train_step, os.path.join(base, 'runtime_export'))
  runtime_measurements.measure_runtime_steps(case, exports, config, samples)
  runtime_measurements.measure_runtime_updates(
      case, policy, exports[OURS], os.path.join(base, 'runtime'), config,
      samples)
  shutil.rmtree(base, ignore_errors=True)


def measure_policy(
    case: cases.PolicyCase,
    work_dir: str,
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
) -> int:
  """Every figure of one policy but peak memory.

  Args:
    case: The policy case.
    work_dir: Scratch directory.
    config: The run's settings.
    samples: Where the samples go.

  Returns:
    The policy's number of parameters.
  """
  logging.info('Benchmarking %s.', case.name)
  policy = cases.make_policy(case)
  parameters = cases.num_parameters(policy)
  train_step = tf.Variable(0, dtype=tf.int64)
  root = os.path.join(work_dir, case.name)
  kept = {}
  for repetition in range(config.repetitions):
    exports = {}
    for who in measurement.order(repetition, cases.SAVERS):
      base = os.path.join(root, who, 'rep{}'.format(repetition))
      exports[who] = saver_measurements.measure_saves_and_loads(
          case, policy, train_step, who, base, config, samples)
      kept.setdefault(who, exports[who])
    saver_measurements.measure_loads(
        case.name, exports, repetition, config, samples)
    if repetition:  # The first repetition's exports serve the runtimes.
      for who in cases.SAVERS:
        shutil.rmtree(os.path.join(root, who, 'rep{}'.format(repetition)))
  # Our runtimes serve an export with converted models and their
  # equivalence record, as a user who wants the fast backends saves it.
  kept[OURS] = runtime_measurements.runtime_export(
      policy, train_step, os.path.join(root, 'runtime_export'))
  runtime_measurements.measure_runtime_steps(case, kept, config, samples)
  runtime_measurements.measure_runtime_updates(
      case, policy, kept[OURS], os.path.join(root, 'runtime'), config,
      samples)
  shutil.rmtree(root)
  del policy
  gc.collect()
  return parameters


def measure_memory(
    config: measurement.BenchmarkConfig,
    work_dir: str,
    samples: measurement.Samples,
) -> Optional[str]:
  """The peak-memory figures of the largest MLP, in child processes.

  Args:
    config: The run's settings.
    work_dir: Scratch directory.
    samples: Where the samples go.

  Returns:
    The policy measured, or None (no MLP, or `memory_repetitions` is 0).
  """
  name = cases.memory_case(config.policies)
  if not name or config.memory_repetitions <= 0:
    return None
  logging.info('Peak memory of saving %s (child processes).', name)
  methods = set()
  for repetition in range(config.memory_repetitions):
    for who in measurement.order(repetition, cases.SAVERS):
      child_dir = os.path.join(
          work_dir, 'memory', '{}{}'.format(who, repetition))
      result = memory_child.run(who, name, child_dir)
      shutil.rmtree(child_dir, ignore_errors=True)
      methods.add(result.pop('method'))
      for key, value in result.items():
        samples.add(name, key, who, value)
  for key in ('peak_memory_first_save', 'peak_memory_repeated_save'):
    samples.method(name, key, '/'.join(sorted(methods)))
  return name


def build_results(
    config: measurement.BenchmarkConfig,
    samples: measurement.Samples,
    parameters: Dict[str, int],
    memory_policy: Optional[str],
    wall_time_seconds: float,
) -> Dict[str, Any]:
  """The results dict of a run (see `report`), targets evaluated."""
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
      'policies': {
          name: {
              'description': cases.CASES_BY_NAME[name].description,
              'num_parameters': parameters[name],
              'figures': report_lib.policy_figures(name, samples,
                                                   memory_policy),
          } for name in config.policies
      },
      'memory_policy': memory_policy,
      'largest_mlp': cases.memory_case(config.policies),
      'wall_time_seconds': wall_time_seconds,
  }
  results['targets'] = report_lib.evaluate_targets(results)
  return results


class PolicySaverBenchmark(tf.test.Benchmark):
  """Ours vs upstream's `PolicySaver`, its exports and Python runtimes."""

  def run_benchmark(self,
                    config: measurement.BenchmarkConfig) -> Dict[str, Any]:
    """Measures every figure and evaluates the targets.

    Args:
      config: The run's settings.

    Returns:
      The results (see `report`).

    Raises:
      ValueError: If a policy name is unknown or `repetitions` < 1.
    """
    cases.check_case_names(config.policies)
    if config.repetitions < 1:
      raise ValueError('repetitions must be >= 1, got {}.'.format(
          config.repetitions))
    cases.load_upstream_policy_saver()
    samples = measurement.Samples()
    parameters = {}
    work_dir = tempfile.mkdtemp(prefix='policy_saver_benchmark_')
    started = time.perf_counter()
    try:
      warm_up(work_dir)
      for name in config.policies:
        parameters[name] = measure_policy(
            cases.CASES_BY_NAME[name], work_dir, config, samples)
      memory_policy = measure_memory(config, work_dir, samples)
    finally:
      shutil.rmtree(work_dir, ignore_errors=True)
    return build_results(config, samples, parameters, memory_policy,
                         time.perf_counter() - started)

  def report(self, results: Dict[str, Any]) -> None:
    """Reports every figure through `tf.test.Benchmark.report_benchmark`.

    One entry per policy and figure, named
    `PolicySaverBenchmark.policy_saver.<policy>.<figure>`:
    `iters` is our sample count, `wall_time` our median (time figures) and
    `extras` hold the medians, minima and maxima of both sides and the
    ratio. The entries go to files when `TEST_REPORT_FILE_PREFIX` is set (as
    TensorFlow's benchmark tooling does), else to stdout.

    Args:
      results: The results dict built by `run_benchmark`.
    """
    for name, policy in results['policies'].items():
      for key, figure in policy['figures'].items():
        extras = {
            '{}_{}'.format(who, stat): figure[who][stat]
            for who in cases.SAVERS
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
    config = measurement.fast_config(
        tempfile.mkdtemp(prefix='policy_saver_benchmark_'))
    results = self.run_benchmark(config)
    report_lib.write_outputs(results, config.output_dir)
    self.report(results)


def default_output_dir() -> str:
  """`outputs/policy_saver_benchmark` under `bazel run`, else a temp dir."""
  workspace = os.environ.get('BUILD_WORKSPACE_DIRECTORY')
  if workspace:
    return os.path.join(workspace, 'outputs', 'policy_saver_benchmark')
  return tempfile.mkdtemp(prefix='policy_saver_benchmark_')


def config_from_flags() -> measurement.BenchmarkConfig:
  """Builds the run's settings from the command-line flags."""
  output_dir = _OUTPUT_DIR.value or default_output_dir()
  if _FAST.value:
    config = measurement.fast_config(output_dir)
  else:
    config = measurement.BenchmarkConfig(output_dir=output_dir)
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
  paths = report_lib.write_outputs(results, config.output_dir)
  if os.environ.get('TEST_REPORT_FILE_PREFIX'):
    benchmark.report(results)
  print(report_lib.markdown_report(results))
  print('Wrote:')
  for kind, path in paths.items():
    print('  {:9s} {}'.format(kind + ':', path))
  print('Benchmark wall time: {:.1f} s'.format(results['wall_time_seconds']))
  return 0


if __name__ == '__main__':
  app.run(main)
