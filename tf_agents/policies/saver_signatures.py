# coding=utf-8
"""Names, traces and flat signatures of the functions `PolicySaver` exports.

New in this repository (not upstream's): the module functions that
`policy_saver.PolicySaver` uses to name the tensors of the flat signatures
(nest paths or spec names, one name per policy-state tensor), to check that
TensorFlow can use those names, to trace each policy function once
(`traced_once`) and to wrap traces in flat signatures (`flat_signature`),
including `action_from_observation` and the `get_*` functions of the
exported module. The naming rules are described in `policy_saver`'s module
docstring.
"""

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Tuple
import zlib

from absl import logging
import tensorflow as tf

from google.protobuf import text_format
from tf_agents.policies import export_contract
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.typing import types
from tf_agents.utils import nest_utils


def function(fn: Optional[Callable[..., Any]] = None, **kwargs) -> Any:
  """`tf.function` with autograph off, as upstream's `common.function`.

  Policies are written to be traced without autograph (upstream exports them
  so), and converting their code and the networks' takes most of a first
  save's time.

  Args:
    fn: The Python function; None to return a decorator.
    **kwargs: Passed to `tf.function`.

  Returns:
    The `tf.function`, or a decorator making one.
  """
  kwargs.setdefault('autograph', False)
  if fn is None:
    return lambda f: tf.function(f, **kwargs)
  return tf.function(fn, **kwargs)


def rename_spec_with_nest_paths(
    spec: types.NestedTensorSpec,
) -> types.NestedTensorSpec:
  """Returns `spec` with every leaf a `tf.TensorSpec` named by its nest path.

  Args:
    spec: A nest of `tf.TypeSpec`s with `shape` and `dtype`.

  Returns:
    The same nest of `tf.TensorSpec`s, each named by its path in `spec`
    (e.g. `observation/0`), bounds dropped.
  """
  named = [
      tf.TensorSpec(shape=leaf.shape, dtype=leaf.dtype, name=path)
      for path, leaf in nest_utils.flatten_with_joined_paths(spec)
  ]
  return tf.nest.pack_sequence_as(spec, named)


def add_batch_dim(
    spec: tf.TypeSpec, outer_dims: Sequence[Optional[int]]
) -> tf.TensorSpec:
  """Returns a `tf.TensorSpec` like `spec` with `outer_dims` prepended.

  Args:
    spec: A `tf.TensorSpec` (or subclass).
    outer_dims: The outer dimensions to prepend, e.g. `[None]` or `[3]`.

  Returns:
    A `tf.TensorSpec` with the same name and dtype.
  """
  return tf.TensorSpec(
      shape=tf.TensorShape(outer_dims).concatenate(spec.shape),
      dtype=spec.dtype,
      name=spec.name,
  )


def prefixed_path_names(
    spec: types.NestedTensorSpec, prefix: Text, separator: Text = '/'
) -> types.NestedTensorSpec:
  """Names leaves `prefix` (single leaf at the root) or `prefix<sep>path`."""
  named = []
  for path, leaf in nest_utils.flatten_with_joined_paths(spec):
    name = export_contract.joined(prefix, path, separator)
    if separator != '/':
      name = export_contract.signature_key(name)
    named.append(tf.TensorSpec(shape=leaf.shape, dtype=leaf.dtype, name=name))
  return tf.nest.pack_sequence_as(spec, named)


def spec_named(spec: types.NestedTensorSpec) -> types.NestedTensorSpec:
  """Converts leaves to `tf.TensorSpec`s keeping their own names."""
  return tf.nest.map_structure(
      lambda s: tf.TensorSpec(shape=s.shape, dtype=s.dtype, name=s.name), spec
  )


