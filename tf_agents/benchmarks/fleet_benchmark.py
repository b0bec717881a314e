# coding=utf-8
r"""Fleet benchmark: publish-to-all-actors latency, ours against upstream's pattern.

Side by side in one run, for 1, 2, 4 and 8 Ray actors on the 10k and 34M
MLPs of `cases.py`:

* `policy_fleet`: the learner saves a version
  (`save_checkpoint(weights_dir)`) and calls `Fleet.publish`: the publisher
  reads it from storage once and puts it into Ray's object store once; each
  actor takes it between two driver runs (`SavedPolicy.update_from_values`).
* upstream's pattern: the learner saves `checkpoints/policy_checkpoint_<n>`;
  each actor (a Ray actor too) lists that directory between two driver
  runs and calls `SavedModelPyTFEagerPolicy.update_from_checkpoint` on a new
  one.

Every actor steps its own random environment (`RandomPyEnvironment` with
the policy's specs) with `PyDriver`, `--steps_per_run` steps between two
checks, on both patterns. The learner publishes a version, waits until every
actor serves it, and publishes the next (alternating between three weight
draws, so consecutive versions act differently). Per version: the seconds
from the end of the save to the moment the last actor serves it. Per
configuration: median and 99th percentile of those, the actors' aggregate
steps per second while versions arrive, and torn or mixed versions: an
actor whose actions on fixed probe time steps, right after an update, are
not the learner's for that version, or who served a version never
published.

  tools/bazel run //tf_agents/benchmarks:fleet_benchmark
  tools/bazel run //tf_agents/benchmarks:fleet_benchmark -- --fast

Writes `fleet_benchmark.md` and `fleet_benchmark.json` under
`outputs/fleet_benchmark/` in the workspace (`--output_dir`).
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import functools
import json
import sys
import threading
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.drivers import py_driver
from tf_agents.environments import random_py_environment
from tf_agents.policies import policy_fleet
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
# pylint: enable=g-import-not-at-top,wrong-import-position

OURS = 'policy_fleet'
UPSTREAM = 'upstream_polling'
_PROBE_SIZE = 4
# Targets (issue: a fleet of actors on Ray).
LATENCY_TARGET = 0.5  # Our median at 8 actors / upstream's, at most.
STEPS_TARGET = 1.0  # Our aggregate steps per second / upstream's, at least.
MIN_UPDATES = 1000  # Actor updates checked for torn or mixed versions.

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where to write.')
_CASES = flags.DEFINE_list('cases', ['q_mlp_10k', 'q_mlp_34m'],
                           'Policies (names in cases.py).')
_ACTORS = flags.DEFINE_list('actors', ['1', '2', '4', '8'], 'Fleet sizes.')
_VERSIONS = flags.DEFINE_list(
    'versions', ['q_mlp_10k=36', 'q_mlp_34m=8'],
    'Versions published per configuration, per case.')
_STEPS_PER_RUN = flags.DEFINE_integer('steps_per_run', 10,
                                      'Steps between two checks.')
_FAST = flags.DEFINE_bool('fast', False, 'Small policy, 1 and 2 actors.')


def random_environment(observation_spec, action_spec, seed: int):
  """An environment with the policy's specs (an actor's `env_factory`)."""
  return random_py_environment.RandomPyEnvironment(
      observation_spec, action_spec, episode_end_probability=0.01,
      seed=seed)


class PollingActor(object):
  """Upstream's pattern: poll storage, `update_from_checkpoint` on news.

  A threaded Ray actor: `__init__` loads the export with upstream's
  `SavedModelPyTFEagerPolicy` and starts stepping.
  """

  def __init__(self, name: str, export_dir: str, checkpoints_dir: str,
               env_factory: Any, steps_per_run: int, seed: int):
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=g-import-not-at-top
    self._name = name
    self._checkpoints_dir = checkpoints_dir
    self._policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
        export_dir, load_specs_from_pbtxt=True)
    probe = policy_fleet.probe_time_steps(self._policy, _PROBE_SIZE)
    self._probes = [tf.nest.map_structure(lambda x, i=i: x[i], probe)
                    for i in range(_PROBE_SIZE)]
    self._env = env_factory(seed)
    self._steps_per_run = steps_per_run
    self._lock = threading.Lock()
    self._seq = -1
    self._applied = []
    self._probe_actions = {}
    self._steps = 0
    self._seconds = 0.0
    self._failed_reads = 0
    self._stop = threading.Event()
    self._check()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def _check(self) -> None:
    numbers = []
    for child in tf.io.gfile.listdir(self._checkpoints_dir):
      child = child.rstrip('/')
      digits = child.rsplit('_', 1)[-1]
      if digits.isdigit() and not child.startswith('.'):
        numbers.append(int(digits))
    if not numbers or max(numbers) <= self._seq:
      return
    seq = max(numbers)
    path = os.path.join(self._checkpoints_dir,
                        'policy_checkpoint_{:06d}'.format(seq))
    # Written last by both savers: the checkpoint can be read.
    if not tf.io.gfile.exists(os.path.join(path, 'variables',
                                           'variables.index')):
      return
    try:
      self._policy.update_from_checkpoint(path)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('%s: %s (next run tries again)', path, e)
      with self._lock:
        self._failed_reads += 1
      return
    applied_at = time.time()
    actions = [np.asarray(self._policy.action(p).action)
               for p in self._probes]
    with self._lock:
      self._seq = seq
      self._applied.append(('ckpt-{}'.format(seq), seq, applied_at,
                            'storage'))
      self._probe_actions[seq] = np.stack(actions)

  def _loop(self) -> None:
    driver = py_driver.PyDriver(self._env, self._policy, [],
                                max_steps=self._steps_per_run)
    time_step = self._env.reset()
    state = self._policy.get_initial_state(1)
    while not self._stop.is_set():
      self._check()
      start = time.perf_counter()
      time_step, state = driver.run(time_step, state)
      with self._lock:
        self._seconds += time.perf_counter() - start
        self._steps += self._steps_per_run

  def status(self) -> Dict[str, Any]:
    with self._lock:
      return {'name': self._name, 'applied': list(self._applied),
              'steps': self._steps, 'seconds': self._seconds,
              'probe_actions': dict(self._probe_actions)}

  def reset_counters(self) -> None:
    with self._lock:
      self._steps = 0
      self._seconds = 0.0

  def stop(self) -> None:
    self._stop.set()
    self._thread.join(timeout=30)


@dataclasses.dataclass
class Row:
  case: str
  parameters: int
  pattern: str
  actors: int
  versions: int
  updates: int
  median_seconds: float
  p99_seconds: float
  steps_per_second: float
  torn_or_mixed: int
  unreached: int


def _percentile(values: Sequence[float], q: float) -> float:
  return float(np.percentile(np.asarray(values, np.float64), q))


class Learner(object):
  """Builds a case's policy, exports it and publishes versions."""

  def __init__(self, case: cases.PolicyCase, root: str):
    self.case = case
    self.policy = cases.make_policy(case)
    self.parameters = cases.num_parameters(self.policy)
    self.train_step = tf.Variable(0, dtype=tf.int64)
    self.saver = policy_saver.PolicySaver(
        self.policy, batch_size=None, train_step=self.train_step)
    self.root = root
    self.export_dir = os.path.join(root, 'policy')
    self.saver.save(self.export_dir)
    rng = np.random.RandomState(0)
    variables = self.policy.variables()
    self._draws = [[rng.uniform(-0.1, 0.1, v.shape).astype(
        v.dtype.as_numpy_dtype) for v in variables] for _ in range(3)]
    self._expected = []
    from tf_agents.policies import saved_policy  # pylint: disable=g-import-not-at-top
    probe = policy_fleet.probe_time_steps(
        saved_policy.SavedPolicy(self.export_dir, backend='saved_model'),
        _PROBE_SIZE)
    for draw in self._draws:
      self._assign(draw)
      self._expected.append(np.asarray(self.policy.action(
          tf.nest.map_structure(tf.constant, probe)).action))
    self.env_factory = functools.partial(
        random_environment,
        tensor_spec.to_array_spec(self.policy.time_step_spec.observation),
        tensor_spec.to_array_spec(self.policy.action_spec))

  def _assign(self, values) -> None:
    for variable, value in zip(self.policy.variables(), values):
      variable.assign(value)

  def set_version(self, seq: int) -> None:
    self._assign(self._draws[seq % 3])
    self.train_step.assign(seq)

  def expected(self, seq: int) -> np.ndarray:
    return self._expected[seq % 3]


