# coding=utf-8
"""Loads exported policies and assembles full exports from checkpoints.

This module replaces upstream tf-agents 0.19.0's
`tf_agents.policies.policy_loader` and keeps its public names (`load`,
`materialize_saved_model`).

Fixes relative to upstream
--------------------------
1. `materialize_saved_model` writes the variables as the SavedModel expects
   them (the export's own object as the checkpoint root) instead of copying
   the checkpoint files. Upstream's copy fails to load when the saver had
   metadata, because `save_checkpoint` of upstream's saver only lists the
   metadata under the policy; the result now loads (with plain
   `tf.saved_model.load` too) and returns the checkpoint's metadata.
2. `load` returns a `saved_policy.SavedPolicy` (a `PyPolicy` with the methods
   of upstream's `SavedModelPyTFEagerPolicy`: `get_train_step`,
   `get_metadata`, `variables`, `update_from_checkpoint`,
   `get_train_step_from_last_restored_checkpoint_path`, attribute forwarding
   to the loaded object) that reads its specs from the export, takes batched
   and unbatched time steps, works with exports of a fixed batch size and
   runs much faster; `backend=` selects its runtime.
3. `checkpoint_path` may also be a full export directory.
4. Every path goes through `tf.io.gfile` (e.g. `gs://`, `ram://`), including
   asset subdirectories, which upstream's flat copy fails on.
5. Files derived from the export's own variables are not copied into the
   materialized export (they would describe other weights): `fingerprint.pb`,
   `assets/action.tflite`, and this repository's saver's integrity manifest,
   completion marker and recorded reference outputs.
6. A missing, incomplete, truncated or garbled export or checkpoint raises
   this package's `export_errors` types (`ExportNotFoundError`,
   `NotAnExportError`, `CorruptExportError`, `ManifestMismatchError`) with a
   one-line message naming the path and file, from `load` and
   `materialize_saved_model` alike (upstream: TensorFlow's `OSError` or a
   stack dump, and a flipped byte in the variables could load silently
   wrong). The integrity manifest and completion marker of this
   repository's saver are checked; exports without them (upstream's) get
   every other check.
"""

import os
from typing import Optional, Text

import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver  # pylint: disable=unused-import
from tf_agents.policies import py_tf_eager_policy  # pylint: disable=unused-import
from tf_agents.policies import saved_policy

# Derived from the export's variables, so not copied into a materialized
# export whose variables come from elsewhere: TensorFlow's fingerprint, and
# the integrity manifest, completion marker and recorded reference outputs
# this repository's saver writes (`export_publish`, `export_verify`).
_NOT_COPIED = frozenset([
    tf.saved_model.VARIABLES_DIRECTORY,
    export_contract.FINGERPRINT_FILENAME,
    export_publish.MANIFEST_FILENAME,
    export_publish.COMPLETE_MARKER,
    export_contract.REFERENCE_IO,
    export_publish.VERSIONS_DIRNAME,
])


def load(
    saved_model_path: Text,
    checkpoint_path: Optional[Text] = None,
    backend: Text = saved_policy.DEFAULT_BACKEND,
) -> saved_policy.SavedPolicy:
  """Loads an exported policy as a `PyPolicy`.

  `saved_model_path` is a directory written by `PolicySaver.save`
  (`saved_model.pb`, `policy_specs.pbtxt`, `variables/variables.*`), e.g.
  `/root_dir/policies/greedy_policy`. `checkpoint_path`, if given, is a
  directory written by `PolicySaver.save_checkpoint` (or `save`), e.g.
  `/root_dir/policies/checkpoints/policy_checkpoint_0000022100`; its
  variables replace the export's.

  Args:
    saved_model_path: Path of the full export.
    checkpoint_path: Optional path of a checkpoint of the policy variables.
    backend: The `SavedPolicy` backend (`saved_policy.BACKENDS`); the
      default is `SavedPolicy`'s own (`saved_policy.DEFAULT_BACKEND`,
      `'auto'`).

  Returns:
    A `saved_policy.SavedPolicy`.

  Raises:
    ExportNotFoundError: A path does not exist.
    NotAnExportError: A path is not a (complete) export or checkpoint.
    ManifestMismatchError: A file does not match the integrity manifest.
    CorruptExportError: A file is truncated or garbled.
    ValueError: The checkpoint does not match the export, or `backend` is
      unknown.
  """
  return saved_policy.SavedPolicy(
      saved_model_path, checkpoint_path=checkpoint_path, backend=backend
  )