def name_problems(groups: Sequence[Tuple[Text, Any]]) -> List[Text]:
  """Lists missing and colliding spec names across the nests in `groups`.

  Args:
    groups: `(label, spec_nest)` pairs whose leaves must have unique names.

  Returns:
    Human-readable problem descriptions; empty when all names are fine.
  """
  problems = []
  owners = {}
  for label, spec in groups:
    for path, leaf in nest_utils.flatten_with_joined_paths(spec):
      where = '{}/{}'.format(label, path) if path else label
      if not leaf.name:
        problems.append('{} has no name'.format(where))
      elif leaf.name in owners:
        problems.append(
            'name {!r} of {} collides with {}'.format(
                leaf.name, where, owners[leaf.name]
            )
        )
      else:
        owners[leaf.name] = where
  return problems


def check_unique_keys(label: Text, keys: Sequence[Text]) -> None:
  """Raises ValueError if `keys` has duplicates."""
  seen = set()
  duplicates = sorted({k for k in keys if k in seen or seen.add(k)})
  if duplicates:
    raise ValueError(
        'The {} would have duplicate keys {}; rename the specs.'.format(
            label, duplicates
        )
    )


# TensorFlow names the placeholder of every flat-signature input after its
# spec, and accepts only graph node names for it (`_VALID_OP_NAME_REGEX` in
# `tensorflow/python/framework/ops.py`); another name is replaced and `save`
# then fails. Valid names are then made parameter names
# (`export_contract.signature_key`).
_INPUT_NAME_START = re.compile(r'[A-Za-z0-9.]')
_INPUT_NAME_CHAR = re.compile(r'[A-Za-z0-9_.\\/>-]')


def input_name_problem(name: Text) -> Optional[Text]:
  """Why TensorFlow cannot name a flat-signature input `name`, or None."""
  if not name:
    return 'it is empty'
  if not _INPUT_NAME_START.fullmatch(name[0]):
    return (
        'it starts with {!r} (TensorFlow needs an ASCII letter, a digit or '
        "'.' first)".format(name[0])
    )
  bad = [c for c in dict.fromkeys(name) if not _INPUT_NAME_CHAR.fullmatch(c)]
  if bad:
    return (
        'it contains {} (TensorFlow allows only ASCII letters, digits and '
        "'_./\\>-')".format(', '.join(repr(c) for c in bad))
    )
  return None


def check_input_names(groups: Sequence[Tuple[Text, Any]]) -> None:
  """Raises ValueError if TensorFlow cannot name an input as given.

  Args:
    groups: `(label, spec_nest)` pairs of a flat signature's inputs, named as
      they are exported.
  """
  problems = []
  for label, spec in groups:
    for path, leaf in nest_utils.flatten_with_joined_paths(spec):
      reason = input_name_problem(leaf.name)
      if reason:
        where = '{}/{}'.format(label, path) if path else label
        problems.append('{} is named {!r}: {}'.format(where, leaf.name, reason))
  if problems:
    raise ValueError(
        'TensorFlow cannot use these names for inputs of the action '
        'signature (rename the specs, or the nest keys that nest-path names '
        'come from): {}.'.format('; '.join(problems))
    )


def check_compatible(spec: tf.TypeSpec, tensor: tf.Tensor) -> None:
  """Raises ValueError if `tensor` does not match `spec` up to outer dims."""
  tensor = tf.convert_to_tensor(tensor)
  outer = tensor.shape.rank - spec.shape.rank if tensor.shape.rank else 0
  inner = tf.TensorSpec(tensor.shape[outer:], tensor.dtype)
  if not spec.is_compatible_with(inner):
    raise ValueError(
        'input_fn output {} is incompatible with spec {}.'.format(tensor, spec)
    )


def check_exportable_distribution(value: Any) -> Any:
  """Raises TypeError if a `distribution` output leaf cannot be returned."""
  if not tf.is_tensor(value):
    try:
      tf.type_spec_from_value(value)
    except (TypeError, ValueError) as e:
      raise TypeError(
          '{!r} is not a composite tensor and cannot be returned from the '
          'exported distribution function: {}'.format(value, e)
      ) from e
  return value


