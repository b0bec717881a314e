# coding=utf-8
"""The policies the PolicySaver benchmark measures, and the two savers.

Policies (`CASES`; `--fast` keeps the small ones):

* `q_mlp_10k`, `q_mlp_2m`, `q_mlp_34m`: greedy `QPolicy` (as `DqnAgent.policy`)
  over a `QNetwork` MLP of about 10 thousand, 2 million and 34 million
  parameters;
* `q_rnn_lstm`: greedy `QPolicy` over a `QRnnNetwork` (LSTM);
* `actor_normal`: `ActorPolicy` over an `ActorDistributionNetwork` with a
  `NormalProjectionNetwork` (stochastic, continuous actions).

Savers: `OURS` is this repository's `tf_agents.policies.policy_saver`, which
replaces upstream's module of the same name; `UPSTREAM` is upstream's
`policy_saver.py` imported from the installed tf-agents distribution under
the module name `upstream_policy_saver` (`load_upstream_policy_saver`).
"""

import dataclasses
import importlib.util
import os
import sys
import types as py_types
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_agents.networks import actor_distribution_network
from tf_agents.networks import normal_projection_network
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.policies import actor_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import q_policy
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

OURS = 'ours'
UPSTREAM = 'upstream'
SAVERS = (OURS, UPSTREAM)

_UPSTREAM_MODULE_NAME = 'upstream_policy_saver'
_NUM_ACTIONS = 4
_CONTINUOUS_ACTIONS = 2


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
    deterministic: Whether its action is a function of the weights and the
      time step (so two runtimes with the same weights must agree).
  """

  name: str
  description: str
  kind: str
  observation_size: int
  fc_layer_params: Tuple[int, ...] = ()
  lstm_size: Tuple[int, ...] = ()
  small: bool = True
  deterministic: bool = True


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
        deterministic=False,
    ),
)
CASES_BY_NAME = {case.name: case for case in CASES}
SMALL_MLP_CASE = 'q_mlp_10k'


def check_case_names(names: Sequence[str]) -> None:
  """Raises ValueError naming any of `names` that is not a case."""
  unknown = [name for name in names if name not in CASES_BY_NAME]
  if unknown:
    raise ValueError('Unknown policies {}; choose from {}.'.format(
        unknown, sorted(CASES_BY_NAME)))


def _time_step_spec(case: PolicyCase) -> ts.TimeStep:
  observation_spec = tensor_spec.BoundedTensorSpec(
      (case.observation_size,), tf.float32, minimum=-1.0, maximum=1.0,
      name='observation',
  )
  return ts.time_step_spec(observation_spec)


def _normal_projection(action_spec: Any) -> Any:
  return normal_projection_network.NormalProjectionNetwork(action_spec)


def _q_policy(case: PolicyCase,
              time_step_spec: ts.TimeStep) -> tf_policy.TFPolicy:
  """The greedy `QPolicy` of a `'q_mlp'` or `'q_rnn'` case."""
  observation_spec = time_step_spec.observation
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
  return greedy_policy.GreedyPolicy(
      q_policy.QPolicy(time_step_spec, action_spec, net)
  )


def _actor_policy(case: PolicyCase,
                  time_step_spec: ts.TimeStep) -> tf_policy.TFPolicy:
  """The `ActorPolicy` of an `'actor_normal'` case."""
  action_spec = tensor_spec.BoundedTensorSpec(
      (_CONTINUOUS_ACTIONS,), tf.float32, minimum=-1.0, maximum=1.0,
      name='action',
  )
  net = actor_distribution_network.ActorDistributionNetwork(
      time_step_spec.observation,
      action_spec,
      fc_layer_params=case.fc_layer_params,
      continuous_projection_net=_normal_projection,
  )
  return actor_policy.ActorPolicy(time_step_spec, action_spec, net)


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
  if case.kind in ('q_mlp', 'q_rnn'):
    policy = _q_policy(case, time_step_spec)
  elif case.kind == 'actor_normal':
    policy = _actor_policy(case, time_step_spec)
  else:
    raise ValueError('Unknown policy kind {!r}.'.format(case.kind))
  policy.action(tf_time_step(case, 1), policy.get_initial_state(1))
  return policy


def num_parameters(policy: tf_policy.TFPolicy) -> int:
  """Number of scalars in the policy's variables."""
  return int(sum(np.prod(v.shape.as_list()) for v in policy.variables()))


