# coding=utf-8
"""A fleet of actors on Ray: one learner publishes, many actors follow.

New module (upstream TF-Agents ships weights to its actors through Reverb,
`ReverbVariableContainer`, or lets each actor poll storage and call
`SavedModelPyTFEagerPolicy.update_from_checkpoint`). Here the actors are
Ray actors, on one machine or a cluster: the same code either way.

Storage and versions
--------------------
The learner writes the export once (`PolicySaver.save(export_dir)`) and then
publishes every new policy with `PolicySaver.save_checkpoint(weights_dir)`
into one directory: each call publishes a new version of `weights_dir` with
its pointer (`export_publish`: `.policy_versions/CURRENT`, an identity that
changes with every publish, never a mix of two saves). Storage stays the
source of truth: an actor that starts or restarts loads the export and the
version the pointer names (any `tf.io.gfile` path: a local disk, a shared
file system, `gs://`).

How a version reaches the actors
--------------------------------
`Fleet.publish()` (after each `save_checkpoint`) has the fleet's publisher,
in the learner's process, read the current version of `weights_dir` once,
straight into arrays, with the integrity manifest checked first and every
tensor's CRC32C as it is read, and to put its weights into Ray's object
store once
(`ray.put`, one object per version). Every actor is offered that object;
Ray hands it to the actors of one machine from shared memory (numpy arrays
without a copy) and moves it once to each other machine. An actor takes the
newest version offered between two steps (never in the middle of one: the
driver's observer, which runs after each environment step and before the
next action, is where it switches; every step is counted under the version
that chose its action), on the backend it serves (`SavedPolicy.update_from_values`: the
TFLite model takes the weights through its `set_weights` signature, no
conversion, no storage read), and checks it: the actions on a few fixed
probe time steps must equal the publisher's for that version (deterministic
policies), else the version counts as torn.

Faults
------
* An actor killed (`ray.kill(..., no_restart=False)`, a crashed process) is
  restarted by Ray (`max_restarts`), loads the current version from
  storage and resumes stepping.
* A learner killed in the middle of a `save_checkpoint` never switched the
  pointer: nothing is published, every actor keeps the previous complete
  version.
* A version that fails the publisher's checks (damaged on storage) is
  refused: it is never put into the object store; every actor is told, stays
  on its version and reports the error once (`ActorStatus.errors`, and a
  warning in its log); a later good version is taken as usual.
* Every `storage_check_seconds` each actor reads the pointer (one small
  read). A version that stays unoffered for a whole period (the learner
  died between its save and `publish`) is read from
  storage by the actor itself; a storage that cannot be reached is reported
  once, and the actor keeps serving its version.

Ray
---
`connect()` joins a cluster when given its address (`ray://...` or
`host:port`; or `auto`, or the `RAY_ADDRESS` environment variable) and
otherwise starts a local one: only on the loopback interface, with its
temporary files in a short new directory under the system's temporary
directory (Ray's sockets need a short path), a bounded object store and the
dashboard off, so it runs inside Bazel's test sandbox. On a cluster, every
node needs this repository's packages (e.g. the wheel of
`//tools/pip_package:wheel`) and access to the storage paths.
"""

import dataclasses
import logging as std_logging
import os
import re
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Text

from absl import logging
import numpy as np
import tensorflow as tf

from tf_agents.drivers import py_driver
from tf_agents.policies import export_contract
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import saved_policy
from tf_agents.trajectories import time_step as ts

# The default size of a local cluster's object store: a few versions of a
# 34-million-parameter policy (136 MB each).
DEFAULT_OBJECT_STORE_BYTES = 1 << 30
_PROBE_SEED = 20260
# Versions whose probe actions an actor keeps while it waits for the other
# half of the torn check.
_KEPT_PROBES = 16
# A version id's publish sequence number (`export_publish`'s names).
_VERSION_SEQ = re.compile(r'^v-(\d+)-')


