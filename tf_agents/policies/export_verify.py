# coding=utf-8
"""Verifies a policy export written by `PolicySaver.save`.

New module (upstream has no counterpart). `verify(export_dir)`:

0. resolves the export's current version once (`export_publish`); every
   check below reads that version, and the top-level files (what plain
   `tf.saved_model.load(export_dir)` reads) must match it;
1. checks every file against the export's integrity manifest
   (`export_manifest.json`, see `export_publish`) and reads every tensor of
   the variables, which checks the CRC32C that TensorFlow stores for each in
   `variables/variables.index` (the manifest checks the data shards by size);
2. lists graph ops of the exported functions that touch the file system or
   run Python (`ReadFile`, `WriteFile`, `MatchingFiles`, `PyFunc`,
   `EagerPyFunc`, ...); the checkpoint save/restore functions TensorFlow adds
   to every SavedModel are not counted;
3. loads the export in a fresh Python process (`export_verify_child.py`,
   which imports only TensorFlow, NumPy and, if installed, TensorFlow
   Probability), checks the four policy signatures and that
   `get_policy_specs()` matches `policy_specs.pbtxt`, and replays the
   reference inputs recorded at save time (`reference_io.npz`, written
   without pickle) comparing the outputs.

Problems are collected in a `VerifyReport` rather than raised, except for a
missing path or a directory that is not an export. Files added beside the
export after the save are listed (`uncovered_files`), not failed. The
recorded reference outputs sit in the version with the variables they were
computed from (`save_checkpoint` drops them), so they never disagree with
them; a relative path is made absolute before the fresh process starts.
"""

import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Text, Tuple

import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import saved_model_pb2
from tf_agents.policies import export_contract
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.specs import tensor_spec

# Kept here too: the saver, the CLI and tests have read them from here.
REFERENCE_IO = export_contract.REFERENCE_IO
REQUIRED_SIGNATURES = export_contract.REQUIRED_SIGNATURES

# Ops that read or write files or call back into Python.
RISKY_OPS = frozenset([
    'ReadFile', 'WriteFile', 'MatchingFiles', 'PyFunc', 'PyFuncStateless',
    'EagerPyFunc', 'Save', 'SaveSlices', 'SaveV2', 'Restore', 'RestoreV2',
    'RestoreSlice', 'MergeV2Checkpoints', 'ImmutableConst',
    'WholeFileReader', 'WholeFileReaderV2', 'TextLineReader',
    'TextLineReaderV2', 'TFRecordReader', 'TFRecordReaderV2',
    'FixedLengthRecordReader', 'FixedLengthRecordReaderV2',
    'DatasetToTFRecord', 'WriteSummary', 'CreateSummaryFileWriter',
    'WriteRawProtoSummary', 'DebugIdentity', 'DebugIdentityV2',
])

# Functions TensorFlow adds to every SavedModel to save/restore variables.
_CHECKPOINT_FUNCTIONS = ('_traced_save', '_traced_restore')


@dataclasses.dataclass
class VerifyReport:
  """Result of `verify`.

  Attributes:
    export_dir: The export checked.
    manifest: 'ok', 'mismatch' (a file or a tensor fails its check), or
      'absent' for an export without a manifest.
    risky_ops: `(function name, op type)` pairs found in the graph.
    replayed: Names of the signatures whose recorded outputs were replayed.
    train_step: The train step of the loaded export, or None.
    problems: One line per problem found; empty when the export is fine.
    version: The version checked (`export_publish.Version.version_id`), or
      None for an export without versions.
    uncovered_files: Files beside the export that its manifest does not
      list (added after the save); not a problem.
    converted: Per stored converted model (`export_equivalence`), its
      recorded notion and verdict and whether checking it again agreed
      (`'agrees'`), disagreed (a problem), or was skipped because the
      model holds the weights of an earlier full save (`'other weights'`).
  """

  export_dir: Text
  manifest: Text = 'absent'
  risky_ops: List[Tuple[Text, Text]] = dataclasses.field(default_factory=list)
  replayed: List[Text] = dataclasses.field(default_factory=list)
  train_step: Optional[int] = None
  problems: List[Text] = dataclasses.field(default_factory=list)
  version: Optional[Text] = None
  uncovered_files: List[Text] = dataclasses.field(default_factory=list)
  converted: Dict[Text, Dict[Text, Any]] = dataclasses.field(
      default_factory=dict)

  @property
  def ok(self) -> bool:
    return not self.problems and not self.risky_ops

  def to_json(self) -> Dict[Text, Any]:
    result = dataclasses.asdict(self)
    result['risky_ops'] = [list(p) for p in self.risky_ops]
    result['ok'] = self.ok
    return result


