# coding=utf-8
"""A fast `PyPolicy` runtime for policies exported by `PolicySaver`.

`SavedPolicy(export_dir)` runs an export step by step from Python: numpy in,
numpy out, usable by `py_driver.PyDriver` and `Actor`. It needs nothing but
the export directory (any `tf.io.gfile` path, e.g. `gs://` or `ram://`).

Backends
--------
The backend classes live in `saved_policy_backends` (one class each, one
interface), with `BACKENDS` and the one default, `DEFAULT_BACKEND`
(`'auto'`), which `policy_loader.load` shares.

Construction checks the current version (manifest, `saved_model.pb`,
`policy_specs.pbtxt`) and reads the specs and the `action` signature from
those files; it does not call `tf.saved_model.load`. The eager loaded object
(about two thirds of upstream's construction) is made only when something
needs it: `variables()`, `loaded_model`, `get_metadata`, a conversion at
load, or an update that restores into it.

* `'saved_model'`: the export's `action` signature graph run by a
  `tf.compat.v1.Session` in the calling thread, with feeds and fetches
  resolved once at load (numpy in and out: no per-step `tf.nest`, tensor
  conversion, argument binding or retracing). `get_initial_state` and
  `get_train_step` run their signatures in the same session. Works for
  every export; if the TF1 loader cannot read one, the loaded `action`
  concrete function is called instead.
* `'tflite'`: the `action` signature run by `tf.lite.Interpreter` through
  its signature runner. The model is converted at load with the weights as
  TFLite variables and a `set_weights` signature, so `update_from_checkpoint`
  hands it the new values without converting again. A model stored in the
  export (`assets/action.tflite`, from a build step, with the weights as
  constants) is used instead until the weights change.
* `'onnxruntime'`: the `action` signature converted at load to ONNX
  (`export_conversion.convert_action_to_onnx`) and run by an onnxruntime
  session. The weights are named initializers the session is created with
  (`SessionOptions.add_initializer`), so a refresh creates a new session
  with the new values without converting again, and a step runs with the
  weights as constants. Needs tf2onnx, onnx and onnxruntime.

Stored models: an export saved with `PolicySaver(converted_formats=('tflite',
'onnx'))` carries both models and a record of their equivalence, checked
once when it was written (`export_equivalence`). `'tflite'` and
`'onnxruntime'` then open the stored model (no conversion), given the
version's weights through `set_weights` / initializers when they differ
(e.g. a version written by `save_checkpoint`).

Refreshes: `update_from_checkpoint` and `update_from_directory` keep the
backend (the session restores the new values, the TFLite model takes them
through `set_weights`, the onnxruntime backend creates a session with
them). Weights assigned in place are followed too: once
`variables()` (or `model_variables`) has handed out the variables, which the
caller may assign (as `ReverbVariableContainer.update` does), the policy
runs the loaded `action` signature itself, which reads them, rather than a
copy of the weights that could go stale.
* `'auto'` (default): with a record, the first stored model it calls
  equivalent (TFLite, then ONNX: bit-exact for deterministic feed-forward
  policies, the same actions with a bounded state for recurrent ones, the
  same distribution for stochastic ones converted with their noise as
  inputs), else `'saved_model'`, with no conversion and no probe at load.
  Such a stochastic model is fed noise the record names from a NumPy
  generator, seeded with the saver's seed when it had one (so two runtimes
  of one seeded export draw the same actions). Without a record (exports
  saved without `converted_formats`, or by upstream), `'tflite'` when it is
  exact for this policy, else `'saved_model'`: a backend is exact when the
  action function has no random or variable-assigning ops and the TFLite
  model reproduces the SavedModel's outputs bit for bit on probe inputs
  sampled from the specs, which costs a conversion and a probe at load.
  Stochastic policies without a record therefore run on the SavedModel
  under `'auto'`; `backend='tflite'` still
  runs them (same distribution, different random stream) where the
  converted model needs no select TF ops the installed interpreter lacks.

Fixes relative to upstream's `SavedModelPyTFEagerPolicy` (tf-agents 0.19.0)
--------------------------------------------------------------------------
1. Specs come from the export itself (`get_policy_specs()` of this repo's
   saver, else `policy_specs.pbtxt`); no specs or flags to pass.
2. Batched and unbatched time steps are told apart by their rank (upstream:
   a constructor flag); the policy state comes back as numpy arrays batched
   like the state that was passed in (upstream returns tensors), so
   `PyDriver`'s batch-1 initial state works with unbatched environments.
3. `get_initial_state` works whatever batch size the export was saved with
   (upstream fails on exports with a fixed batch size), and
   `get_initial_state(None)` gives an unbatched state. Exports with a fixed
   batch size also run other batch sizes (padded / split internally).
4. A time step or state that does not match the specs raises
   `export_errors.TimeStepMismatchError` (a `ValueError`) with a one-line
   message naming the field, the expected shape and dtype and what was given
   (upstream: "Could not find matching function to call"). Values of the same
   kind (e.g. float64 for a float32 field) are cast.
5. Much lower per-step cost (see Backends).
6. `update_from_checkpoint` also accepts a full export directory, and
   `update_from_directory` picks up the newest checkpoint or export under a
   directory, doing nothing (one small read of the version pointer) when
   nothing changed; it never misses a publish (upstream has no such call;
   a file's modification time, with its one-second resolution here, missed
   re-saves). `version` says which published version's weights are served.
7. The train step of a restored checkpoint is parsed from the trailing digits
   of its directory name (upstream: from the text after the last `_` of the
   whole path).
8. Bad exports and checkpoints raise this package's `export_errors` types
   with a one-line message naming the path and, when it can be told, the
   file (upstream: TensorFlow's `OSError` or a stack dump, or a silent load
   of wrong variables): `ExportNotFoundError` (missing path),
   `NotAnExportError` (no `saved_model.pb` / `variables/variables.index`, or
   a manifest without its `export_complete` marker: a copy-based publish in
   progress), `ManifestMismatchError` (a file differs from
   `export_manifest.json`), `CorruptExportError` (a truncated or garbled
   `saved_model.pb`, `policy_specs.pbtxt` or variables file; also for exports
   without a manifest, e.g. upstream's, where checksums of the variables and
   parse errors find it) and `ExportSignatureError` (also a `ValueError`: the
   signatures do not match the specs). This holds for the constructor,
   `update_from_checkpoint` and `update_from_directory`; an update that fails
   leaves the previous variables in place.
9. Every load and update reads one published version of the export or
   checkpoint (`export_publish`): all files from that version, never half
   of one save and half of the next, even while a writer publishes.
"""

import dataclasses
import os
import re
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
# Loading an export needs TFP's TypeSpecs registered (its `distribution`
# function returns distributions).
import tensorflow_probability as tfp  # pylint: disable=unused-import

from tf_agents.policies import export_contract
from tf_agents.policies import export_conversion
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
from tf_agents.policies import py_policy
from tf_agents.policies import saved_policy_backends as backends
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.typing import types
from tf_agents.utils import nest_utils

# The backends' names, public here as before (see `saved_policy_backends`).
BACKEND_AUTO = backends.BACKEND_AUTO
BACKEND_SAVED_MODEL = backends.BACKEND_SAVED_MODEL
BACKEND_TFLITE = backends.BACKEND_TFLITE
BACKEND_ONNXRUNTIME = backends.BACKEND_ONNXRUNTIME
BACKENDS = backends.BACKENDS
DEFAULT_BACKEND = backends.DEFAULT_BACKEND

# Optional TFLite model of the `action` signature stored in an export, used by
# the TFLite backend instead of converting at load.
TFLITE_MODEL_FILENAME = export_contract.TFLITE_MODEL_FILENAME

_ACTION_SIGNATURE = export_contract.ACTION
_INITIAL_STATE_SIGNATURE = export_contract.GET_INITIAL_STATE

_TRAILING_DIGITS = re.compile(r'(\d+)$')
# Written by `export_publish` (this repository's saver): the manifest first,
# the completion marker last.
_MANIFEST_FILENAME = export_publish.MANIFEST_FILENAME
_COMPLETE_MARKER = export_publish.COMPLETE_MARKER
_PROBE_SEED = 12345


def check_checkpoint(checkpoint_path: Text) -> None:
  """Checks that `checkpoint_path` is a complete checkpoint or export.

  Args:
    checkpoint_path: A directory written by `PolicySaver.save_checkpoint` or
      `PolicySaver.save`.

  Raises:
    ExportNotFoundError: It does not exist.
    NotAnExportError: It has no `variables/variables.index`, or it has a
      manifest but no completion marker (still being published).
    ManifestMismatchError: A file does not match its manifest.
  """
  if not tf.io.gfile.exists(checkpoint_path):
    raise export_errors.ExportNotFoundError(
        '{}: no such file or directory.'.format(checkpoint_path)
    )
  if not tf.io.gfile.exists(export_contract.variables_prefix(checkpoint_path) + '.index'):
    raise export_errors.NotAnExportError(
        '{}: not a policy checkpoint or export (no '
        'variables/variables.index).'.format(checkpoint_path)
    )
  export_publish.check_manifest(checkpoint_path)