@dataclasses.dataclass(frozen=True)
class VersionInfo:
  """One published version, as the publisher offers it."""

  version_id: Text
  seq: int
  train_step: Optional[int]
  # When the learner's save had published it (`time.time()`, seconds).
  saved_at: float
  # When the publisher put it into the object store.
  put_at: float
  # The actions of the probe time steps under this version (None for
  # stochastic policies). None in the offer itself: the publisher computes
  # them after offering and sends them with `Follower.expect`.
  probe_actions: Optional[List[np.ndarray]]


@dataclasses.dataclass
class ActorStatus:
  """What an actor serves and has done (`Fleet.status`)."""

  name: Text
  node: Text
  pid: int
  backend: Text
  version: Optional[Text]
  train_step: Optional[int]
  steps: int
  steps_per_second: float
  episodes: int
  storage_reachable: bool
  # Each error once, in order: refused versions, storage faults.
  errors: List[Text]
  # Versions applied after a probe mismatch, and steps during which the
  # served version changed (actors switch only between steps).
  torn: int
  mixed: int
  # (version id, seq, when applied (time.time()), where from: 'object_store'
  # or 'storage'), in order.
  applied: List[Any]
  # (version id, episode return) for every finished episode.
  returns: List[Any]
  # Steps served under each version id.
  steps_by_version: Dict[Text, int]


def _ray():
  import ray  # pylint: disable=g-import-not-at-top
  return ray


def connect(
    address: Optional[Text] = None,
    num_cpus: Optional[int] = None,
    object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES,
    temp_dir: Optional[Text] = None,
) -> bool:
  """Joins a Ray cluster, or starts a local one; a no-op if connected.

  Args:
    address: A cluster's address (`host:port`, `ray://host:port`, `auto`).
      None: the `RAY_ADDRESS` environment variable if set, else a new local
      cluster.
    num_cpus: Logical CPUs of a new local cluster (default: the machine's).
    object_store_memory: Bytes of a new local cluster's object store.
    temp_dir: Ray's temporary directory for a new local cluster (default: a
      new short directory under the system's temporary directory, removed
      by `disconnect`).

  Returns:
    True if this call connected (and `disconnect` should end it).
  """
  address = address or os.environ.get('RAY_ADDRESS') or None
  if address is None and 'ray' not in _imported_modules():
    # Before Ray is imported: a local cluster only on the loopback
    # interface (Ray reads this when imported and passes it on to the
    # processes it starts).
    os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
  ray = _ray()
  if ray.is_initialized():
    return False
  if address is not None:
    ray.init(address=address, logging_level=std_logging.WARNING,
             log_to_driver=True)
    return True
  global _LOCAL_TEMP_DIR
  if temp_dir is None:
    temp_dir = tempfile.mkdtemp(prefix='ray-', dir='/tmp' if os.path.isdir(
        '/tmp') else None)
    _LOCAL_TEMP_DIR = temp_dir
  ray.init(
      num_cpus=num_cpus,
      object_store_memory=object_store_memory,
      include_dashboard=False,
      _temp_dir=temp_dir,
      logging_level=std_logging.WARNING,
      log_to_driver=True,
  )
  return True


_LOCAL_TEMP_DIR = None


def _imported_modules():
  import sys  # pylint: disable=g-import-not-at-top
  return sys.modules


def disconnect() -> None:
  """Leaves the cluster (stopping a local one) and removes its temp dir."""
  global _LOCAL_TEMP_DIR
  ray = _ray()
  if ray.is_initialized():
    ray.shutdown()
  if _LOCAL_TEMP_DIR is not None:
    shutil.rmtree(_LOCAL_TEMP_DIR, ignore_errors=True)
    _LOCAL_TEMP_DIR = None


def gym_environment(env_name: Text, seed: int) -> Any:
  """A seeded gym environment (`functools.partial(gym_environment, name)`
  is an `env_factory` for `Fleet`)."""
  from tf_agents.environments import suite_gym  # pylint: disable=g-import-not-at-top
  env = suite_gym.load(env_name)
  env.seed(seed)
  return env


