# coding=utf-8
"""Loads Gymnasium environments as TF-Agents `PyEnvironment`s.

Upstream tf-agents 0.19.0 only wraps the old `gym` API (`suite_gym`,
`gym_wrapper`): `step` returns `(obs, reward, done, info)`, so a time limit
and a real termination look alike, and `suite_gym` works around that by
removing gym's `TimeLimit` and adding its own. Gymnasium (the maintained
successor of gym) reports both: `step` returns `(obs, reward, terminated,
truncated, info)` and `reset(seed=...)` replaces `seed()`. This module
(a new module beside upstream's `suite_gym`, which stays as it is) maps that
API to TF-Agents' time steps:

* specs from the Gymnasium spaces: `Discrete`, `Box`, `MultiDiscrete` and
  `MultiBinary` become `BoundedArraySpec`s (a `Discrete(n, start)` gives
  bounds `[start, start + n - 1]`), `Dict` and `Tuple` become dicts and
  tuples of those; any other space raises `TypeError` naming it;
* `terminated` ends the episode with a LAST step of discount 0; `truncated`
  (the time limit; `gymnasium.make`'s `TimeLimit` stays in place) ends it
  with a LAST step of the environment's discount (1 by default), so value
  targets still bootstrap from the last observation; when both are set,
  `terminated` wins;
* after a LAST step the next `step` resets the environment (TF-Agents'
  auto-reset) and returns the FIRST step;
* `seed(seed)` (TF-Agents' API) makes the next reset `reset(seed=seed)` and
  seeds the action space; later resets continue the environment's own
  random sequence, as Gymnasium intends.

Usage:

```python
env = suite_gymnasium.load('CartPole-v1')
env.seed(0)
tf_env = tf_py_environment.TFPyEnvironment(env)
```
"""

from typing import Any, Dict, Optional, Sequence, Text

import gymnasium
from gymnasium import spaces
import numpy as np

from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.typing import types


def is_registered(environment_name: Text) -> bool:
  """Whether `environment_name` is a registered Gymnasium environment id.

  Args:
    environment_name: An id such as `CartPole-v1`.

  Returns:
    True if `gymnasium.make(environment_name)` finds a registration.
  """
  return environment_name in gymnasium.registry


def _bounded(shape: Any, dtype: Any, low: Any, high: Any,
             name: Text) -> array_spec.BoundedArraySpec:
  low = np.asarray(low)
  high = np.asarray(high)
  # One bound for all elements reads better in specs and in exports.
  if low.size and np.all(low == low.flat[0]):
    low = low.flat[0]
  if high.size and np.all(high == high.flat[0]):
    high = high.flat[0]
  return array_spec.BoundedArraySpec(
      shape=tuple(shape), dtype=dtype, minimum=low, maximum=high, name=name)


def spec_from_space(space: spaces.Space,
                    name: Text = 'observation') -> types.NestedArraySpec:
  """The TF-Agents array spec (nest) of a Gymnasium space.

  Args:
    space: A `Discrete`, `Box`, `MultiDiscrete`, `MultiBinary`, or a `Dict`
      or `Tuple` of those.
    name: The spec's name; nested specs are named `<name>/<key>`.

  Returns:
    A `BoundedArraySpec`, or a dict or tuple of them.

  Raises:
    TypeError: For any other space, naming it.
  """
  if isinstance(space, spaces.Discrete):
    start = int(space.start)
    return array_spec.BoundedArraySpec(
        shape=(), dtype=space.dtype, minimum=start,
        maximum=start + int(space.n) - 1, name=name)
  if isinstance(space, spaces.Box):
    return _bounded(space.shape, space.dtype, space.low, space.high, name)
  if isinstance(space, spaces.MultiDiscrete):
    start = np.asarray(getattr(space, 'start', 0))
    return _bounded(space.shape, space.dtype, start,
                    start + np.asarray(space.nvec) - 1, name)
  if isinstance(space, spaces.MultiBinary):
    return _bounded(space.shape, space.dtype, 0, 1, name)
  if isinstance(space, spaces.Dict):
    return {key: spec_from_space(sub, '{}/{}'.format(name, key))
            for key, sub in space.spaces.items()}
  if isinstance(space, spaces.Tuple):
    return tuple(spec_from_space(sub, '{}/{}'.format(name, i))
                 for i, sub in enumerate(space.spaces))
  raise TypeError(
      'Cannot make a TF-Agents spec of the Gymnasium space {!r} ({}) for '
      '{!r}: supported are Discrete, Box, MultiDiscrete, MultiBinary, and '
      'Dict and Tuple of those.'.format(space, type(space).__name__, name))


def _to_spec(value: Any, spec: types.NestedArraySpec) -> Any:
  """`value` (a Gymnasium sample) as arrays of the spec's dtypes."""
  if isinstance(spec, dict):
    return {key: _to_spec(value[key], sub) for key, sub in spec.items()}
  if isinstance(spec, tuple):
    return tuple(_to_spec(v, sub) for v, sub in zip(value, spec))
  return np.asarray(value, dtype=spec.dtype)