def check_is_export(export_dir: Text) -> None:
  """Raises ExportNotFoundError or NotAnExportError for a bad path."""
  if not tf.io.gfile.exists(export_dir):
    raise export_errors.ExportNotFoundError(
        '{}: no such file or directory.'.format(export_dir)
    )
  if not tf.io.gfile.isdir(export_dir) or not tf.io.gfile.exists(
      os.path.join(export_dir, export_contract.SAVED_MODEL_FILENAME)
  ):
    raise export_errors.NotAnExportError(
        '{}: not a policy export (no saved_model.pb).'.format(export_dir)
    )


def load_checked(export_dir: Text) -> Any:
  """`tf.saved_model.load` of the current version, with this package's errors.

  Args:
    export_dir: The export directory.

  Returns:
    The loaded object (see `load_current` for its version).

  Raises:
    As `load_current`.
  """
  return load_current(export_dir)[0]


def load_current(
    export_dir: Text,
) -> Tuple[Any, export_publish.Version]:
  """Loads the current version of an export, checked, from that version only.

  Resolves the version once (`export_publish.current_version`), checks its
  completion marker and manifest (when it has one), `saved_model.pb` and
  `policy_specs.pbtxt`, then loads every file from that version's directory;
  if the version is retired while it loads, starts again on the new one.

  Args:
    export_dir: The export directory.

  Returns:
    `(loaded object, export_publish.Version)`.

  Raises:
    ExportNotFoundError: `export_dir` does not exist.
    NotAnExportError: It is not a (complete) export.
    ManifestMismatchError: A file does not match the manifest.
    CorruptExportError: A file cannot be parsed or the load fails; the
      one-line message names the file when known.
  """
  return export_publish.read_consistent(
      export_dir, lambda version: (_load_dir(version.path), version))


def check_current(
    export_dir: Text,
) -> Tuple[saved_model_pb2.SavedModel, export_publish.Version]:
  """Checks the current version of an export as `load_current`, no load.

  For readers that run the export without `tf.saved_model.load` (e.g. a
  TF1 session): the same checks, and the parsed `saved_model.pb`.

  Args:
    export_dir: The export directory.

  Returns:
    `(saved_model.pb parsed, export_publish.Version)`.

  Raises:
    As `load_current`, except that a failing load is not tried.
  """
  return export_publish.read_consistent(
      export_dir, lambda version: (_check_dir(version.path), version))


def load_version(export_dir: Text) -> Any:
  """`tf.saved_model.load` of one checked version, with this package's errors.

  Args:
    export_dir: A directory holding every file of one version (e.g.
      `export_publish.Version.path` after `check_current`).

  Returns:
    The loaded object.

  Raises:
    CorruptExportError: The load fails; the message names the file when
      known.
  """
  try:
    return tf.saved_model.load(export_dir)
  except Exception as e:  # pylint: disable=broad-except
    problem = variables_problem(export_dir)
    if problem is None:
      problem = 'cannot load saved_model.pb ({})'.format(
          export_errors.one_line(e))
    raise export_errors.CorruptExportError(
        '{}: {}.'.format(export_dir, problem)
    ) from e


