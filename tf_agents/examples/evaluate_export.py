# coding=utf-8
"""Runs a `PolicySaver` export in a Gymnasium environment with TensorFlow alone.

A new module (upstream tf-agents has no counterpart). It is a standalone
script that imports only TensorFlow, NumPy and Gymnasium (and gym for an id
only gym registers), never `tf_agents` or anything else from this
repository, as a user serving an export would. It checks that on exit and
fails if `tf_agents` was imported.

`--env=ID` is made with Gymnasium if Gymnasium registers ID (e.g. the
default `CartPole-v1`), else with gym (so ids of the old gym still work);
`gymnasium:ID` or `gym:ID` picks the library (`resolve_env`). Episodes end
when the environment terminates or truncates them.

The example `dqn_cartpole_export` runs it in a fresh process to show that an
export works without the code that wrote it, and imports `run_episodes` to
evaluate its in-memory policy with the same episode loop and seeds, so the
two average returns of a greedy policy are equal.

Usage:

  python evaluate_export.py --export_dir=DIR [--env=CartPole-v1]
      [--seeds=0,1,2] [--checkpoint=CHECKPOINT_DIR]

It prints one JSON document on stdout: the return of each episode, their
average, the export's train step and, with `--checkpoint` (a directory
written by `PolicySaver.save_checkpoint`), the result of restoring that
checkpoint into the loaded export.
"""

import argparse
import contextlib
import io
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import gymnasium
import numpy as np
import tensorflow as tf

# TimeStep.step_type values (tf_agents.trajectories.StepType).
FIRST = 0
MID = 1
LAST = 2

DEFAULT_ENV = 'CartPole-v1'
GYMNASIUM = 'gymnasium'
GYM = 'gym'


def resolve_env(env_name: str) -> Tuple[str, str]:
  """Which library makes `env_name`, and the id to make there.

  Args:
    env_name: `gymnasium:ID`, `gym:ID`, or a bare ID: Gymnasium if it
      registers ID, else gym.

  Returns:
    `(GYMNASIUM or GYM, ID)`.
  """
  for library in (GYMNASIUM, GYM):
    if env_name.startswith(library + ':'):
      return library, env_name[len(library) + 1:]
  if env_name in gymnasium.registry:
    return GYMNASIUM, env_name
  return GYM, env_name


def _import_gym() -> Any:
  with contextlib.redirect_stderr(io.StringIO()):
    # gym 0.23 prints a multi-line deprecation notice on import.
    import gym  # pylint: disable=g-import-not-at-top
  gym.logger.set_level(gym.logger.ERROR)
  return gym


def make_env(env_name: str) -> Any:
  """Makes `env_name` with the library `resolve_env` picks.

  Args:
    env_name: See `resolve_env`.

  Returns:
    The environment (Gymnasium's or gym's).
  """
  library, env_id = resolve_env(env_name)
  if library == GYMNASIUM:
    return gymnasium.make(env_id)
  return _import_gym().make(env_id)


def make_time_step(
    time_step_spec: Any,
    step_type: int,
    reward: float,
    discount: float,
    observation: Any,
) -> Any:
  """Builds a batch-of-one time step matching `time_step_spec`.

  Args:
    time_step_spec: A `TimeStep`-like namedtuple of `tf.TensorSpec`s, with
      or without a batch dimension (fields `step_type`, `reward`, `discount`,
      `observation`).
    step_type: FIRST, MID or LAST.
    reward: The reward of the transition that led to `observation`.
    discount: The discount of that transition.
    observation: A nest of arrays matching `time_step_spec.observation`
      without a batch dimension.

  Returns:
    A namedtuple of the same type as `time_step_spec` holding tensors with a
    leading batch dimension of 1, each of its spec's dtype.
  """

  def batched(spec, value):
    return tf.constant(np.asarray(value, dtype=spec.dtype.as_numpy_dtype)[None])

  return type(time_step_spec)(
      step_type=batched(time_step_spec.step_type, step_type),
      reward=batched(time_step_spec.reward, reward),
      discount=batched(time_step_spec.discount, discount),
      observation=tf.nest.map_structure(
          batched, time_step_spec.observation, observation
      ),
  )


def _reset(env: Any, seed: int) -> Any:
  result = env.reset(seed=seed)
  # gym >= 0.26 returns (observation, info).
  if isinstance(result, tuple) and len(result) == 2:
    return result[0]
  return result


def _step(env: Any, action: Any):
  result = env.step(action)
  if len(result) == 5:  # gym >= 0.26: terminated and truncated.
    observation, reward, terminated, truncated, _ = result
    return observation, reward, terminated or truncated
  observation, reward, done, _ = result
  return observation, reward, done


def _env_action(action_space: Any, action: Any) -> Any:
  value = np.asarray(tf.nest.flatten(action)[0])[0]
  # Gymnasium's or gym's Discrete space: environments index with ints.
  if type(action_space).__name__ == 'Discrete':
    return int(value)
  return value


