# coding=utf-8
"""A stochastic policy's `action` with its random noise as model inputs.

TFLite has no builtin kernels for TensorFlow's (stateless) random ops, so a
converted stochastic `action` signature needs select TF ops. This module
traces, from the live policy, a function of the same inputs plus *noise
inputs*, computing the action from the parameters of
`policy.distribution(time_step, policy_state)`:

* categorical (`tfp.distributions.Categorical` and its subclasses, e.g.
  `ShiftedCategorical`, `MaskedCategorical`; Q-values or logits, with a
  Boltzmann temperature already applied): Gumbel-max,
  `argmax(logits - log(-log(u)))` with `u` uniform on [0, 1), one per
  category;
* normal (`Normal`, `MultivariateNormalDiag` and other
  `MultivariateNormalLinearOperator`s): `loc + scale @ z` with `z` standard
  normal;
* `TransformedDistribution` (e.g. a tanh squash) and tf_agents'
  `SquashToSpecNormal` (`NormalProjectionNetwork(scale_distribution=True)`):
  the bijector's `forward` of the base distribution's sample;
* `Independent`: its inner distribution's sample; `Deterministic`: its `loc`
  (no noise);
* `EpsilonGreedyPolicy` (discrete actions): its greedy action, or with
  probability epsilon a uniform action over the valid ones (Gumbel-max over
  zero logits, masked like the policy's random policy).

Actions are clipped to the spec and log-probabilities emitted as
`TFPolicy.action` does. The function holds no random op, so it converts to
TFLite with builtin ops only and to ONNX; its weights are the policy's
variables (`model_variables` of the export), replaceable as for
deterministic models. A runtime feeds each noise input (`NoiseInput`) from
its own generator; `export_equivalence` checks once that the converted
model's samples have the SavedModel's distribution.

Policies whose `action` is not `distribution` followed by sampling (other
overrides of `TFPolicy._action`) or whose distributions are none of the
above raise `UnsupportedPolicyError`: they keep select TF ops.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_agents.policies import epsilon_greedy_policy
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.utils import common

tfd = tfp.distributions

# Noise distributions a runtime draws from.
UNIFORM = 'uniform'  # Uniform on [0, 1).
STANDARD_NORMAL = 'standard_normal'
NOISE_PREFIX = 'noise_'
EPSILON_NOISE = NOISE_PREFIX + 'epsilon'


class UnsupportedPolicyError(ValueError):
  """The policy's action cannot be computed from fed noise."""