def _copy_tree(source: Text, destination: Text) -> None:
  """Copies a file or a directory tree with `tf.io.gfile`."""
  if not tf.io.gfile.isdir(source):
    tf.io.gfile.copy(source, destination, overwrite=False)
    return
  tf.io.gfile.makedirs(destination)
  for child in tf.io.gfile.listdir(source):
    child = child.rstrip('/')
    _copy_tree(os.path.join(source, child), os.path.join(destination, child))


def materialize_saved_model(
    saved_model_path: Text, checkpoint_path: Text, output_path: Text
) -> None:
  """Writes a full export combining an export's graph with a checkpoint.

  Training often writes a full export once and then only variable
  checkpoints (`PolicySaver.save_checkpoint`). This assembles, in the new
  directory `output_path`, a full export with the graph, specs and assets of
  `saved_model_path` and the variables of `checkpoint_path`, loadable by
  `load`, `tf.saved_model.load` or upstream's loader:

  ```python
  policy_loader.materialize_saved_model(
      '/path/policies/collect_policy',
      '/path/policies/checkpoints/policy_checkpoint_0000013400',
      '/path/policies/collect_policy_13400')
  policy = policy_loader.load('/path/policies/collect_policy_13400')
  ```

  Args:
    saved_model_path: Path of the full export.
    checkpoint_path: Path of a checkpoint written by `save_checkpoint` (or of
      another full export of the same policy).
    output_path: Path of the new export; must not exist.

  Raises:
    ExportNotFoundError: `saved_model_path` or `checkpoint_path` does not
      exist.
    NotAnExportError: One is not a (complete) export or checkpoint.
    ManifestMismatchError: A file does not match its integrity manifest.
    CorruptExportError: A file is truncated or garbled.
    ValueError: If `output_path` exists or the checkpoint does not match the
      export.
  """
  if tf.io.gfile.exists(output_path):
    raise ValueError('Output path already exists: %s' % output_path)
  # Restore the checkpoint into the export's own objects, then write them
  # with the export's object as the checkpoint root, which is the layout
  # `tf.saved_model.load` reads.
  loaded, version = export_verify.load_current(saved_model_path)
  saved_policy.restore_checkpoint(loaded, checkpoint_path)
  tf.io.gfile.makedirs(output_path)
  # The files of the version just loaded (not what is at the top of
  # `saved_model_path` now, nor files a user added beside it).
  for child in tf.io.gfile.listdir(version.path):
    child = child.rstrip('/')
    if child in _NOT_COPIED:
      continue
    _copy_tree(
        os.path.join(version.path, child),
        os.path.join(output_path, child),
    )
  if version.version_id is not None:
    # Files a user or tool added beside the export after the save.
    manifest = export_publish.read_manifest(version.path)
    for rel in export_publish.uncovered_files(saved_model_path, manifest):
      if rel.split('/')[0] not in _NOT_COPIED:
        target = os.path.join(output_path, rel)
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(os.path.join(saved_model_path, rel), target)
  stored_tflite = os.path.join(
      output_path, tf.saved_model.ASSETS_DIRECTORY,
      saved_policy.TFLITE_MODEL_FILENAME
  )
  if tf.io.gfile.exists(stored_tflite):
    # It holds the export's variables, not the checkpoint's.
    tf.io.gfile.remove(stored_tflite)
  prefix = os.path.join(
      output_path,
      tf.saved_model.VARIABLES_DIRECTORY,
      tf.saved_model.VARIABLES_FILENAME,
  )
  tf.train.Checkpoint(root=loaded).write(prefix)
