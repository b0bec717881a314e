# coding=utf-8
"""Exports a TF-Agents `TFPolicy` as a TensorFlow SavedModel.

This module replaces upstream tf-agents 0.19.0's `tf_agents.policies.
policy_saver` (it keeps every public name and signature of that module) and
fixes the defects users hit with it.

An export written by `PolicySaver.save(export_dir)` holds:

* the SavedModel (`saved_model.pb`, `variables/`) and `policy_specs.pbtxt`,
  a `StructuredValue` text proto of `{'collect_data_spec',
  'policy_state_spec'}` written exactly as upstream writes it;
* object attributes, usable after `tf.saved_model.load(export_dir)` in a
  process that never imports tf-agents:
  `action(time_step, policy_state)` (for a stateless policy also
  `action(time_step)`), `distribution(...)` (unless
  `include_distribution=False`), `get_initial_state(batch_size)`,
  `get_train_step()`, `get_metadata()`, `get_policy_specs()`, the variables
  `train_step`, `metadata` (a dict name -> variable) and `model_variables`,
  and the functions added with `register_function` /
  `register_concrete_function`;
* the flat signatures `action`, `get_initial_state`, `get_train_step` and
  `get_metadata`, and (unless `input_fn_and_spec` is given)
  `action_from_observation`.

The `action_from_observation` signature
---------------------------------------
For serving clients that only have an observation (tensorflow/agents#570):
its inputs are the observation keys of the `action` signature (e.g.
`arg_0_observation`) plus, for a policy with state, the policy-state keys of
`action` (e.g. `state_0`); its outputs are exactly `action`'s (action,
info and state with the same keys, so the state can be fed back). It runs
the same traced `action` on a mid-episode time step: step type MID, reward
0 and discount 1 (shaped and typed as the time step spec says). A stateful
client starts from `get_initial_state`'s outputs; since the step type is
never FIRST, a policy that resets its state on FIRST steps does not do so
here. It is left out with `input_fn_and_spec` (the `action` signature then
takes an example, not a time step) and for a policy without observation
tensors (nothing to serve from). It shares `action`'s trace, so it adds
no copy of the policy's graph; measured on the test policies it adds at
most a few hundredths of a second to a first save (within the machine's
noise) and nothing to a variables-only re-save, so it is always exported.

Names in the flat signatures
----------------------------
`tf.function` turns the name of every flat-signature input into a Python
parameter name (non-alphanumeric characters become `_`, and `arg_` is
prepended unless the name starts with a letter), so an input spec named
`0/step_type` is fed with the key `arg_0_step_type`; output keys are kept as
given. With `use_nest_path_signatures=True` (the default):

* time step inputs of `action`: specs named `0/<nest path>` as upstream, i.e.
  keys `arg_0_step_type`, `arg_0_reward`, `arg_0_discount`,
  `arg_0_observation[_<path>]`;
* policy state: `state` for a single tensor, else `state_<nest path>` with
  every non-alphanumeric character replaced by `_` (e.g. `state_0`,
  `state_actor_lstm`). This one name is used by the outputs of
  `get_initial_state`, the inputs of `action` and the state outputs of
  `action`, so a state output can be fed back unchanged;
* other outputs of `action`: `action[/<nest path>]`, `info[/<nest path>]`
  (as upstream);
* the input of `get_initial_state`: `batch_size`.

With `use_nest_path_signatures=False` every tensor is named by its spec's
`name`; the policy state uses its spec names made valid parameter names as
above (unchanged for names like `network_state_0`) in all three places. With
`input_fn_and_spec` the `action` signature's inputs are named by the input
spec's names (or by nest paths `0[/<path>]` when some are missing and
`use_nest_path_signatures=True`).

Input names (spec names, nest paths, `input_fn_and_spec` names) must be
names TensorFlow accepts for graph nodes: ASCII letters, digits, `_`, `.`,
`/`, backslash, `>` and `-`, starting with a letter, a digit or `.`; the
constructor rejects others.

`get_train_step` returns `{'train_step': <value>}` and `get_metadata` returns
`{<metadata name>: <value>}`.

Fixes relative to upstream
--------------------------
1. `get_metadata`'s flat signature is keyed by metadata name (upstream keys it
   by dtype name, so two variables of one dtype collapse into one key and a
   value is lost); `get_train_step`'s is keyed `train_step` (upstream:
   `int64`).
2. One name per policy-state tensor across `get_initial_state` outputs,
   `action` inputs and `action` outputs (upstream names the same state `''` or
   `0`, `arg_1_...` and `state/...`). Flat inputs whose keys would collide
   after TensorFlow's renaming raise `ValueError`.
3. With an integer `batch_size`, the nested `action` also takes fewer rows
   (padded to the batch size inside the graph; the flat `action` signature
   keeps the fixed batch), so upstream's `SavedModelPyTFEagerPolicy` can
   load such an export (it warms up with a batch of 1); `get_initial_state`
   accepts no argument and also that batch size (upstream's takes no
   argument, so `SavedModelPyTFEagerPolicy.get_initial_state` fails). `0`,
   which
   `SavedModelPyTFEagerPolicy` passes when no batch size is given, also
   selects the fixed batch size; any other value fails with
   `InvalidArgumentError` naming the expected batch size.
4. The specs are recoverable from the loaded object alone:
   `get_policy_specs()` returns the text of `policy_specs.pbtxt` (stored
   zlib-compressed in the graph) and `specs_from_saved_model(loaded)`
   decodes it.
5. `include_distribution=False` leaves `distribution` out so the export loads
   with plain `tf.saved_model.load` in a process without
   `tensorflow_probability` (its output TypeSpecs are registered by TFP).
6. One rule for errors while exporting `distribution`: any `Exception` raised
   while tracing `policy.distribution` (or a distribution that is not a
   composite tensor) is logged as a warning, kept in
   `PolicySaver.distribution_export_error`, and the exported `distribution`
   raises `InvalidArgumentError` with the original error's type and message
   when called. Upstream logged `TypeError`/`NotImplementedError` but crashed
   the constructor on every other type.
7. `convert_action_to_tflite` converts the `action` signature with TFLite
   builtin ops only when possible (always for deterministic policies) and
   otherwise with select TF ops, and reports which ops needed TF kernels
   (on TF 2.21 a stochastic policy needs e.g. `FlexStringToNumber`, so
   upstream's builtins-only conversion fails).
8. `batch_size` must be `None` or an integer from 1 to 2**31 - 1 (the
   exported `get_initial_state` takes an int32 `batch_size`): `True` is
   rejected and numpy integers are accepted (upstream: the opposite).
   `train_step` must be a scalar integer `tf.Variable` (upstream accepted
   any variable).
9. TF1 graph mode (eager execution disabled process-wide) raises
   `NotImplementedError` before any other check, instead of failing later in
   obscure ways. Building under `tf.Graph().as_default()` in a TF2 process
   still works, as upstream allows.
10. `save_checkpoint` also lists `metadata` at the top of the checkpoint, so a
    SavedModel graph combined with such a checkpoint (as
    `policy_loader.materialize_saved_model` does) loads even with metadata.
11. Errors name the offending value (policy type, batch size, missing,
    colliding or unusable spec names, train step and its dtype or shape,
    metadata key or value, registered name) in one line. Bad constructor
    arguments fail in the constructor, before anything is written; an input
    name TensorFlow cannot use (e.g. `'0/step type'`) failed upstream in
    `save` with TensorFlow's error.
12. Publishing in versions (`export_publish`): `save` and `save_checkpoint`
    write a complete new version into `export_dir/.policy_versions/`, switch
    a small pointer to it, then put its files at the top of `export_dir` in
    upstream's layout. A save never deletes, moves or overwrites a file it
    did not write (other files stay beside the export; a foreign file under
    a name the export needs is refused with `ExportWriteError` naming it,
    before anything is written); `export_dir` may be a mount point or a
    symbolic link (written through). This repository's readers read one
    version per load or update, never a mix, even while a writer publishes
    or after it was killed. A failed write raises
    `export_errors.ExportWriteError` naming `export_dir` and leaves the
    previous version current. Upstream wrote in place: a killed save left a
    directory that loaded wrong or not at all. `save_checkpoint` into a
    full export keeps its graph and drops its reference outputs (they
    describe the old weights).
13. Every export holds `export_manifest.json` (size of every file, sha256
    of every file but the variables' data shards, whose tensors carry the
    CRC32C checksums TensorFlow checks on restore) and `reference_io.npz`
    (zeros fed to `action` and its outputs when deterministic, written with
    NumPy, no pickle, recorded once the SavedModel is written, so the
    function's first run does not add to the save's peak memory);
    `export_verify.verify` and `saved_policy_cli verify DIR` check them,
    load in a fresh process and list graph ops that touch files or run
    Python. No export step pickles.
14. Repeated `save` by the same saver (to any directory), with nothing
    traced since its last full save and no `options`, rewrites that save's
    graph files (`saved_model.pb`, fingerprint, assets, specs; kept in
    memory up to 64 MB) and writes only the variables, with a
    `tf.train.Checkpoint` rooted at the exported module (the SavedModel's
    object graph); `last_save_kind` and the manifest's `kind` say
    `'variables_only'`. Upstream re-serialized the whole SavedModel every
    time. (The copied `fingerprint.pb` keeps the checkpoint hash of the full
    save; TensorFlow does not check it when loading.)
15. The policy is traced once per exported function. `tf.saved_model.save`
    traces every exported `tf.function` again (its cache key includes the
    save options), so upstream traced the policy in its constructor and
    again, several times, in `save`, and its `saved_model.pb` could hold
    more than one copy of the policy's graph. Here `action` and `distribution` are traced
    once, without autograph (as upstream's `common.function`), and exported
    behind thin functions that only call that trace (a stateless policy's
    `action(time_step)` and `action(time_step, ())` included); the flat
    signatures call it directly. A first save is so
    faster than upstream's and `saved_model.pb` smaller (figures:
    `policy_saver_benchmark`).
16. Retention and TF Serving's layout: with `max_to_keep`,
    `save_checkpoint` removes the oldest checkpoints of the saver beside the
    new one (upstream's fill the disk, tensorflow/agents#927);
    `save_serving(base_dir)` writes `base_dir/<number>/` under a hidden
    name and renames it into place.
"""