def _check_dir(export_dir: Text) -> saved_model_pb2.SavedModel:
  """Checks the export whose files are all in `export_dir`; its graph."""
  check_is_export(export_dir)
  export_publish.check_manifest(export_dir)
  proto = _read_saved_model(export_dir)
  specs = os.path.join(export_dir, export_contract.POLICY_SPECS_PBTXT)
  if tf.io.gfile.exists(specs):
    try:
      tensor_spec.from_pbtxt_file(specs)
    except Exception as e:  # pylint: disable=broad-except
      raise export_errors.CorruptExportError(
          '{}: cannot parse policy_specs.pbtxt ({}).'.format(
              export_dir, export_errors.one_line(e)
          )
      ) from e
  return proto


def _load_dir(export_dir: Text) -> Any:
  """Checks and loads the export whose files are all in `export_dir`."""
  _check_dir(export_dir)
  return load_version(export_dir)


def variables_problem(directory: Text) -> Optional[Text]:
  """Reads every tensor of `<directory>/variables/variables`.

  Used to name the file at fault after a load or restore failed: TensorFlow's
  own error does not always say which file it was reading. Tensor data and
  index blocks carry checksums, so a truncated or garbled file is found.

  Args:
    directory: An export or checkpoint directory.

  Returns:
    A one-line description naming the unreadable file (relative to
    `directory`), or None if every tensor reads.
  """
  prefix = os.path.join(
      directory,
      tf.saved_model.VARIABLES_DIRECTORY,
      tf.saved_model.VARIABLES_FILENAME,
  )
  index = 'variables/variables.index'
  if not tf.io.gfile.exists(prefix + '.index'):
    return '{} is missing'.format(index)
  try:
    # Not `tf.train.load_checkpoint`: on `ram://` it takes the prefix for a
    # directory.
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    names = sorted(reader.get_variable_to_shape_map())
  except Exception as e:  # pylint: disable=broad-except
    # TF's checkpoint reader raises several unrelated types.
    return 'cannot read {} ({})'.format(
        index, export_errors.one_line(e, limit=200))
  try:
    for name in names:
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except
    shards = sorted(
        'variables/' + os.path.basename(p)
        for p in tf.io.gfile.glob(prefix + '.data-*')
    )
    return 'cannot read {} ({})'.format(
        ', '.join(shards) or 'variables/variables.data-*',
        export_errors.one_line(e, limit=200),
    )
  return None


def _read_saved_model(export_dir: Text) -> saved_model_pb2.SavedModel:
  """Parses `export_dir/saved_model.pb`.

  Raises:
    CorruptExportError: It cannot be parsed.
  """
  path = os.path.join(export_dir, export_contract.SAVED_MODEL_FILENAME)
  proto = saved_model_pb2.SavedModel()
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      proto.ParseFromString(f.read())
  except Exception as e:  # pylint: disable=broad-except
    raise export_errors.CorruptExportError(
        '{}: cannot parse saved_model.pb ({}).'.format(
            export_dir, type(e).__name__
        )
    ) from e
  return proto


def find_risky_ops(export_dir: Text) -> List[Tuple[Text, Text]]:
  """Lists ops in `export_dir`'s graph that touch files or run Python.

  Args:
    export_dir: An export directory.

  Returns:
    Sorted `(function name, op type)` pairs; graph-level nodes are reported
    under the name `<graph>`.

  Raises:
    CorruptExportError: `saved_model.pb` cannot be parsed.
  """
  proto = _read_saved_model(export_dir)
  found = set()
  for meta_graph in proto.meta_graphs:
    saver_nodes = set()
    if meta_graph.saver_def.save_tensor_name:
      saver_nodes = {
          meta_graph.saver_def.save_tensor_name.split(':')[0],
          meta_graph.saver_def.restore_op_name.split(':')[0],
      }
    for node in meta_graph.graph_def.node:
      if node.op in RISKY_OPS and node.name not in saver_nodes:
        found.add(('<graph>', node.op))
    for function in meta_graph.graph_def.library.function:
      name = function.signature.name
      if any(marker in name for marker in _CHECKPOINT_FUNCTIONS):
        continue
      for node in function.node_def:
        if node.op in RISKY_OPS:
          found.add((name, node.op))
  # Graph-level save/restore nodes feed only the saver; keep the report to
  # ops reachable by calling a function.
  return sorted(
      (fn, op) for fn, op in found
      if fn != '<graph>' or op not in ('SaveV2', 'RestoreV2',
                                       'MergeV2Checkpoints')
  )