def flat_signature(
    fn: Callable[..., Any],
    input_specs: Tuple[Any, ...],
    output_specs: Any,
    outer_dims: Optional[Sequence[Optional[int]]],
) -> Any:
  """Wraps `fn` in a `tf.function` with flat, named inputs and dict outputs.

  Args:
    fn: Called with the arguments described by `input_specs`.
    input_specs: A tuple of spec nests, one per positional argument of `fn`;
      leaves are named `tf.TensorSpec`s giving the signature's input keys.
    output_specs: A nest of named specs matching `fn`'s output structure; the
      names are the signature's output keys.
    outer_dims: Prepended to every input spec's shape, or None.

  Returns:
    A `tf.function` with an `input_signature`, returning a dict.
  """
  flat_inputs = tf.nest.flatten(input_specs)
  if outer_dims is not None:
    flat_inputs = [add_batch_dim(s, outer_dims) for s in flat_inputs]
  output_names = [s.name for s in tf.nest.flatten(output_specs)]

  @function(input_signature=flat_inputs)
  def signature_fn(*flat_args):
    args = tf.nest.pack_sequence_as(input_specs, list(flat_args))
    outputs = fn(*args)
    flat_outputs = tf.nest.flatten(outputs)
    if len(flat_outputs) != len(output_names):
      raise ValueError(
          'Output {} does not match the output spec names {}.'.format(
              outputs, output_names
          )
      )
    return dict(zip(output_names, flat_outputs))

  return signature_fn


def from_observation(
    action_concrete: Any, time_step_spec: ts.TimeStep
) -> Callable[..., Any]:
  """Wraps the traced `action` to take `(observation, policy_state)`.

  The time step around the observation is a mid-episode one: step type MID,
  reward 0 and discount 1, shaped and typed as `time_step_spec` says, with
  the observation's batch dimension.

  Args:
    action_concrete: The concrete function of the policy's `action`, taking
      `(time_step, policy_state)`.
    time_step_spec: The policy's (unbatched) time step spec.

  Returns:
    A function of `(observation, policy_state)` returning the policy step.
  """

  def call(observation, policy_state):
    first = tf.nest.flatten(observation)[0]
    outer = first.shape[:1]  # Static when the batch size is fixed.
    outer_dims = tf.shape(first)[:1]

    def filled(spec, value):
      shape = tf.concat([outer_dims, spec.shape.as_list()], 0)
      tensor = tf.fill(shape, tf.constant(value, spec.dtype))
      return tf.ensure_shape(tensor, outer.concatenate(spec.shape))

    time_step = ts.TimeStep(
        step_type=tf.nest.map_structure(
            lambda s: filled(s, ts.StepType.MID), time_step_spec.step_type),
        reward=tf.nest.map_structure(
            lambda s: filled(s, 0), time_step_spec.reward),
        discount=tf.nest.map_structure(
            lambda s: filled(s, 1), time_step_spec.discount),
        observation=observation,
    )
    return action_concrete(time_step, policy_state)

  return call


NO_DEFAULT = object()


def _with_batch(spec: Any, batch_size: Optional[int]) -> Any:
  return tf.TensorSpec([batch_size] + spec.shape.as_list()[1:], spec.dtype,
                       spec.name)