def run_episodes(
    action_fn: Callable[[Any, Any], Any],
    initial_state_fn: Callable[[int], Any],
    time_step_spec: Any,
    env_name: str,
    seeds: Sequence[int],
    max_steps: int = 100000,
) -> List[float]:
  """Runs one episode per seed and returns the undiscounted returns.

  Args:
    action_fn: `action(time_step, policy_state)` returning a `PolicyStep`-like
      namedtuple with fields `action` and `state` (a `TFPolicy.action`, or
      the `action` function of a loaded export).
    initial_state_fn: `get_initial_state(batch_size)`.
    time_step_spec: The `TimeStep` spec the policy takes (its structure and
      dtypes are used; the batch dimension is added here).
    env_name: An environment id (see `resolve_env`).
    seeds: One episode per seed; episode `i` resets the environment with
      `seeds[i]`.
    max_steps: Upper bound on the steps of one episode (the environment's own
      time limit normally ends it first).

  Returns:
    The return of each episode, in the order of `seeds`.
  """
  env = make_env(env_name)
  returns = []
  try:
    for seed in seeds:
      observation = _reset(env, int(seed))
      policy_state = initial_state_fn(1)
      step_type, reward, discount = FIRST, 0.0, 1.0
      total = 0.0
      for _ in range(max_steps):
        time_step = make_time_step(
            time_step_spec, step_type, reward, discount, observation
        )
        policy_step = action_fn(time_step, policy_state)
        policy_state = policy_step.state
        observation, reward, done = _step(
            env, _env_action(env.action_space, policy_step.action)
        )
        total += float(reward)
        if done:
          break
        step_type = MID
      returns.append(total)
  finally:
    env.close()
  return returns


def export_time_step_spec(loaded: Any) -> Any:
  """Returns the batched `TimeStep` spec of a loaded export's `action`.

  Args:
    loaded: The result of `tf.saved_model.load` on a `PolicySaver` export.

  Returns:
    The first argument's spec of the first concrete function of
    `loaded.action`.
  """
  concrete = loaded.action.concrete_functions[0]
  args, _ = concrete.structured_input_signature
  return args[0]


def restore_checkpoint(loaded: Any, checkpoint_dir: str) -> Dict[str, Any]:
  """Restores a `PolicySaver.save_checkpoint` directory into `loaded`.

  Args:
    loaded: The result of `tf.saved_model.load` on a `PolicySaver` export.
    checkpoint_dir: A directory written by `PolicySaver.save_checkpoint`.

  Returns:
    A dict with the restored `train_step` and `max_abs_change`, the largest
    change of any model variable.
  """
  before = [v.numpy() for v in loaded.model_variables]
  checkpoint = tf.train.Checkpoint(
      model_variables=loaded.model_variables, train_step=loaded.train_step
  )
  prefix = os.path.join(checkpoint_dir, 'variables', 'variables')
  checkpoint.read(prefix).assert_existing_objects_matched().expect_partial()
  change = 0.0
  for old, variable in zip(before, loaded.model_variables):
    if old.size:
      diff = np.abs(variable.numpy().astype(np.float64) - old)
      change = max(change, float(diff.max()))
  return {
      'checkpoint': checkpoint_dir,
      'train_step': int(loaded.train_step.numpy()),
      'max_abs_change': change,
  }


def evaluate_export(
    export_dir: str,
    env_name: str,
    seeds: Sequence[int],
    checkpoint_dir: Optional[str] = None,
) -> Dict[str, Any]:
  """Loads an export with `tf.saved_model.load` and runs it in `env_name`.

  Args:
    export_dir: A directory written by `PolicySaver.save`.
    env_name: An environment id (see `resolve_env`).
    seeds: One episode per seed.
    checkpoint_dir: Optional directory written by
      `PolicySaver.save_checkpoint`, restored into the export after the
      episodes have run.

  Returns:
    A JSON-serializable dict describing the run.
  """
  loaded = tf.saved_model.load(export_dir)
  returns = run_episodes(
      loaded.action,
      loaded.get_initial_state,
      export_time_step_spec(loaded),
      env_name,
      seeds,
  )
  result = {
      'export_dir': export_dir,
      'env': env_name,
      'env_library': resolve_env(env_name)[0],
      'seeds': [int(s) for s in seeds],
      'returns': returns,
      'average_return': float(np.mean(returns)) if returns else float('nan'),
      'train_step': int(loaded.get_train_step().numpy()),
      'tensorflow_version': tf.__version__,
  }
  if checkpoint_dir:
    result['restored_checkpoint'] = restore_checkpoint(loaded, checkpoint_dir)
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--export_dir', required=True)
  parser.add_argument('--env', default=DEFAULT_ENV)
  parser.add_argument(
      '--seeds', default='0', help='Comma-separated; one episode per seed.'
  )
  parser.add_argument('--checkpoint', default=None)
  args = parser.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
  result = evaluate_export(args.export_dir, args.env, seeds, args.checkpoint)
  result['tf_agents_imported'] = 'tf_agents' in sys.modules
  print(json.dumps(result))
  if result['tf_agents_imported']:
    print('error: tf_agents was imported', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