def probe_time_steps(policy: saved_policy.SavedPolicy,
                     size: int) -> ts.TimeStep:
  """Fixed mid-episode time steps: observations drawn from the specs.

  Floating-point observations are standard normal draws clipped to their
  bounds (a uniform draw between the bounds of, e.g., CartPole's velocities,
  +-3.4e38, overflows every network); others are sampled from their spec.

  Args:
    policy: The policy whose `time_step_spec` to follow.
    size: The batch size.

  Returns:
    A batched `TimeStep` of numpy arrays.
  """
  from tf_agents.specs import array_spec  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(_PROBE_SEED)
  spec = policy.time_step_spec

  def draw(leaf):
    if np.dtype(leaf.dtype).kind != 'f':
      return array_spec.sample_spec_nest(leaf, rng, outer_dims=(size,))
    value = rng.standard_normal((size,) + tuple(leaf.shape))
    if isinstance(leaf, array_spec.BoundedArraySpec):
      value = np.clip(value, leaf.minimum, leaf.maximum)
    return value.astype(leaf.dtype)

  observation = tf.nest.map_structure(draw, spec.observation)

  def filled(leaf_spec, value):
    return np.full((size,) + tuple(leaf_spec.shape), value, leaf_spec.dtype)

  return ts.TimeStep(
      step_type=filled(spec.step_type, ts.StepType.MID),
      reward=tf.nest.map_structure(lambda s: filled(s, 0), spec.reward),
      discount=filled(spec.discount, 1),
      observation=observation,
  )


def _probe_actions(policy: saved_policy.SavedPolicy,
                   probe: ts.TimeStep) -> Optional[List[np.ndarray]]:
  if not policy.is_deterministic:
    return None
  size = probe.step_type.shape[0]
  step = policy.action(probe, policy.get_initial_state(size))
  return [np.asarray(a) for a in tf.nest.flatten(step.action)]


def _same_actions(first: Sequence[np.ndarray],
                  second: Sequence[np.ndarray]) -> bool:
  for a, b in zip(first, second):
    if a.shape != b.shape:
      return False
    if a.dtype.kind in 'fc':
      if not np.allclose(a, b, rtol=1e-5, atol=1e-6):
        return False
    elif not np.array_equal(a, b):
      return False
  return len(first) == len(second)


def _read_weights(version: export_publish.Version) -> Any:
  """Reads a version's model variables and train step once, checked.

  Straight from the checkpoint into the arrays `ray.put` shares: the
  manifest is checked first and every tensor's CRC32C as it is read (no
  backup copy, no restore into variables and copy out again).

  Args:
    version: The version to read.

  Returns:
    `(version, values, train_step)`; `train_step` is None if absent.

  Raises:
    ExportError: As `saved_policy.check_checkpoint`.
    tf.errors.OpError: A tensor fails its CRC32C or cannot be read.
  """
  saved_policy.check_checkpoint(version.path)
  reader = tf.compat.v1.train.NewCheckpointReader(
      export_contract.variables_prefix(version.path))
  # Every tensor, so that each one's CRC32C is checked (the object graph's
  # too), as a restore would.
  tensors = {key: reader.get_tensor(key)
             for key in reader.get_variable_to_shape_map()}
  values = []
  while export_contract.MODEL_VARIABLE_KEY.format(len(values)) in tensors:
    values.append(
        tensors[export_contract.MODEL_VARIABLE_KEY.format(len(values))])
  train_step = tensors.get(export_contract.TRAIN_STEP_CHECKPOINT_KEY)
  return version, values, None if train_step is None else int(train_step)


