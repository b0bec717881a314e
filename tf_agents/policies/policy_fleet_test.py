# coding=utf-8
"""Tests of policy_fleet: publishing to Ray actors, and its faults.

Starts one local Ray cluster for the whole file (loopback only, temporary
files under /tmp, a small object store); each case starts a fleet of two
actors stepping CartPole-v0.

Also the learner program the learner-kill case runs in a child process:
`policy_fleet_test.py learner WEIGHTS_DIR SEED KILL_POINT`.
"""

import functools
import os
import signal
import subprocess
import sys
import time
import types

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import ray
import tensorflow as tf

from tf_agents.environments import suite_gym
from tf_agents.networks import q_network
from tf_agents.policies import export_publish
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_fleet
from tf_agents.policies import policy_saver
from tf_agents.policies import q_policy
from tf_agents.specs import tensor_spec

_ENV = 'CartPole-v0'
_CHECK_SECONDS = 1.0
_OPTIONS = policy_fleet.ActorOptions(
    steps_per_run=5, storage_check_seconds=_CHECK_SECONDS)


def _saver(seed: int):
  """A greedy Q policy for CartPole with weights drawn from `seed`.

  Greedy, so that every actor checks each version's probe actions (torn).
  """
  env = suite_gym.load(_ENV)
  time_step_spec = tensor_spec.from_spec(env.time_step_spec())
  action_spec = tensor_spec.from_spec(env.action_spec())
  network = q_network.QNetwork(time_step_spec.observation, action_spec,
                               fc_layer_params=(16,))
  policy = greedy_policy.GreedyPolicy(
      q_policy.QPolicy(time_step_spec, action_spec, q_network=network))
  train_step = tf.Variable(0, dtype=tf.int64)
  learner = types.SimpleNamespace(
      saver=policy_saver.PolicySaver(policy, batch_size=None,
                                     train_step=train_step),
      policy=policy, train_step=train_step)
  _draw(learner, seed)
  return learner


def _draw(learner, seed: int) -> None:
  """New weights (so actions tell versions apart) and train step `seed`."""
  rng = np.random.RandomState(seed)
  for variable in learner.policy.variables():
    variable.assign(rng.uniform(-1, 1, variable.shape).astype(
        variable.dtype.as_numpy_dtype))
  learner.train_step.assign(seed)


def _learner(weights_dir: str, seed: int, kill_point: str) -> None:
  """Saves one new version and is killed (SIGKILL) in the middle of it."""
  saver = _saver(seed).saver
  if kill_point == 'mirror':
    # While the version's files are put at the top of the directory.
    original = export_publish._link_or_copy  # pylint: disable=protected-access

    def link_then_die(source, target):
      original(source, target)
      os.kill(os.getpid(), signal.SIGKILL)

    export_publish._link_or_copy = link_then_die  # pylint: disable=protected-access
  else:
    # The version is complete; the pointer is about to switch.
    def die(*unused_args, **unused_kwargs):
      os.kill(os.getpid(), signal.SIGKILL)

    export_publish.Publication._write_pointer = die  # pylint: disable=protected-access
  saver.save_checkpoint(weights_dir)
  raise SystemExit('not killed')


class PolicyFleetTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._started = policy_fleet.connect(num_cpus=4,
                                        object_store_memory=256 << 20)

  @classmethod
  def tearDownClass(cls):
    if cls._started:
      policy_fleet.disconnect()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    root = self.create_tempdir().full_path
    self.export_dir = os.path.join(root, 'policy')
    self.weights_dir = os.path.join(root, 'weights')
    self.learner = _saver(1)
    self.learner.saver.save(self.export_dir)
    self.learner.saver.save_checkpoint(self.weights_dir)
    self.fleet = None

  def tearDown(self):
    if self.fleet is not None:
      self.fleet.shutdown()
    super().tearDown()

  def _start(self, num_actors: int = 2):
    self.fleet = policy_fleet.Fleet(
        self.export_dir, self.weights_dir,
        env_factory=functools.partial(policy_fleet.gym_environment, _ENV),
        num_actors=num_actors, options=_OPTIONS, actor_num_cpus=1)
    return self.fleet

  def _save(self, seed: int) -> str:
    _draw(self.learner, seed)
    self.learner.saver.save_checkpoint(self.weights_dir)
    return export_publish.version_id(self.weights_dir)

  def _published_ids(self):
    ids = {v.version_id for v in self.fleet.published()}
    for status in self.fleet.status():
      ids.update(a[0] for a in status.applied if a[3] == 'storage')
    return ids

  def _wait(self, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      try:
        self.fleet.wait_ready()  # An actor may be restarting.
        statuses = self.fleet.status()
      except ray.exceptions.RayError:
        continue
      if predicate(statuses):
        return statuses
      time.sleep(0.1)
    self.fail('timed out; statuses: {}'.format(self.fleet.status()))

  def _steps_continue(self):
    before = {s.name: s.steps for s in self.fleet.status()}
    self._wait(lambda ss: all(s.steps > before[s.name] + 20 for s in ss))

  def test_versions_reach_every_actor_through_the_object_store(self):
    fleet = self._start()
    first = export_publish.version_id(self.weights_dir)
    for status in fleet.status():
      # Started from the pointer on storage.
      self.assertEqual(first, status.version)
      self.assertEqual('storage', status.applied[0][3])
    versions = []
    for seed in (2, 3, 4):
      version = self._save(seed)
      record = fleet.publish()
      self.assertEqual(('published', version), (record.state, record.version))
      self.assertTrue(fleet.wait_for(version, timeout=60))
      versions.append(version)
    # Published again without a new save: nothing to do.
    self.assertEqual('unchanged', fleet.publish().state)
    published = fleet.published()
    # One read and one put per version, whatever the number of actors.
    self.assertEqual(versions, [v.version_id for v in published])
    statuses = fleet.status()
    for status in statuses:
      self.assertEqual(versions[-1], status.version)
      self.assertEqual(4, status.train_step)
      from_store = [a[0] for a in status.applied if a[3] == 'object_store']
      self.assertEqual(versions, from_store[-3:])
      self.assertEqual(1, len([a for a in status.applied
                               if a[3] == 'storage']))
      self.assertEqual(0, status.torn)
      self.assertEqual(0, status.mixed)
      self.assertEqual([], status.errors)
      self.assertGreater(status.steps, 0)
    self.assertEqual([], policy_fleet.check_served(self._published_ids(),
                                                   statuses))
    latencies = policy_fleet.propagation(published, statuses)
    self.assertTrue(all(v is not None and v >= 0 for v in latencies.values()),
                    latencies)

  @parameterized.named_parameters(('expect_after_apply', False),
                                  ('expect_before_apply', True))
  def test_torn_version_is_found_in_either_order(self, expect_first):
    # A follower in this process (not a Ray actor): the publisher's probe
    # actions (`expect`) and the follower's own after applying meet in
    # either order; weights that do not give the publisher's actions are
    # counted torn and reported once.
    follower = policy_fleet.Follower(
        'local', self.export_dir, self.weights_dir,
        functools.partial(policy_fleet.gym_environment, _ENV), _OPTIONS)
    try:
      publisher = policy_fleet.Publisher(self.export_dir, self.weights_dir,
                                         _OPTIONS.probe_size)
      probe = policy_fleet.probe_time_steps(publisher._policy,  # pylint: disable=protected-access
                                            _OPTIONS.probe_size)
      good_id = self._save(7)
      good = policy_fleet._read_weights(  # pylint: disable=protected-access
          export_publish.current_version(self.weights_dir))[1]
      publisher._policy.update_from_values(good, version=good_id)  # pylint: disable=protected-access
      expected = policy_fleet._probe_actions(publisher._policy, probe)  # pylint: disable=protected-access
      self.assertIsNotNone(expected)
      other = [-v for v in good]  # Another greedy action on every probe.

      def offer(version_id, values, seq):
        follower.offer(policy_fleet.VersionInfo(
            version_id=version_id, seq=seq, train_step=seq, saved_at=0.0,
            put_at=0.0, probe_actions=None), values)
        deadline = time.monotonic() + 60
        while follower._policy.version != version_id:  # pylint: disable=protected-access
          self.assertLess(time.monotonic(), deadline)
          time.sleep(0.01)

      for seq, (version_id, values) in enumerate(
          ((good_id, good), ('v-torn', other)), start=100):
        if expect_first:
          follower.expect(version_id, expected)
          offer(version_id, values, seq)
        else:
          offer(version_id, values, seq)
          follower.expect(version_id, expected)
      deadline = time.monotonic() + 30
      while follower._torn < 1:  # pylint: disable=protected-access
        self.assertLess(time.monotonic(), deadline)
        time.sleep(0.01)
      time.sleep(0.2)
      self.assertEqual(1, follower._torn)  # pylint: disable=protected-access
      self.assertLen([e for e in follower._errors if 'torn' in e], 1)  # pylint: disable=protected-access
      self.assertIn('v-torn', follower._errors[-1])  # pylint: disable=protected-access
    finally:
      follower.stop()

  def test_killed_actor_restarts_on_the_current_version(self):
    fleet = self._start()
    self._save(2)
    fleet.publish()
    version = self._save(3)
    fleet.publish()
    self.assertTrue(fleet.wait_for(version))
    victim = fleet.status()[0]
    ray.kill(fleet.actors[0], no_restart=False)
    statuses = self._wait(
        lambda ss: ss[0].pid != victim.pid and ss[0].steps > 20, timeout=120)
    restarted = statuses[0]
    self.assertEqual(version, restarted.version)
    self.assertEqual([(version, 'storage')],
                     [(a[0], a[3]) for a in restarted.applied])
    self.assertEqual(3, restarted.train_step)
    # It follows the next version like the others.
    version = self._save(4)
    fleet.publish()
    self.assertTrue(fleet.wait_for(version))
    self.assertEqual('object_store', fleet.status()[0].applied[-1][3])

  @parameterized.parameters('pointer', 'mirror')
  def test_learner_killed_mid_publish_leaves_the_previous_version(
      self, kill_point):
    fleet = self._start()
    version = self._save(2)
    fleet.publish()
    self.assertTrue(fleet.wait_for(version))
    learner = subprocess.run(
        [sys.executable, __file__, 'learner', self.weights_dir, '7',
         kill_point],
        capture_output=True, text=True, timeout=300)
    self.assertEqual(-signal.SIGKILL, learner.returncode, learner.stderr)
    self.assertEqual(version, export_publish.version_id(self.weights_dir))
    self.assertEqual('unchanged', fleet.publish().state)
    # Two storage checks later every actor still serves the previous version.
    time.sleep(2.5 * _CHECK_SECONDS)
    self._steps_continue()
    for status in fleet.status():
      self.assertEqual(version, status.version)
      self.assertEqual(2, status.train_step)
      self.assertEqual([], status.errors)
    # The next save publishes as usual.
    version = self._save(3)
    self.assertEqual('published', fleet.publish().state)
    self.assertTrue(fleet.wait_for(version))

  def test_damaged_version_is_refused_and_reported_once(self):
    fleet = self._start()
    good = self._save(2)
    fleet.publish()
    self.assertTrue(fleet.wait_for(good))
    damaged = self._save(3)
    path = export_publish.current_version(self.weights_dir).path
    shard = [f for f in tf.io.gfile.glob(
        os.path.join(path, 'variables', 'variables.data-*'))][0]
    with open(shard, 'r+b') as f:  # Same size, other bytes.
      data = bytearray(f.read())
      data[len(data) // 2] ^= 0xFF
      f.seek(0)
      f.write(bytes(data))
    record = fleet.publish()
    self.assertEqual(('refused', damaged), (record.state, record.version))
    self.assertIn(damaged, record.error)
    self.assertEqual('refused', fleet.publish().state)  # Again: same answer.
    # Every actor is told; their own storage checks see the damaged pointer
    # too: still one report each.
    time.sleep(2.5 * _CHECK_SECONDS)
    statuses = self._wait(lambda ss: all(s.errors for s in ss))
    self._steps_continue()
    for status in fleet.status():
      self.assertEqual(good, status.version)
      self.assertLen(status.errors, 1, status.errors)
      self.assertIn(damaged, status.errors[0])
      self.assertIn('refused', status.errors[0])
    self.assertEqual([good], [v.version_id for v in fleet.published()][-1:])
    del statuses
    # A good version after it is taken.
    version = self._save(4)
    self.assertEqual('published', fleet.publish().state)
    self.assertTrue(fleet.wait_for(version))
    for status in fleet.status():
      self.assertLen(status.errors, 1)

  def test_actor_that_cannot_reach_storage_keeps_serving(self):
    fleet = self._start()
    version = self._save(2)
    fleet.publish()
    self.assertTrue(fleet.wait_for(version))
    away = self.weights_dir + '.away'
    os.rename(self.weights_dir, away)
    try:
      statuses = self._wait(
          lambda ss: all(not s.storage_reachable for s in ss), timeout=30)
      self._steps_continue()
      time.sleep(2.5 * _CHECK_SECONDS)
      for status in fleet.status():
        self.assertFalse(status.storage_reachable)
        self.assertEqual(version, status.version)
        self.assertLen(status.errors, 1, status.errors)
        self.assertIn('cannot reach storage', status.errors[0])
        self.assertIn(version, status.errors[0])
      del statuses
    finally:
      os.rename(away, self.weights_dir)
    self._wait(lambda ss: all(s.storage_reachable for s in ss), timeout=30)


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == 'learner':
    _learner(sys.argv[2], int(sys.argv[3]), sys.argv[4])
  else:
    absltest.main()
