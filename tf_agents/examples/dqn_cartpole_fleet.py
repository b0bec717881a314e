# coding=utf-8
r"""Trains DQN on CartPole-v0 while a fleet of Ray actors follows the learner.

A new module (upstream tf-agents has no counterpart). With no arguments it
starts a local Ray cluster and:

1. exports the greedy policy once (`PolicySaver.save(<output_dir>/policy)`)
   and starts `--num_actors` Ray actors (`policy_fleet.Fleet`), each
   stepping its own CartPole-v0 with the published policy (`PyDriver`),
   collecting trajectories for the learner and recording its returns;
2. trains a DQN agent for `--num_iterations` steps; every
   `--publish_interval` steps it publishes the greedy policy as a new
   version (`save_checkpoint(<output_dir>/weights)`, then `Fleet.publish`:
   one storage read and one put into Ray's object store per version) and
   adds the trajectories the actors collected to its replay buffer;
3. prints, per version, how long it took to reach every actor, and per
   actor its steps per second, episodes, the average return of its last 10
   episodes and the version it serves; writes `fleet.png` (each actor's version lag over time, and the
   actors' returns) and `summary.json`.

It exits with status 1 if any actor served a version that was never
published, served a torn version (probe actions that differ from the
publisher's), or mixed two versions in one step (actors switch versions
only between steps).

Usage:

  tools/bazel run //tf_agents/examples:dqn_cartpole_fleet
  tools/bazel run //tf_agents/examples:dqn_cartpole_fleet -- \
      --num_actors=8 --ray_address=HEAD_HOST:6379 --output_dir=/shared/fleet

On a multi-machine cluster (`--ray_address`), `--output_dir` must be a path
every machine reads (a shared file system, or `gs://...`).
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import contextlib
import functools
import io
import json
import sys
import time
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

with contextlib.redirect_stderr(io.StringIO()):
  import gym  # pylint: disable=unused-import
from tf_agents.agents.dqn import dqn_agent
from tf_agents.drivers import dynamic_step_driver
from tf_agents.environments import suite_gym
from tf_agents.environments import tf_py_environment
from tf_agents.networks import q_network
from tf_agents.policies import policy_fleet
from tf_agents.policies import policy_saver
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import common
# pylint: enable=g-import-not-at-top,wrong-import-position

ENV_NAME = 'CartPole-v0'
# Each actor's average return is over its last episodes.
_LAST_EPISODES = 10

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None,
    'Where to write the export, its versions and the results (default: '
    'outputs/dqn_cartpole_fleet in the workspace).')
_NUM_ITERATIONS = flags.DEFINE_integer('num_iterations', 6000,
                                       'Training steps.')
_PUBLISH_INTERVAL = flags.DEFINE_integer(
    'publish_interval', 250, 'Training steps between two published versions.')
_NUM_ACTORS = flags.DEFINE_integer('num_actors', 4, 'Ray actors.')
_RAY_ADDRESS = flags.DEFINE_string(
    'ray_address', None,
    'A Ray cluster to join (host:port, ray://host:port or auto); default: '
    'RAY_ADDRESS, else a new local cluster.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_FC_LAYER_PARAMS = flags.DEFINE_list('fc_layer_params', ['100'],
                                     'Q network layer sizes.')
_ACTOR_TRAJECTORIES = flags.DEFINE_integer(
    'actor_trajectories', 64,
    'Trajectories taken from each actor per version for the replay buffer.')


def default_output_dir() -> str:
  base = os.environ.get('BUILD_WORKSPACE_DIRECTORY') or os.getcwd()
  return os.path.join(base, 'outputs', 'dqn_cartpole_fleet')


def resolve_output_dir(path: str) -> str:
  if not path:
    return default_output_dir()
  if '://' in path or os.path.isabs(path):
    return path
  base = os.environ.get('BUILD_WORKING_DIRECTORY') or os.getcwd()
  return os.path.join(base, path)


def _add_trajectories(replay_buffer, chunks: Sequence[Sequence[Any]]) -> None:
  """Adds the actors' unbatched trajectories to a batch-1 replay buffer.

  Each actor's chunk is consecutive; its last step is marked as an episode
  boundary, so no transition joins two actors' (or the learner's) steps.

  Args:
    replay_buffer: The learner's replay buffer.
    chunks: `Fleet.collect()`.
  """
  for chunk in chunks:
    for i, trajectory in enumerate(chunk):
      if i == len(chunk) - 1:
        trajectory = trajectory._replace(step_type=np.asarray(
            ts.StepType.LAST, np.asarray(trajectory.step_type).dtype))
      replay_buffer.add_batch(tf.nest.map_structure(
          lambda x: tf.convert_to_tensor(np.asarray(x)[None]), trajectory))


def version_lag(published: Sequence[policy_fleet.VersionInfo],
                applied: Sequence[Any], start: float,
                end: float) -> List[Any]:
  """An actor's lag (versions behind the newest published) over time.

  Args:
    published: `Fleet.published()`.
    applied: `ActorStatus.applied` of one actor.
    start: The time of the first point.
    end: The time of the last point.

  Returns:
    `[(seconds since start, lag)]` at every event.
  """
  events = sorted([(v.saved_at, 'p', v.seq) for v in published] +
                  [(at, 'a', seq) for _, seq, at, _ in applied])
  newest = 0
  served = 0
  points = []
  for at, kind, seq in events:
    if kind == 'p':
      newest = max(newest, seq)
    else:
      served = max(served, seq)
    points.append((max(0.0, at - start), max(0, newest - served)))
  points.append((end - start, points[-1][1] if points else 0))
  return points


def write_figure(path: str, published, statuses, start: float,
                 end: float) -> None:
  figure = Figure(figsize=(9, 7))
  lag_axes, return_axes = figure.subplots(2, 1)
  for status in statuses:
    points = version_lag(published, status.applied, start, end)
    lag_axes.step([p[0] for p in points], [p[1] for p in points],
                  where='post', label=status.name.split('-')[-1])
  lag_axes.set_ylabel('versions behind the learner')
  lag_axes.set_xlabel('seconds')
  lag_axes.set_title('Actor version lag ({} actors)'.format(len(statuses)))
  lag_axes.legend(title='actor', loc='upper right')
  lag_axes.grid(alpha=0.3)
  train_steps = {v.version_id: v.train_step for v in published}
  for status in statuses:
    steps = [train_steps.get(version) for version, _ in status.returns]
    returns = [r for (version, r), s in zip(status.returns, steps)
               if s is not None]
    steps = [s for s in steps if s is not None]
    return_axes.plot(steps, returns, '.', alpha=0.4,
                     label=status.name.split('-')[-1])
  by_step = {}
  for status in statuses:
    for version, value in status.returns:
      if version in train_steps:
        by_step.setdefault(train_steps[version], []).append(value)
  if by_step:
    steps = sorted(by_step)
    return_axes.plot(steps, [np.mean(by_step[s]) for s in steps], 'k-',
                     label='mean')
  return_axes.set_xlabel('train step of the version served')
  return_axes.set_ylabel('episode return')
  return_axes.set_title('Returns of the actors\' episodes')
  return_axes.grid(alpha=0.3)
  return_axes.legend(loc='lower right')
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png')
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def run(output_dir: str, num_iterations: int, publish_interval: int,
        num_actors: int, ray_address: str, seed: int,
        fc_layer_params: Sequence[int],
        actor_trajectories: int) -> Dict[str, Any]:
  """Trains and publishes while the fleet follows; returns the summary."""
  start = time.time()
  tf.random.set_seed(seed)
  np.random.seed(seed)
  policy_dir = os.path.join(output_dir, 'policy')
  weights_dir = os.path.join(output_dir, 'weights')
  tf.io.gfile.makedirs(output_dir)

  py_env = suite_gym.load(ENV_NAME)
  py_env.seed(seed)
  env = tf_py_environment.TFPyEnvironment(py_env)
  network = q_network.QNetwork(env.observation_spec(), env.action_spec(),
                               fc_layer_params=tuple(fc_layer_params))
  train_step = tf.Variable(0, dtype=tf.int64)
  agent = dqn_agent.DqnAgent(
      env.time_step_spec(), env.action_spec(), q_network=network,
      optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3),
      td_errors_loss_fn=common.element_wise_squared_loss,
      train_step_counter=train_step)
  agent.initialize()
  agent.train = common.function(agent.train)
  replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
      agent.collect_data_spec, batch_size=1, max_length=100000)
  collect = dynamic_step_driver.DynamicStepDriver(
      env, agent.collect_policy, observers=[replay_buffer.add_batch],
      num_steps=1)
  collect.run = common.function(collect.run)
  for _ in range(200):
    collect.run()
  dataset = replay_buffer.as_dataset(
      num_parallel_calls=2, sample_batch_size=64,
      num_steps=2).prefetch(2)
  iterator = iter(dataset)

  saver = policy_saver.PolicySaver(agent.policy, batch_size=None,
                                   train_step=train_step)
  saver.save(policy_dir)
  saver.save_checkpoint(weights_dir)
  print('Starting {} Ray actors...'.format(num_actors), flush=True)
  fleet = policy_fleet.Fleet(
      policy_dir, weights_dir,
      env_factory=functools.partial(policy_fleet.gym_environment, ENV_NAME),
      num_actors=num_actors, address=ray_address,
      options=policy_fleet.ActorOptions(
          seed=seed + 1000, keep_trajectories=actor_trajectories))
  fleet_start = time.time()
  print('Fleet up in {:.0f} s; training.'.format(fleet_start - start),
        flush=True)
  try:
    versions = []
    for step in range(1, num_iterations + 1):
      collect.run()
      agent.train(next(iterator)[0])
      if step % publish_interval == 0 or step == num_iterations:
        saver.save_checkpoint(weights_dir)
        saved_at = time.time()
        record = fleet.publish(saved_at)
        versions.append(record)
        _add_trajectories(replay_buffer, fleet.collect())
        logging.info('step %d: %s %s', step, record.state, record.version)
    if versions:
      fleet.wait_for(versions[-1].version, timeout=60)
    end = time.time()
    published = fleet.published()
    statuses = fleet.status()
  finally:
    fleet.shutdown()

  latencies = policy_fleet.propagation(published, statuses)
  published_ids = {v.version_id for v in published}
  for status in statuses:  # Read from storage at start: published too.
    published_ids.update(a[0] for a in status.applied if a[3] == 'storage')
  problems = policy_fleet.check_served(sorted(published_ids), statuses)
  figure_path = os.path.join(output_dir, 'fleet.png')
  write_figure(figure_path, published, statuses, fleet_start, end)
  summary = {
      'num_actors': num_actors,
      'versions': [{'version': v.version_id, 'train_step': v.train_step,
                    'to_every_actor_seconds': latencies[v.version_id]}
                   for v in published],
      'actors': [{'name': s.name, 'node': s.node, 'backend': s.backend,
                  'version': s.version, 'train_step': s.train_step,
                  'steps': s.steps, 'steps_per_second': s.steps_per_second,
                  'episodes': s.episodes,
                  # The policy as it is now, not the early versions.
                  'average_return': (float(np.mean(
                      [r for _, r in s.returns[-_LAST_EPISODES:]]))
                                     if s.returns else None),
                  'errors': s.errors, 'torn': s.torn, 'mixed': s.mixed}
                 for s in statuses],
      'problems': problems,
      'seconds': end - start,
      'figure': figure_path,
  }
  with tf.io.gfile.GFile(os.path.join(output_dir, 'summary.json'), 'w') as f:
    f.write(json.dumps(summary, indent=2))
  return summary


def print_report(summary: Dict[str, Any]) -> None:
  print('Per version: time from the save to every actor serving it')
  print('  {:<36} {:>10} {:>16}'.format('version', 'train step',
                                        'to every actor'))
  for v in summary['versions']:
    seconds = v['to_every_actor_seconds']
    print('  {:<36} {:>10} {:>16}'.format(
        v['version'], v['train_step'],
        'not reached' if seconds is None else '{:.3f} s'.format(seconds)))
  print('Per actor:')
  print('  {:<8} {:<13} {:>8} {:>9} {:>8} {:>10}  {}'.format(
      'actor', 'backend', 'steps', 'steps/s', 'episodes', 'return',
      'serves'))
  for a in summary['actors']:
    print('  {:<8} {:<13} {:>8} {:>9.0f} {:>8} {:>10}  {} (train step {})'
          .format(a['name'].split('-')[-1], a['backend'], a['steps'],
                  a['steps_per_second'], a['episodes'],
                  '-' if a['average_return'] is None else
                  '{:.1f}'.format(a['average_return']),
                  a['version'], a['train_step']))
  total = sum(a['steps_per_second'] for a in summary['actors'])
  print('Aggregate: {:.0f} steps/s over {} actors (return: average of each '
        'actor\'s last {} episodes).'.format(total, len(summary['actors']),
                                             _LAST_EPISODES))
  print('Wrote {} and summary.json beside it.'.format(summary['figure']))
  if summary['problems']:
    print('PROBLEMS:')
    for problem in summary['problems']:
      print('  ' + problem)
  else:
    print('Every actor served only published versions, none torn or mixed.'
          '  Done in {:.0f} s.'.format(summary['seconds']))


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: {}'.format(argv[1:]))
  logging.set_verbosity(logging.WARNING)
  summary = run(
      output_dir=resolve_output_dir(_OUTPUT_DIR.value),
      num_iterations=_NUM_ITERATIONS.value,
      publish_interval=_PUBLISH_INTERVAL.value,
      num_actors=_NUM_ACTORS.value,
      ray_address=_RAY_ADDRESS.value,
      seed=_SEED.value,
      fc_layer_params=[int(x) for x in _FC_LAYER_PARAMS.value],
      actor_trajectories=_ACTOR_TRAJECTORIES.value)
  print_report(summary)
  return 1 if summary['problems'] else 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