class Publisher(object):
  """The learner side: reads each version once, puts it, offers it.

  Lives in the learner's process (`Fleet` makes one): the put object is
  owned there, and a publish costs no hop to another process.
  """

  def __init__(self, export_dir: Text, weights_dir: Text, probe_size: int,
               followers: Sequence[Any] = ()):
    self._weights_dir = weights_dir
    # Reads and checks every version; the SavedModel backend is exact.
    self._policy = saved_policy.SavedPolicy(
        export_dir, backend=saved_policy.BACKEND_SAVED_MODEL)
    # Serves from the loaded signature: a read restores the variables once
    # (no second restore into a session).
    self._policy.variables()
    self._probe = probe_time_steps(self._policy, probe_size)
    # Ray actor handles: a restarted actor keeps its handle.
    self.followers = list(followers)
    self._current = None  # (VersionInfo, object ref)
    self._refused = {}  # version id -> message
    self._log = []

  def publish(self, saved_at: Optional[float] = None) -> Dict[Text, Any]:
    """Publishes the current version of the weights directory, if new.

    Args:
      saved_at: When the learner's save finished (`time.time()`); now if
        None.

    Returns:
      `{'version': id or None, 'state': 'published' | 'unchanged' |
      'refused' | 'none', 'error': message or None, 'seq': int}`.
    """
    saved_at = time.time() if saved_at is None else saved_at
    ray = _ray()
    try:
      version = export_publish.current_version(self._weights_dir)
    except export_errors.ExportError as e:
      return {'version': None, 'state': 'none', 'seq': None,
              'error': export_errors.one_line(e)}
    vid = version.version_id
    if vid is None:
      return {'version': None, 'state': 'none', 'seq': None, 'error': None}
    if self._current is not None and self._current[0].version_id == vid:
      return {'version': vid, 'state': 'unchanged', 'seq': version.seq,
              'error': None}
    if vid in self._refused:
      return {'version': vid, 'state': 'refused', 'seq': version.seq,
              'error': self._refused[vid]}
    started = time.perf_counter()
    try:
      read_version, values, train_step = export_publish.read_consistent(
          self._weights_dir, _read_weights)
      self._policy.check_values(values)
    except (export_errors.ExportError, ValueError, tf.errors.OpError) as e:
      message = '{}: version {} refused: {}'.format(
          self._weights_dir, vid, export_errors.one_line(e))
      self._refused[vid] = message
      logging.warning('%s', message)
      for follower in self.followers:
        follower.refuse.remote(vid, message)
      return {'version': vid, 'state': 'refused', 'seq': version.seq,
              'error': message}
    read = read_version.version_id or vid
    if train_step is None:
      train_step = int(self._policy.get_train_step())
    read_seconds = time.perf_counter() - started
    ref = ray.put(values)  # The one copy every actor reads.
    info = VersionInfo(
        version_id=read,
        seq=version.seq if read == vid else _seq_of(read, version.seq),
        train_step=train_step,
        saved_at=saved_at,
        put_at=time.time(),
        probe_actions=None,
    )
    for follower in self.followers:
      follower.offer.remote(info, ref)
    offered_at = time.time()
    # The reference actions, off the actors' path: they check theirs when
    # this arrives (`expect`).
    self._policy.update_from_values(values, version=read,
                                    train_step=train_step)
    info = dataclasses.replace(
        info, probe_actions=_probe_actions(self._policy, self._probe))
    if info.probe_actions is not None:
      for follower in self.followers:
        follower.expect.remote(read, info.probe_actions)
    self._current = (info, ref)
    self._log.append(info)
    logging.info('Published %s: read and checked in %.3f s, offered %.3f s '
                 'after the save.', read, read_seconds, offered_at - saved_at)
    return {'version': read, 'state': 'published', 'seq': info.seq,
            'error': None}

  def published(self) -> List[VersionInfo]:
    return list(self._log)

  def refused(self) -> Dict[Text, Text]:
    return dict(self._refused)


def _seq_of(version_id: Optional[Text], default: int) -> int:
  match = _VERSION_SEQ.match(version_id or '')
  return int(match.group(1)) if match else default


@dataclasses.dataclass(frozen=True)
class ActorOptions:
  """How each actor runs (see `Fleet`)."""

  backend: Text = saved_policy.BACKEND_AUTO
  steps_per_run: int = 10
  storage_check_seconds: float = 5.0
  probe_size: int = 4
  num_threads: int = 1
  seed: int = 0
  # Return the trajectories stepped (for a learner's replay buffer), at
  # most this many kept between two `collect` calls; 0: none.
  keep_trajectories: int = 0
  # Serve from the loaded export's own `action` signature, which reads the
  # variables `update_from_values` assigns (`SavedPolicy.variables()`): an
  # update is then one copy of the weights, not a second copy into a
  # session or TFLite model. For large policies, whose steps cost the same
  # on every backend; small ones step faster on `backend`.
  in_place: bool = False