def _wait(predicate, timeout: float) -> bool:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return True
    time.sleep(0.005)
  return False


def run_ours(learner: Learner, num_actors: int, versions: int,
             steps_per_run: int, run_id: str) -> Row:
  weights_dir = os.path.join(learner.root, 'weights-' + run_id)
  learner.set_version(0)
  learner.saver.save_checkpoint(weights_dir)
  # Large policies: updates in place (steps cost the same on every backend).
  in_place = learner.parameters > 1e6
  fleet = policy_fleet.Fleet(
      learner.export_dir, weights_dir, env_factory=learner.env_factory,
      num_actors=num_actors, actor_num_cpus=0.1,
      options=policy_fleet.ActorOptions(
          in_place=in_place, steps_per_run=steps_per_run,
          storage_check_seconds=3600.0, probe_size=_PROBE_SIZE),
      name='ours-' + run_id)
  try:
    time.sleep(2.0)
    fleet.reset_counters()
    unreached = 0
    for seq in range(1, versions + 1):
      learner.set_version(seq)
      learner.saver.save_checkpoint(weights_dir)
      record = fleet.publish(time.time())
      if not fleet.wait_for(record.version, timeout=60):
        unreached += 1
      time.sleep(0.05)
    statuses = fleet.status()
    published = fleet.published()
  finally:
    fleet.shutdown()
  latencies = policy_fleet.propagation(published, statuses)
  reached = [v for v in latencies.values() if v is not None]
  ids = {v.version_id for v in published}
  for status in statuses:
    ids.update(a[0] for a in status.applied if a[3] == 'storage')
  problems = policy_fleet.check_served(sorted(ids), statuses)
  torn = sum(s.torn + s.mixed for s in statuses) + len(
      [p for p in problems if 'never published' in p])
  updates = sum(len([a for a in s.applied if a[3] == 'object_store'])
                for s in statuses)
  return Row(learner.case.name, learner.parameters, OURS, num_actors,
             versions, updates, _percentile(reached, 50),
             _percentile(reached, 99),
             sum(s.steps_per_second for s in statuses), torn, unreached)