def _train_step_from_path(path: Text) -> Optional[int]:
  match = _TRAILING_DIGITS.search(os.path.basename(path.rstrip('/')))
  return int(match.group(1)) if match else None


def load_specs(export_dir: Text, loaded: Any = None) -> Dict[Text, Any]:
  """Returns the policy specs of an export as nests of `ArraySpec`s.

  Args:
    export_dir: The export directory.
    loaded: The loaded export, if already loaded. Its `get_policy_specs()`
      function (exports of this repository's saver) is preferred.

  Returns:
    A dict with keys `collect_data_spec`, `time_step_spec`, `action_spec`,
    `policy_state_spec` and `info_spec`.
  """
  source = 'get_policy_specs() of saved_model.pb'
  try:
    specs = None
    if loaded is not None and hasattr(loaded, 'get_policy_specs'):
      specs = policy_saver.specs_from_saved_model(loaded)
    if specs is None:
      source = policy_saver.POLICY_SPECS_PBTXT
      path = os.path.join(export_dir, source)
      if not tf.io.gfile.exists(path):
        raise export_errors.CorruptExportError(
            '{}: {} is missing.'.format(export_dir, source)
        )
      proto_specs = tensor_spec.from_pbtxt_file(path)
      specs = policy_saver.specs_from_collect_data_spec(proto_specs)
    return {k: tensor_spec.to_array_spec(v) for k, v in specs.items()}
  except export_errors.ExportError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Parsing and spec conversion raise many unrelated types.
    raise export_errors.CorruptExportError(
        '{}: cannot read the policy specs from {} ({}).'.format(
            export_dir, source, export_errors.one_line(e)
        )
    ) from e


def _is_complete(path: Text) -> bool:
  """Whether `path` holds a completely written checkpoint or export.

  This repository's saver publishes exports and checkpoints with an integrity
  manifest and writes a completion marker last (see `export_publish`); one
  with the manifest but no marker is still being written. Directories of
  other savers count as complete once `variables/variables.index` exists.

  Args:
    path: A candidate directory.

  Returns:
    True if it can be read.
  """
  if export_publish.version_id(path) is not None:
    return True  # The pointer names only complete versions.
  if tf.io.gfile.exists(os.path.join(path, _COMPLETE_MARKER)):
    return True
  return tf.io.gfile.exists(
      export_contract.variables_prefix(path) + '.index'
  ) and not tf.io.gfile.exists(os.path.join(path, _MANIFEST_FILENAME))


def latest_checkpoint_path(directory: Text) -> Optional[Text]:
  """Returns the newest complete checkpoint or export in `directory`.

  `directory` is either itself a checkpoint / export (it holds
  `variables/variables.index`), or holds such directories whose names end in
  a number (the train step, e.g. `policy_checkpoint_0000001000` as written by
  `triggers.PolicySavedModelTrigger`); the highest number whose directory is
  complete wins. Hidden entries (names starting with `.`, e.g. a saver's
  staging directories) are ignored.

  Args:
    directory: Any `tf.io.gfile` path.

  Returns:
    The path, or None if there is none.
  """
  if tf.io.gfile.exists(export_contract.variables_prefix(directory) + '.index'):
    return directory if _is_complete(directory) else None
  candidates = []
  try:
    children = tf.io.gfile.listdir(directory)
  except tf.errors.NotFoundError:
    return None
  for child in children:
    child = child.rstrip('/')
    match = _TRAILING_DIGITS.search(child)
    if match and not child.startswith('.'):
      candidates.append((int(match.group(1)), child))
  for _, child in sorted(candidates, reverse=True):
    path = os.path.join(directory, child)
    if _is_complete(path):
      return path
  return None


def restore_checkpoint(
    loaded: Any, checkpoint_path: Text
) -> export_publish.Version:
  """Reads variables into a loaded export from a checkpoint or an export.

  Reads the current version of `checkpoint_path` (see `export_publish`):
  every file from that one version, again from the new current version if
  that one is retired while it reads.

  Args:
    loaded: The object returned by `tf.saved_model.load` for an export.
    checkpoint_path: A directory written by `PolicySaver.save_checkpoint`
      (the policy is the checkpoint's `policy` child) or `PolicySaver.save`
      (the policy is the checkpoint's root); reads
      `<checkpoint_path>/variables/variables`.

  Raises:
    ExportNotFoundError, NotAnExportError, ManifestMismatchError: As
      `check_checkpoint`.
    CorruptExportError: A variables file is truncated or garbled (the
      one-line message names it). Some variables may have been read.
    ValueError: If some variable of `loaded` is missing from the checkpoint
      or has another shape (a checkpoint of another policy).

  Returns:
    The version read (`export_publish.Version`).
  """

  def read(version):
    _restore_version(loaded, version.path, version.kind)
    return version

  return export_publish.read_consistent(checkpoint_path, read)


def _checkpoint_reader(prefix: Text) -> Any:
  """A reader of checkpoint `prefix` (`tf.train.load_checkpoint` takes a
  `ram://` prefix for a directory and fails)."""
  return tf.compat.v1.train.NewCheckpointReader(prefix)