class Follower(object):
  """One actor: serves the newest version to its environments.

  Runs as a threaded Ray actor (see `Fleet`): `__init__` loads the export and
  the current version from storage and starts the stepping thread; the
  publisher's `offer` and `refuse` calls run in Ray's threads.
  """

  def __init__(
      self,
      name: Text,
      export_dir: Text,
      weights_dir: Text,
      env_factory: Callable[[int], Any],
      options: ActorOptions,
  ):
    self._name = name
    self._weights_dir = weights_dir
    self._options = options
    self._lock = threading.Lock()
    self._pending = None  # (VersionInfo, values)
    self._errors = []
    self._refused = set()
    self._storage_reachable = True
    self._torn = 0
    self._mixed = 0
    # Probe actions waiting for their other half, by version id: the
    # publisher's (`expect`) and this actor's (after applying).
    self._expected = {}
    self._probed = {}
    self._applied = []
    self._returns = []
    self._steps = 0
    self._episodes = 0
    self._steps_by_version = {}
    self._trajectories = []
    self._active_seconds = 0.0
    self._stop = threading.Event()
    self._unoffered = None  # A storage version not offered yet, and since.
    self._seq = -1
    self._train_step = None
    self._policy = saved_policy.SavedPolicy(
        export_dir, backend=options.backend, num_threads=options.num_threads)
    if options.in_place:
      self._policy.variables()
    self._probe = probe_time_steps(self._policy, options.probe_size)
    self._env = env_factory(options.seed)
    # The current version from the pointer: storage is the source of truth.
    self._catch_up(initial=True)
    self._thread = threading.Thread(target=self._loop, name='fleet-' + name,
                                    daemon=True)
    self._thread.start()

  # Called by the publisher.

  def offer(self, info: VersionInfo, values: Sequence[np.ndarray]) -> None:
    self._offer(info, values)

  def _offer(self, info: VersionInfo, values: Sequence[np.ndarray]) -> None:
    with self._lock:
      newest = self._pending[0].seq if self._pending else self._seq
      if info.seq > newest:
        self._pending = (info, values)

  def expect(self, version_id: Text, actions: Sequence[np.ndarray]) -> None:
    """The publisher's probe actions under `version_id` (torn check)."""
    with self._lock:
      mine = self._probed.pop(version_id, None)
      if mine is None:
        self._expected[version_id] = actions
        while len(self._expected) > _KEPT_PROBES:
          self._expected.pop(next(iter(self._expected)))
    if mine is not None:
      self._check_torn(version_id, mine, actions)

  def _check_torn(self, version_id: Text, mine: Sequence[np.ndarray],
                  expected: Sequence[np.ndarray]) -> None:
    if not _same_actions(mine, expected):
      with self._lock:
        self._torn += 1
      self._report('version {} serves other actions than the publisher '
                   'read (torn)'.format(version_id))

  def refuse(self, version_id: Text, message: Text) -> None:
    self._refuse(version_id, message)

  def _refuse(self, version_id: Text, message: Text) -> None:
    with self._lock:
      if version_id in self._refused:
        return
      self._refused.add(version_id)
    self._report(message)

  def _report(self, message: Text) -> None:
    with self._lock:
      if message in self._errors:
        return
      self._errors.append(message)
    logging.warning('Actor %s: %s', self._name, message)

  # Status.

  def status(self) -> ActorStatus:
    ray = _ray()
    with self._lock:
      return ActorStatus(
          name=self._name,
          node=ray.get_runtime_context().get_node_id()[:12],
          pid=os.getpid(),
          backend=self._policy.backend,
          version=self._policy.version,
          train_step=self._train_step,
          steps=self._steps,
          steps_per_second=(self._steps / self._active_seconds
                            if self._active_seconds else 0.0),
          episodes=self._episodes,
          storage_reachable=self._storage_reachable,
          errors=list(self._errors),
          torn=self._torn,
          mixed=self._mixed,
          applied=list(self._applied),
          returns=list(self._returns),
          steps_by_version=dict(self._steps_by_version),
      )

  def collect(self) -> List[Any]:
    """The trajectories stepped since the last call (`keep_trajectories`)."""
    with self._lock:
      out, self._trajectories = self._trajectories, []
    return out

  def reset_counters(self) -> None:
    """Starts the steps-per-second count again (e.g. after warm-up)."""
    with self._lock:
      self._steps = 0
      self._active_seconds = 0.0
      self._steps_by_version = {}

  def stop(self) -> None:
    self._stop.set()
    self._thread.join(timeout=30)

  # The stepping thread.

  def _loop(self) -> None:
    policy = self._policy
    env = self._env
    driver = py_driver.PyDriver(env, policy, [self._observe],
                                max_steps=self._options.steps_per_run)
    time_step = env.reset()
    policy_state = policy.get_initial_state(env.batch_size or 1)
    self._episode_return = 0.0
    next_check = time.monotonic() + self._options.storage_check_seconds
    while not self._stop.is_set():
      self._take_pending()
      if time.monotonic() >= next_check:
        self._catch_up()
        next_check = time.monotonic() + self._options.storage_check_seconds
      self._serving = policy.version
      start = time.perf_counter()
      steps_before = self._run_steps
      time_step, policy_state = driver.run(time_step, policy_state)
      elapsed = time.perf_counter() - start
      with self._lock:
        self._active_seconds += elapsed
        self._steps += self._run_steps - steps_before

  _run_steps = 0
  _serving = None

  def _observe(self, trajectory: Any) -> None:
    """After each step: counts it, then switches to a pending version."""
    version = self._policy.version
    with self._lock:
      if version != self._serving:
        # The weights changed while the step ran, not at a switch point.
        self._mixed += 1
      key = version or ''
      self._steps_by_version[key] = self._steps_by_version.get(key, 0) + 1
    self._run_steps += 1
    reward = float(np.sum(trajectory.reward))
    self._episode_return += reward
    if self._options.keep_trajectories:
      with self._lock:
        if len(self._trajectories) < self._options.keep_trajectories:
          self._trajectories.append(trajectory)
    if np.all(trajectory.is_last()):
      with self._lock:
        self._episodes += 1
        self._returns.append((self._policy.version, self._episode_return))
      self._episode_return = 0.0
    # Between this step and the next action: the switch point.
    self._take_pending()
    self._serving = self._policy.version

  def _take_pending(self) -> None:
    with self._lock:
      pending, self._pending = self._pending, None
    if pending is None:
      return
    info, values = pending
    try:
      self._policy.update_from_values(values, version=info.version_id,
                                      train_step=info.train_step)
    except ValueError as e:
      self._refuse(info.version_id, '{}: version {} refused: {}'.format(
          self._weights_dir, info.version_id, export_errors.one_line(e)))
      return
    applied_at = time.time()
    del values  # Frees the object store's copy once every actor has it.
    self._applied_version(info.version_id, info.seq, info.train_step,
                          applied_at, 'object_store')
    actions = _probe_actions(self._policy, self._probe)
    if actions is None:
      return  # Stochastic: no sample-wise check.
    expected = info.probe_actions
    with self._lock:
      if expected is None:
        expected = self._expected.pop(info.version_id, None)
      if expected is None:  # The publisher's `expect` comes later.
        self._probed[info.version_id] = actions
        while len(self._probed) > _KEPT_PROBES:
          self._probed.pop(next(iter(self._probed)))
        return
    self._check_torn(info.version_id, actions, expected)

  def _applied_version(self, version_id, seq, train_step, applied_at, source):
    with self._lock:
      self._seq = seq
      self._train_step = train_step
      self._unoffered = None
      self._applied.append((version_id, seq, applied_at, source))

  def _catch_up(self, initial: bool = False) -> None:
    """Reads the pointer; loads a version no one offered from storage."""
    try:
      if not tf.io.gfile.isdir(self._weights_dir):
        raise export_errors.ExportNotFoundError(
            '{}: no such directory'.format(self._weights_dir))
      version = export_publish.current_version(self._weights_dir)
    except Exception as e:  # pylint: disable=broad-except
      # gfile raises TF's errors, OSError, ...: the storage is unreachable.
      if initial and isinstance(e, export_errors.NotAnExportError):
        return  # Nothing published yet.
      with self._lock:
        self._storage_reachable = False
      self._report('cannot reach storage {} ({}); serving version {}'.format(
          self._weights_dir, export_errors.one_line(e), self._policy.version))
      return
    with self._lock:
      self._storage_reachable = True
      known = (version.version_id is None or
               version.version_id in self._refused or
               version.seq <= self._seq or
               (self._pending is not None and
                self._pending[0].seq >= version.seq))
    if known:
      return
    if not initial and self._unoffered != version.version_id:
      # Give the publisher one period to offer it.
      self._unoffered = version.version_id
      return
    try:
      self._policy.update_from_checkpoint(self._weights_dir)
    except (export_errors.ExportError, ValueError) as e:
      self._refuse(version.version_id, '{}: version {} refused: {}'.format(
          self._weights_dir, version.version_id, export_errors.one_line(e)))
      return
    read = self._policy.version or version.version_id
    self._applied_version(read, _seq_of(read, version.seq),
                          int(self._policy.get_train_step()), time.time(),
                          'storage')