import numbers
import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Tuple
import zlib

from absl import logging
import numpy as np
import tensorflow as tf

from google.protobuf import text_format
from tf_agents.policies import export_conversion
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.typing import types
from tf_agents.utils import nest_utils


class def_function:  # pylint: disable=invalid-name
  """Stands in for TensorFlow's `def_function` module upstream exposes here.

  Upstream's `tf_agents.train.triggers` reads `policy_saver.def_function.
  Function` when it is imported; this keeps that name working through the
  public `tf.types` API instead of a private TensorFlow module.
  """
  Function = tf.types.experimental.GenericFunction  # pylint: disable=invalid-name


POLICY_SPECS_PBTXT = 'policy_specs.pbtxt'
# Largest SavedModel graph (saved_model.pb, fingerprint, assets, specs) kept
# in memory for the variables-only fast path of `save`.
_MAX_CACHED_GRAPH_BYTES = 64 << 20
_FINGERPRINT = 'fingerprint.pb'
# Top-level files every save / checkpoint writes, checked for files this
# saver did not write before anything is written (`export_publish`).
_CHECKPOINT_FILES = (
    'variables/variables.index',
    'variables/variables.data-00000-of-00001',
    export_publish.MANIFEST_FILENAME,
    export_publish.COMPLETE_MARKER,
)
_EXPORT_FILES = _CHECKPOINT_FILES + (
    'saved_model.pb', _FINGERPRINT, POLICY_SPECS_PBTXT,
    export_verify.REFERENCE_IO,
)

InputFnType = Callable[
    [types.NestedTensor], Tuple[types.NestedTensor, types.NestedTensor]
]
InputFnAndSpecType = Tuple[InputFnType, types.NestedTensorSpec]

# Flat-signature names of the policy state (nest-path mode) and of the
# outputs of `get_train_step`.
_STATE_PREFIX = 'state'
_TRAIN_STEP_KEY = 'train_step'
_BATCH_SIZE_KEY = 'batch_size'
# The flat signature that takes only the observation (and the policy state).
ACTION_FROM_OBSERVATION = 'action_from_observation'

# Attributes set by the saver on the exported module; registered functions
# may not use these names.
_RESERVED_ATTRIBUTES = frozenset([
    'action',
    'distribution',
    'get_initial_state',
    'get_train_step',
    'get_metadata',
    'get_policy_specs',
    'train_step',
    'metadata',
    'model_variables',
    'collect_data_spec',
    'policy_state_spec',
])


def _function(fn: Optional[Callable[..., Any]] = None, **kwargs) -> Any:
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


def _eager_enabled_process_wide() -> bool:
  """Whether eager execution is the process-wide default.

  `tf.executing_eagerly()` is also False under `tf.Graph().as_default()` in a
  TF2 process. A new thread starts with no graph on its (thread-local) graph
  stack and in the process-wide default execution mode, so it tells the two
  apart with public APIs only.

  Returns:
    False iff eager execution was disabled process-wide (TF1 graph mode).
  """
  result = []
  thread = threading.Thread(
      target=lambda: result.append(tf.executing_eagerly())
  )
  thread.start()
  thread.join()
  return bool(result and result[0])


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


def _signature_key(name: Text) -> Text:
  """The key TensorFlow gives a flat-signature input named `name`.

  `tf.function` turns every spec name into a Python parameter name: each
  non-alphanumeric character becomes `_`, and `arg_` is prepended unless the
  result starts with a letter (e.g. `0/step_type` -> `arg_0_step_type`).
  Output keys are used as given, so names fed back from outputs to inputs
  must already have this form.

  Args:
    name: A spec name.

  Returns:
    The signature key for `name`.
  """
  swapped = ''.join(c if c.isalnum() else '_' for c in name)
  return swapped if swapped[:1].isalpha() else 'arg_' + swapped


def _prefixed_path_names(
    spec: types.NestedTensorSpec, prefix: Text, separator: Text = '/'
) -> types.NestedTensorSpec:
  """Names leaves `prefix` (single leaf at the root) or `prefix<sep>path`."""
  named = []
  for path, leaf in nest_utils.flatten_with_joined_paths(spec):
    name = '{}{}{}'.format(prefix, separator, path) if path else prefix
    if separator != '/':
      name = _signature_key(name)
    named.append(tf.TensorSpec(shape=leaf.shape, dtype=leaf.dtype, name=name))
  return tf.nest.pack_sequence_as(spec, named)


