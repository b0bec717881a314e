# coding=utf-8
"""How `PolicySaver` publishes what it writes through `export_publish`.

New in this repository (not upstream's): the glue between
`policy_saver.PolicySaver` and `export_publish`. `publish` runs one write
into a new version's staging directory and commits it, turning write errors
into `ExportWriteError`s that name the export directory;
`write_checkpoint_version` fills a `save_checkpoint` version;
`reference_recorder` records the reference inputs and outputs of `action`
(`export_verify`); `retire` applies `max_to_keep`. `ExportWriter` writes
and publishes one saver's exports: full saves, variables-only re-saves
(with `saver_graph_cache`) and checkpoints.
"""

import os
import re
from typing import Any, Callable, Dict, Optional, Text, Tuple

from absl import logging
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import saver_graph_cache

# Top-level files every save / checkpoint writes, checked for files this
# saver did not write before anything is written (`export_publish`).
CHECKPOINT_FILES = (
    export_contract.VARIABLES_INDEX,
    export_contract.VARIABLES_DATA,
    export_publish.MANIFEST_FILENAME,
    export_publish.COMPLETE_MARKER,
)
EXPORT_FILES = CHECKPOINT_FILES + (
    export_contract.SAVED_MODEL_FILENAME, export_contract.FINGERPRINT_FILENAME,
    export_contract.POLICY_SPECS_PBTXT, export_contract.REFERENCE_IO,
)