def reference_io_bytes(
    function: Any,
    input_specs: List[tf.TensorSpec],
    input_keys: List[Text],
    batch_size: Optional[int],
) -> bytes:
  """Records inputs and outputs of the flat `action` signature at save time.

  The inputs are zeros, every unknown dimension (the batch) being
  `batch_size` or 1: the smallest batch keeps the first call's memory and
  the file small. As zeros they are not stored: the file holds the input
  keys (`inputs`), that dimension (`unknown_dim`) and the outputs
  (`out/<key>`), recorded only if two calls agree (a stochastic policy's
  are not replayable).

  Args:
    function: The flat `action` function (positional inputs).
    input_specs: Its input signature.
    input_keys: The keys of those inputs in the saved signature.
    batch_size: The export's fixed batch size, or None.

  Returns:
    The `.npz` file content (no pickled objects), or b'' when the inputs are
    not all numeric.
  """
  unknown_dim = batch_size or 1
  arrays = {
      'inputs': np.array(sorted(input_keys), dtype=np.str_),
      'unknown_dim': np.int64(unknown_dim),
  }
  feed = []
  for spec in input_specs:
    if not (spec.dtype.is_floating or spec.dtype.is_integer or
            spec.dtype.is_bool):
      return b''
    shape = [d if d is not None else unknown_dim
             for d in spec.shape.as_list()]
    feed.append(tf.zeros(shape, spec.dtype))
  first = function(*feed)
  second = function(*feed)
  for key in first:
    a, b = first[key].numpy(), second[key].numpy()
    if a.dtype == object or not np.array_equal(a, b):
      continue
    arrays['out/' + key] = a
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  return buffer.getvalue()


# The program `_run_fresh` runs, next to this file (and in the wheel).
FRESH_PROCESS_PROGRAM = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'export_verify_child.py')


def _run_fresh(export_dir: Text, timeout: float) -> Dict[Text, Any]:
  env = {
      k: v for k, v in os.environ.items()
      if k not in ('PYTHONPATH', 'PYTHONSTARTUP', 'PYTHONHOME')
  }
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  # An empty working directory: nothing beside it is importable.
  with tempfile.TemporaryDirectory() as workdir:
    try:
      proc = subprocess.run(
          [sys.executable, FRESH_PROCESS_PROGRAM, export_dir, REFERENCE_IO,
           export_contract.POLICY_SPECS_PBTXT,
           ','.join(REQUIRED_SIGNATURES)],
          cwd=workdir, env=env, capture_output=True, text=True,
          timeout=timeout, check=False,
      )
    except subprocess.TimeoutExpired:
      return {'problems': ['loading in a fresh process timed out']}
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    error = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    return {
        'problems': [
            'loading in a fresh process failed (exit {}): {}'.format(
                proc.returncode, error[-1] if error else ''
            )
        ]
    }
  return json.loads(lines[-1])