def run_upstream(learner: Learner, num_actors: int, versions: int,
                 steps_per_run: int, run_id: str) -> Row:
  import ray  # pylint: disable=g-import-not-at-top
  checkpoints_dir = os.path.join(learner.root, 'checkpoints-' + run_id)
  saver = policy_saver.PolicySaver(
      learner.policy, batch_size=None, train_step=learner.train_step,
      max_to_keep=3)

  def save(seq):
    learner.set_version(seq)
    saver.save_checkpoint(os.path.join(
        checkpoints_dir, 'policy_checkpoint_{:06d}'.format(seq)))

  save(0)
  actor_cls = ray.remote(num_cpus=0.1, max_concurrency=4)(PollingActor)
  actors = [actor_cls.remote('upstream-{}-{}'.format(run_id, i),
                             learner.export_dir, checkpoints_dir,
                             learner.env_factory, steps_per_run, i)
            for i in range(num_actors)]
  try:
    ray.get([a.status.remote() for a in actors])
    time.sleep(2.0)
    ray.get([a.reset_counters.remote() for a in actors])
    saved_at = {}
    unreached = 0
    for seq in range(1, versions + 1):
      save(seq)
      saved_at[seq] = time.time()

      def reached(seq=seq):
        return all(s['applied'] and s['applied'][-1][1] >= seq
                   for s in ray.get([a.status.remote() for a in actors]))

      if not _wait(reached, 60):
        unreached += 1
      time.sleep(0.05)
    statuses = ray.get([a.status.remote() for a in actors])
  finally:
    for actor in actors:
      ray.kill(actor, no_restart=True)
  latencies = []
  for seq, at in saved_at.items():
    times = []
    for status in statuses:
      later = [t for _, s, t, _ in status['applied'] if s >= seq]
      times.append(min(later) - at if later else None)
    if None not in times:
      latencies.append(max(times))
  torn = 0
  updates = 0
  for status in statuses:
    for seq, actions in status['probe_actions'].items():
      if seq == 0:
        continue
      updates += 1
      if not np.array_equal(actions.reshape(learner.expected(seq).shape),
                            learner.expected(seq)):
        torn += 1
  steps = sum(s['steps'] / s['seconds'] for s in statuses if s['seconds'])
  return Row(learner.case.name, learner.parameters, UPSTREAM, num_actors,
             versions, updates, _percentile(latencies, 50),
             _percentile(latencies, 99), steps, torn, unreached)


