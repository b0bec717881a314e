# coding=utf-8
r"""The peak-memory child program of the PolicySaver benchmark.

Measures one saver's peak resident memory while saving one policy, in a
fresh process so that neither saver's allocations count for the other:

  python -m tf_agents.benchmarks.memory_child ours|upstream CASE WORK_DIR

It builds the policy, resets the kernel's peak RSS counter (writing `5` to
`/proc/self/clear_refs`), runs the `PolicySaver` constructor and a first
`save()`, reads `VmHWM` from `/proc/self/status`, then does the same around
a `save()` after new weights; where the counter cannot be reset,
`ru_maxrss` is used instead. Each figure is the peak above the resident
memory just before it. The last line of its standard output is a JSON
object: `peak_memory_first_save` and `peak_memory_repeated_save` in bytes,
and `method` (`'VmHWM'` or `'ru_maxrss'`).

`run` starts it from the benchmark, with this repository first on
`PYTHONPATH` and glibc's mmap threshold fixed (`MALLOC_MMAP_THRESHOLD_`).
"""

import gc
import json
import os
import resource
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence

from absl import app
import tensorflow as tf

from tf_agents.benchmarks import cases

# glibc's default mmap threshold adapts to what the process freed before, so
# whether a large buffer (e.g. TensorFlow's 8 MiB checkpoint write buffer)
# lands on fresh pages or on resident ones freed earlier varies from process
# to process: a saver's figure then jumps by 1 MiB between children (seen:
# upstream's repeated save 7.4 or 8.4 MiB). A fixed threshold (its default
# start, 128 KiB) counts every large buffer.
MMAP_THRESHOLD_BYTES = 128 * 1024
_TIMEOUT_SECONDS = 3600
MODULE = 'tf_agents.benchmarks.memory_child'


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
  peak = _status_bytes('VmHWM') if reset else None
  if peak is None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return max(0, peak - baseline)


def measure_peak_memory(
    who: str, case_name: str, work_dir: str
) -> Dict[str, Any]:
  """Peak memory of one saver's saves; run in a fresh child process.

  Args:
    who: `cases.OURS` or `cases.UPSTREAM`.
    case_name: The policy case.
    work_dir: Scratch directory for the export.

  Returns:
    `{'peak_memory_first_save': bytes, 'peak_memory_repeated_save': bytes,
    'method': 'VmHWM' or 'ru_maxrss'}`.
  """
  case = cases.CASES_BY_NAME[case_name]
  module = cases.saver_module(who)
  policy = cases.make_policy(case)
  train_step = tf.Variable(0, dtype=tf.int64)
  export_dir = os.path.join(work_dir, 'saved_model')
  gc.collect()
  baseline = _status_bytes('VmRSS') or 0
  reset = _reset_peak_rss()
  saver = module.PolicySaver(policy, train_step=train_step)
  saver.save(export_dir)
  first = _peak_above(baseline, reset)
  cases.assign_new_weights(policy)
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


def overlay_root() -> str:
  """The directory holding this repository's `tf_agents` package."""
  return os.path.dirname(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  )


def run(who: str, case_name: str, work_dir: str) -> Dict[str, Any]:
  """Runs this program in a fresh Python process; returns its result.

  Args:
    who: `cases.OURS` or `cases.UPSTREAM`.
    case_name: The policy case.
    work_dir: Scratch directory (created).

  Returns:
    The child's result (see `measure_peak_memory`).

  Raises:
    RuntimeError: If the child fails.
  """
  tf.io.gfile.makedirs(work_dir)
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (overlay_root(), env.get('PYTHONPATH')) if p
  )
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env.setdefault('TF_USE_LEGACY_KERAS', '1')
  env['MALLOC_MMAP_THRESHOLD_'] = str(MMAP_THRESHOLD_BYTES)
  result = subprocess.run(
      [sys.executable, '-m', MODULE, who, case_name, work_dir],
      env=env,
      capture_output=True,
      text=True,
      timeout=_TIMEOUT_SECONDS,
      check=False,
  )
  if result.returncode != 0:
    raise RuntimeError(
        'The peak-memory child ({}, {}) failed with status {}:\n{}'.format(
            who, case_name, result.returncode, result.stderr[-4000:]
        )
    )
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str]) -> None:
  if len(argv) != 4 or argv[1] not in cases.SAVERS:
    raise app.UsageError(
        'Usage: python -m {} ours|upstream CASE WORK_DIR'.format(
            MODULE))
  result = measure_peak_memory(argv[1], argv[2], argv[3])
  sys.stdout.write('\n' + json.dumps(result) + '\n')
  sys.stdout.flush()


if __name__ == '__main__':
  app.run(main)