def tf_time_step(case: PolicyCase, batch_size: int) -> ts.TimeStep:
  """A batch of MID time steps as tensors.

  Args:
    case: The policy case (gives the observation size).
    batch_size: Leading dimension of every field.

  Returns:
    A `TimeStep` of tensors (observations seeded by `batch_size`).
  """
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


def np_time_step(case: PolicyCase, seed: int = 0) -> ts.TimeStep:
  """One unbatched MID time step as numpy arrays (one environment).

  Args:
    case: The policy case (gives the observation size).
    seed: Seeds the observation.

  Returns:
    A `TimeStep` of numpy arrays without a batch dimension.
  """
  rng = np.random.RandomState(seed)
  return ts.TimeStep(
      step_type=np.asarray(ts.StepType.MID, np.int32),
      reward=np.asarray(0.0, np.float32),
      discount=np.asarray(1.0, np.float32),
      observation=rng.uniform(-1, 1, (case.observation_size,)).astype(
          np.float32
      ),
  )


def np_batched_time_step(case: PolicyCase, batch_size: int,
                         seed: int = 0) -> ts.TimeStep:
  """`batch_size` MID time steps as numpy arrays (one batched environment).

  Args:
    case: The policy case.
    batch_size: The leading dimension of every field.
    seed: Seeds the observations.

  Returns:
    A `TimeStep` of numpy arrays with a batch dimension.
  """
  rng = np.random.RandomState(seed)
  return ts.TimeStep(
      step_type=np.full((batch_size,), ts.StepType.MID, np.int32),
      reward=np.zeros((batch_size,), np.float32),
      discount=np.ones((batch_size,), np.float32),
      observation=rng.uniform(
          -1, 1, (batch_size, case.observation_size)).astype(np.float32),
  )


def assign_new_weights(policy: tf_policy.TFPolicy) -> None:
  """Perturbs every floating-point variable of `policy` in place."""
  for variable in policy.variables():
    if variable.dtype.is_floating:
      variable.assign_add(
          tf.random.normal(variable.shape, stddev=0.01, dtype=variable.dtype)
      )


def fresh_values(variables: Sequence[tf.Variable],
                 seed: int) -> List[np.ndarray]:
  """New values for `variables`, as a learner would send them.

  Each floating-point variable that is not constant gets a fresh normal
  draw with the mean and spread of its current values, so a greedy policy's
  actions change and still depend on the observation; constant variables
  (e.g. biases at their initial value) and the others keep their values.
  The same `seed` and variables give the same arrays, so runtimes loaded
  from the same export receive the same values.

  Args:
    variables: The variables, in the order the values are for.
    seed: Seeds the draw.

  Returns:
    One numpy array per variable, of its shape and dtype.
  """
  rng = np.random.RandomState(seed)
  values = []
  for variable in variables:
    current = variable.numpy()
    scale = float(np.std(current)) if variable.dtype.is_floating else 0.0
    if scale > 0:
      current = rng.normal(float(np.mean(current)), scale,
                           current.shape).astype(current.dtype)
    values.append(current)
  return values


def mlp_parameters(case: PolicyCase) -> int:
  """Parameters of a `'q_mlp'` case's `QNetwork` (weights and biases)."""
  sizes = (case.observation_size,) + case.fc_layer_params + (_NUM_ACTIONS,)
  return sum((n + 1) * m for n, m in zip(sizes[:-1], sizes[1:]))


def memory_case(policies: Sequence[str]) -> Optional[str]:
  """The largest MLP among `policies` (the peak-memory policy), or None."""
  mlps = [
      CASES_BY_NAME[name]
      for name in policies
      if CASES_BY_NAME[name].kind == 'q_mlp'
  ]
  if not mlps:
    return None
  return max(mlps, key=mlp_parameters).name


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