def _spec_named(spec: types.NestedTensorSpec) -> types.NestedTensorSpec:
  """Converts leaves to `tf.TensorSpec`s keeping their own names."""
  return tf.nest.map_structure(
      lambda s: tf.TensorSpec(shape=s.shape, dtype=s.dtype, name=s.name), spec
  )


def _name_problems(groups: Sequence[Tuple[Text, Any]]) -> List[Text]:
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


def _true_if_missing_or_collision(spec: Any, seen_names: set) -> bool:
  """Whether `spec` has no name or one already in `seen_names` (else adds it).

  Kept under upstream's private name: upstream's own tests call it.

  Args:
    spec: A `TensorSpec`.
    seen_names: Names of the specs checked so far; updated.

  Returns:
    True if the name is missing or collides.
  """
  if not spec.name or spec.name in seen_names:
    return True
  seen_names.add(spec.name)
  return False


def _check_unique_keys(label: Text, keys: Sequence[Text]) -> None:
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
# then fails. Valid names are then made parameter names (`_signature_key`).
_INPUT_NAME_START = re.compile(r'[A-Za-z0-9.]')
_INPUT_NAME_CHAR = re.compile(r'[A-Za-z0-9_.\\/>-]')


def _input_name_problem(name: Text) -> Optional[Text]:
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


def _check_input_names(groups: Sequence[Tuple[Text, Any]]) -> None:
  """Raises ValueError if TensorFlow cannot name an input as given.

  Args:
    groups: `(label, spec_nest)` pairs of a flat signature's inputs, named as
      they are exported.
  """
  problems = []
  for label, spec in groups:
    for path, leaf in nest_utils.flatten_with_joined_paths(spec):
      reason = _input_name_problem(leaf.name)
      if reason:
        where = '{}/{}'.format(label, path) if path else label
        problems.append('{} is named {!r}: {}'.format(where, leaf.name, reason))
  if problems:
    raise ValueError(
        'TensorFlow cannot use these names for inputs of the action '
        'signature (rename the specs, or the nest keys that nest-path names '
        'come from): {}.'.format('; '.join(problems))
    )


# The exported `get_initial_state` takes an int32 `batch_size`.
_MAX_BATCH_SIZE = 2**31 - 1


def _validated_batch_size(batch_size: Any) -> Optional[int]:
  """Returns `batch_size` as a Python int (or None), or raises ValueError."""
  if batch_size is None:
    return None
  if isinstance(batch_size, (bool, np.bool_)) or not isinstance(
      batch_size, numbers.Integral
  ):
    raise ValueError(
        'batch_size must be None or an integer > 0, got {!r} of type '
        '{}.'.format(batch_size, type(batch_size).__name__)
    )
  if batch_size < 1:
    raise ValueError(
        'batch_size must be None or an integer > 0, got {!r}.'.format(
            batch_size
        )
    )
  if batch_size > _MAX_BATCH_SIZE:
    raise ValueError(
        'batch_size must be at most {} (2**31 - 1; the exported '
        'get_initial_state takes an int32 batch_size), got {!r}.'.format(
            _MAX_BATCH_SIZE, batch_size
        )
    )
  return int(batch_size)


def _check_compatible(spec: tf.TypeSpec, tensor: tf.Tensor) -> None:
  """Raises ValueError if `tensor` does not match `spec` up to outer dims."""
  tensor = tf.convert_to_tensor(tensor)
  outer = tensor.shape.rank - spec.shape.rank if tensor.shape.rank else 0
  inner = tf.TensorSpec(tensor.shape[outer:], tensor.dtype)
  if not spec.is_compatible_with(inner):
    raise ValueError(
        'input_fn output {} is incompatible with spec {}.'.format(tensor, spec)
    )


def _check_exportable_distribution(value: Any) -> Any:
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