def _top_level_problem(version: export_publish.Version) -> Optional[Text]:
  """Whether the top of the export differs from its current version."""
  if version.version_id is None:
    return None
  manifest = export_publish.read_manifest(version.path)
  differing = [rel for rel, _ in export_publish.mismatches(
      version.export_dir, manifest)]
  # A data shard that is not the version's own file (a copy) is checked by
  # reading its tensors: the manifest has only its size.
  copied_shards = any(
      'sha256' not in entry and rel not in differing and not (
          export_publish.is_local(version.path) and os.path.samefile(
              os.path.join(version.export_dir, rel),
              os.path.join(version.path, rel)))
      for rel, entry in manifest['files'].items())
  if not differing and copied_shards:
    problem = variables_problem(version.export_dir)
    if problem is not None:
      differing.append(problem)
  if not differing:
    return None
  return ('{}: the top-level files differ from the current version {}: {} '
          '(a publish was interrupted or a file was changed; the next save '
          'repairs them; readers of this repository read the version).'
          .format(version.export_dir, version.version_id,
                  ', '.join(differing[:5])))


def _check_converted(path: Text, report: VerifyReport) -> None:
  """Checks the stored converted models against the record, if any."""
  record = export_equivalence.read(path)
  if record is None:
    return
  current = record.weights_digest == export_equivalence.weights_digest(path)
  loaded = tf.saved_model.load(path) if current else None
  for name, entry in sorted(record.formats.items()):
    result = {'notion': entry.notion, 'equivalent': entry.equivalent}
    if loaded is None:
      result['check'] = 'other weights'
    else:
      with tf.io.gfile.GFile(os.path.join(path, entry.file), 'rb') as f:
        again = export_equivalence.check(
            loaded, f.read(), name, record.signature,
            entry.noise() if entry.noise_inputs is not None else None)
      agrees = again.equivalent == entry.equivalent
      result['check'] = 'agrees' if agrees else 'disagrees'
      if not agrees:
        report.problems.append(
            '{}: recorded {} as {}, checked again: {}.'.format(
                entry.file, entry.notion,
                'equivalent' if entry.equivalent else 'not equivalent',
                again.detail))
    report.converted[name] = result


def verify(
    export_dir: Text, fresh_process: bool = True, timeout: float = 300.0
) -> VerifyReport:
  """Checks an export: manifest, risky ops, fresh-process load and replay.

  The current version is resolved once and every check reads it; for an
  export with versions, the top-level files (what plain
  `tf.saved_model.load(export_dir)` reads) are also compared with it. Files
  the manifest does not list (added after the save) are listed in
  `uncovered_files` and are not a problem.

  Args:
    export_dir: The export directory (any `tf.io.gfile` path; the fresh
      process must be able to read it; a relative local path is taken from
      the current directory).
    fresh_process: Whether to load and replay in a fresh process.
    timeout: Seconds the fresh process may take.

  Returns:
    A `VerifyReport`.

  Raises:
    ExportNotFoundError: `export_dir` does not exist.
    NotAnExportError: `export_dir` is not a SavedModel directory.
  """
  if export_publish.is_local(export_dir):
    export_dir = os.path.abspath(export_dir)
  version = export_publish.current_version(export_dir)
  path = version.path
  check_is_export(path)
  report = VerifyReport(export_dir=export_dir, version=version.version_id)
  try:
    manifest = export_publish.check_manifest(path)
    if manifest is not None:
      problem = variables_problem(path)
      if problem is not None:
        raise export_errors.ManifestMismatchError(
            '{}: {}.'.format(path, problem))
      report.manifest = 'ok'
      report.uncovered_files = export_publish.uncovered_files(
          export_dir, manifest)
      top_level = _top_level_problem(version)
      if top_level is not None:
        report.problems.append(top_level)
  except export_errors.ExportError as e:
    report.manifest = 'mismatch'
    report.problems.append(str(e))
  try:
    report.risky_ops = find_risky_ops(path)
  except export_errors.ExportError as e:
    report.problems.append(str(e))
    return report
  if not report.problems:
    _check_converted(path, report)
  if fresh_process and not report.problems:
    result = _run_fresh(path, timeout)
    report.problems.extend(result.get('problems', []))
    report.replayed = result.get('replayed', [])
    report.train_step = result.get('train_step')
  return report
