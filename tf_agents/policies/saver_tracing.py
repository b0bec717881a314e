# coding=utf-8
"""Traces a policy's exported functions once and builds their signatures.

New in this repository (not upstream's): `TracedPolicy` does the tracing
part of `policy_saver.PolicySaver`'s constructor, in named steps: naming
the tensors of the flat signatures (`saver_signatures.signature_names`),
tracing `action` and `distribution` once each, building the exported
`tf.Module` and the flat signatures (`action`, `get_initial_state`,
`get_train_step`, `get_metadata`, `action_from_observation`).
"""

from typing import Any, Callable, Dict, Optional, Text, Tuple

from absl import logging
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import saver_arguments
from tf_agents.policies import saver_signatures
from tf_agents.policies import tf_policy
from tf_agents.typing import types


class TracedPolicy(object):
  """A policy's exported functions, traced once, and their flat signatures.

  Attributes:
    module: The `tf.Module` that `PolicySaver.save` exports.
    signatures: The flat signatures, keyed by name.
    specs_text: The text of `policy_specs.pbtxt`.
    action_input_spec: Named (unbatched) specs of the `action` inputs.
    batched_action_input: The same with the batch dimension.
    policy_step_spec: Named specs of the `action` outputs.
    policy_state_spec: Named specs of the policy state.
    time_step_names: Named (unbatched) specs of the time step.
    distribution_export_error: The error raised while tracing
      `distribution`, or None.
  """

  def __init__(
      self,
      policy: tf_policy.TFPolicy,
      batch_size: Optional[int],
      use_nest_path_signatures: bool,
      seed: Optional[types.Seed],
      train_step: tf.Variable,
      metadata: Dict[Text, tf.Variable],
      input_fn_and_spec: Optional[Tuple[Callable[..., Any], Any]],
      include_distribution: bool,
  ):
    """Names, traces and builds everything the saver exports for `policy`.

    Args:
      policy: The policy, checked by `saver_arguments`.
      batch_size: The checked batch size, or None.
      use_nest_path_signatures: As for `PolicySaver`.
      seed: As for `PolicySaver`.
      train_step: The checked train step variable.
      metadata: The checked metadata.
      input_fn_and_spec: As for `PolicySaver`.
      include_distribution: As for `PolicySaver`.

    Raises:
      ValueError: An input or output name of the `action` signature is
        unusable or collides (see `policy_saver`'s module docstring).
    """
    self._batch_size = batch_size
    self._use_nest_path_signatures = use_nest_path_signatures
    self._train_step = train_step
    self._metadata = metadata
    self._include_distribution = include_distribution
    self.distribution_export_error = None
    self._name_signatures(policy, input_fn_and_spec)
    action, action_trace, distribution = self._trace_policy(
        policy, seed, input_fn_and_spec)
    get_initial_state_fn, initial_state_inputs = (
        saver_signatures.make_initial_state_fn(policy, batch_size))
    self.specs_text = saver_signatures.specs_text(policy)
    self.module = self._build_module(policy, action, distribution,
                                     get_initial_state_fn)
    self.signatures = self._build_signatures(
        policy, action_trace, get_initial_state_fn, initial_state_inputs,
        with_input_fn=input_fn_and_spec is not None)

  def _name_signatures(
      self, policy: tf_policy.TFPolicy,
      input_fn_and_spec: Optional[Tuple[Callable[..., Any], Any]]) -> None:
    """Names the tensors of the flat signatures and checks the names.

    Sets `action_input_spec`, `policy_step_spec` and `policy_state_spec`.

    Args:
      policy: The policy.
      input_fn_and_spec: As for the constructor.

    Raises:
      ValueError: As the constructor, for names.
    """
    use_nest_paths = self._use_nest_path_signatures
    time_step_names, state_names, step_names = (
        saver_signatures.signature_names(policy, use_nest_paths))
    if input_fn_and_spec is not None:
      action_input_spec = (saver_arguments.input_fn_spec_names(
          input_fn_and_spec[1], use_nest_paths),)
    else:
      action_input_spec = (time_step_names, state_names)
    saver_signatures.check_action_names(
        action_input_spec, step_names, input_fn_and_spec is not None)
    self.time_step_names = time_step_names
    self.action_input_spec = action_input_spec
    self.policy_step_spec = step_names
    self.policy_state_spec = state_names
    self.batched_action_input = tf.nest.map_structure(
        lambda s: saver_signatures.add_batch_dim(s, [self._batch_size]),
        action_input_spec)

  def _trace_policy(
      self, policy: tf_policy.TFPolicy, seed: Optional[types.Seed],
      input_fn_and_spec: Optional[Tuple[Callable[..., Any], Any]],
  ) -> Tuple[Any, Any, Any]:
    """Traces the policy's `action` and `distribution` once each.

    Args:
      policy: The policy.
      seed: As for the constructor.
      input_fn_and_spec: As for the constructor.

    Returns:
      `(exported action, its concrete function, exported distribution or
      None)`.
    """
    action_fn = saver_signatures.make_action_fn(policy, seed)
    distribution_fn = saver_signatures.make_distribution_fn(policy)
    arg_specs = self.batched_action_input
    default_state = saver_signatures.NO_DEFAULT
    fixed_batch_size = None
    if input_fn_and_spec is not None:
      expected_inputs = (policy.time_step_spec, policy.policy_state_spec)
      action_fn, distribution_fn = [
          saver_signatures.from_example(input_fn_and_spec[0], expected_inputs,
                                        fn)
          for fn in (action_fn, distribution_fn)]
    else:
      fixed_batch_size = self._batch_size
      if not tf.nest.flatten(policy.policy_state_spec):
        # Stateless: callable as action(time_step) and action(time_step, ()).
        default_state = policy.policy_state_spec
    action, action_trace = saver_signatures.traced_once(
        action_fn, arg_specs, default_state, fixed_batch_size=fixed_batch_size)
    distribution = None
    if self._include_distribution:
      distribution, self.distribution_export_error = (
          saver_signatures.trace_distribution(
              distribution_fn, arg_specs, default_state, policy))
    return action, action_trace, distribution

  def _build_module(self, policy: tf_policy.TFPolicy, action: Any,
                    distribution: Any, get_initial_state: Any) -> tf.Module:
    """Builds the `tf.Module` that `save` exports.

    Args:
      policy: The policy.
      action: The exported `action`.
      distribution: The exported `distribution`, or None.
      get_initial_state: The exported `get_initial_state`.

    Returns:
      The module.
    """
    module = tf.Module()
    # Kept as upstream does; not saved (TensorSpecs are not trackable).
    module.collect_data_spec = policy.collect_data_spec
    module.policy_state_spec = policy.policy_state_spec
    module.train_step = self._train_step
    module.metadata = dict(self._metadata)
    module.model_variables = policy.variables()
    module.action = action
    if distribution is not None:
      module.distribution = distribution
    module.get_initial_state = get_initial_state
    saver_signatures.add_module_getters(module, self.specs_text)
    # Tables, assets and other trackables the policy depends on.
    try:
      children = tf.train.TrackableView(policy).children(policy)
      module._all_assets = dict(children)  # pylint: disable=protected-access
    except AttributeError as e:
      logging.warning(
          'Could not list the trackable objects of policy %r; only its '
          'variables are exported: %s',
          policy,
          e,
      )
    return module

  def _build_signatures(
      self, policy: tf_policy.TFPolicy, action_trace: Any,
      get_initial_state: Any, initial_state_inputs: Tuple[Any, ...],
      with_input_fn: bool) -> Dict[Text, Any]:
    """Builds the flat signatures (see `signatures`).

    Args:
      policy: The policy.
      action_trace: The concrete function of the policy's `action`.
      get_initial_state: The exported `get_initial_state`.
      initial_state_inputs: Its flat signature's inputs.
      with_input_fn: Whether `input_fn_and_spec` was given.

    Returns:
      A dict signature key -> flat signature.
    """
    outer_dims = [self._batch_size]
    state_names = self.policy_state_spec
    signatures = {
        export_contract.ACTION: saver_signatures.flat_signature(
            action_trace, self.action_input_spec, self.policy_step_spec,
            outer_dims),
        export_contract.GET_INITIAL_STATE: saver_signatures.flat_signature(
            get_initial_state, initial_state_inputs, state_names, None),
    }
    signatures.update(saver_signatures.getter_signatures(self.module))
    if not with_input_fn and tf.nest.flatten(
        policy.time_step_spec.observation):
      # tensorflow/agents#570: serving clients that only have observations.
      from_observation = saver_signatures.from_observation(
          action_trace, policy.time_step_spec)
      signatures[export_contract.ACTION_FROM_OBSERVATION] = (
          saver_signatures.flat_signature(
              from_observation,
              (self.time_step_names.observation, state_names),
              self.policy_step_spec,
              outer_dims,
          ))
    return signatures
