# coding=utf-8
"""The graph-file cache and traced checkpoint writers of `PolicySaver`.

New in this repository (not upstream's). `PolicySaver.save` re-saves a
policy whose exported graph did not change by writing the graph files of its
last full save again and only the variables anew (the variables-only fast
path, fix 14 in `policy_saver`'s module docstring). `GraphFileCache` keeps
those files in memory with a token identifying the exported graph;
`TracedWriters` keeps the traced `tf.train.Checkpoint.write` functions that
write the variables.
"""

import os
from typing import Any, Callable, Dict, Optional, Text, Tuple

import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_publish

# Largest SavedModel graph (saved_model.pb, fingerprint, assets, specs) kept
# in memory for the variables-only fast path of `save`.
MAX_CACHED_GRAPH_BYTES = 64 << 20


def graph_token(module: tf.Module, signatures: Dict[Text, Any]
                ) -> Tuple[Any, ...]:
  """Identifies the exported object graph and its traced functions.

  Equal tokens mean a new SavedModel would have the same `saved_model.pb`
  up to variable values: same attributes (by identity) and the same
  concrete functions of every `tf.function`.

  Args:
    module: The exported module.
    signatures: The flat signatures exported with it.

  Returns:
    A hashable token.
  """
  items = []
  attributes = sorted(
      (k, v) for k, v in vars(module).items() if not k.startswith('_')
  )
  for key, value in attributes + sorted(signatures.items()):
    entry = [key, id(value)]
    # Public and never traces (listing concrete functions could).
    tracing_count = getattr(value, 'experimental_get_tracing_count', None)
    if callable(tracing_count):
      entry.append(tracing_count())
    items.append(tuple(entry))
  return tuple(items)


def variables_prefix(directory: Text) -> Text:
  """The checkpoint prefix of an export's variables in `directory`."""
  return os.path.join(directory, tf.saved_model.VARIABLES_DIRECTORY,
                      tf.saved_model.VARIABLES_FILENAME)


class GraphFileCache(object):
  """The graph files of a saver's last full save, kept in memory."""

  def __init__(self):
    self._files = None

  @property
  def filled(self) -> bool:
    """Whether graph files are kept (a variables-only save may apply)."""
    return self._files is not None

  def write_variables_only(
      self, staging: Text, options: Any, token: Tuple[Any, ...],
      write_variables: Callable[[], Callable[[tf.Tensor], Any]]) -> bool:
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
      token: The current `graph_token`.
      write_variables: Returns the function writing the variables to a
        checkpoint prefix (called only when the fast path applies).

    Returns:
      True if the fast path wrote the export, False if a full save is needed.
    """
    cache = self._files
    if options is not None or cache is None:
      return False
    if cache['token'] != token:
      self._files = None
      return False
    for rel, data in cache['files'].items():
      target = os.path.join(staging, rel)
      tf.io.gfile.makedirs(os.path.dirname(target))
      with tf.io.gfile.GFile(target, 'wb') as f:
        f.write(data)
    prefix = variables_prefix(staging)
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    write_variables()(tf.constant(prefix))
    return True

  def keep(self, staging: Text, options: Any,
           token: Callable[[], Tuple[Any, ...]]) -> None:
    """Keeps the graph files of a full save in memory for the fast path.

    Args:
      staging: The directory the full save wrote.
      options: Its `save` options (nothing is kept unless None).
      token: Returns the current `graph_token`.
    """
    self._files = None
    if options is not None:
      return
    variables_dir = tf.saved_model.VARIABLES_DIRECTORY + '/'
    files = {}
    total = 0
    for rel in export_publish.list_files(staging):
      if rel.startswith(variables_dir) or rel == export_contract.REFERENCE_IO:
        continue
      path = os.path.join(staging, rel)
      total += tf.io.gfile.stat(path).length
      if total > MAX_CACHED_GRAPH_BYTES:
        return
      with tf.io.gfile.GFile(path, 'rb') as f:
        files[rel] = f.read()
    self._files = {'token': token(), 'files': files}


class TracedWriters(object):
  """Traced `Checkpoint.write` functions, one per object graph, made once."""

  def __init__(self):
    self._writers: Dict[Text, Callable[[tf.Tensor], Any]] = {}

  def get(
      self, name: Text, make_checkpoint: Callable[[], tf.train.Checkpoint]
  ) -> Callable[[tf.Tensor], Any]:
    """A traced `Checkpoint.write` of `make_checkpoint()`, made on first use.

    An eager `Checkpoint.write` walks the object graph and builds its save
    ops on every call (most of the cost of a small policy's write); the
    traced one does that once, so a re-save costs the writing alone. The
    policy's object graph does not change after the saver is built (a new
    trackable changes `graph_token` and forces a full save). The explicit
    device keeps the object graph and the variables in one data shard
    (`variables.data-00000-of-00001`), the file an eager write makes.

    Args:
      name: Which writer (one per object graph).
      make_checkpoint: Builds the checkpoint to write.

    Returns:
      A function of the checkpoint prefix (a string tensor) that writes it;
      the prefix's directory must exist.
    """
    writer: Optional[Callable[[tf.Tensor], Any]] = self._writers.get(name)
    if writer is None:
      checkpoint = make_checkpoint()

      @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
      def write(prefix):
        with tf.device('/job:localhost/replica:0/task:0/device:CPU:0'):
          return checkpoint.write(prefix)

      write.get_concrete_function()
      writer = self._writers[name] = write
    return writer