def _flat_signature(
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

  @_function(input_signature=flat_inputs)
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


def _from_observation(
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


_NO_DEFAULT = object()


def _with_batch(spec: Any, batch_size: Optional[int]) -> Any:
  return tf.TensorSpec([batch_size] + spec.shape.as_list()[1:], spec.dtype,
                       spec.name)


def _padded_call(concrete: Any, batch_size: Optional[int], *args) -> Any:
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


def _traced_once(
    fn: Callable[..., Any],
    arg_specs: Tuple[Any, ...],
    default_state: Any = _NO_DEFAULT,
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
      function then also takes fewer rows (see `_padded_call`).

  Returns:
    `(the tf.function, the concrete function of fn)`. A flat signature
    should call the latter: calling the former from another function's
    trace in `save` would trace it again.
  """
  concrete = _function(fn).get_concrete_function(*arg_specs)
  if default_state is not _NO_DEFAULT:

    def call(time_step, policy_state=default_state):
      return _padded_call(concrete, fixed_batch_size, time_step, policy_state)

  elif len(arg_specs) == 1:

    def call(example):  # pylint: disable=function-redefined
      return concrete(example)

  else:

    def call(time_step, policy_state):  # pylint: disable=function-redefined
      return _padded_call(concrete, fixed_batch_size, time_step, policy_state)

  function = _function(call)
  specs = [arg_specs]
  if fixed_batch_size is not None and len(arg_specs) == 2:
    specs.append(tf.nest.map_structure(
        lambda s: _with_batch(s, None), arg_specs))
  for spec in specs:
    function.get_concrete_function(*spec)
    if default_state is not _NO_DEFAULT:
      function.get_concrete_function(spec[0])  # The same trace.
  return function, concrete


class PolicySaver(object):
  """Exports a `TFPolicy` as a SavedModel (see the module docstring).

  Usage:

  ```python
  saver = PolicySaver(agent.policy, batch_size=None, train_step=train_step)
  saver.save('/exports/policy_0')

  saved = tf.saved_model.load('/exports/policy_0')
  policy_state = saved.get_initial_state(batch_size=3)
  while True:
    policy_step = saved.action(time_step, policy_state)
    policy_state = policy_step.state
    time_step = env_step(policy_step.action)
  ```

  With the flat signatures, inputs and outputs are dicts keyed by the names
  listed in the module docstring; read them from
  `saved.signatures[key].structured_input_signature` and
  `.structured_outputs`:

  ```python
  initial_state_fn = saved.signatures['get_initial_state']
  action_fn = saved.signatures['action']
  state = initial_state_fn(batch_size=tf.constant(3))
  while True:
    outputs = action_fn(**time_step_dict, **state)
    state = {k: v for k, v in outputs.items() if k in state}
    ...
  ```
  """

  def __init__(
      self, policy: tf_policy.TFPolicy, batch_size: Optional[int] = None,
      use_nest_path_signatures: bool = True, seed: Optional[types.Seed] = None,
      train_step: Optional[tf.Variable] = None,
      input_fn_and_spec: Optional[InputFnAndSpecType] = None,
      metadata: Optional[Dict[Text, tf.Variable]] = None, *,
      include_distribution: bool = True,
      max_to_keep: Optional[int] = None,
      converted_formats: Sequence[Text] = ()):
    """Builds the functions and signatures to export for `policy`.

    Args:
      policy: The `TFPolicy` to export.
      batch_size: `None` for a variable batch size, or an integer > 0 fixing
        it in every exported function.
      use_nest_path_signatures: Name the flat signatures' tensors by nest
        paths (see the module docstring); if False, by the specs' own names,
        which must then be present and unique.
      seed: Seed passed to `policy.action`, making a stochastic policy's
        exported `action` reproducible across reloads. `None` fixes nothing.
      train_step: Scalar integer `tf.Variable` holding the train step; its
        value at `save` time is exported. Defaults to a new variable holding
        -1 (only when executing eagerly).
      input_fn_and_spec: Optional `(input_fn, input_spec)`. The exported
        `action` and `distribution` then take one argument matching
        `input_spec`, which `input_fn` maps to `(time_step, policy_state)`.
      metadata: Optional dict of name -> `tf.Variable` exported with the
        policy; values are those at `save` time.
      include_distribution: If False, `distribution` is not exported, so the
        export loads without `tensorflow_probability`.
      max_to_keep: If set, each `save_checkpoint(.../<name><number>)` and
        `save_serving` then removes the oldest checkpoints or versions beside
        the new one beyond this many (see
        `export_publish.retire_checkpoints`; upstream's checkpoints fill the
        disk, tensorflow/agents#927). None keeps them all.
      converted_formats: Formats (`'tflite'`, `'onnx'`) to convert the
        `action` signature to at each full `save`, checking each model's
        equivalence once and storing models and verdict in the export
        (`export_equivalence`), so that `SavedPolicy` picks the fastest
        equivalent backend without converting or probing at load. Empty (the
        default) stores none: a save then costs no conversion.

    Raises:
      NotImplementedError: If eager execution is disabled process-wide (TF1
        graph mode); checked before any other argument.
      TypeError: If `policy` is not a `TFPolicy`, `metadata` is not a dict of
        str -> `tf.Variable`, or `train_step` is a `tf.Variable` of a
        non-integer dtype.
      ValueError: If `batch_size` is not None or an integer from 1 to
        2**31 - 1, or `max_to_keep` not None or an integer > 0; if `use_nest_path_signatures` is False and a spec of
        `time_step_spec`, `action_spec`, `policy_state_spec` or `info_spec`
        has no name or a colliding one; if an input of the `action`
        signature would get a name TensorFlow cannot use (see the module
        docstring); if `train_step` is not a scalar `tf.Variable` (or
        missing outside eager execution); if a metadata name is empty.
    """
    if not _eager_enabled_process_wide():
      raise NotImplementedError(
          'PolicySaver requires TF2 behaviour: eager execution is disabled '
          'process-wide (tf.compat.v1.disable_eager_execution() or TF1 graph '
          'mode). Building inside `with tf.Graph().as_default():` in an eager '
          'process is supported.'
      )
    if not isinstance(policy, tf_policy.TFPolicy):
      raise TypeError(
          'policy must be a tf_agents TFPolicy, got {!r} of type {}.'.format(
              policy, type(policy).__name__
          )
      )
    batch_size = _validated_batch_size(batch_size)
    if max_to_keep is not None and (
        isinstance(max_to_keep, bool)
        or not isinstance(max_to_keep, numbers.Integral) or max_to_keep < 1):
      raise ValueError(
          'max_to_keep must be None or an integer > 0, got {!r}.'.format(
              max_to_keep))
    self._max_to_keep = max_to_keep
    unknown = sorted(set(converted_formats) - set(export_equivalence.FORMATS))
    if isinstance(converted_formats, str) or unknown:
      raise ValueError(
          'converted_formats must be a sequence of {}, got {!r}.'.format(
              export_equivalence.FORMATS, converted_formats))
    self._converted_formats = tuple(converted_formats)
    self._check_specs(policy, use_nest_path_signatures)
    train_step = self._validated_train_step(train_step)
    metadata = self._validated_metadata(metadata)

    self._raw_policy = policy
    self._batch_size = batch_size
    self._use_nest_path_signatures = use_nest_path_signatures
    self._train_step = train_step
    self._metadata = metadata
    self._include_distribution = include_distribution
    self._distribution_export_error = None
    self._graph_files = None
    self._last_save_kind = None
    self._traced_checkpoint_writer = None
    outer_dims = [batch_size]

    # Names used by the flat signatures.
    if use_nest_path_signatures:
      time_step_names = _prefixed_path_names(policy.time_step_spec, '0')
      state_names = _prefixed_path_names(
          policy.policy_state_spec, _STATE_PREFIX, separator='_'
      )
      step_names = rename_spec_with_nest_paths(policy.policy_step_spec)
    else:
      time_step_names = _spec_named(policy.time_step_spec)
      state_names = tf.nest.map_structure(
          lambda s: tf.TensorSpec(s.shape, s.dtype, _signature_key(s.name)),
          policy.policy_state_spec,
      )
      step_names = _spec_named(policy.policy_step_spec)
    # The state part of the action output uses the same names as the inputs.
    step_names = step_names._replace(state=state_names)

    batched_time_step = tf.nest.map_structure(
        lambda s: add_batch_dim(s, outer_dims), time_step_names
    )
    batched_state = tf.nest.map_structure(
        lambda s: add_batch_dim(s, outer_dims), state_names
    )

    if input_fn_and_spec is not None:
      action_input_spec = (
          self._input_fn_spec_names(
              input_fn_and_spec[1], use_nest_path_signatures
          ),
      )
    else:
      action_input_spec = (time_step_names, state_names)
    _check_input_names(
        zip(
            ('input_fn_and_spec[1]',)
            if input_fn_and_spec is not None
            else ('time_step_spec', 'policy_state_spec'),
            action_input_spec,
        )
    )
    _check_unique_keys(
        'action signature inputs',
        [_signature_key(s.name) for s in tf.nest.flatten(action_input_spec)],
    )
    _check_unique_keys(
        'action signature outputs',
        [s.name for s in tf.nest.flatten(step_names)],
    )

    action_fn = self._make_action_fn(policy, seed)
    distribution_fn = self._make_distribution_fn(policy)

    if input_fn_and_spec is not None:
      input_fn = input_fn_and_spec[0]
      (input_names,) = action_input_spec
      batched_input = tf.nest.map_structure(
          lambda s: add_batch_dim(s, outer_dims), input_names
      )
      expected_inputs = (policy.time_step_spec, policy.policy_state_spec)

      def from_example(fn):
        def call(example):
          inputs = input_fn(example)
          tf.nest.map_structure(_check_compatible, expected_inputs, inputs)
          return fn(*inputs)

        return call

      arg_specs = (batched_input,)
      polymorphic_action, action_trace = _traced_once(
          from_example(action_fn), arg_specs
      )
      polymorphic_distribution = self._trace_distribution(
          from_example(distribution_fn), arg_specs
      )
    else:
      arg_specs = (batched_time_step, batched_state)
      if tf.nest.flatten(policy.policy_state_spec):
        default_state = _NO_DEFAULT
      else:
        # Stateless: callable as action(time_step) and action(time_step, ()).
        default_state = policy.policy_state_spec
      polymorphic_action, action_trace = _traced_once(
          action_fn, arg_specs, default_state, fixed_batch_size=batch_size
      )
      polymorphic_distribution = self._trace_distribution(
          distribution_fn, arg_specs, default_state
      )

    get_initial_state_fn, initial_state_inputs = self._make_initial_state_fn(
        policy, batch_size
    )

    module = tf.Module()
    # Kept as upstream does; not saved (TensorSpecs are not trackable).
    module.collect_data_spec = policy.collect_data_spec
    module.policy_state_spec = policy.policy_state_spec
    module.train_step = train_step
    module.metadata = dict(metadata)
    module.model_variables = policy.variables()

    # Zero-argument functions are traced by `save` alone (see `_traced_once`).
    @_function(input_signature=[])
    def get_train_step():
      return tf.identity(module.train_step)

    @_function(input_signature=[])
    def get_metadata():
      return {name: tf.identity(v) for name, v in module.metadata.items()}

    specs_text = text_format.MessageToString(
        tensor_spec.to_proto({
            'collect_data_spec': policy.collect_data_spec,
            'policy_state_spec': policy.policy_state_spec,
        })
    )

    # Stored compressed (about an eighth of the text) and inflated when
    # called, so carrying the specs costs the export little.
    packed_specs = zlib.compress(specs_text.encode('utf-8'), 9)

    @_function(input_signature=[])
    def get_policy_specs():
      return tf.io.decode_compressed(
          tf.constant(packed_specs), compression_type='ZLIB'
      )

    module.action = polymorphic_action
    if polymorphic_distribution is not None:
      module.distribution = polymorphic_distribution
    module.get_initial_state = get_initial_state_fn
    module.get_train_step = get_train_step
    module.get_metadata = get_metadata
    module.get_policy_specs = get_policy_specs
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

    train_step_spec = tf.TensorSpec(
        train_step.shape, train_step.dtype, name=_TRAIN_STEP_KEY
    )
    metadata_specs = {
        name: tf.TensorSpec(v.shape, v.dtype, name=name)
        for name, v in metadata.items()
    }
    self._signatures = {
        'action': _flat_signature(
            action_trace,
            action_input_spec,
            step_names,
            outer_dims,
        ),
        'get_initial_state': _flat_signature(
            get_initial_state_fn,
            initial_state_inputs,
            state_names,
            None,
        ),
        'get_train_step': _flat_signature(
            get_train_step, (), train_step_spec, None
        ),
        'get_metadata': _flat_signature(
            get_metadata, (), metadata_specs, None
        ),
    }
    if input_fn_and_spec is None and tf.nest.flatten(
        policy.time_step_spec.observation):
      # tensorflow/agents#570: serving clients that only have observations.
      self._signatures[ACTION_FROM_OBSERVATION] = _flat_signature(
          _from_observation(action_trace, policy.time_step_spec),
          (time_step_names.observation, state_names),
          step_names,
          outer_dims,
      )

    self._policy = module
    self._specs_text = specs_text
    self._action_input_spec = action_input_spec
    self._policy_step_spec = step_names
    self._policy_state_spec = state_names

  # ---------------------------------------------------------------------------
  # Construction helpers.

  @staticmethod
  def _check_specs(policy: tf_policy.TFPolicy, use_nest_paths: bool) -> None:
    """Raises ValueError for missing or colliding names in spec-name mode."""
    if use_nest_paths:
      return
    problems = _name_problems([
        ('time_step_spec', policy.time_step_spec),
        ('policy_state_spec', policy.policy_state_spec),
    ])
    problems += _name_problems([
        ('action_spec', policy.action_spec),
        ('policy_state_spec', policy.policy_state_spec),
        ('info_spec', policy.info_spec),
    ])
    if problems:
      raise ValueError(
          'With use_nest_path_signatures=False every spec of time_step_spec, '
          'action_spec, policy_state_spec and info_spec needs a unique name '
          '(among the action inputs and among its outputs): '
          + '; '.join(sorted(set(problems)))
          + '.'
      )

  @staticmethod
  def _validated_train_step(train_step: Any) -> tf.Variable:
    """Returns the train step variable, creating one if needed."""
    if train_step is None:
      if not tf.executing_eagerly():
        raise ValueError(
            'train_step is required when building in graph mode and must be a '
            '`tf.Variable`: got None.'
        )
      return tf.Variable(
          -1,
          trainable=False,
          dtype=tf.int64,
          shape=(),
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
          name='train_step',
      )
    if not isinstance(train_step, tf.Variable):
      raise ValueError(
          'train_step must be a tf.Variable, got {!r} of type {}.'.format(
              train_step, type(train_step).__name__
          )
      )
    dtype = train_step.dtype.base_dtype
    if not dtype.is_integer:
      raise TypeError(
          'train_step must be an integer tf.Variable, got {!r} of dtype '
          '{}.'.format(train_step.name, dtype.name)
      )
    if train_step.shape.rank != 0:
      raise ValueError(
          'train_step must be a scalar tf.Variable, got {!r} of shape '
          '{}.'.format(train_step.name, train_step.shape)
      )
    return train_step

  @staticmethod
  def _validated_metadata(metadata: Any) -> Dict[Text, tf.Variable]:
    """Checks `metadata` is a dict of non-empty str -> `tf.Variable`."""
    if metadata is None:
      return {}
    if not isinstance(metadata, dict):
      raise TypeError(
          'metadata must be a dict of name -> tf.Variable, got {!r} of type '
          '{}.'.format(metadata, type(metadata).__name__)
      )
    for key, value in metadata.items():
      if not isinstance(key, str):
        raise TypeError(
            'metadata keys must be strings, got {!r} of type {}.'.format(
                key, type(key).__name__
            )
        )
      if not key:
        raise ValueError(
            'metadata keys must be non-empty strings, got {!r}.'.format(key)
        )
      if not isinstance(value, tf.Variable):
        raise TypeError(
            'metadata values must be tf.Variable, got {!r} of type {} for key '
            '{!r}.'.format(value, type(value).__name__, key)
        )
    return dict(metadata)

  @staticmethod
  def _input_fn_spec_names(
      input_spec: types.NestedTensorSpec, use_nest_paths: bool
  ) -> types.NestedTensorSpec:
    """Names of the `action` inputs when `input_fn_and_spec` is given."""
    problems = _name_problems([('input_fn_and_spec[1]', input_spec)])
    if not problems:
      return _spec_named(input_spec)
    if use_nest_paths:
      return _prefixed_path_names(input_spec, '0')
    raise ValueError(
        'With use_nest_path_signatures=False every spec of input_fn_and_spec '
        'needs a unique name: ' + '; '.join(problems) + '.'
    )

  @staticmethod
  def _make_action_fn(policy: tf_policy.TFPolicy, seed: Optional[types.Seed]):
    """Returns `(time_step, policy_state) -> PolicyStep`, seeded if asked."""

    def action_fn(time_step, policy_state):
      if seed is not None:
        return policy.action(time_step, policy_state, seed=seed)
      return policy.action(time_step, policy_state)

    return action_fn

  @staticmethod
  def _make_distribution_fn(policy: tf_policy.TFPolicy):
    """Returns `(time_step, policy_state) -> PolicyStep` of distributions."""

    def distribution_fn(time_step, policy_state):
      step = policy.distribution(time_step, policy_state)
      return tf.nest.map_structure(_check_exportable_distribution, step)

    return distribution_fn

  def _trace_distribution(
      self,
      fn: Callable[..., Any],
      arg_specs: Tuple[Any, ...],
      default_state: Any = _NO_DEFAULT,
  ) -> Any:
    """`_traced_once` for `distribution`, applying the export error rule.

    Args:
      fn: Computes the distribution.
      arg_specs: The (batched) argument specs of `fn`.
      default_state: As for `_traced_once`.

    Returns:
      The exported function, one raising the tracing error when called, or
      None when `include_distribution=False`.
    """
    if not self._include_distribution:
      return None
    try:
      return _traced_once(fn, arg_specs, default_state)[0]
    except Exception as e:  # pylint: disable=broad-except
      # The one documented rule: never fail the export because of
      # `distribution`; the exported function raises the error instead.
      self._distribution_export_error = e
      message = (
          'policy.distribution() of {!r} could not be exported; calling the '
          'exported distribution raises this error. {}: {}'.format(
              self._raw_policy, type(e).__name__, e
          )
      )
      logging.warning('%s', message)

      def raise_error(*unused_args):
        tf.debugging.Assert(False, [tf.constant(message)])
        return ()

      failing = _function(raise_error)
      failing.get_concrete_function(*arg_specs)
      if default_state is not _NO_DEFAULT:
        failing.get_concrete_function(arg_specs[0])
      return failing

  @staticmethod
  def _make_initial_state_fn(
      policy: tf_policy.TFPolicy, batch_size: Optional[int]
  ):
    """Returns the `get_initial_state` tf.function and its signature inputs."""
    batch_size_spec = tf.TensorSpec((), tf.int32, name=_BATCH_SIZE_KEY)
    if batch_size is None:

      @_function
      def get_initial_state(batch_size):
        return policy.get_initial_state(batch_size=batch_size)

      get_initial_state.get_concrete_function(batch_size_spec)
      return get_initial_state, (batch_size_spec,)

    fixed = batch_size

    @_function
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

  # ---------------------------------------------------------------------------
  # Public API.

  @property
  def action_input_spec(self) -> types.NestedTensorSpec:
    """Named (unbatched) specs of the `action` inputs.

    `(time_step_spec, policy_state_spec)`, or `(input_spec,)` with
    `input_fn_and_spec`, renamed as in the flat `action` signature.

    Returns:
      A tuple of spec nests.
    """
    return self._action_input_spec

  @property
  def policy(self) -> tf.Module:
    """The `tf.Module` that `save` exports."""
    return self._policy

  @property
  def policy_step_spec(self) -> types.NestedTensorSpec:
    """Named specs of the `action` outputs (a `PolicyStep` of specs)."""
    return self._policy_step_spec

  @property
  def policy_state_spec(self) -> types.NestedTensorSpec:
    """Named specs of the policy state, as in `get_initial_state`'s outputs."""
    return self._policy_state_spec

  @property
  def signatures(self) -> Dict[Text, Callable[..., Any]]:
    """The flat signatures keyed by name.

    Returns:
      A dict with keys `action`, `get_initial_state`, `get_train_step`,
      `get_metadata` and (without `input_fn_and_spec`, with observation
      tensors) `action_from_observation`.
    """
    return self._signatures

  @property
  def distribution_export_error(self) -> Optional[Exception]:
    """The error raised while exporting `distribution`, or None."""
    return self._distribution_export_error

  def get_train_step(self) -> types.Int:
    """Returns the train step (a number when eager, else a tensor)."""
    if tf.executing_eagerly():
      return self._train_step.numpy()
    return tf.identity(self._train_step)

  def get_metadata(self) -> Dict[Text, Any]:
    """Returns the metadata (numbers when eager, else the variables)."""
    if tf.executing_eagerly():
      return {k: v.numpy() for k, v in self._metadata.items()}
    return self._metadata

  def _check_new_attribute(self, name: Text) -> None:
    if name in _RESERVED_ATTRIBUTES or (
        getattr(self._policy, name, None) is not None
    ):
      raise ValueError(
          'Policy already has an attribute registered with name {!r}.'.format(
              name
          )
      )

  def register_function(
      self, name: str, fn: InputFnType, input_spec: types.NestedTensorSpec,
      outer_dims: Sequence[Optional[int]] = (None,)) -> None:
    """Adds `fn` to the export as attribute `name`.

    Args:
      name: Attribute name in the export.
      fn: Callable taking one argument matching `input_spec`.
      input_spec: Nest of `tf.TensorSpec`s of that argument, without the outer
        dims.
      outer_dims: Outer dimensions prepended to every spec of `input_spec`.

    Raises:
      ValueError: If `name` is already an attribute of the export.
    """
    self._check_new_attribute(name)
    batched = tf.nest.map_structure(
        lambda s: add_batch_dim(s, outer_dims), input_spec
    )
    function = _function(fn)
    function.get_concrete_function(batched)
    setattr(self._policy, name, function)

  def register_concrete_function(
      self, name: str, fn: Any, assets: Optional[Any] = None
  ) -> None:
    """Adds an already traced `tf.function` to the export as `name`.

    Args:
      name: Attribute name in the export.
      fn: A `tf.function` with its concrete functions traced (or a
        `ConcreteFunction`). Variables it captures are exported with it.
      assets: Other trackables it needs (e.g. tables), exported alongside.

    Raises:
      ValueError: If `name` is already an attribute of the export.
    """
    self._check_new_attribute(name)
    setattr(self._policy, name, fn)
    if hasattr(fn, 'variables') and not callable(
        getattr(fn, 'get_concrete_function', None)
    ):
      concrete_functions = [fn]
    else:
      # No public API lists the traced concrete functions of a tf.function.
      # pylint: disable-next=protected-access
      concrete_functions = fn._list_all_concrete_functions()
    for i, concrete in enumerate(concrete_functions):
      setattr(self._policy, '{}__variables_{}'.format(name, i),
              list(concrete.variables))
    if assets:
      setattr(self._policy, name + '__assets', assets)

  def _graph_token(self) -> Tuple[Any, ...]:
    """Identifies the exported object graph and its traced functions.

    Equal tokens mean a new SavedModel would have the same `saved_model.pb`
    up to variable values: same attributes (by identity) and the same
    concrete functions of every `tf.function`.

    Returns:
      A hashable token.
    """
    items = []
    attributes = sorted(
        (k, v) for k, v in vars(self._policy).items() if not k.startswith('_')
    )
    for key, value in attributes + sorted(self._signatures.items()):
      entry = [key, id(value)]
      # Public and never traces (listing concrete functions could).
      tracing_count = getattr(value, 'experimental_get_tracing_count', None)
      if callable(tracing_count):
        entry.append(tracing_count())
      items.append(tuple(entry))
    return tuple(items)

  def _write_variables_only(self, staging: Text, options: Any) -> bool:
    """Fast path of `save`: reuses the graph files of the last full save.

    Applies when `options` is None and nothing was traced (and no function
    registered) since this saver's last full save: the SavedModel graph
    files kept in memory from that save are written again and the variables
    are written with a `tf.train.Checkpoint` rooted at the exported module,
    whose object graph is the SavedModel's, so the export loads exactly as a
    full save would.

    Args:
      staging: The staging directory to fill.
      options: The `save` options.

    Returns:
      True if the fast path wrote the export, False if a full save is needed.
    """
    cache = self._graph_files
    if options is not None or cache is None:
      return False
    if cache['token'] != self._graph_token():
      self._graph_files = None
      return False
    for rel, data in cache['files'].items():
      target = os.path.join(staging, rel)
      tf.io.gfile.makedirs(os.path.dirname(target))
      with tf.io.gfile.GFile(target, 'wb') as f:
        f.write(data)
    checkpoint = tf.train.Checkpoint(root=self._policy)
    checkpoint.write(
        os.path.join(
            staging,
            tf.saved_model.VARIABLES_DIRECTORY,
            tf.saved_model.VARIABLES_FILENAME,
        )
    )
    return True

  def _keep_graph_files(self, staging: Text, options: Any) -> None:
    """Keeps the graph files of a full save in memory for the fast path."""
    self._graph_files = None
    if options is not None:
      return
    variables_dir = tf.saved_model.VARIABLES_DIRECTORY + '/'
    files = {}
    total = 0
    for rel in export_publish.list_files(staging):
      if rel.startswith(variables_dir) or rel == export_verify.REFERENCE_IO:
        continue
      path = os.path.join(staging, rel)
      total += tf.io.gfile.stat(path).length
      if total > _MAX_CACHED_GRAPH_BYTES:
        return
      with tf.io.gfile.GFile(path, 'rb') as f:
        files[rel] = f.read()
    self._graph_files = {'token': self._graph_token(), 'files': files}

  def _publish(
      self,
      export_dir: Any,
      make_publication: Callable[[Text], Any],
      write: Callable[[Any], Text],
  ) -> Any:
    """Writes a new version with `write(publication)` and publishes it.

    Args:
      export_dir: The export directory (`str`, `bytes` or path-like).
      make_publication: Makes the `export_publish.Publication` (or
        `NumberedPublication`) for the normalized `export_dir`; it checks
        the directory before anything is written.
      write: Fills `publication.staging`; returns the kind of save.

    Returns:
      The committed publication.

    Raises:
      ExportWriteError: `export_dir` holds files this saver did not write
        under names the export needs, or writing failed (e.g. disk full);
        the message names `export_dir`, and the previous version stays
        current.
    """
    export_dir = export_publish.normalize_dir(export_dir)
    publication = None
    try:
      publication = make_publication(export_dir)
      kind = write(publication)
      extra = {'kind': kind}
      if tf.executing_eagerly():
        extra['train_step'] = int(self._train_step.numpy())
      publication.commit(extra)
    except export_errors.ExportError:
      if publication is not None:
        publication.abort()
      raise
    except (OSError, tf.errors.OpError) as e:
      if publication is not None:
        publication.abort()
      # Name `export_dir`, not the hidden directory of the new version.
      detail = re.sub(
          re.escape(export_publish.versions_dir(export_dir)) + r'/[^\s;:,]*',
          export_dir, export_errors.one_line(e))
      if publication is not None:
        detail = detail.replace(publication.staging, export_dir)
      raise export_errors.ExportWriteError(
          'Could not write the export {}: {}'.format(export_dir, detail)
      ) from e
    except BaseException:
      if publication is not None:
        publication.abort()
      raise
    self._last_save_kind = kind
    return publication

  def _reference_recorder(self) -> Callable[[], bytes]:
    """Prepares the recording of reference inputs/outputs of `action`.

    The concrete function is traced now, before `tf.saved_model.save`, so the
    save exports that trace and nothing is traced after it (which would make
    the next `save` a full one). The returned function runs it: a full save
    calls it once the SavedModel is written, because the first call
    instantiates the function in TensorFlow's runtime, and that state, added
    to the serialization's buffers, made the save's peak memory higher than
    upstream's (which never runs the function); after the save it is not.

    Returns:
      A function that returns the `.npz` bytes for `export_verify` (b'' when
      there is nothing to record).
    """
    if not tf.executing_eagerly():
      return lambda: b''
    action = self._signatures['action']
    specs = list(action.input_signature)
    concrete = action.get_concrete_function()
    keys = [_signature_key(spec.name) for spec in specs]
    return lambda: export_verify.reference_io_bytes(
        concrete, specs, keys, self._batch_size
    )

  @property
  def last_save_kind(self) -> Optional[Text]:
    """How the last export was written.

    Returns:
      `'full'` (SavedModel written), `'variables_only'` (fast path of `save`:
      graph reused from the previous export), `'checkpoint'`
      (`save_checkpoint`), or None before the first save.
    """
    return self._last_save_kind

  def save(
      self,
      export_dir: Text,
      options: Optional[tf.saved_model.SaveOptions] = None,
  ) -> None:
    """Writes the SavedModel and `policy_specs.pbtxt` to `export_dir`.

    The export is published as a new version (see `export_publish`): other
    files in `export_dir` are kept, files of earlier saves are replaced, and
    readers of this repository see the previous version or this one, never
    a mix. When nothing was traced since this saver's last full save and
    `options` is None, only the variables are serialized anew
    (`last_save_kind` is `'variables_only'`).

    Args:
      export_dir: Directory to write (any `tf.io.gfile` path; `str`, `bytes`
        or path-like).
      options: Optional `tf.saved_model.SaveOptions`.

    Raises:
      ExportWriteError: `export_dir` holds files this saver did not write
        under the names of an export, or writing failed; the previous
        version stays current.
    """

    self._publish(
        export_dir,
        lambda path: export_publish.Publication(path, _EXPORT_FILES),
        lambda publication: self._write_export(publication, options))
    if tf.executing_eagerly():
      # Traced now, so that the learner's first `save_checkpoint` after its
      # `save` costs what every later one does.
      self._checkpoint_writer()

  def save_serving(
      self,
      base_dir: Text,
      version: Optional[int] = None,
      options: Optional[tf.saved_model.SaveOptions] = None,
  ) -> Text:
    """Writes a full export as `base_dir/<version>/`, TF Serving's layout.

    TF Serving, TFX and Vertex AI serve the highest numbered subdirectory of
    `base_dir`. The version is written under a hidden temporary name and
    renamed into place in one step on local disks (see
    `export_publish.NumberedPublication`); versions are never overwritten.
    `SavedPolicy(base_dir)` and `update_from_directory(base_dir)` read the
    highest complete one. With `max_to_keep`, the oldest versions beyond it
    are then removed.

    Args:
      base_dir: The base directory (any `tf.io.gfile` path).
      version: The version number; default: one above the highest present.
      options: Optional `tf.saved_model.SaveOptions`.

    Returns:
      The new version's directory.

    Raises:
      ExportWriteError: `version` exists, `base_dir` is a file or an export
        itself, or writing failed.
    """
    publication = self._publish(
        base_dir,
        lambda path: export_publish.NumberedPublication(path, version),
        lambda publication: self._write_export(publication, options))
    self._retire(publication.target)
    return publication.target

  def _write_export(self, publication: Any, options: Any) -> Text:
    """Writes a full export into `publication.staging`; returns its kind."""
    staging = publication.staging
    if self._write_variables_only(staging, options):
      kind = 'variables_only'
      reference = self._reference_recorder()()
    else:
      record_reference = self._reference_recorder()
      tf.saved_model.save(
          self._policy, staging, signatures=self._signatures, options=options
      )
      reference = record_reference()
      with tf.io.gfile.GFile(
          os.path.join(staging, POLICY_SPECS_PBTXT), 'wb'
      ) as f:
        f.write(self._specs_text)
      if self._converted_formats:
        # Kept with the graph files: a variables-only save carries them, and
        # runtimes give them the new variables (see export_equivalence).
        export_equivalence.write(staging, self._converted_formats)
      self._keep_graph_files(staging, options)
      kind = 'full'
    if reference:
      path = os.path.join(staging, export_verify.REFERENCE_IO)
      with tf.io.gfile.GFile(path, 'wb') as f:
        f.write(reference)
    return kind

  def _retire(self, written: Text) -> None:
    """Applies `max_to_keep` to the siblings of `written`."""
    if self._max_to_keep is None:
      return
    try:
      export_publish.retire_checkpoints(written, self._max_to_keep)
    except (OSError, tf.errors.OpError) as e:
      logging.warning('Could not remove old checkpoints beside %s: %s',
                      written, export_errors.one_line(e))

  def _checkpoint(self) -> tf.train.Checkpoint:
    """The object graph `save_checkpoint` writes (upstream's keys)."""
    return tf.train.Checkpoint(
        policy=self._policy,
        # A list: an empty tuple (a policy without variables) is not
        # trackable; the keys are the same (`model_variables/<i>`).
        model_variables=list(self._policy.model_variables),
        train_step=self._train_step,
        metadata=self._policy.metadata,
    )

  def _checkpoint_writer(self) -> Callable[[tf.Tensor], Any]:
    """A traced `Checkpoint.write`, made on first use.

    An eager `Checkpoint.write` walks the object graph and builds its save
    ops on every call (most of the cost of a small policy's checkpoint); the
    traced one does that once, so a re-save costs the writing alone. The
    policy's object graph does not change after the saver is built. The
    explicit device keeps the object graph and the variables in one data
    shard (`variables.data-00000-of-00001`), the file an eager write makes.

    Returns:
      A function of the checkpoint prefix (a string tensor) that writes it;
      the prefix's directory must exist.
    """
    if self._traced_checkpoint_writer is None:
      checkpoint = self._checkpoint()

      @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
      def write(prefix):
        with tf.device('/job:localhost/replica:0/task:0/device:CPU:0'):
          return checkpoint.write(prefix)

      write.get_concrete_function()
      self._traced_checkpoint_writer = write
    return self._traced_checkpoint_writer

  def save_checkpoint(
      self,
      export_dir: Text,
      options: Optional[tf.train.CheckpointOptions] = None,
  ) -> None:
    """Writes the variables to `export_dir/variables/variables.*`.

    The checkpoint can update a loaded export
    (`tf.train.Checkpoint(policy=loaded).read(...)`, as
    `SavedModelPyTFEagerPolicy.update_from_checkpoint` does) or be combined
    with a saved `saved_model.pb` into a full export. It is published as a
    new version like `save`. When `export_dir` holds a full export of this
    saver, its graph files are kept (so it loads with the new variables) and
    its recorded reference outputs, which describe the old variables, are
    dropped.

    With `max_to_keep`, older checkpoints beside `export_dir` are then
    removed (see `export_publish.retire_checkpoints`).

    Args:
      export_dir: Directory to write (any `tf.io.gfile` path; `str`, `bytes`
        or path-like).
      options: Optional `tf.train.CheckpointOptions`.

    Raises:
      ExportWriteError: As `save`.
    """
    def write(publication):
      variables_dir = tf.saved_model.VARIABLES_DIRECTORY + '/'
      for rel, source in publication.previous_files().items():
        if not rel.startswith(variables_dir) and rel not in (
            export_verify.REFERENCE_IO, _FINGERPRINT):
          publication.carry(rel, source)
      prefix = os.path.join(
          publication.staging,
          tf.saved_model.VARIABLES_DIRECTORY,
          tf.saved_model.VARIABLES_FILENAME,
      )
      if options is None and tf.executing_eagerly():
        tf.io.gfile.makedirs(os.path.dirname(prefix))
        self._checkpoint_writer()(tf.constant(prefix))
      else:
        self._checkpoint().write(prefix, options=options)
      return 'checkpoint'

    self._publish(
        export_dir,
        lambda path: export_publish.Publication(path, _CHECKPOINT_FILES),
        write)
    self._retire(export_dir)


def specs_from_collect_data_spec(
    loaded_policy_specs: types.NestedTensorSpec,
) -> Dict[types.NestedSpec, types.NestedSpec]:
  """Recreates the policy specs, as `ArraySpec`s, from `policy_specs.pbtxt`.

  Args:
    loaded_policy_specs: The decoded content of `policy_specs.pbtxt`, e.g.
      `tensor_spec.from_pbtxt_file(os.path.join(export_dir,
      POLICY_SPECS_PBTXT))`.

  Returns:
    A dict with keys `collect_data_spec`, `time_step_spec`, `action_spec`,
    `policy_state_spec` and `info_spec`, whose values are nests of
    `ArraySpec`s.
  """
  return _split_specs(tensor_spec.to_nest_array_spec(loaded_policy_specs))


def _split_specs(policy_specs: Dict[Text, Any]) -> Dict[Text, Any]:
  collect_data_spec = policy_specs['collect_data_spec']
  return {
      'collect_data_spec': collect_data_spec,
      'time_step_spec': ts.TimeStep(
          step_type=collect_data_spec.step_type,
          reward=collect_data_spec.reward,
          discount=collect_data_spec.discount,
          observation=collect_data_spec.observation,
      ),
      'action_spec': collect_data_spec.action,
      'policy_state_spec': policy_specs['policy_state_spec'],
      'info_spec': collect_data_spec.policy_info,
  }


def specs_from_saved_model(saved: Any) -> Dict[Text, Any]:
  """Recovers the policy specs from a loaded export alone.

  Args:
    saved: The object returned by `tf.saved_model.load` for an export written
      by this module.

  Returns:
    A dict with keys `collect_data_spec`, `time_step_spec`, `action_spec`,
    `policy_state_spec` and `info_spec`, whose values are nests of
    `tf.TensorSpec`s / `BoundedTensorSpec`s.

  Raises:
    ValueError: If `saved` has no `get_policy_specs` function (e.g. it was
      written by upstream's saver; read `policy_specs.pbtxt` instead).
  """
  get_policy_specs = getattr(saved, 'get_policy_specs', None)
  if get_policy_specs is None:
    raise ValueError(
        '{!r} has no get_policy_specs function; it was not exported by this '
        'PolicySaver. Read {} from the export directory instead.'.format(
            saved, POLICY_SPECS_PBTXT
        )
    )
  text = get_policy_specs().numpy().decode('utf-8')
  proto = type(tensor_spec.to_proto(()))()
  text_format.Parse(text, proto)
  return _split_specs(tensor_spec.from_proto(proto))


# Conversions live in `export_conversion`; these names stay importable from
# here, where users, the CLI and tests have used them.
TFLiteConversionReport = export_conversion.TFLiteConversionReport
convert_action_to_tflite = export_conversion.convert_action_to_tflite