def _copy_from_session(session: 'backends.SessionBackend', loaded: Any) -> None:
  """Gives `loaded` the session's variable values.

  Through a checkpoint in memory: the files the session read may be retired
  by now.

  Args:
    session: The session backend.
    loaded: The eager loaded export.
  """
  prefix = 'ram://saved_policy_eager/{}/variables'.format(uuid.uuid4().hex)
  try:
    session.save(prefix)
    # The session writes the SavedModel's keys: `loaded` is the root.
    status = tf.train.Checkpoint(root=loaded).read(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
  finally:
    for path in tf.io.gfile.glob(prefix + '*'):
      tf.io.gfile.remove(path)


def _fill_from_version(loaded: Any, version: export_publish.Version,
                       values: Sequence[np.ndarray]) -> None:
  """Gives `loaded` every variable of `version`, or at least `values`.

  Args:
    loaded: The eager loaded export.
    version: The version a model-only update read.
    values: The model variables' values it read.
  """
  try:
    _restore_version(loaded, version.path, version.kind)
    return
  except (export_errors.ExportError, ValueError, tf.errors.OpError) as e:
    # E.g. the version was retired since: the model variables are at hand.
    logging.warning('Could not read %s again (%s); the train step and '
                    'metadata stay as they were.', version.path,
                    export_errors.one_line(e))
  for variable, value in zip(loaded.model_variables, values):
    variable.assign(value)


def _tensor_kinds(reader: Any) -> Dict[Text, Tuple[Any, Any]]:
  """`{key: (shape, dtype)}` of a checkpoint's tensors (no object graph)."""
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  return {k: (tuple(shapes[k]), dtypes[k]) for k in shapes
          if k != '_CHECKPOINTABLE_OBJECT_GRAPH'}


def _restore_version(loaded: Any, checkpoint_path: Text,
                     kind: Optional[Text] = None) -> None:
  """`restore_checkpoint` from the directory holding all the files.

  Args:
    loaded: The loaded export.
    checkpoint_path: The directory.
    kind: How the saver wrote it (`export_publish.Version.kind`), if known:
      a full export's policy is the checkpoint's root, a checkpoint's its
      `policy` child; unknown, both are tried.
  """
  check_checkpoint(checkpoint_path)
  prefix = export_contract.variables_prefix(checkpoint_path)
  errors = []
  layouts = [
      lambda: tf.train.Checkpoint(policy=loaded),
      lambda: tf.train.Checkpoint(root=loaded),
  ]
  if kind in ('full', 'variables_only'):
    layouts.reverse()
  for checkpoint in layouts:
    try:
      status = checkpoint().read(prefix)
      # Before asserting: a status dropped without `expect_partial()` logs
      # TF warnings about every value it did not restore when it is garbage
      # collected, e.g. after the `policy=` attempt on a full export.
      status.expect_partial()
      status.assert_existing_objects_matched()
      return
    except AssertionError as e:
      errors.append(str(e))
    except Exception as e:  # pylint: disable=broad-except
      # Reading raises TF's OpErrors, IndexError, ValueError, ...; a file
      # that does not read back is the cause unless every tensor reads.
      problem = export_verify.variables_problem(checkpoint_path)
      if problem is not None:
        raise export_errors.CorruptExportError(
            '{}: {}.'.format(checkpoint_path, problem)
        ) from e
      if isinstance(e, ValueError):
        raise
      raise export_errors.CorruptExportError(
          '{}: cannot read the variables ({}).'.format(
              checkpoint_path, export_errors.one_line(e)
          )
      ) from e
  raise ValueError(
      'The variables in {} do not match the loaded export: {}'.format(
          checkpoint_path, ' / '.join(errors)
      )
  )


class _Field(object):
  """One leaf of a spec nest: where it is, its shape and dtype."""

  __slots__ = ('label', 'path', 'shape', 'ndim', 'dtype', 'spec')

  def __init__(self, label: Text, path: Text, spec: array_spec.ArraySpec):
    self.label = label
    self.path = path
    self.spec = spec
    self.shape = tuple(spec.shape)
    self.ndim = len(self.shape)
    self.dtype = np.dtype(spec.dtype)

  @property
  def where(self) -> Text:
    return export_contract.joined(self.label, self.path)

  def describe(self) -> Text:
    return (
        'shape {} (optionally with a leading batch dimension) and dtype {}'
        .format(self.shape, self.dtype.name)
    )


def _fields(label: Text, spec: types.NestedArraySpec) -> List[_Field]:
  return [
      _Field(label, path, leaf)
      for path, leaf in nest_utils.flatten_with_joined_paths(spec)
  ]


def _match_names(
    what: Text,
    available: Dict[Text, Any],
    fields: Sequence[_Field],
    candidates: Sequence[Sequence[Text]],
) -> List[Text]:
  """Maps every field to one key of `available`, using candidate names.

  Args:
    what: Description for errors.
    available: Signature keys -> TensorSpec (whose `name` also matches).
    fields: The fields to map, in order.
    candidates: For each field, the names it may have, best first.

  Returns:
    The signature key of each field.

  Raises:
    ValueError: If the names cannot be mapped one to one.
  """
  by_name = {}
  for key, spec in available.items():
    by_name.setdefault(key, key)
    if getattr(spec, 'name', None):
      by_name.setdefault(spec.name, key)
      by_name.setdefault(export_contract.signature_key(spec.name), key)
  keys = []
  for field, names in zip(fields, candidates):
    key = next((by_name[n] for n in names if n and n in by_name), None)
    if key is None:
      raise ValueError(
          'Cannot find {} in the {} (tried names {}; the signature has {}). '
          'Was the export written by PolicySaver?'.format(
              field.where, what, [n for n in names if n], sorted(available)
          )
      )
    keys.append(key)
  if len(set(keys)) != len(keys) or set(keys) != set(available):
    raise ValueError(
        'The {} {} do not map one to one to the policy fields {} ({}).'.format(
            what,
            sorted(available),
            [f.where for f in fields],
            keys,
        )
    )
  return keys


def _input_candidates(field: _Field) -> List[Text]:
  if field.label == 'time_step':
    return export_contract.time_step_names(field.path, field.spec.name)
  return export_contract.state_names(field.path, field.spec.name)


def _output_candidates(field: _Field) -> List[Text]:
  if field.label == 'policy_state':
    return export_contract.state_names(field.path, field.spec.name)
  return export_contract.output_names(field.label, field.path,
                                      field.spec.name)


def _outputs_equal(first: Sequence[Any], second: Sequence[Any]) -> bool:
  for a, b in zip(first, second):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
      return False
    if a.dtype.kind in 'fc':
      if not np.array_equal(a, b, equal_nan=True):
        return False
    elif not np.array_equal(a, b):
      return False
  return True


def _fast_arrays(
    leaves: Sequence[Any], checks: Sequence[Tuple[np.dtype, Tuple[int, ...]]]
) -> Optional[Tuple[List[np.ndarray], int, int]]:
  """Batches `leaves` if all are ndarrays of exactly the expected dtype/shape.

  The per-step fast path: no casts, no error messages. Anything else returns
  None, and the caller takes the validating path.

  Args:
    leaves: Flattened arrays.
    checks: `(dtype, shape)` per leaf.

  Returns:
    `(arrays with a batch dimension, outer dims (0 or 1), batch size)`, or
    None.
  """
  if len(leaves) != len(checks):
    return None
  arrays = []
  outer = -1
  batch = 1
  for leaf, (dtype, shape) in zip(leaves, checks):
    if type(leaf) is not np.ndarray or leaf.dtype != dtype:  # pylint: disable=unidiomatic-typecheck
      return None
    leaf_shape = leaf.shape
    if leaf_shape == shape:
      if outer == 1:
        return None
      outer = 0
      arrays.append(leaf[None])
    elif leaf_shape[1:] == shape and len(leaf_shape) == len(shape) + 1:
      if outer == 0 or (outer == 1 and leaf_shape[0] != batch):
        return None
      outer = 1
      batch = leaf_shape[0]
      arrays.append(leaf)
    else:
      return None
  return arrays, max(outer, 0), batch


def _describe_value(value: Any, limit: int = 8) -> Text:
  """A short one-line description of a value's type and structure."""

  def names(items):
    items = [str(i) for i in items]
    shown = ', '.join(items[:limit])
    return shown + (', ...' if len(items) > limit else '')

  if isinstance(value, dict):
    return 'a {} (keys {})'.format(
        type(value).__name__, names(sorted(value, key=str))
    )
  if isinstance(value, tuple) and hasattr(value, '_fields'):
    return 'a {} (fields {})'.format(type(value).__name__,
                                     names(value._fields))
  if isinstance(value, (tuple, list)):
    return 'a {} of {} items'.format(type(value).__name__, len(value))
  if isinstance(value, (np.ndarray, np.generic, tf.Tensor)):
    return 'a {} of shape {} and dtype {}'.format(
        type(value).__name__, tuple(value.shape),
        tf.dtypes.as_dtype(value.dtype).name,
    )
  return 'a {}'.format(type(value).__name__)


@dataclasses.dataclass(frozen=True)
class _ActionSignature:
  """What the runtime needs of an export's signatures.

  Read from `saved_model.pb` (no eager load) or from the loaded object.

  Attributes:
    inputs: The flat `action` signature's inputs, `{key: tf.TensorSpec}`.
    outputs: Its outputs, `{key: spec or tensor}`.
    deterministic: Whether `action` has no random or stateful ops.
    initial_state_takes_batch_size: Whether `get_initial_state` takes one.
  """

  inputs: Dict[Text, tf.TensorSpec]
  outputs: Dict[Text, Any]
  deterministic: bool
  initial_state_takes_batch_size: bool

  @classmethod
  def from_saved_model(cls, proto: Any) -> '_ActionSignature':
    """From a parsed `saved_model.pb`.

    Raises:
      ValueError: It has no serving graph or no `action` signature.
    """
    graphs = [m for m in proto.meta_graphs
              if tf.saved_model.SERVING in m.meta_info_def.tags]
    if not graphs or _ACTION_SIGNATURE not in graphs[0].signature_def:
      raise ValueError('no serving graph with an {!r} signature'.format(
          _ACTION_SIGNATURE))
    meta_graph = graphs[0]

    def specs(infos, keyed):
      # Keyed and named as the loaded signature's: its input keys are
      # argument names (`export_contract.signature_key`), its spec names the keys.
      return {keyed(key): tf.TensorSpec(tf.TensorShape(info.tensor_shape),
                                        tf.as_dtype(info.dtype), name=key)
              for key, info in infos.items()}

    action = meta_graph.signature_def[_ACTION_SIGNATURE]
    initial_state = meta_graph.signature_def.get(_INITIAL_STATE_SIGNATURE)
    return cls(
        inputs=specs(action.inputs, export_contract.signature_key),
        outputs=specs(action.outputs, lambda key: key),
        deterministic=export_equivalence.is_deterministic_signature(
            meta_graph, _ACTION_SIGNATURE),
        initial_state_takes_batch_size=bool(
            initial_state is not None and initial_state.inputs),
    )

  @classmethod
  def from_loaded(cls, loaded: Any, export_dir: Text) -> '_ActionSignature':
    """From the object `tf.saved_model.load` returned.

    Raises:
      ValueError: It has no `action` signature.
    """
    signatures = loaded.signatures
    if _ACTION_SIGNATURE not in signatures:
      raise ValueError(
          'The export {} has no {!r} signature (it has {}).'.format(
              export_dir, _ACTION_SIGNATURE, sorted(signatures)))
    action = signatures[_ACTION_SIGNATURE]
    initial_state = signatures.get(_INITIAL_STATE_SIGNATURE)
    return cls(
        inputs=action.structured_input_signature[1],
        outputs=action.structured_outputs,
        deterministic=export_equivalence.is_deterministic(action),
        initial_state_takes_batch_size=bool(
            initial_state is not None
            and initial_state.structured_input_signature[1]),
    )


class SavedPolicy(py_policy.PyPolicy):
  """A `PyPolicy` running an export written by `PolicySaver.save`.

  Example:

  ```python
  policy = saved_policy.SavedPolicy('/exports/greedy_policy')
  driver = py_driver.PyDriver(env, policy, observers, max_steps=100)
  time_step, state = driver.run(env.reset(), policy.get_initial_state(1))
  policy.update_from_directory('/exports/checkpoints')  # Cheap if unchanged.
  ```

  Time steps may be unbatched (each field shaped like its spec) or batched
  (one leading batch dimension on every field); actions and info come back
  the same way. The policy state comes back batched like the state passed in.
  Calls are not thread-safe.
  """

  def __init__(
      self,
      export_dir: Text,
      checkpoint_path: Optional[Text] = None,
      backend: Text = DEFAULT_BACKEND,
      num_threads: Optional[int] = 1,
  ):
    """Loads the export.

    Args:
      export_dir: A directory written by `PolicySaver.save` (any
        `tf.io.gfile` path).
      checkpoint_path: Optional directory written by `PolicySaver.save` or
        `save_checkpoint` whose variables replace the export's.
      backend: `'auto'`, `'saved_model'`, `'tflite'` or `'onnxruntime'` (see
        module docstring).
      num_threads: Threads of the TFLite interpreter and of TensorFlow's
        intra-op pool for the SavedModel backend (None: their defaults). One
        suits small policies stepped from one thread.

    Raises:
      ExportNotFoundError: `export_dir` or `checkpoint_path` does not exist.
      NotAnExportError: It is not a (complete) export or checkpoint.
      ManifestMismatchError: A file does not match the integrity manifest.
      CorruptExportError: A file is truncated or garbled.
      ExportSignatureError: The export's signatures do not match its specs
        (also a `ValueError`).
      ValueError: If `backend` is unknown, the checkpoint's variables do not
        match the export, or `backend='tflite'` (`'onnxruntime'`) and the
        `action` signature cannot run on TFLite (onnxruntime) here.
    """
    if backend not in BACKENDS:
      raise ValueError(
          'backend must be one of {}, got {!r}.'.format(BACKENDS, backend)
      )
    self._init_state(export_dir, backend, num_threads)
    specs, signature = self._read_current_version()
    super(SavedPolicy, self).__init__(
        specs['time_step_spec'],
        specs['action_spec'],
        specs['policy_state_spec'],
        specs['info_spec'],
    )
    self._collect_data_spec = specs['collect_data_spec']
    try:
      self._setup_signatures(
          signature or _ActionSignature.from_loaded(self._loaded, export_dir))
    except ValueError as e:
      raise export_errors.ExportSignatureError(
          '{}: {}'.format(export_dir, ' '.join(str(e).split()))
      ) from e
    if checkpoint_path:
      self._restore_variables(checkpoint_path)
    self._record = export_equivalence.read(self._version_dir)
    self._backend = self._choose_backend()

  # ---------------------------------------------------------------------------
  # Setup.

  def _init_state(self, export_dir: Text, backend: Text,
                  num_threads: Optional[int]) -> None:
    """The attributes every later step reads, before any is set up."""
    self._requested_backend = backend
    self._num_threads = num_threads
    self._export_dir = export_dir
    self._loaded_object = None
    self._eager_source = None
    self._model_kinds = None
    # Whether the variables differ from the export's (so a stored or
    # converted-from-disk TFLite model and the session need updating).
    self._variables_restored = False
    self._restored_prefix = None
    self._sm_backend = None
    self._train_step_from_last_restored_checkpoint_path = None
    self._last_update_key = None

  def _read_current_version(
      self) -> Tuple[Dict[Text, Any], Optional['_ActionSignature']]:
    """Checks the current version; its specs and `action` signature.

    Every file of one version: the one current now (see export_publish),
    checked. The eager object (`tf.saved_model.load`, most of upstream's
    construction) is loaded only when something needs it (`_loaded`): the
    backends run from the files (a TF1 session, a stored model).

    Returns:
      `(specs, signature)`; the signature is None when it must be read from
      the loaded object.
    """
    proto, version = export_verify.check_current(self._export_dir)
    self._version = version
    self._version_dir = version.path
    self._version_id = version.version_id
    try:
      return (load_specs(self._version_dir),
              _ActionSignature.from_saved_model(proto))
    except (export_errors.ExportError, ValueError, KeyError) as e:
      # E.g. no policy_specs.pbtxt: what the loaded object says.
      logging.info('Reading %s from its loaded object (%s).',
                   self._export_dir, export_errors.one_line(e))
      return load_specs(self._version_dir, self._loaded), None

  def _setup_signatures(self, signature: '_ActionSignature') -> None:
    """Resolves the flat `action` signature's names once."""
    self._ts_fields = _fields('time_step', self.time_step_spec)
    self._state_fields = _fields('policy_state', self.policy_state_spec)
    self._action_fields = _fields(export_contract.ACTION_PREFIX,
                                  self.action_spec)
    self._info_fields = _fields(export_contract.INFO_PREFIX, self.info_spec)
    input_specs = signature.inputs
    input_fields = self._ts_fields + self._state_fields
    self._input_keys = _match_names(
        'inputs of the action signature',
        input_specs,
        input_fields,
        [_input_candidates(f) for f in input_fields],
    )
    self._input_specs = [input_specs[k] for k in self._input_keys]
    output_specs = signature.outputs
    output_fields = self._action_fields + self._state_fields + self._info_fields
    self._output_keys = _match_names(
        'outputs of the action signature',
        output_specs,
        output_fields,
        [_output_candidates(f) for f in output_fields],
    )
    batch_sizes = set()
    for field, spec in zip(input_fields, self._input_specs):
      shape = spec.shape
      if (
          shape.rank != field.ndim + 1
          or tuple(shape.as_list()[1:]) != field.shape
          or spec.dtype.as_numpy_dtype != field.dtype
      ):
        raise ValueError(
            'Action signature input {!r} is {}, which does not match {} of '
            'the export\'s specs ({}).'.format(
                spec.name, spec, field.where, field.describe()
            )
        )
      batch_sizes.add(shape.as_list()[0])
    fixed = batch_sizes - {None}
    self._fixed_batch_size = fixed.pop() if len(fixed) == 1 else None
    self._ts_checks = tuple((f.dtype, f.shape) for f in self._ts_fields)
    self._state_checks = tuple(
        (f.dtype, f.shape) for f in self._state_fields
    )
    self._time_step_is_flat = isinstance(
        self.time_step_spec, ts.TimeStep
    ) and not any(tf.nest.is_nested(spec) for spec in self.time_step_spec)
    self._num_ts = len(self._ts_fields)
    self._num_state = len(self._state_fields)
    self._num_action = len(self._action_fields)
    self._action_is_leaf = not tf.nest.is_nested(self.action_spec)
    self._info_is_empty = not self._info_fields
    self._state_is_empty = not self._state_fields
    self._deterministic = signature.deterministic
    self._initial_state_takes_batch_size = (
        signature.initial_state_takes_batch_size)

  def _saved_model_backend(self) -> Any:
    """The SavedModel backend, built once per policy."""
    if self._sm_backend is None:
      try:
        backend = backends.SessionBackend(
            self._version_dir,
            self._input_specs,
            self._input_keys,
            self._output_keys,
            self._num_threads,
        )
        if self._variables_restored:
          backend.sync(self._loaded, self._restored_prefix)
        try:
          # What the session's restore op reads, read while the version's
          # files are certainly there (see `_matches_session`).
          self._session_keys = _tensor_kinds(_checkpoint_reader(
              export_contract.variables_prefix(self._version_dir)))
        except (tf.errors.OpError, ValueError) as e:
          logging.info('Updates of %s restore the eager copy too: %s',
                       self._export_dir, export_errors.one_line(e))
      except Exception as e:  # pylint: disable=broad-except
        # E.g. an export the TF1 loader cannot read; TF errors share no type.
        logging.warning(
            'Running %s through its loaded signature (slower): the session '
            'loader failed with %s: %s', self._export_dir, type(e).__name__, e,
        )
        backend = backends.SignatureBackend(
            self._action_signature, self._input_keys, self._output_keys
        )
      self._sm_backend = backend
    return self._sm_backend

  def _make_tflite_backend(self) -> backends.TFLiteBackend:
    """Builds the TFLite backend from a stored or converted model."""
    if not self._variables_restored:
      stored = os.path.join(
          self._version_dir, tf.saved_model.ASSETS_DIRECTORY,
          TFLITE_MODEL_FILENAME
      )
      if tf.io.gfile.exists(stored):
        with tf.io.gfile.GFile(stored, 'rb') as f:
          model = f.read()
        logging.info('Using the stored TFLite model %s.', stored)
        return backends.TFLiteBackend(model, self._input_specs, self._input_keys,
                              self._output_keys, self._num_threads)
    model = export_conversion.tflite_model_with_weights(
        self._loaded, self._action_signature)
    return backends.TFLiteBackend(model, self._input_specs, self._input_keys,
                          self._output_keys, self._num_threads)

  def _make_onnxruntime_backend(self) -> backends.ONNXRuntimeBackend:
    """Converts the `action` signature to ONNX and opens a session."""
    model, report = export_conversion.convert_action_to_onnx(
        self._loaded, _ACTION_SIGNATURE)
    return backends.ONNXRuntimeBackend(
        model, report.weight_names, self._input_keys, self._output_keys,
        self._num_threads, [v.numpy() for v in self._loaded.model_variables])

  def _onnxruntime_is_close(self, backend: backends.ONNXRuntimeBackend) -> bool:
    """Whether onnxruntime gives the SavedModel's outputs on probe inputs.

    Float outputs may differ by rounding (other kernels); other outputs
    (e.g. greedy actions) must be equal.

    Args:
      backend: The backend to check.

    Returns:
      True if they agree.
    """
    reference = self._saved_model_backend()
    try:
      for arrays in self._probe_inputs():
        size = arrays[0].shape[0]
        for want, got in zip(reference.run(arrays, size),
                             backend.run(arrays, size)):
          want, got = np.asarray(want), np.asarray(got)
          if want.shape != got.shape or want.dtype != got.dtype:
            return False
          if want.dtype.kind in 'fc':
            if not np.allclose(want, got, rtol=1e-4, atol=1e-5,
                               equal_nan=True):
              return False
          elif not np.array_equal(want, got):
            return False
    except Exception as e:  # pylint: disable=broad-except
      # TF and onnxruntime errors share no public type.
      logging.info('Probing the onnxruntime backend failed: %s', e)
      return False
    return True

  def _probe_inputs(self) -> List[List[np.ndarray]]:
    """Batches of inputs sampled from the specs, for exactness checks."""
    rng = np.random.RandomState(_PROBE_SEED)
    sizes = (
        [self._fixed_batch_size] if self._fixed_batch_size else [1, 5]
    )
    probes = []
    for size in sizes:
      arrays = []
      for field in self._ts_fields + self._state_fields:
        if field.path == 'step_type' and field.label == 'time_step':
          value = rng.randint(0, 3, size=(size,)).astype(field.dtype)
        elif field.dtype.kind == 'f':
          value = rng.uniform(-2.0, 2.0, size=(size,) + field.shape).astype(
              field.dtype
          )
        else:
          value = array_spec.sample_spec_nest(
              field.spec, rng, outer_dims=(size,)
          )
          value = np.asarray(value, dtype=field.dtype)
        arrays.append(value)
      probes.append(arrays)
    return probes

  def _tflite_is_exact(self, backend: backends.TFLiteBackend) -> bool:
    reference = self._saved_model_backend()
    try:
      for arrays in self._probe_inputs():
        size = arrays[0].shape[0]
        if not _outputs_equal(
            reference.run(arrays, size), backend.run(arrays, size)
        ):
          return False
    except Exception as e:  # pylint: disable=broad-except
      # E.g. a probe outside what the network accepts: no evidence of
      # exactness. TF and TFLite runtime errors share no public type.
      logging.info('Probing the TFLite backend failed: %s', e)
      return False
    return True

  def _stored_backend(self) -> Any:
    """A backend on a converted model the export's record vouches for.

    Exports saved with `PolicySaver(converted_formats=...)` carry converted
    models and a record of their equivalence (`export_equivalence`): `'auto'`
    takes the first equivalent one (`saved_policy_backends.stored_formats`;
    else the SavedModel),
    `'tflite'` and `'onnxruntime'` their stored model, with no conversion and
    no probe. A model whose weights are not the version's (a checkpoint
    carries the models of the last full save) is given the version's.

    Returns:
      The backend, or None when the record has nothing for the request (the
      caller then converts and probes at load, as for exports without one).
    """
    record = self._record
    requested = self._requested_backend
    if record is None or requested == BACKEND_SAVED_MODEL:
      return None
    formats = backends.stored_formats(requested, record)
    if requested == BACKEND_AUTO:
      if not formats:
        logging.info('No converted model of %s is equivalent (%s); using the '
                     'SavedModel backend.', self._export_dir, '; '.join(
                         '{}: {}'.format(k, v.detail)
                         for k, v in sorted(record.formats.items())))
        return self._saved_model_backend()
    for format_name in formats:
      try:
        return self._open_stored(format_name)
      except Exception as e:  # pylint: disable=broad-except
        # TFLite and onnxruntime errors share no public type.
        logging.warning('The stored %s model of %s does not run here (%s); '
                        'converting instead.', format_name, self._export_dir,
                        export_errors.one_line(e))
    return None

  def _open_stored(self, format_name: Text) -> Any:
    """Opens the stored model `format_name` with the version's weights."""
    entry = self._record.formats[format_name]
    with tf.io.gfile.GFile(
        os.path.join(self._version_dir, entry.file), 'rb') as f:
      model = f.read()
    current = (
        not self._variables_restored and self._record.weights_digest ==
        export_equivalence.weights_digest(self._version_dir))
    # A stochastic model converted with its noise as inputs: the backend
    # draws it, seeded with the saver's seed when it had one.
    noise = entry.noise()
    if format_name == export_equivalence.ONNX:
      return backends.ONNXRuntimeBackend(
          model, entry.weight_names or (), self._input_keys,
          self._output_keys, self._num_threads,
          self._served_model_weights(),
          noise=noise, seed=entry.noise_seed)
    backend = backends.TFLiteBackend(model, self._input_specs, self._input_keys,
                             self._output_keys, self._num_threads,
                             noise=noise, seed=entry.noise_seed)
    if not current:
      backend.set_weights(self._served_model_weights())
    return backend

  def _choose_backend(self):
    """Builds the backend the caller asked for."""
    requested = self._requested_backend
    if requested == BACKEND_SAVED_MODEL:
      return self._saved_model_backend()
    stored = self._stored_backend()
    if stored is not None:
      return stored
    if requested == BACKEND_ONNXRUNTIME:
      try:
        backend = self._make_onnxruntime_backend()
      except Exception as e:  # pylint: disable=broad-except
        # Converter and runtime errors have no public common type.
        raise ValueError(
            'The action signature of {} cannot run on onnxruntime here: {}: '
            '{}'.format(self._export_dir, type(e).__name__,
                        export_errors.one_line(e))) from e
      if self._deterministic and not self._onnxruntime_is_close(backend):
        logging.warning(
            'onnxruntime outputs of %s differ from the SavedModel outputs on '
            'probe inputs beyond float rounding.', self._export_dir)
      return backend
    if requested == BACKEND_AUTO and not self._deterministic:
      logging.info(
          'Policy %s is stochastic or stateful: using the SavedModel backend.',
          self._export_dir,
      )
      return self._saved_model_backend()
    try:
      backend = self._make_tflite_backend()
    except Exception as e:  # pylint: disable=broad-except
      # Converter and interpreter errors have no public common type.
      if requested == BACKEND_TFLITE:
        raise ValueError(
            'The action signature of {} cannot run on TFLite here: {}: '
            '{}'.format(self._export_dir, type(e).__name__, e)
        ) from e
      logging.info(
          'TFLite unavailable for %s (%s); using the SavedModel backend.',
          self._export_dir, e,
      )
      return self._saved_model_backend()
    if self._deterministic and not self._tflite_is_exact(backend):
      if requested == BACKEND_AUTO:
        logging.info(
            'TFLite does not reproduce the SavedModel outputs of %s exactly; '
            'using the SavedModel backend.', self._export_dir,
        )
        return self._saved_model_backend()
      logging.warning(
          'TFLite outputs of %s differ from the SavedModel outputs on probe '
          'inputs (e.g. float rounding).', self._export_dir,
      )
    return backend

  # ---------------------------------------------------------------------------
  # Properties.

  @property
  def backend(self) -> Text:
    """The backend in use: `'saved_model'`, `'tflite'` or `'onnxruntime'`."""
    return self._backend.name

  @property
  def export_dir(self) -> Text:
    return self._export_dir

  @property
  def version(self) -> Optional[Text]:
    """Which weights are served: the version id they were read from.

    The version of the export at load, or of the last checkpoint or export
    read by an update (`export_publish.Version.version_id`; it changes with
    every publish). None for exports and checkpoints without versions (e.g.
    upstream's). `get_train_step()` gives their train step.
    """
    return self._version_id

  @property
  def is_deterministic(self) -> bool:
    """True if the `action` function has no random or stateful ops."""
    return self._deterministic

  @property
  def fixed_batch_size(self) -> Optional[int]:
    """The batch size the export was saved with, or None if any."""
    return self._fixed_batch_size

  @property
  def loaded_model(self) -> Any:
    """The object returned by `tf.saved_model.load`."""
    return self._loaded

  # ---------------------------------------------------------------------------
  # PyPolicy.

  def _get_initial_state(self, batch_size: Optional[int]) -> Any:
    if self._state_is_empty:
      return ()
    want = 1 if batch_size is None else int(batch_size)
    leaves = self._initial_state_leaves(self._fixed_batch_size or want)
    have = leaves[0].shape[0]
    if have != want:
      if not all(np.all(leaf == leaf[:1]) for leaf in leaves):
        raise ValueError(
            'The export {} was saved with batch size {} and its initial state '
            'differs between batch entries; cannot make one of batch size '
            '{}.'.format(self._export_dir, have, batch_size)
        )
      leaves = [np.repeat(leaf[:1], want, axis=0) for leaf in leaves]
    if batch_size is None:
      leaves = [leaf[0] for leaf in leaves]
    return tf.nest.pack_sequence_as(self.policy_state_spec, leaves)

  def _initial_state_leaves(self, batch_size: int) -> List[np.ndarray]:
    """The export's `get_initial_state(batch_size)`, flattened."""
    session = self._sm_backend
    if self._loaded_object is None and isinstance(session, backends.SessionBackend):
      # The serving session has the signature: no eager load.
      try:
        outputs = session.call(
            _INITIAL_STATE_SIGNATURE,
            {export_contract.BATCH_SIZE_KEY: np.int32(batch_size)}
            if self._initial_state_takes_batch_size else {})
        keys = _match_names(
            'outputs of the get_initial_state signature', outputs,
            self._state_fields,
            [_output_candidates(f) for f in self._state_fields])
        return [np.asarray(outputs[k]) for k in keys]
      except (KeyError, ValueError, tf.errors.OpError) as e:
        logging.info('get_initial_state of %s through the loaded object: %s',
                     self._export_dir, export_errors.one_line(e))
    fn = self._loaded.get_initial_state
    if self._initial_state_takes_batch_size:
      state = fn(tf.constant(batch_size, tf.int32))
    else:
      state = fn()
    return [np.asarray(t) for t in tf.nest.flatten(state)]

  def _field_error(self, field: _Field, value: Any, reason: Text = ''):
    shape = getattr(value, 'shape', None)
    dtype = getattr(value, 'dtype', None)
    got = 'shape {} and dtype {}'.format(
        tuple(shape) if shape is not None else None,
        np.dtype(dtype).name if dtype is not None else type(value).__name__,
    )
    return export_errors.TimeStepMismatchError(
        '{} does not match the policy spec: expected {}; got {}{}.'.format(
            field.where, field.describe(), got, reason
        )
    )

  def _convert(
      self, fields: Sequence[_Field], leaves: Sequence[Any], label: Text,
      spec: Any, value: Any
  ) -> Tuple[List[np.ndarray], int, int]:
    """Validates `leaves`; returns (batched arrays, outer dims, batch size)."""
    if len(leaves) != len(fields):
      del value  # Its repr can span many lines.
      raise export_errors.TimeStepMismatchError(
          '{} does not have the structure of the policy spec: expected {} '
          'fields ({}), got {}.'.format(
              label, len(fields), ', '.join(f.where for f in fields),
              len(leaves),
          )
      )
    arrays = []
    outer = None
    batch = 1
    for field, leaf in zip(fields, leaves):
      array = leaf if type(leaf) is np.ndarray else np.asarray(leaf)  # pylint: disable=unidiomatic-typecheck
      if array.dtype != field.dtype:
        if not np.can_cast(array.dtype, field.dtype, casting='same_kind'):
          raise self._field_error(field, array)
        array = array.astype(field.dtype)
      dims = array.ndim - field.ndim
      if (dims != 0 and dims != 1) or array.shape[dims:] != field.shape:
        raise self._field_error(field, array)
      if outer is None:
        outer = dims
        if dims:
          batch = array.shape[0]
      elif dims != outer or (dims and array.shape[0] != batch):
        raise self._field_error(
            field, array,
            ' (the batch dimensions of {} fields differ)'.format(label),
        )
      arrays.append(array if dims else array[None])
    return arrays, outer or 0, batch

  def _run(self, arrays: List[np.ndarray], batch: int) -> List[Any]:
    fixed = self._fixed_batch_size
    if fixed is None or batch == fixed:
      return self._backend.run(arrays, batch)
    # Exports with a fixed batch size: pad (repeating the last row) or split.
    parts = []
    for start in range(0, batch, fixed):
      chunk = [a[start:start + fixed] for a in arrays]
      rows = chunk[0].shape[0]
      if rows < fixed:
        chunk = [
            np.concatenate([c, np.repeat(c[-1:], fixed - rows, axis=0)])
            for c in chunk
        ]
      outputs = self._backend.run(chunk, fixed)
      parts.append([np.asarray(o)[:rows] for o in outputs])
    return [np.concatenate(p) for p in zip(*parts)]

  def _action(
      self,
      time_step: ts.TimeStep,
      policy_state: types.NestedArray,
      seed: Optional[types.Seed] = None,
  ) -> policy_step.PolicyStep:
    if seed is not None:
      raise ValueError(
          'An exported policy cannot take a per-call seed; pass `seed` to '
          'PolicySaver when exporting instead.'
      )
    if self._time_step_is_flat and type(time_step) is ts.TimeStep:  # pylint: disable=unidiomatic-typecheck
      leaves = list(time_step)  # The fields are the leaves, in nest order.
    else:
      if not isinstance(time_step, ts.TimeStep) and isinstance(
          self.time_step_spec, ts.TimeStep
      ):
        # Flattening e.g. a dict would pair its (sorted) values with the
        # wrong fields and blame one of them.
        raise export_errors.TimeStepMismatchError(
            'time_step does not have the structure of the policy spec: '
            'expected a TimeStep, got {}.'.format(_describe_value(time_step))
        )
      leaves = tf.nest.flatten(time_step)
    converted = _fast_arrays(leaves, self._ts_checks)
    if converted is None:
      converted = self._convert(
          self._ts_fields, leaves, 'time_step', self.time_step_spec, time_step
      )
    arrays, ts_outer, batch = converted
    state_outer = 0
    if not self._state_is_empty:
      if policy_state is None or (
          isinstance(policy_state, (tuple, list)) and not policy_state
      ):
        raise ValueError(
            'This policy has a state ({}); pass policy_state, e.g. '
            'get_initial_state(batch_size).'.format(self.policy_state_spec)
        )
      leaves = tf.nest.flatten(policy_state)
      converted = _fast_arrays(leaves, self._state_checks)
      if converted is None:
        converted = self._convert(
            self._state_fields, leaves, 'policy_state',
            self.policy_state_spec, policy_state,
        )
      state_arrays, state_outer, state_batch = converted
      if state_batch != batch:
        raise export_errors.TimeStepMismatchError(
            'policy_state has batch size {} but time_step has batch size '
            '{}.'.format(state_batch, batch)
        )
      arrays.extend(state_arrays)
    outputs = self._run(arrays, batch)
    n = self._num_action
    if ts_outer:
      action_leaves = outputs[:n]
      info_leaves = outputs[n + self._num_state:]
    else:
      action_leaves = [o.reshape(o.shape[1:]) for o in outputs[:n]]
      info_leaves = [
          o.reshape(o.shape[1:]) for o in outputs[n + self._num_state:]
      ]
    if self._action_is_leaf:
      action = action_leaves[0]
    else:
      action = tf.nest.pack_sequence_as(self.action_spec, action_leaves)
    if self._info_is_empty:
      info = ()
    else:
      info = tf.nest.pack_sequence_as(self.info_spec, info_leaves)
    if self._state_is_empty:
      state = ()
    else:
      state_leaves = outputs[n:n + self._num_state]
      if not state_outer:
        state_leaves = [s.reshape(s.shape[1:]) for s in state_leaves]
      state = tf.nest.pack_sequence_as(self.policy_state_spec, state_leaves)
    return policy_step.PolicyStep(action, state, info)

  # ---------------------------------------------------------------------------
  # Variables, train step, metadata.

  def variables(self) -> Sequence[tf.Variable]:
    """The exported `model_variables`, which the next `action` follows.

    The caller may assign new values in place (as
    `ReverbVariableContainer.update(policy.variables())` does), at any time
    from now on: the backend runs from then on the `action` signature of the
    loaded export itself, which reads these variables (a TFLite model, an
    onnxruntime session or a TensorFlow session holds its own copy of the
    weights and could serve old ones). `update_from_checkpoint` keeps the
    fast backend.

    Returns:
      The variables.
    """
    if self._backend.name != BACKEND_SAVED_MODEL or not isinstance(
        self._backend, backends.SignatureBackend):
      logging.info('Serving %s from its loaded signature from now on: its '
                   'variables may be assigned in place.', self._export_dir)
      self._backend = backends.SignatureBackend(
          self._action_signature, self._input_keys, self._output_keys)
      self._sm_backend = self._backend
      self._warm_up()
    return self._loaded.model_variables

  def _warm_up(self) -> None:
    """Runs the backend once: the first run of a function sets it up."""
    size = self._fixed_batch_size or 1
    arrays = [np.zeros((size,) + tuple(spec.shape.as_list()[1:]),
                       spec.dtype.as_numpy_dtype)
              for spec in self._input_specs]
    try:
      self._backend.run(arrays, size)
    except Exception as e:  # pylint: disable=broad-except
      # Zeros need not be valid inputs; the first real step pays instead.
      logging.info('Warm-up of %s failed: %s', self._export_dir, e)

  def get_train_step(self) -> types.Int:
    """The train step stored in the export (or the restored checkpoint)."""
    session = self._sm_backend
    if self._loaded_object is None and isinstance(session, backends.SessionBackend):
      try:
        outputs = session.call(export_contract.GET_TRAIN_STEP, {})
        if len(outputs) == 1:
          return next(iter(outputs.values()))
      except (KeyError, tf.errors.OpError):
        pass  # E.g. an export without that signature: as upstream does.
    return self._loaded.get_train_step().numpy()

  def get_train_step_from_last_restored_checkpoint_path(self) -> Optional[int]:
    """The train step parsed from the last restored checkpoint's path."""
    return self._train_step_from_last_restored_checkpoint_path

  def get_metadata(self) -> Dict[Text, Any]:
    """The exported metadata, `{name: tf.Tensor}` as upstream returns it."""
    return self._loaded.get_metadata()

  def _restore_variables(
      self, checkpoint_path: Text, keep_on_error: bool = False
  ) -> None:
    """Reads a checkpoint or export's variables into the loaded object.

    Args:
      checkpoint_path: As for `restore_checkpoint`.
      keep_on_error: Whether to put the current values back if reading
        fails part way (a garbled checkpoint without a manifest).
    """
    if not keep_on_error:
      version = restore_checkpoint(self._loaded, checkpoint_path)
    else:
      backup = [(v, v.numpy()) for v in self._restorable_variables()]
      try:
        version = restore_checkpoint(self._loaded, checkpoint_path)
      except Exception:
        for variable, value in backup:
          variable.assign(value)
        raise
    self._variables_restored = True
    self._version_id = version.version_id
    self._restored_prefix = export_contract.variables_prefix(version.path)
    self._train_step_from_last_restored_checkpoint_path = (
        _train_step_from_path(checkpoint_path)
    )
    logging.info(
        'Restored %s (train step from path: %s).',
        checkpoint_path, self._train_step_from_last_restored_checkpoint_path,
    )

  def _restorable_variables(self) -> List[tf.Variable]:
    """Every variable a checkpoint of the policy can restore.

    The exported `model_variables`, `train_step` and `metadata` (as both
    savers export them); copies of their values are the backup of an update
    (a numpy copy costs a fraction of writing a checkpoint).

    Returns:
      The variables.
    """
    loaded = self._loaded
    variables = list(loaded.model_variables)
    train_step = getattr(loaded, 'train_step', None)
    if isinstance(train_step, tf.Variable):
      variables.append(train_step)
    metadata = getattr(loaded, 'metadata', None)
    if metadata is not None and hasattr(metadata, 'values'):
      variables.extend(v for v in metadata.values()
                       if isinstance(v, tf.Variable))
    return variables

  def update_from_checkpoint(self, checkpoint_path: Text) -> None:
    """Updates the variables from a checkpoint or a full export.

    Args:
      checkpoint_path: A directory passed to `PolicySaver.save_checkpoint` or
        `PolicySaver.save` (reads `<checkpoint_path>/variables/variables`).

    Raises:
      ExportNotFoundError: `checkpoint_path` does not exist.
      NotAnExportError: It is not a complete checkpoint or export.
      ManifestMismatchError: A file does not match its manifest.
      CorruptExportError: A variables file is truncated or garbled.
      ValueError: If the checkpoint does not match the export.
      In every case the policy keeps its previous variables.
    """
    if (self._update_session_only(checkpoint_path) or
        self._update_model_only(checkpoint_path)):
      return
    self._restore_variables(checkpoint_path, keep_on_error=True)
    self._sync_backends(self._restored_prefix)

  def _update_session_only(self, checkpoint_path: Text) -> bool:
    """Restores a checkpoint into the serving session alone, if it can.

    While the TF session serves and nobody holds `variables()`, the eager
    copy of the variables is brought up to date only when something reads it
    (`_loaded`), so an update reads the checkpoint once instead of twice
    (upstream reads it once). This repository's checkpoints and exports carry
    every key the session's restore op reads.

    Args:
      checkpoint_path: As for `update_from_checkpoint`.

    Returns:
      True if done; False if the caller must take the full path (another
      layout, or an error it reports), with the session as it was.

    Raises:
      ExportNotFoundError, NotAnExportError, ManifestMismatchError: As
        `check_checkpoint`, before anything changed.
    """
    session = self._backend
    if not isinstance(session, backends.SessionBackend) or session is not (
        self._sm_backend):
      return False

    def read(version):
      check_checkpoint(version.path)
      prefix = export_contract.variables_prefix(version.path)
      # The restore op assigns without checking shapes: check them first.
      if not self._matches_session(prefix):
        return None
      # One RestoreV2 reads every tensor before any is assigned: a file
      # that fails its CRC32C leaves the session as it was.
      session.restore(prefix)
      return version

    try:
      version = export_publish.read_consistent(checkpoint_path, read)
    except tf.errors.OpError as e:
      logging.info('Restoring %s through the session failed (%s); taking '
                   'the full path.', checkpoint_path, export_errors.one_line(e))
      return False
    if version is None:
      return False
    self._updated_alone(version, checkpoint_path,
                        lambda loaded: _copy_from_session(session, loaded))
    return True

  def _update_model_only(self, checkpoint_path: Text) -> bool:
    """Hands a checkpoint's weights to the TFLite or onnxruntime model alone.

    As `_update_session_only`: the model variables are read from the
    checkpoint once (each tensor's CRC32C checked) and given to the model
    (`set_weights`, no conversion); the eager copy follows when read.

    Args:
      checkpoint_path: As for `update_from_checkpoint`.

    Returns:
      True if done; False if the caller must take the full path, with the
      model as it was.

    Raises:
      ExportNotFoundError, NotAnExportError, ManifestMismatchError: As
        `check_checkpoint`, before anything changed.
    """
    backend = self._backend
    if backend.name not in (BACKEND_TFLITE, BACKEND_ONNXRUNTIME) or not (
        backend.follows_weights):
      return False
    expected = self._model_variable_kinds()

    def read(version):
      check_checkpoint(version.path)
      reader = _checkpoint_reader(export_contract.variables_prefix(version.path))
      found = _tensor_kinds(reader)
      keys = [export_equivalence.MODEL_VARIABLE_KEY.format(i)
              for i in range(len(expected))]
      if any(found.get(k) != kind for k, kind in zip(keys, expected)):
        return None
      return version, [reader.get_tensor(k) for k in keys]

    try:
      result = export_publish.read_consistent(checkpoint_path, read)
    except (tf.errors.OpError, ValueError) as e:
      logging.info('Reading %s for the model failed (%s); taking the full '
                   'path.', checkpoint_path, export_errors.one_line(e))
      return False
    if result is None:
      return False
    version, values = result
    backend.set_weights(values)
    self._updated_alone(
        version, checkpoint_path,
        lambda loaded: _fill_from_version(loaded, version, values))
    return True

  def _updated_alone(self, version: export_publish.Version,
                     checkpoint_path: Text,
                     fill_eager: Callable[[Any], None]) -> None:
    """Notes an update the serving backend took without the eager copy.

    Args:
      version: The version read.
      checkpoint_path: The path the caller gave.
      fill_eager: Brings the eager copy up to date (`_loaded` calls it when
        the copy is next read).
    """
    self._eager_source = fill_eager
    self._variables_restored = True
    self._version_id = version.version_id
    self._restored_prefix = export_contract.variables_prefix(version.path)
    self._train_step_from_last_restored_checkpoint_path = (
        _train_step_from_path(checkpoint_path))

  def _matches_session(self, prefix: Text) -> bool:
    """Whether checkpoint `prefix` has every key of the export's variables
    with the same shape and dtype (what the session's restore op reads)."""
    expected = self.__dict__.get('_session_keys')
    if expected is None:
      return False
    try:
      found = _tensor_kinds(_checkpoint_reader(prefix))
    except (tf.errors.OpError, ValueError):
      return False
    return all(found.get(key) == kind for key, kind in expected.items())

  @property
  def _loaded(self) -> Any:
    """The eager loaded export, its variables as the backend serves them."""
    loaded = self._loaded_object
    if loaded is None:
      loaded = self._loaded_object = self._load_eager()
    fill_eager = self.__dict__.get('_eager_source')
    if fill_eager is not None:
      self._eager_source = None
      fill_eager(loaded)
    return loaded

  @_loaded.setter
  def _loaded(self, loaded: Any) -> None:
    self._loaded_object = loaded

  def _load_eager(self) -> Any:
    """`tf.saved_model.load` of the version served since construction.

    If that version was retired meanwhile (its files are gone), the current
    one is loaded: with a TF session serving, the eager copy then takes the
    session's values (the weights served); otherwise the policy moves to
    that version, backend included.

    Returns:
      The loaded object.
    """
    try:
      return export_verify.load_version(self._version_dir)
    except export_errors.ExportError:
      if not export_publish.is_retired(self._version):
        raise
    loaded, version = export_verify.load_current(self._export_dir)
    logging.info('%s was retired; loaded %s.', self._version_dir,
                 version.path)
    session = self.__dict__.get('_sm_backend')
    if isinstance(session, backends.SessionBackend) and (
        self.__dict__.get('_eager_source') is None):
      self._eager_source = lambda l: _copy_from_session(session, l)
    elif not self._variables_restored:
      self._version, self._version_dir = version, version.path
      self._version_id = version.version_id
      self._loaded_object = loaded
      backend = self.__dict__.get('_backend')
      if backend is not None and backend.name != BACKEND_SAVED_MODEL:
        self._refresh_tflite()
    return loaded

  @property
  def _action_signature(self) -> Any:
    """The loaded `action` signature (loads the eager object)."""
    return self._loaded.signatures[_ACTION_SIGNATURE]

  def _model_variable_kinds(self) -> List[Tuple[Tuple[int, ...], Any]]:
    """`(shape, dtype)` of each model variable, without an eager load."""
    if self.__dict__.get('_model_kinds') is None:
      if self._loaded_object is not None:
        kinds = [(tuple(v.shape.as_list()), v.dtype.base_dtype)
                 for v in self._loaded_object.model_variables]
      else:
        found = _tensor_kinds(_checkpoint_reader(
            export_contract.variables_prefix(self._version_dir)))
        kinds = []
        while export_equivalence.MODEL_VARIABLE_KEY.format(
            len(kinds)) in found:
          kinds.append(found[export_equivalence.MODEL_VARIABLE_KEY.format(
              len(kinds))])
      self._model_kinds = kinds
    return self._model_kinds

  def _served_model_weights(self) -> List[np.ndarray]:
    """The values of the model variables served now, in order."""
    if not self._variables_restored and self._loaded_object is None:
      # The version's own: read from its checkpoint, no eager load.
      return export_equivalence.model_weights(self._version_dir)
    return [v.numpy() for v in self._loaded.model_variables]

  def update_from_values(
      self,
      values: Sequence[np.ndarray],
      version: Optional[Text] = None,
      train_step: Optional[int] = None,
  ) -> None:
    """Serves new weights handed over in memory, e.g. through Ray's object store.

    The weights of an export or checkpoint already read and checked by
    somebody else (`policy_fleet`'s publisher reads each version from
    storage once and shares it with every actor): the backend in use takes
    them as after `update_from_checkpoint` (the TFLite model through its
    `set_weights` signature, no conversion again; the session restores
    them), without any storage read.

    Args:
      values: One array per variable of `loaded_model.model_variables`, in
        that order (e.g. `[v.numpy() for v in other.model_variables]` of
        another load of the same export); read-only arrays are fine.
      version: What `version` reports from now on (the version id the
        values were read from).
      train_step: If given, the new value of the exported train step.

    Raises:
      ValueError: The count, a shape or a dtype does not match the
        variables; the policy keeps its previous weights.
    """
    self.check_values(values)
    backend = self._backend
    if backend.name in (BACKEND_TFLITE, BACKEND_ONNXRUNTIME) and (
        backend.follows_weights):
      # The model takes them; the eager copy follows when read.
      backend.set_weights(values)
      pending_fill = self._eager_source

      def fill_eager(loaded):
        if pending_fill is not None:
          pending_fill(loaded)  # Train step and metadata of earlier ones.
        for variable, value in zip(loaded.model_variables, values):
          variable.assign(value)
        loaded_step = getattr(loaded, 'train_step', None)
        if train_step is not None and isinstance(loaded_step, tf.Variable):
          loaded_step.assign(train_step)

      self._eager_source = fill_eager
      self._variables_restored = True
      self._restored_prefix = None
      self._version_id = version
      return
    for variable, value in zip(self._loaded.model_variables, values):
      variable.assign(value)
    loaded_step = getattr(self._loaded, 'train_step', None)
    if train_step is not None and isinstance(loaded_step, tf.Variable):
      loaded_step.assign(train_step)
    self._variables_restored = True
    self._restored_prefix = None
    self._version_id = version
    self._sync_backends(None, values)

  def check_values(self, values: Sequence[np.ndarray]) -> None:
    """Checks weights for `update_from_values` (nothing is changed).

    Args:
      values: As for `update_from_values`.

    Raises:
      ValueError: The count, a shape or a dtype does not match the model
        variables.
    """
    kinds = self._model_variable_kinds()
    if len(values) != len(kinds):
      raise ValueError('{}: {} values for {} model variables.'.format(
          self._export_dir, len(values), len(kinds)))
    for index, (value, (shape, dtype)) in enumerate(zip(values, kinds)):
      if (np.shape(value) != tuple(shape) or
          np.asarray(value).dtype != tf.as_dtype(dtype).as_numpy_dtype):
        raise ValueError(
            '{}: value {} has shape {} and dtype {}; model variable {} has '
            'shape {} and dtype {}.'.format(
                self._export_dir, index, np.shape(value),
                np.asarray(value).dtype.name, index, tuple(shape),
                tf.as_dtype(dtype).name))

  def _sync_backends(self, prefix: Optional[Text],
                     values: Optional[Sequence[np.ndarray]] = None) -> None:
    """Gives the session and the TFLite model, if in use, the new weights.

    Args:
      prefix: The checkpoint the variables were just restored from, if any.
      values: The model variables' new values, if at hand.
    """
    if self._sm_backend is not None:
      try:
        self._sm_backend.sync(self._loaded, prefix)
      except Exception as e:  # pylint: disable=broad-except
        # TF errors share no public type; keep serving correct actions.
        logging.warning(
            'Could not update the session of %s (%s: %s); calling the loaded '
            'signature from now on.', self._export_dir, type(e).__name__, e,
        )
        fallback = backends.SignatureBackend(
            self._action_signature, self._input_keys, self._output_keys
        )
        if self._backend is self._sm_backend:
          self._backend = fallback
        self._sm_backend = fallback
    self._refresh_tflite(values)

  def _refresh_tflite(
      self, values: Optional[Sequence[np.ndarray]] = None) -> None:
    """Gives the TFLite or onnxruntime backend, if in use, the new values."""
    if self._backend.name not in (BACKEND_TFLITE, BACKEND_ONNXRUNTIME):
      return
    if self._backend.follows_weights:
      if values is None:
        values = [v.numpy() for v in self._loaded.model_variables]
      self._backend.set_weights(values)
    else:
      # A stored model holds the weights as constants: convert (once).
      self._backend = self._choose_backend()

  @staticmethod
  def _update_key(path: Text) -> Optional[Tuple[Any, ...]]:
    """What identifies the content of `path` now; None if it is gone."""
    version = export_publish.version_id(path)
    if version is not None:
      # Changes with every publish (never a coarse timestamp).
      return (path, version)
    try:
      stat = tf.io.gfile.stat(export_contract.variables_prefix(path) + '.index')
    except tf.errors.NotFoundError:
      return None
    return (path, stat.length, stat.mtime_nsec)

  def update_from_directory(self, directory: Text) -> bool:
    """Picks up the newest checkpoint or export under `directory`, if new.

    Cheap when nothing changed: for an export or checkpoint directory of
    this repository's saver, one small read (its version pointer, see
    `export_publish`); for a directory of checkpoints, one listing and that
    read (or a stat, for checkpoints of other savers). The newest entry is
    chosen as by `latest_checkpoint_path`. An export whose variables do not
    fit this policy (e.g. another network) is loaded in full.

    Args:
      directory: Any `tf.io.gfile` path.

    Returns:
      True if the policy changed.

    Raises:
      ExportError: The newest entry is garbled or does not match its
        manifest (see `update_from_checkpoint`); the policy is unchanged.
    """
    version = export_publish.version_id(directory)
    if version is not None:
      # An export or checkpoint with versions itself: that read tells.
      path, key = directory, (directory, version)
      if version == self._version_id:
        self._last_update_key = key  # Served already (e.g. since load).
    else:
      path = latest_checkpoint_path(directory)
      key = None if path is None else self._update_key(path)
    if key is None or key == self._last_update_key:
      return False
    try:
      self.update_from_checkpoint(path)
    except ValueError:
      if not tf.io.gfile.exists(
          os.path.join(path, tf.saved_model.SAVED_MODEL_FILENAME_PB)
      ):
        raise
      logging.info('%s is a different policy; loading it in full.', path)
      replacement = SavedPolicy(
          path,
          backend=self._requested_backend,
          num_threads=self._num_threads,
      )
      replacement._train_step_from_last_restored_checkpoint_path = (  # pylint: disable=protected-access
          _train_step_from_path(path)
      )
      self.__dict__.update(replacement.__dict__)
    if self._version_id is not None:
      key = (path, self._version_id)  # The version actually read.
    self._last_update_key = key
    return True

  def __getattr__(self, name: Text) -> Any:
    """Forwards other attributes to the loaded export, as upstream does."""
    if '_version_dir' not in self.__dict__ or name.startswith('__'):
      raise AttributeError(name)  # Not constructed (yet), or a protocol.
    loaded = self._loaded
    if name == 'model_variables':
      return self.variables()  # May be assigned in place: see there.
    return getattr(loaded, name)