def publish(
    export_dir: Any,
    make_publication: Callable[[Text], Any],
    write: Callable[[Any], Text],
    train_step: tf.Variable,
) -> Tuple[Any, Text]:
  """Writes a new version with `write(publication)` and publishes it.

  Args:
    export_dir: The export directory (`str`, `bytes` or path-like).
    make_publication: Makes the `export_publish.Publication` (or
      `NumberedPublication`) for the normalized `export_dir`; it checks
      the directory before anything is written.
    write: Fills `publication.staging`; returns the kind of save.
    train_step: The saver's train step, recorded in the manifest when eager.

  Returns:
    `(the committed publication, the kind of save)`.

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
      extra['train_step'] = int(train_step.numpy())
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
  return publication, kind


def reference_recorder(
    signatures: Any, batch_size: Optional[int]) -> Callable[[], bytes]:
  """Prepares the recording of reference inputs/outputs of `action`.

  The concrete function is traced now, before `tf.saved_model.save`, so the
  save exports that trace and nothing is traced after it (which would make
  the next `save` a full one). The returned function runs it: a full save
  calls it once the SavedModel is written, because the first call
  instantiates the function in TensorFlow's runtime, and that state, added
  to the serialization's buffers, made the save's peak memory higher than
  upstream's (which never runs the function); after the save it is not.

  Args:
    signatures: The saver's flat signatures.
    batch_size: The saver's fixed batch size, or None.

  Returns:
    A function that returns the `.npz` bytes for `export_verify` (b'' when
    there is nothing to record).
  """
  if not tf.executing_eagerly():
    return lambda: b''
  action = signatures[export_contract.ACTION]
  specs = list(action.input_signature)
  concrete = action.get_concrete_function()
  keys = [export_contract.signature_key(spec.name) for spec in specs]
  return lambda: export_verify.reference_io_bytes(
      concrete, specs, keys, batch_size
  )


def write_checkpoint_version(
    publication: Any,
    options: Optional[tf.train.CheckpointOptions],
    traced_write: Callable[[], Callable[[tf.Tensor], Any]],
    make_checkpoint: Callable[[], tf.train.Checkpoint],
) -> Text:
  """Fills a `save_checkpoint` version; returns its kind, `'checkpoint'`.

  The previous version's graph files are carried over (not its variables,
  reference outputs or fingerprint, which describe the old variables).

  Args:
    publication: The `export_publish.Publication` to fill.
    options: The `save_checkpoint` options.
    traced_write: Returns the traced writer (used when eager, no options).
    make_checkpoint: Builds the checkpoint to write otherwise.

  Returns:
    `'checkpoint'`.
  """
  variables_dir = tf.saved_model.VARIABLES_DIRECTORY + '/'
  for rel, source in publication.previous_files().items():
    if not rel.startswith(variables_dir) and rel not in (
        export_contract.REFERENCE_IO, export_contract.FINGERPRINT_FILENAME):
      publication.carry(rel, source)
  prefix = saver_graph_cache.variables_prefix(publication.staging)
  if options is None and tf.executing_eagerly():
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    traced_write()(tf.constant(prefix))
  else:
    make_checkpoint().write(prefix, options=options)
  return 'checkpoint'


def retire(written: Text, max_to_keep: Optional[int]) -> None:
  """Applies `max_to_keep` to the siblings of `written`.

  Args:
    written: The checkpoint or version just written.
    max_to_keep: How many to keep, or None to keep all.
  """
  if max_to_keep is None:
    return
  try:
    export_publish.retire_checkpoints(written, max_to_keep)
  except (OSError, tf.errors.OpError) as e:
    logging.warning('Could not remove old checkpoints beside %s: %s',
                    written, export_errors.one_line(e))


class ExportWriter(object):
  """Writes and publishes the exports of one `PolicySaver`.

  It holds the saver's graph-file cache (the variables-only fast path of
  `save`), its traced checkpoint writers and the kind of its last save.
  """

  def __init__(
      self,
      module: tf.Module,
      signatures: Dict[Text, Any],
      specs_text: Text,
      batch_size: Optional[int],
      converted_formats: Tuple[Text, ...],
      noise_seed: Optional[int],
  ):
    """Prepares writing `module` with `signatures`.

    Args:
      module: The exported module (`PolicySaver.policy`).
      signatures: The flat signatures (`PolicySaver.signatures`).
      specs_text: The text of `policy_specs.pbtxt`.
      batch_size: The fixed batch size, or None.
      converted_formats: Formats to convert `action` to at full saves.
      noise_seed: The seed of converted stochastic models, or None.
    """
    self._module = module
    self._signatures = signatures
    self._specs_text = specs_text
    self._batch_size = batch_size
    self._converted_formats = converted_formats
    self._noise_seed = noise_seed
    self._graph_cache = saver_graph_cache.GraphFileCache()
    self._writers = saver_graph_cache.TracedWriters()
    self.last_save_kind: Optional[Text] = None

  @property
  def graph_files_kept(self) -> bool:
    """Whether the next `save` may write the variables only."""
    return self._graph_cache.filled

  def publish(self, export_dir: Any, make_publication: Callable[[Text], Any],
              write: Callable[[Any], Text]) -> Any:
    """`publish`, keeping the kind of save written in `last_save_kind`.

    Args:
      export_dir: As for `publish`.
      make_publication: As for `publish`.
      write: As for `publish`.

    Returns:
      The committed publication.
    """
    publication, self.last_save_kind = publish(
        export_dir, make_publication, write, self._module.train_step)
    return publication

  def graph_token(self) -> Tuple[Any, ...]:
    """The current `saver_graph_cache.graph_token` of the export."""
    return saver_graph_cache.graph_token(self._module, self._signatures)

  def write_export(
      self,
      publication: Any,
      options: Any,
      write_variables: Callable[[], Callable[[tf.Tensor], Any]],
      noise_action: Callable[[], Any],
  ) -> Text:
    """Writes a full export into `publication.staging`; returns its kind.

    Args:
      publication: The publication to fill.
      options: The `save` options.
      write_variables: Returns the export's variables writer (fast path).
      noise_action: Returns the policy's `export_noise.NoiseAction`.

    Returns:
      `'variables_only'` or `'full'`.
    """
    staging = publication.staging
    if self._graph_cache.write_variables_only(
        staging, options, self.graph_token(), write_variables):
      kind = 'variables_only'
      reference = self._reference_recorder()()
    else:
      record_reference = self._reference_recorder()
      tf.saved_model.save(
          self._module, staging, signatures=self._signatures, options=options
      )
      reference = record_reference()
      with tf.io.gfile.GFile(
          os.path.join(staging, export_contract.POLICY_SPECS_PBTXT), 'wb'
      ) as f:
        f.write(self._specs_text)
      if self._converted_formats:
        # Kept with the graph files: a variables-only save carries them, and
        # runtimes give them the new variables (see export_equivalence).
        export_equivalence.write(staging, self._converted_formats,
                                 noise_action=noise_action,
                                 noise_seed=self._noise_seed)
      self._graph_cache.keep(staging, options, self.graph_token)
      kind = 'full'
    if reference:
      path = os.path.join(staging, export_contract.REFERENCE_IO)
      with tf.io.gfile.GFile(path, 'wb') as f:
        f.write(reference)
    return kind

  def _reference_recorder(self) -> Callable[[], bytes]:
    return reference_recorder(self._signatures, self._batch_size)

  def checkpoint(self) -> tf.train.Checkpoint:
    """The object graph `save_checkpoint` writes (upstream's keys)."""
    return tf.train.Checkpoint(
        policy=self._module,
        # A list: an empty tuple (a policy without variables) is not
        # trackable; the keys are the same (`model_variables/<i>`).
        model_variables=list(self._module.model_variables),
        train_step=self._module.train_step,
        metadata=self._module.metadata,
    )

  def checkpoint_writer(self) -> Callable[[tf.Tensor], Any]:
    """Writes `save_checkpoint`'s object graph (upstream's keys)."""
    return self._writers.get('checkpoint', self.checkpoint)

  def export_variables_writer(self) -> Callable[[tf.Tensor], Any]:
    """Writes an export's variables: the object graph of the SavedModel."""
    return self._writers.get(
        'export', lambda: tf.train.Checkpoint(root=self._module))