@dataclasses.dataclass(frozen=True)
class NoiseInput:
  """A noise input of a converted stochastic model.

  Attributes:
    name: The model input's name.
    distribution: `UNIFORM` (on [0, 1)) or `STANDARD_NORMAL`.
    shape: Its shape after the batch dimension.
    dtype: Its numpy dtype name (e.g. `'float32'`).
  """

  name: Text
  distribution: Text
  shape: Tuple[int, ...]
  dtype: Text

  def draw(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
    """Draws noise for `batch_size` rows from `rng`.

    Args:
      rng: The generator.
      batch_size: The batch size of the step.

    Returns:
      An array of shape `(batch_size,) + shape`.
    """
    return draw(rng, self.distribution, (batch_size,) + tuple(self.shape),
                self.dtype)

  def to_json(self) -> Dict[Text, Any]:
    return {'name': self.name, 'distribution': self.distribution,
            'shape': list(self.shape), 'dtype': self.dtype}

  @classmethod
  def from_json(cls, data: Dict[Text, Any]) -> 'NoiseInput':
    return cls(data['name'], data['distribution'], tuple(data['shape']),
               data['dtype'])


def draw(rng: np.random.Generator, distribution: Text,
         shape: Sequence[int], dtype: Text) -> np.ndarray:
  """Draws noise as every runtime of a converted model should.

  Args:
    rng: The generator.
    distribution: `UNIFORM` (on [0, 1)) or `STANDARD_NORMAL`.
    shape: The shape of the draw, batch dimension included.
    dtype: The numpy dtype name the values are cast to.

  Returns:
    The noise.

  Raises:
    ValueError: `distribution` is unknown.
  """
  if distribution == UNIFORM:
    values = rng.random(tuple(shape))
  elif distribution == STANDARD_NORMAL:
    values = rng.standard_normal(tuple(shape))
  else:
    raise ValueError('Unknown noise distribution {!r}.'.format(distribution))
  return values.astype(dtype)


def _gumbel_argmax(logits: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
  """Index of the largest `logits + Gumbel(uniform)` (a categorical draw)."""
  uniform = tf.cast(uniform, logits.dtype)
  # Kept inside (0, 1): log(0) and log(-log(1)) would give infinities that
  # could turn a masked logit (dtype.min) into the largest one.
  tiny = np.finfo(logits.dtype.as_numpy_dtype).tiny
  one_minus = 1.0 - np.finfo(logits.dtype.as_numpy_dtype).epsneg
  uniform = tf.minimum(tf.maximum(uniform, tiny), one_minus)
  gumbel = -tf.math.log(-tf.math.log(uniform))
  return tf.math.argmax(logits + gumbel, axis=-1, output_type=tf.int32)


@dataclasses.dataclass(frozen=True)
class _Plan:
  """How to sample one distribution: its noise (or none) and the sampler."""

  distribution: Optional[Text]
  shape: Tuple[int, ...]
  dtype: Any
  sample: Callable[[Optional[tf.Tensor]], tf.Tensor]
  # The log-probability of an action, if not the distribution's own.
  log_prob: Optional[Callable[[tf.Tensor], tf.Tensor]] = None


def _static_shape(shape: tf.TensorShape, what: Text) -> Tuple[int, ...]:
  if not shape[1:].is_fully_defined():
    raise UnsupportedPolicyError(
        'The {} shape {} is not static after the batch dimension.'.format(
            what, shape))
  return tuple(shape.as_list()[1:])


def _is_transformed(dist: Any) -> bool:
  """Whether `dist` is a `TransformedDistribution`.

  TFP builds a non-composite-tensor class for bijectors that are not
  composite tensors, which is no subclass of `tfd.TransformedDistribution`.

  Args:
    dist: A distribution.

  Returns:
    True if it is the transform of a base distribution by a bijector.
  """
  return (isinstance(getattr(dist, 'bijector', None), tfp.bijectors.Bijector)
          and isinstance(getattr(dist, 'distribution', None),
                         tfd.Distribution))


def _plan(dist: Any) -> _Plan:
  """The noise and sampler of one action distribution.

  Args:
    dist: A distribution of `policy.distribution(...).action`.

  Returns:
    The `_Plan`.

  Raises:
    UnsupportedPolicyError: `dist` is of no supported kind.
  """
  # tf_agents' squash to the spec is its TransformedDistribution.
  squashed = getattr(dist, '_squashed_distribution', None)
  if squashed is not None and _is_transformed(squashed):
    dist = squashed
  if isinstance(dist, tfd.Deterministic):
    return _Plan(None, (), None, lambda _: tf.identity(dist.loc))
  if isinstance(dist, tfd.Categorical):
    logits = dist.logits_parameter()
    shift = getattr(dist, 'shift', None)

    def sample_categorical(uniform):
      index = tf.cast(_gumbel_argmax(logits, uniform), dist.dtype)
      return index if shift is None else index + tf.cast(shift, dist.dtype)

    def log_prob_categorical(value):
      # TFP's `log_prob` uses a sparse softmax cross-entropy, which has no
      # TFLite builtin kernel; log-softmax and one-hot have.
      index = tf.cast(value, tf.int32)
      if shift is not None:
        index -= tf.cast(shift, tf.int32)
      one_hot = tf.one_hot(index, logits.shape[-1], dtype=logits.dtype)
      return tf.reduce_sum(tf.nn.log_softmax(logits) * one_hot, axis=-1)

    return _Plan(UNIFORM, _static_shape(logits.shape, 'logits'),
                 logits.dtype, sample_categorical, log_prob_categorical)
  if isinstance(dist, tfd.Normal):
    loc = tf.broadcast_to(dist.loc, tf.shape(dist.loc + dist.scale))
    scale = dist.scale
    return _Plan(STANDARD_NORMAL, _static_shape(
        (dist.loc + dist.scale).shape, 'normal'), dist.dtype,
                 lambda z: loc + scale * z)
  if isinstance(dist, tfd.MultivariateNormalLinearOperator):
    shape = dist.batch_shape.concatenate(dist.event_shape)
    loc = dist.loc

    def sample_mvn(z):
      value = dist.scale.matvec(z)
      return value if loc is None else loc + value

    return _Plan(STANDARD_NORMAL, _static_shape(shape, 'normal'), dist.dtype,
                 sample_mvn)
  if isinstance(dist, tfd.Independent):
    return _plan(dist.distribution)
  if _is_transformed(dist):
    base = _plan(dist.distribution)
    return dataclasses.replace(
        base, sample=lambda noise: dist.bijector.forward(base.sample(noise)))
  raise UnsupportedPolicyError(
      'No noise sampler for {} distributions.'.format(type(dist).__name__))


def _noise_name(output_key: Text) -> Text:
  return NOISE_PREFIX + ''.join(c if c.isalnum() else '_' for c in output_key)


class NoiseAction(object):
  """The `action` signature of a stochastic policy with noise inputs.

  Shaped like a loaded flat signature (`structured_input_signature`,
  `structured_outputs`, `captured_inputs`, called with keyword arguments),
  so `export_conversion` converts it as it converts `action`.

  Attributes:
    noise: The `NoiseInput`s, in addition to the `action` signature's inputs.
    model_variables: The variables it reads (the export's `model_variables`).
  """

  def __init__(self, function: Any, input_specs: Dict[Text, tf.TensorSpec],
               noise: Sequence[NoiseInput],
               model_variables: Sequence[tf.Variable]):
    self._function = function
    self.structured_input_signature = ((), dict(input_specs))
    self.structured_outputs = function.structured_outputs
    self.captured_inputs = function.captured_inputs
    self.noise = tuple(noise)
    self.model_variables = list(model_variables)
    # `export_conversion` reads the signature of a loaded-like object.
    self.signatures = {'action': self}

  def __call__(self, **inputs: tf.Tensor) -> Dict[Text, tf.Tensor]:
    return self._function(inputs)


def _epsilon_greedy_step(policy: epsilon_greedy_policy.EpsilonGreedyPolicy,
                         time_step: Any, policy_state: Any,
                         noise: Dict[Text, Any], plans: List[Any]) -> Any:
  """`EpsilonGreedyPolicy.action` with fed noise (discrete actions only).

  Args:
    policy: The policy.
    time_step: The batched time step.
    policy_state: The batched policy state.
    noise: Noise tensors by name, or None while the noise is discovered.
    plans: Gets the `NoiseInput` of each noise the step reads: one uniform
      per row against epsilon, one per action for the uniform random action
      (Gumbel-max over the valid actions).

  Returns:
    The `PolicyStep`.

  Raises:
    UnsupportedPolicyError: The action spec is not one scalar discrete action,
      the policy has an exploration mask or emits policy info.
  """
  # pylint: disable=protected-access
  spec = policy.action_spec
  if (tf.nest.is_nested(spec) or not spec.dtype.is_integer or spec.shape.rank
      or getattr(policy._random_policy, '_stationary_mask', None) is not None):
    raise UnsupportedPolicyError(
        'EpsilonGreedyPolicy: only a scalar discrete action without an '
        'exploration mask is supported.')
  greedy = policy._greedy_policy.action(time_step, policy_state)
  if tf.nest.flatten(greedy.info):
    raise UnsupportedPolicyError(
        'EpsilonGreedyPolicy: policy info is not supported.')
  minimum = int(np.min(spec.minimum))
  count = int(np.max(spec.maximum)) - minimum + 1
  batch = tf.shape(tf.nest.flatten(time_step)[0])[:1]
  logits = tf.zeros(tf.concat([batch, [count]], 0), tf.float32)
  splitter = policy.observation_and_action_constraint_splitter
  if splitter is not None:
    _, mask = splitter(time_step.observation)
    logits = tf.where(tf.cast(mask, tf.bool), logits, tf.float32.min)
  epsilon = tf.cast(policy._get_epsilon(), tf.float32)
  # pylint: enable=protected-access
  plans.append(NoiseInput(EPSILON_NOISE, UNIFORM, (), 'float32'))
  plans.append(NoiseInput(_noise_name('random_action'), UNIFORM, (count,),
                          'float32'))
  if noise is None:
    return greedy
  random_action = tf.cast(
      _gumbel_argmax(logits, noise[_noise_name('random_action')]),
      spec.dtype) + tf.cast(minimum, spec.dtype)
  # As `EpsilonGreedyPolicy`: the greedy action when the uniform >= epsilon.
  explore = noise[EPSILON_NOISE] < epsilon
  action = tf.where(explore, random_action, greedy.action)
  return greedy._replace(action=action)


def _policy_step(policy: tf_policy.TFPolicy, time_step: Any, policy_state: Any,
                 action_keys: Sequence[Text],
                 noise: Optional[Dict[Text, tf.Tensor]],
                 plans: List[NoiseInput]) -> Any:
  """`policy.action` computed from `noise` (None: only lists the noise).

  Args:
    policy: The policy.
    time_step: The batched time step.
    policy_state: The batched policy state.
    action_keys: The signature's output key of each action leaf.
    noise: Noise tensors by name, or None while the noise is discovered.
    plans: Gets the `NoiseInput` of each noise the step reads.

  Returns:
    The `PolicyStep` (with the distribution's actions' placeholders when
    `noise` is None).

  Raises:
    UnsupportedPolicyError: The step cannot be computed from noise.
  """
  if isinstance(policy, epsilon_greedy_policy.EpsilonGreedyPolicy):
    return _epsilon_greedy_step(policy, time_step, policy_state, noise, plans)
  if type(policy)._action is not tf_policy.TFPolicy._action:  # pylint: disable=protected-access
    raise UnsupportedPolicyError(
        '{} overrides TFPolicy._action.'.format(type(policy).__name__))
  step = policy.distribution(time_step, policy_state)
  dists = tf.nest.flatten(step.action)
  if len(dists) != len(action_keys):
    raise UnsupportedPolicyError('The action nest does not match the spec.')
  actions = []
  log_probs = []
  for dist, key in zip(dists, action_keys):
    plan = _plan(dist)
    log_probs.append(plan.log_prob or dist.log_prob)
    name = _noise_name(key)
    if plan.distribution is not None:
      plans.append(NoiseInput(name, plan.distribution, plan.shape,
                              np.dtype(plan.dtype.as_numpy_dtype).name))
    if noise is None:
      actions.append(None)
    else:
      actions.append(plan.sample(noise.get(name)))
  if noise is None:
    return step
  actions = tf.nest.pack_sequence_as(step.action, actions)
  info = step.info
  if policy.emit_log_probability:
    # As `TFPolicy._action` does: of the action before clipping.
    info = policy_step.set_log_probability(info, tf.nest.pack_sequence_as(
        step.action, [log_prob(a) for log_prob, a in zip(
            log_probs, tf.nest.flatten(actions))]))
  if policy._clip:  # pylint: disable=protected-access
    # As `TFPolicy.action` does.
    actions = tf.nest.map_structure(
        lambda a, s: common.clip_to_spec(a, s) if isinstance(
            s, tensor_spec.BoundedTensorSpec) else a,
        actions, policy.action_spec)
  return step._replace(action=actions, info=info)


def noise_action(
    policy: tf_policy.TFPolicy,
    input_spec: Any,
    input_keys: Sequence[Text],
    output_spec: Any,
    model_variables: Sequence[tf.Variable],
    input_fn: Optional[Callable[[Any], Any]] = None,
) -> NoiseAction:
  """Traces `policy.action` as a function of its inputs and fed noise.

  Args:
    policy: The live policy (its variables are the export's).
    input_spec: The `action` signature's arguments as a tuple of batched spec
      nests (`(time_step, policy_state)`, or `(example,)` with `input_fn`).
    input_keys: The signature key of each leaf of `input_spec`, flattened.
    output_spec: The `PolicyStep` nest of named specs; the names are the
      signature's output keys.
    model_variables: The export's `model_variables`.
    input_fn: Maps the example to `(time_step, policy_state)`, if given.

  Returns:
    The `NoiseAction`.

  Raises:
    UnsupportedPolicyError: The policy's action cannot be computed from fed
      noise.
  """
  flat_specs = tf.nest.flatten(input_spec)
  specs = {k: tf.TensorSpec(s.shape, s.dtype, k)
           for k, s in zip(input_keys, flat_specs)}
  output_keys = [s.name for s in tf.nest.flatten(output_spec)]
  action_keys = [s.name for s in tf.nest.flatten(output_spec.action)]

  def step(inputs, noise, plans):
    args = tf.nest.pack_sequence_as(input_spec,
                                    [inputs[k] for k in input_keys])
    if input_fn is not None:
      args = input_fn(args[0])
    time_step, policy_state = args
    return _policy_step(policy, time_step, policy_state, action_keys, noise,
                        plans)

  found = []

  # Traced once to find the noise: its shapes follow from the parameters.
  @tf.function(input_signature=[specs], autograph=False)
  def discover(inputs):
    step(inputs, None, found)
    return tf.constant(0)

  discover.get_concrete_function()
  if not found:
    raise UnsupportedPolicyError('The policy draws no noise.')
  noise = tuple(found)
  # Batched like the inputs (a fixed batch size fixes the noise's too).
  batch = (flat_specs[0].shape[0] if flat_specs and flat_specs[0].shape.rank
           else None)
  noise_specs = {n.name: tf.TensorSpec((batch,) + n.shape, n.dtype, n.name)
                 for n in noise}
  clash = sorted(set(noise_specs) & set(specs))
  if clash:
    raise UnsupportedPolicyError('Noise inputs {} clash with inputs.'.format(
        clash))
  all_specs = dict(specs, **noise_specs)

  @tf.function(input_signature=[all_specs], autograph=False)
  def action(inputs):
    outputs = step(inputs, {n: inputs[n] for n in noise_specs}, [])
    flat = tf.nest.flatten(outputs)
    if len(flat) != len(output_keys):
      raise UnsupportedPolicyError(
          'The step {} does not match the outputs {}.'.format(
              outputs, output_keys))
    return dict(zip(output_keys, flat))

  return NoiseAction(action.get_concrete_function(), all_specs, noise,
                     model_variables)
