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

from typing import Any, Callable, Dict, Optional, Sequence, Text, Tuple

import tensorflow as tf

from google.protobuf import text_format
from tf_agents.policies import export_contract
from tf_agents.policies import export_conversion
from tf_agents.policies import export_noise
from tf_agents.policies import export_publish
from tf_agents.policies import saver_arguments
from tf_agents.policies import saver_publishing
from tf_agents.policies import saver_signatures
from tf_agents.policies import saver_tracing
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.typing import types


class def_function:  # pylint: disable=invalid-name
  """Stands in for TensorFlow's `def_function` module upstream exposes here.

  Upstream's `tf_agents.train.triggers` reads `policy_saver.def_function.
  Function` when it is imported; this keeps that name working through the
  public `tf.types` API instead of a private TensorFlow module.
  """
  Function = tf.types.experimental.GenericFunction  # pylint: disable=invalid-name


# The names the export's readers share (`export_contract`); public here too.
POLICY_SPECS_PBTXT = export_contract.POLICY_SPECS_PBTXT

InputFnType = Callable[
    [types.NestedTensor], Tuple[types.NestedTensor, types.NestedTensor]
]
InputFnAndSpecType = Tuple[InputFnType, types.NestedTensorSpec]

# The flat signature that takes only the observation (and the policy state).
ACTION_FROM_OBSERVATION = export_contract.ACTION_FROM_OBSERVATION

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


