# coding=utf-8
"""Timing and sampling helpers of the PolicySaver benchmark.

Times are wall-clock (`time.perf_counter`). A figure's samples are kept per
(policy, figure, saver) in `Samples` and summarized as median, min, max and
count (`summarize`). `order` rotates which saver or runtime goes first in
each repetition, so slow drifts of the machine hit all alike.
`FileOperations` counts the `tf.io.gfile` calls made while it is active.
"""

import collections
import dataclasses
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from tf_agents.benchmarks import cases

# Warm-up calls before a steady-latency loop (not recorded).
_WARMUP_CALLS = 3

# `tf.io.gfile` functions by the kind of storage request they make.
FILE_OPERATION_KINDS = {
    'opens': ('GFile',),
    'stats': ('exists', 'stat', 'isdir'),
    'listings': ('listdir', 'glob', 'walk'),
    'writes': ('makedirs', 'mkdir', 'remove', 'rename', 'copy', 'rmtree'),
}


@dataclasses.dataclass
class BenchmarkConfig:
  """Settings of one run; the benchmark's `main` fills them from the flags.

  Attributes:
    output_dir: Where the table, JSON and chart go.
    repetitions: Repetitions of every figure per saver or runtime.
    fast: CI mode (recorded in the JSON; the other fields carry its effect).
    policies: Names of the `cases.CASES` to run.
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
  policies: Sequence[str] = tuple(case.name for case in cases.CASES)
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
      policies=tuple(case.name for case in cases.CASES if case.small),
      memory_repetitions=1,
      extra_loads=1,
      latency_budget_seconds=0.2,
      min_calls=5,
      max_calls=200,
  )


def warm_up_config(output_dir: str) -> BenchmarkConfig:
  """One repetition with one timed call per loop (for untimed warm-ups)."""
  return BenchmarkConfig(
      output_dir=output_dir,
      repetitions=1,
      extra_loads=0,
      latency_budget_seconds=0.0,
      min_calls=1,
      max_calls=1,
  )


def timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
  """Calls `fn()`; returns the seconds it took and its result."""
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def latencies(
    step: Callable[[Any], Any], state: Any, config: BenchmarkConfig
) -> List[float]:
  """Times calls `state = step(state)` after a warm-up.

  Args:
    step: One call of the operation; takes and returns the carried state.
    state: The initial state.
    config: Gives the time budget and the call count bounds.

  Returns:
    Each timed call's seconds.
  """
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


def order(repetition: int, items: Sequence[str]) -> List[str]:
  """`items` rotated by `repetition`, so each goes first equally often."""
  shift = repetition % len(items)
  return list(items[shift:]) + list(items[:shift])


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


class Samples(object):
  """What a run measured, per (policy, figure).

  Attributes:
    values: Samples per (policy, figure, saver).
    notes: Per (policy, figure): a remark for the tables (e.g. why a figure
      was not measured).
    checks: Per (policy, figure): `[checked, failed]` counts of the check
      that the runtime served the new weights after an update.
    file_operations: Per (policy, figure): the most `tf.io.gfile` calls of
      each kind seen in one call of the measured operation.
    methods: Per (policy, figure): how it was measured, where that varies.
  """

  def __init__(self):
    self.values = {}
    self.notes = {}
    self.methods = {}
    self.checks = {}
    self.file_operations = {}

  def add(self, policy: str, figure: str, who: str, values: Any) -> None:
    """Adds one sample or a list of samples of `who`'s `figure`."""
    if not isinstance(values, (list, tuple)):
      values = [values]
    key = (policy, figure, who)
    self.values.setdefault(key, []).extend(float(v) for v in values)

  def get(self, policy: str, figure: str, who: str) -> List[float]:
    """The samples of `who`'s `figure` (empty if none)."""
    return self.values.get((policy, figure, who), [])

  def note(self, policy: str, figure: str, text: str) -> None:
    """Sets the remark shown with `figure`."""
    self.notes[(policy, figure)] = text

  def method(self, policy: str, figure: str, text: str) -> None:
    """Sets how `figure` was measured."""
    self.methods[(policy, figure)] = text

  def check(self, policy: str, figure: str, passed: bool) -> None:
    """Records one outcome of `figure`'s served-the-new-weights check."""
    counts = self.checks.setdefault((policy, figure), [0, 0])
    counts[0] += 1
    counts[1] += 0 if passed else 1

  def count_file_operations(
      self, policy: str, figure: str, counts: Dict[str, int]
  ) -> None:
    """Keeps, per kind, the most `tf.io.gfile` calls seen in one call."""
    kept = self.file_operations.setdefault(
        (policy, figure), {kind: 0 for kind in FILE_OPERATION_KINDS})
    for kind, count in counts.items():
      kept[kind] = max(kept.get(kind, 0), count)


class FileOperations(object):
  """Counts `tf.io.gfile` calls by kind while active (a context manager).

  Replaces the functions of `FILE_OPERATION_KINDS` in the `tf.io.gfile`
  module by counting wrappers and puts them back on exit. Code that looks
  them up at call time (`tf.io.gfile.GFile(...)`) is counted; not thread
  safe.

  Attributes:
    counts: Calls per kind (`'opens'`, `'stats'`, `'listings'`, `'writes'`).
    calls: Calls per function name.
  """

  def __init__(self):
    self.counts = {kind: 0 for kind in FILE_OPERATION_KINDS}
    self.calls = collections.Counter()
    self._originals = {}

  def _wrap(self, kind: str, name: str, original: Any) -> Callable[..., Any]:
    def counted(*args, **kwargs):
      self.counts[kind] += 1
      self.calls[name] += 1
      return original(*args, **kwargs)
    return counted

  def __enter__(self) -> 'FileOperations':
    for kind, names in FILE_OPERATION_KINDS.items():
      for name in names:
        original = getattr(tf.io.gfile, name, None)
        if original is not None:
          self._originals[name] = original
          setattr(tf.io.gfile, name, self._wrap(kind, name, original))
    return self

  def __exit__(self, *unused_exc_info) -> None:
    for name, original in self._originals.items():
      setattr(tf.io.gfile, name, original)
    self._originals = {}