def padded_call(concrete: Any, batch_size: Optional[int], *args) -> Any:
  """Calls `concrete`, traced for `batch_size` rows, on at most that many.

  Fewer rows are padded (the last row repeated) to `batch_size` and the
  outputs cut back, so a fixed-batch export's nested `action` also takes
  e.g. the batch of 1 that `SavedModelPyTFEagerPolicy` warms up with. The
  choice is made when tracing, from the static batch dimension.

  Args:
    concrete: The policy function's concrete function.
    batch_size: Its fixed batch size, or None.
    *args: Its arguments (batched nests).

  Returns:
    Its outputs, with as many rows as the arguments.
  """
  leaves = tf.nest.flatten(args)
  if batch_size is None or not leaves or leaves[0].shape[0] == batch_size:
    return concrete(*args)
  rows = tf.shape(leaves[0])[0]
  check = tf.debugging.assert_less_equal(
      rows, batch_size, message='This export takes batches of at most '
      '{} (its fixed batch size).'.format(batch_size))
  with tf.control_dependencies([check]):
    missing = batch_size - rows

  def pad(tensor):
    filler = tf.repeat(tensor[-1:], missing, axis=0)
    return tf.ensure_shape(tf.concat([tensor, filler], 0),
                           [batch_size] + tensor.shape.as_list()[1:])

  outputs = concrete(*tf.nest.map_structure(pad, args))
  return tf.nest.map_structure(lambda t: t[:rows], outputs)


def traced_once(
    fn: Callable[..., Any],
    arg_specs: Tuple[Any, ...],
    default_state: Any = NO_DEFAULT,
    fixed_batch_size: Optional[int] = None,
) -> Tuple[Any, Any]:
  """Traces `fn` once; returns it wrapped in a `tf.function` calling that trace.

  `tf.saved_model.save` traces every `tf.function` it exports again (the
  save options are part of the cache key), so exporting the policy's
  function itself would trace the policy once here and again in `save`, as
  upstream's saver does. The returned function only calls the concrete
  function traced here, so `save` retraces that call alone, and the
  policy's graph is traced and stored once. (It has no input signature:
  a loaded function with one checks its arguments in Python on every call,
  about 45 us.)

  Args:
    fn: The function to export.
    arg_specs: The (batched) argument specs of `fn`.
    default_state: If given, the returned function takes
      `(time_step, policy_state=default_state)`; otherwise it takes the
      arguments of `arg_specs` (one or two).
    fixed_batch_size: The batch size of `arg_specs` if fixed: the returned
      function then also takes fewer rows (see `padded_call`).

  Returns:
    `(the tf.function, the concrete function of fn)`. A flat signature
    should call the latter: calling the former from another function's
    trace in `save` would trace it again.
  """
  concrete = function(fn).get_concrete_function(*arg_specs)
  if default_state is not NO_DEFAULT:

    def call(time_step, policy_state=default_state):
      return padded_call(concrete, fixed_batch_size, time_step, policy_state)

  elif len(arg_specs) == 1:

    def call(example):  # pylint: disable=function-redefined
      return concrete(example)

  else:

    def call(time_step, policy_state):  # pylint: disable=function-redefined
      return padded_call(concrete, fixed_batch_size, time_step, policy_state)

  exported = function(call)
  specs = [arg_specs]
  if fixed_batch_size is not None and len(arg_specs) == 2:
    specs.append(tf.nest.map_structure(
        lambda s: _with_batch(s, None), arg_specs))
  for spec in specs:
    exported.get_concrete_function(*spec)
    if default_state is not NO_DEFAULT:
      exported.get_concrete_function(spec[0])  # The same trace.
  return exported, concrete

def signature_names(
    policy: tf_policy.TFPolicy, use_nest_paths: bool
) -> Tuple[Any, Any, Any]:
  """Names the time step, policy state and policy step of the signatures.

  Args:
    policy: The policy being exported.
    use_nest_paths: Name by nest paths (else by the specs' own names).

  Returns:
    `(time_step_names, state_names, step_names)`: nests of named
    (unbatched) `tf.TensorSpec`s; the state part of `step_names` is
    `state_names`, so a state output can be fed back unchanged.
  """
  if use_nest_paths:
    time_step_names = prefixed_path_names(
        policy.time_step_spec, export_contract.TIME_STEP_PREFIX)
    state_names = prefixed_path_names(
        policy.policy_state_spec, export_contract.STATE_PREFIX, separator='_'
    )
    step_names = rename_spec_with_nest_paths(policy.policy_step_spec)
  else:
    time_step_names = spec_named(policy.time_step_spec)
    state_names = tf.nest.map_structure(
        lambda s: tf.TensorSpec(
            s.shape, s.dtype, export_contract.signature_key(s.name)),
        policy.policy_state_spec,
    )
    step_names = spec_named(policy.policy_step_spec)
  # The state part of the action output uses the same names as the inputs.
  return time_step_names, state_names, step_names._replace(state=state_names)