# Public helpers of upstream's module (upstream's tests call them).
rename_spec_with_nest_paths = saver_signatures.rename_spec_with_nest_paths
add_batch_dim = saver_signatures.add_batch_dim


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
  initial_state_fn = saved.signatures[export_contract.GET_INITIAL_STATE]
  action_fn = saved.signatures[export_contract.ACTION]
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
        equivalent backend without converting or probing at load. A
        stochastic policy's `action` is converted with its random noise as
        model inputs (`export_noise`: builtin TFLite ops only), checked for
        the same distribution, and runtimes seed that noise with `seed`.
        Empty (the default) stores none: a save then costs no conversion.

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
    self._set_arguments(policy, batch_size, use_nest_path_signatures,
                        train_step, metadata, max_to_keep, converted_formats,
                        include_distribution)
    traced = saver_tracing.TracedPolicy(
        policy, self._batch_size, self._use_nest_path_signatures, seed,
        self._train_step, self._metadata, input_fn_and_spec,
        self._include_distribution)
    self._policy = traced.module
    self._signatures = traced.signatures
    self._specs_text = traced.specs_text
    self._action_input_spec = traced.action_input_spec
    self._policy_step_spec = traced.policy_step_spec
    self._policy_state_spec = traced.policy_state_spec
    self._distribution_export_error = traced.distribution_export_error
    self._prepare_noise_action(policy, seed, input_fn_and_spec,
                               traced.batched_action_input)
    self._writer = saver_publishing.ExportWriter(
        self._policy, self._signatures, self._specs_text, self._batch_size,
        self._converted_formats, self._noise_seed)

  # ---------------------------------------------------------------------------
  # Construction steps.

  def _set_arguments(
      self, policy: tf_policy.TFPolicy, batch_size: Any,
      use_nest_path_signatures: bool, train_step: Any, metadata: Any,
      max_to_keep: Any, converted_formats: Any,
      include_distribution: bool) -> None:
    """Checks the constructor's arguments (in order) and keeps them.

    Args:
      policy: As for the constructor.
      batch_size: As for the constructor.
      use_nest_path_signatures: As for the constructor.
      train_step: As for the constructor.
      metadata: As for the constructor.
      max_to_keep: As for the constructor.
      converted_formats: As for the constructor.
      include_distribution: As for the constructor.

    Raises:
      NotImplementedError, TypeError, ValueError: As the constructor.
    """
    saver_arguments.check_process_and_policy(policy)
    batch_size = saver_arguments.validated_batch_size(batch_size)
    self._max_to_keep = saver_arguments.validated_max_to_keep(max_to_keep)
    self._converted_formats = saver_arguments.validated_converted_formats(
        converted_formats)
    saver_arguments.check_specs(policy, use_nest_path_signatures)
    train_step = saver_arguments.validated_train_step(train_step)
    metadata = saver_arguments.validated_metadata(metadata)

    self._batch_size = batch_size
    self._use_nest_path_signatures = use_nest_path_signatures
    self._train_step = train_step
    self._metadata = metadata
    self._include_distribution = include_distribution

  def _prepare_noise_action(
      self, policy: tf_policy.TFPolicy, seed: Optional[types.Seed],
      input_fn_and_spec: Optional[InputFnAndSpecType],
      batched_action_input: Any) -> None:
    """Keeps what `_make_noise_action` needs for `converted_formats`.

    A stochastic `action` converts with its noise as model inputs (builtin
    TFLite ops only), traced from the live policy at the first full save
    that needs it (see export_noise).

    Args:
      policy: The policy.
      seed: As for the constructor.
      input_fn_and_spec: As for the constructor.
      batched_action_input: The batched input specs of `action`.
    """
    self._noise_action_args = (
        policy,
        batched_action_input,
        [export_contract.signature_key(s.name)
         for s in tf.nest.flatten(self._action_input_spec)],
        self._policy_step_spec,
        input_fn_and_spec[0] if input_fn_and_spec is not None else None,
    )
    self._noise_action = None
    self._noise_seed = saver_arguments.noise_seed(seed)

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
    function = saver_signatures.function(fn)
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

  @property
  def last_save_kind(self) -> Optional[Text]:
    """How the last export was written.

    Returns:
      `'full'` (SavedModel written), `'variables_only'` (fast path of `save`:
      graph reused from the previous export), `'checkpoint'`
      (`save_checkpoint`), or None before the first save.
    """
    return self._writer.last_save_kind

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

    self._writer.publish(
        export_dir,
        lambda path: export_publish.Publication(
            path, saver_publishing.EXPORT_FILES),
        lambda publication: self._write_export(publication, options))
    if tf.executing_eagerly():
      # Traced now, so that the learner's first `save_checkpoint` (and
      # re-save) after its `save` costs what every later one does.
      self._checkpoint_writer()
      if self._writer.graph_files_kept:
        self._export_variables_writer()

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
    publication = self._writer.publish(
        base_dir,
        lambda path: export_publish.NumberedPublication(path, version),
        lambda publication: self._write_export(publication, options))
    saver_publishing.retire(publication.target, self._max_to_keep)
    return publication.target

  def _write_export(self, publication: Any, options: Any) -> Text:
    """Writes a full export into `publication.staging`; returns its kind."""
    return self._writer.write_export(publication, options,
                                     self._export_variables_writer,
                                     self._make_noise_action)

  def _make_noise_action(self) -> export_noise.NoiseAction:
    """The policy's `action` with its noise as inputs, traced once.

    Returns:
      The `export_noise.NoiseAction` over the exported variables.

    Raises:
      export_noise.UnsupportedPolicyError: The policy's action cannot be
        computed from fed noise.
    """
    if self._noise_action is None:
      policy, input_spec, input_keys, step_spec, input_fn = (
          self._noise_action_args)
      self._noise_action = export_noise.noise_action(
          policy, input_spec, input_keys, step_spec,
          list(self._policy.model_variables), input_fn)
    return self._noise_action

  def _checkpoint_writer(self) -> Callable[[tf.Tensor], Any]:
    """Writes `save_checkpoint`'s object graph (upstream's keys)."""
    return self._writer.checkpoint_writer()

  def _export_variables_writer(self) -> Callable[[tf.Tensor], Any]:
    """Writes an export's variables: the object graph of the SavedModel."""
    return self._writer.export_variables_writer()

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
    self._writer.publish(
        export_dir,
        lambda path: export_publish.Publication(
            path, saver_publishing.CHECKPOINT_FILES),
        lambda publication: saver_publishing.write_checkpoint_version(
            publication, options, self._checkpoint_writer,
            self._writer.checkpoint))
    saver_publishing.retire(export_dir, self._max_to_keep)


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
  return export_contract.split_specs(
      tensor_spec.to_nest_array_spec(loaded_policy_specs))


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
  return export_contract.split_specs(tensor_spec.from_proto(proto))


# Conversions live in `export_conversion`; these names stay importable from
# here, where users, the CLI and tests have used them.
TFLiteConversionReport = export_conversion.TFLiteConversionReport
convert_action_to_tflite = export_conversion.convert_action_to_tflite