def report(rows: Sequence[Row]) -> str:
  lines = [
      '| policy | actors | pattern | versions | actor updates | median s | '
      'p99 s | aggregate steps/s | torn or mixed |',
      '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
  for r in rows:
    lines.append('| {} | {} | {} | {} | {} | {:.3f} | {:.3f} | {:.0f} | {} |'
                 .format(r.case, r.actors, r.pattern, r.versions, r.updates,
                         r.median_seconds, r.p99_seconds, r.steps_per_second,
                         r.torn_or_mixed))
  lines += ['', '| policy | actors | median ours/upstream | '
            'steps/s ours/upstream |', '| --- | ---: | ---: | ---: |']
  by_key = {(r.case, r.actors, r.pattern): r for r in rows}
  for (case, actors, pattern), ours in sorted(by_key.items()):
    if pattern != OURS or (case, actors, UPSTREAM) not in by_key:
      continue
    theirs = by_key[(case, actors, UPSTREAM)]
    lines.append('| {} | {} | {:.3f} | {:.3f} |'.format(
        case, actors, ours.median_seconds / theirs.median_seconds,
        ours.steps_per_second / theirs.steps_per_second))
  lines.append('')
  lines += targets(rows)
  return '\n'.join(lines) + '\n'


def targets(rows: Sequence[Row]) -> List[str]:
  by_key = {(r.case, r.actors, r.pattern): r for r in rows}
  out = []
  for case in sorted({r.case for r in rows}):
    most = max(r.actors for r in rows if r.case == case)
    ours = by_key.get((case, most, OURS))
    theirs = by_key.get((case, most, UPSTREAM))
    if ours and theirs:
      ratio = ours.median_seconds / theirs.median_seconds
      out.append('- {} at {} actors: median propagation ratio {:.3f} '
                 '(target <= {}): {}'.format(
                     case, most, ratio, LATENCY_TARGET,
                     'met' if ratio <= LATENCY_TARGET else 'not met'))
    for actors in sorted({r.actors for r in rows if r.case == case}):
      ours = by_key.get((case, actors, OURS))
      theirs = by_key.get((case, actors, UPSTREAM))
      if ours and theirs:
        ratio = ours.steps_per_second / theirs.steps_per_second
        out.append('- {} at {} actors: aggregate steps/s ratio {:.3f} '
                   '(target >= {}): {}'.format(
                       case, actors, ratio, STEPS_TARGET,
                       'met' if ratio >= STEPS_TARGET else 'not met'))
  updates = sum(r.updates for r in rows)
  torn = sum(r.torn_or_mixed for r in rows)
  out.append('- torn or mixed versions: {} in {} actor updates (target: 0 '
             'in at least {}): {}'.format(
                 torn, updates, MIN_UPDATES,
                 'met' if torn == 0 and updates >= MIN_UPDATES else
                 'not met'))
  return out


def main(argv: Sequence[str]) -> int:
  del argv
  logging.set_verbosity(logging.WARNING)
  base = os.environ.get('BUILD_WORKSPACE_DIRECTORY') or os.getcwd()
  output_dir = _OUTPUT_DIR.value or os.path.join(base, 'outputs',
                                                 'fleet_benchmark')
  os.makedirs(output_dir, exist_ok=True)
  case_names = ['q_mlp_10k'] if _FAST.value else _CASES.value
  actor_counts = [1, 2] if _FAST.value else [int(a) for a in _ACTORS.value]
  versions = dict(v.split('=') for v in _VERSIONS.value)
  import tempfile  # pylint: disable=g-import-not-at-top
  work = tempfile.mkdtemp(prefix='fleet_benchmark_')
  started = policy_fleet.connect(num_cpus=max(os.cpu_count() or 1, 4),
                                 object_store_memory=2 << 30)
  rows = []
  try:
    for name in case_names:
      learner = Learner(cases.CASES_BY_NAME[name], os.path.join(work, name))
      count = int(versions.get(name, 10))
      for actors in actor_counts:
        # Alternate which pattern goes first.
        patterns = ((run_ours, run_upstream) if actors % 2 else
                    (run_upstream, run_ours))
        for run in patterns:
          run_id = '{}-{}-{}'.format(name, actors, run.__name__)
          row = run(learner, actors, count, _STEPS_PER_RUN.value, run_id)
          rows.append(row)
          print(json.dumps(dataclasses.asdict(row)), flush=True)
  finally:
    if started:
      policy_fleet.disconnect()
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(work, ignore_errors=True)
  text = report(rows)
  with open(os.path.join(output_dir, 'fleet_benchmark.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(output_dir, 'fleet_benchmark.json'), 'w') as f:
    json.dump([dataclasses.asdict(r) for r in rows], f, indent=2)
  print(text)
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