def check_action_names(
    action_input_spec: Tuple[Any, ...], step_names: Any, with_input_fn: bool
) -> None:
  """Checks the input and output names of the `action` signature.

  Args:
    action_input_spec: The named (unbatched) input specs of `action`.
    step_names: The named specs of its outputs.
    with_input_fn: Whether `input_fn_and_spec` was given.

  Raises:
    ValueError: If TensorFlow cannot use an input name, or two inputs or two
      outputs would get the same key.
  """
  check_input_names(
      zip(
          ('input_fn_and_spec[1]',)
          if with_input_fn
          else ('time_step_spec', 'policy_state_spec'),
          action_input_spec,
      )
  )
  check_unique_keys(
      'action signature inputs',
      [export_contract.signature_key(s.name)
       for s in tf.nest.flatten(action_input_spec)],
  )
  check_unique_keys(
      'action signature outputs',
      [s.name for s in tf.nest.flatten(step_names)],
  )


def make_action_fn(policy: tf_policy.TFPolicy, seed: Optional[types.Seed]):
  """Returns `(time_step, policy_state) -> PolicyStep`, seeded if asked."""

  def action_fn(time_step, policy_state):
    if seed is not None:
      return policy.action(time_step, policy_state, seed=seed)
    return policy.action(time_step, policy_state)

  return action_fn


def make_distribution_fn(policy: tf_policy.TFPolicy):
  """Returns `(time_step, policy_state) -> PolicyStep` of distributions."""

  def distribution_fn(time_step, policy_state):
    step = policy.distribution(time_step, policy_state)
    return tf.nest.map_structure(check_exportable_distribution, step)

  return distribution_fn