@dataclasses.dataclass
class PublishRecord:
  version: Optional[Text]
  state: Text
  seq: Optional[int]
  error: Optional[Text]
  saved_at: float


class Fleet(object):
  """A publisher and `num_actors` followers on a Ray cluster.

  Example:

  ```python
  saver = policy_saver.PolicySaver(agent.policy, train_step=train_step)
  saver.save('/exports/policy')
  saver.save_checkpoint('/exports/weights')
  fleet = policy_fleet.Fleet('/exports/policy', '/exports/weights',
                             env_factory=my_env_factory, num_actors=4)
  for _ in range(num_iterations):
    ...  # train
    saver.save_checkpoint('/exports/weights')
    fleet.publish()
  print(fleet.status())
  fleet.shutdown()
  ```

  `env_factory(seed)` builds one actor's environment (a `PyEnvironment`,
  batched or not); it is pickled to the actors, so it must be importable
  there (a module-level function or a `functools.partial` of one).
  """

  def __init__(
      self,
      export_dir: Text,
      weights_dir: Text,
      env_factory: Callable[[int], Any],
      num_actors: int = 4,
      options: ActorOptions = ActorOptions(),
      address: Optional[Text] = None,
      actor_num_cpus: float = 0.5,
      max_restarts: int = -1,
      object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES,
      name: Optional[Text] = None,
  ):
    """Starts the publisher and the actors (waits until all step).

    Args:
      export_dir: The export (`PolicySaver.save`).
      weights_dir: Where each version is published
        (`PolicySaver.save_checkpoint(weights_dir)`).
      env_factory: `env_factory(seed)` gives an actor's environment.
      num_actors: How many actors.
      options: `ActorOptions` of every actor.
      address: The Ray cluster to join (see `connect`); None: `RAY_ADDRESS`
        or a new local cluster.
      actor_num_cpus: Ray CPUs each actor asks for.
      max_restarts: How often Ray restarts a dead actor (-1: always).
      object_store_memory: Object store bytes of a new local cluster.
      name: A prefix of the actors' names (default: unique).
    """
    self._connected = connect(
        address, object_store_memory=object_store_memory,
        num_cpus=max(os.cpu_count() or 1,
                     int(np.ceil(num_actors * actor_num_cpus)) + 1)
        if address is None else None)
    ray = _ray()
    self._name = name or 'fleet-{}-{}'.format(os.getpid(), id(self))
    self._records = []
    follower_cls = ray.remote(num_cpus=actor_num_cpus,
                              max_concurrency=4,
                              max_restarts=max_restarts)(Follower)
    self._actors = [
        follower_cls.options(name='{}-actor-{}'.format(self._name, i)).remote(
            '{}-actor-{}'.format(self._name, i), export_dir, weights_dir,
            env_factory, dataclasses.replace(options, seed=options.seed + i))
        for i in range(num_actors)
    ]
    self._publisher = Publisher(export_dir, weights_dir, options.probe_size,
                                self._actors)
    self.wait_ready()

  @property
  def actors(self) -> List[Any]:
    """The actors' Ray handles (e.g. for `ray.kill`)."""
    return list(self._actors)

  def wait_ready(self, timeout: float = 600.0) -> None:
    """Waits until every actor answers (e.g. after a restart)."""
    ray = _ray()
    deadline = time.monotonic() + timeout
    while True:
      try:
        ray.get([a.status.remote() for a in self._actors],
                timeout=max(1.0, deadline - time.monotonic()))
        return
      except ray.exceptions.RayError:  # Restarting, or not up yet.
        if time.monotonic() > deadline:
          raise
        time.sleep(0.5)

  def publish(self, saved_at: Optional[float] = None) -> PublishRecord:
    """Publishes the current version of `weights_dir` to every actor.

    Call it after each `PolicySaver.save_checkpoint(weights_dir)`.

    Args:
      saved_at: When that save returned (`time.time()`; now if None).

    Returns:
      What happened (`state`: 'published', 'unchanged', 'refused', 'none').
    """
    result = self._publisher.publish(saved_at)
    record = PublishRecord(saved_at=saved_at or time.time(), **result)
    self._records.append(record)
    return record

  def records(self) -> List[PublishRecord]:
    return list(self._records)

  def published(self) -> List[VersionInfo]:
    """Every version put into the object store, in order."""
    return self._publisher.published()

  def status(self) -> List[ActorStatus]:
    return _ray().get([a.status.remote() for a in self._actors])

  def collect(self) -> List[List[Any]]:
    """Per actor, the trajectories it stepped since the last call (in order,
    at most `ActorOptions.keep_trajectories`)."""
    return _ray().get([a.collect.remote() for a in self._actors])

  def reset_counters(self) -> None:
    _ray().get([a.reset_counters.remote() for a in self._actors])

  def wait_for(self, version_id: Text, timeout: float = 60.0) -> bool:
    """Waits until every actor serves `version_id` (or a newer one)."""
    seq = _seq_of(version_id, -1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if all(s.applied and s.applied[-1][1] >= seq for s in self.status()):
        return True
      time.sleep(0.02)
    return False

  def shutdown(self) -> None:
    """Stops the actors (and a local cluster it started)."""
    ray = _ray()
    for actor in self._actors:
      try:
        ray.kill(actor, no_restart=True)
      except Exception:  # pylint: disable=broad-except
        pass
    if self._connected:
      disconnect()


def propagation(published: Sequence[VersionInfo],
                statuses: Sequence[ActorStatus]) -> Dict[Text, Optional[float]]:
  """Seconds from each version's save to when every actor served it.

  An actor that skipped a version (a newer one arrived first) counts from
  when it served a newer one.

  Args:
    published: `Fleet.published()`.
    statuses: `Fleet.status()`.

  Returns:
    `{version id: seconds, or None if some actor never got there}`.
  """
  out = {}
  for info in published:
    latest = 0.0
    for status in statuses:
      times = [at for _, seq, at, _ in status.applied if seq >= info.seq]
      if not times:
        latest = None
        break
      latest = max(latest, min(times) - info.saved_at)
    out[info.version_id] = latest
  return out


def check_served(published_ids: Sequence[Text],
                 statuses: Sequence[ActorStatus]) -> List[Text]:
  """What went wrong: versions served but never published, torn, mixed."""
  problems = []
  known = set(published_ids)
  for status in statuses:
    for version, _ in status.steps_by_version.items():
      if version and version not in known:
        problems.append('{} served {}, never published'.format(
            status.name, version))
    for version, _, _, _ in status.applied:
      if version not in known:
        problems.append('{} applied {}, never published'.format(
            status.name, version))
    if status.torn:
      problems.append('{}: {} torn versions'.format(status.name, status.torn))
    if status.mixed:
      problems.append('{}: {} steps whose weights changed while they ran'.format(
          status.name, status.mixed))
  return problems