def _to_space(action: Any, space: spaces.Space) -> Any:
  """A TF-Agents action as the values `space.contains` accepts."""
  if isinstance(space, spaces.Discrete):
    return int(np.asarray(action))  # Environments index and compare ints.
  if isinstance(space, spaces.Dict):
    return {key: _to_space(action[key], sub)
            for key, sub in space.spaces.items()}
  if isinstance(space, spaces.Tuple):
    return tuple(_to_space(a, sub) for a, sub in zip(action, space.spaces))
  return np.asarray(action, dtype=space.dtype)


class GymnasiumEnvironment(py_environment.PyEnvironment):
  """A `PyEnvironment` running a Gymnasium environment (module docstring)."""

  def __init__(self, env: gymnasium.Env, discount: types.Float = 1.0):
    """Wraps `env`.

    Args:
      env: The Gymnasium environment (with its wrappers, e.g. `TimeLimit`).
      discount: Discount of every step that does not terminate the episode,
        truncated ones included.

    Raises:
      TypeError: If a space of `env` has no TF-Agents spec.
    """
    super().__init__(handle_auto_reset=True)
    self._env = env
    self._discount = np.asarray(discount, dtype=np.float32)
    self._observation_spec = spec_from_space(env.observation_space,
                                             'observation')
    self._action_spec = spec_from_space(env.action_space, 'action')
    self._pending_seed = None
    self._info = {}

  @property
  def gymnasium_env(self) -> gymnasium.Env:
    """The wrapped Gymnasium environment."""
    return self._env

  def observation_spec(self) -> types.NestedArraySpec:
    return self._observation_spec

  def action_spec(self) -> types.NestedArraySpec:
    return self._action_spec

  def get_info(self) -> Dict[Text, Any]:
    """The `info` dict of the last `reset` or `step`."""
    return self._info

  def seed(self, seed: types.Seed) -> types.Seed:
    """Seeds the next reset (`reset(seed=seed)`) and the action space.

    Args:
      seed: An integer seed, or None to draw fresh entropy.

    Returns:
      `seed`.
    """
    self._pending_seed = None if seed is None else int(seed)
    self._env.action_space.seed(self._pending_seed)
    return seed

  def _reset(self) -> ts.TimeStep:
    seed, self._pending_seed = self._pending_seed, None
    observation, self._info = self._env.reset(seed=seed)
    return ts.restart(_to_spec(observation, self._observation_spec))

  def _step(self, action: types.NestedArray) -> ts.TimeStep:
    observation, reward, terminated, truncated, self._info = self._env.step(
        _to_space(action, self._env.action_space))
    observation = _to_spec(observation, self._observation_spec)
    reward = np.asarray(reward, dtype=np.float32)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward, self._discount)
    return ts.transition(observation, reward, self._discount)

  def render(self, mode: Text = 'rgb_array') -> Any:
    """Gymnasium's `render()` (its mode is chosen at `make`, not here)."""
    del mode
    return self._env.render()

  def close(self) -> None:
    self._env.close()


def load(
    environment_name: Text,
    max_episode_steps: Optional[int] = None,
    discount: types.Float = 1.0,
    gymnasium_kwargs: Optional[Dict[Text, Any]] = None,
    gymnasium_env_wrappers: Sequence[Any] = (),
    env_wrappers: Sequence[Any] = (),
) -> py_environment.PyEnvironment:
  """Makes a Gymnasium environment and wraps it as a `PyEnvironment`.

  Args:
    environment_name: A registered Gymnasium id, e.g. `CartPole-v1`.
    max_episode_steps: None for the registered time limit, 0 for none, or
      a positive number of steps; reaching it truncates the episode (a LAST
      step with discount `discount`).
    discount: Discount of the steps that do not terminate the episode.
    gymnasium_kwargs: Passed to `gymnasium.make` (e.g. `render_mode`).
    gymnasium_env_wrappers: Gymnasium wrapper classes applied in order to the
      Gymnasium environment.
    env_wrappers: TF-Agents `PyEnvironment` wrapper classes applied in order
      to the wrapped environment.

  Returns:
    The `PyEnvironment`.

  Raises:
    ValueError: If `max_episode_steps` is negative.
    gymnasium.error.Error: If `environment_name` is not registered.
    TypeError: If a space of the environment has no TF-Agents spec.
  """
  if max_episode_steps is not None and max_episode_steps < 0:
    raise ValueError('max_episode_steps must be None or >= 0, got {}.'.format(
        max_episode_steps))
  # Gymnasium's `make` leaves `TimeLimit` out for -1.
  limit = -1 if max_episode_steps == 0 else max_episode_steps
  env = gymnasium.make(environment_name, max_episode_steps=limit,
                       **(gymnasium_kwargs or {}))
  for wrapper in gymnasium_env_wrappers:
    env = wrapper(env)
  py_env = GymnasiumEnvironment(env, discount=discount)
  for wrapper in env_wrappers:
    py_env = wrapper(py_env)
  return py_env