def from_example(input_fn: Callable[..., Any], expected_inputs: Any,
                 fn: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps `fn(time_step, policy_state)` to take `input_fn`'s example.

  Args:
    input_fn: Maps an example to `(time_step, policy_state)`.
    expected_inputs: `(time_step_spec, policy_state_spec)` its outputs must
      match (up to outer dimensions).
    fn: The policy function.

  Returns:
    A function of one example.
  """

  def call(example):
    inputs = input_fn(example)
    tf.nest.map_structure(check_compatible, expected_inputs, inputs)
    return fn(*inputs)

  return call


def trace_distribution(
    fn: Callable[..., Any],
    arg_specs: Tuple[Any, ...],
    default_state: Any,
    policy: Any,
) -> Tuple[Any, Optional[Exception]]:
  """`traced_once` for `distribution`, applying the export error rule.

  Args:
    fn: Computes the distribution.
    arg_specs: The (batched) argument specs of `fn`.
    default_state: As for `traced_once`.
    policy: The policy, named in the warning.

  Returns:
    `(the exported function, None)`, or, when tracing raised, `(a function
    raising the tracing error when called, that error)`.
  """
  try:
    return traced_once(fn, arg_specs, default_state)[0], None
  except Exception as e:  # pylint: disable=broad-except
    # The one documented rule: never fail the export because of
    # `distribution`; the exported function raises the error instead.
    message = (
        'policy.distribution() of {!r} could not be exported; calling the '
        'exported distribution raises this error. {}: {}'.format(
            policy, type(e).__name__, e
        )
    )
    logging.warning('%s', message)

    def raise_error(*unused_args):
      tf.debugging.Assert(False, [tf.constant(message)])
      return ()

    failing = function(raise_error)
    failing.get_concrete_function(*arg_specs)
    if default_state is not NO_DEFAULT:
      failing.get_concrete_function(arg_specs[0])
    return failing, e


def make_initial_state_fn(
    policy: tf_policy.TFPolicy, batch_size: Optional[int]
) -> Tuple[Any, Tuple[Any, ...]]:
  """Returns the `get_initial_state` tf.function and its signature inputs."""
  batch_size_spec = tf.TensorSpec((), tf.int32,
                                  name=export_contract.BATCH_SIZE_KEY)
  if batch_size is None:

    @function
    def get_initial_state(batch_size):
      return policy.get_initial_state(batch_size=batch_size)

    get_initial_state.get_concrete_function(batch_size_spec)
    return get_initial_state, (batch_size_spec,)

  fixed = batch_size

  @function
  def get_fixed_initial_state(batch_size=None):
    if batch_size is None:
      return policy.get_initial_state(batch_size=fixed)
    ok = tf.logical_or(
        tf.equal(batch_size, fixed), tf.equal(batch_size, 0)
    )
    with tf.control_dependencies([
        tf.debugging.Assert(
            ok,
            [
                'This export has a fixed batch size of {}; '
                'get_initial_state got batch_size:'.format(fixed),
                batch_size,
            ],
        )
    ]):
      state = policy.get_initial_state(batch_size=fixed)
      return tf.nest.map_structure(tf.identity, state)

  get_fixed_initial_state.get_concrete_function()
  get_fixed_initial_state.get_concrete_function(batch_size_spec)
  return get_fixed_initial_state, ()


def specs_text(policy: tf_policy.TFPolicy) -> Text:
  """The text of `policy_specs.pbtxt`, written exactly as upstream writes it."""
  return text_format.MessageToString(
      tensor_spec.to_proto({
          'collect_data_spec': policy.collect_data_spec,
          'policy_state_spec': policy.policy_state_spec,
      })
  )


def add_module_getters(module: tf.Module, text: Text) -> None:
  """Adds `get_train_step`, `get_metadata` and `get_policy_specs` to `module`.

  Zero-argument functions are traced by `save` alone (see `traced_once`).

  Args:
    module: The exported module, with `train_step` and `metadata` set.
    text: The text of `policy_specs.pbtxt`.
  """

  @function(input_signature=[])
  def get_train_step():
    return tf.identity(module.train_step)

  @function(input_signature=[])
  def get_metadata():
    return {name: tf.identity(v) for name, v in module.metadata.items()}

  # Stored compressed (about an eighth of the text) and inflated when
  # called, so carrying the specs costs the export little.
  packed_specs = zlib.compress(text.encode('utf-8'), 9)

  @function(input_signature=[])
  def get_policy_specs():
    return tf.io.decode_compressed(
        tf.constant(packed_specs), compression_type='ZLIB'
    )

  module.get_train_step = get_train_step
  module.get_metadata = get_metadata
  module.get_policy_specs = get_policy_specs


def getter_signatures(module: tf.Module) -> Dict[Text, Any]:
  """The flat `get_train_step` and `get_metadata` signatures of `module`.

  Args:
    module: The exported module, after `add_module_getters`.

  Returns:
    A dict signature key -> flat signature.
  """
  train_step = module.train_step
  train_step_spec = tf.TensorSpec(
      train_step.shape, train_step.dtype, name=export_contract.TRAIN_STEP_KEY
  )
  metadata_specs = {
      name: tf.TensorSpec(v.shape, v.dtype, name=name)
      for name, v in module.metadata.items()
  }
  return {
      export_contract.GET_TRAIN_STEP: flat_signature(
          module.get_train_step, (), train_step_spec, None
      ),
      export_contract.GET_METADATA: flat_signature(
          module.get_metadata, (), metadata_specs, None
      ),
  }
