# coding=utf-8
"""Publishing policy exports: versions that never mix and never delete.

New module (upstream writes exports in place, so a killed or concurrent save
leaves a directory that loads wrong, and readers can read half of one save
and half of the next).

Layout
------
`PolicySaver.save(export_dir)` and `save_checkpoint(export_dir)` keep
upstream's layout and file names at the top of `export_dir`
(`saved_model.pb`, `fingerprint.pb`, `variables/variables.*`, `assets/`,
`policy_specs.pbtxt`), so `tf.saved_model.load(export_dir)`, TF Serving and
upstream's `SavedModelPyTFEagerPolicy` and `policy_loader` read it as
before, plus this repository's `export_manifest.json`, `export_complete`
and `reference_io.npz`. Next to them, in the hidden directory
`export_dir/.policy_versions/`:

* `v-<seq>-<host>-<pid>-<hex>/`: one immutable, complete copy of every
  published version (hard links to the top-level files on local disks, so
  no extra space). Its `export_complete` marker, written last, says it is
  whole. `<seq>` grows with every publish; the directory name is the
  version's identity (`Version.version_id`), never a timestamp.
* `CURRENT`: a small JSON pointer `{"version", "seq", "kind", "train_step"}`
  naming the current version, replaced atomically (`os.replace`) on local
  disks.

A publish writes the new version directory (its marker last), mirrors the
version's files to the top of `export_dir` (each file replaced atomically on
local disks: a hard link under a hidden temporary name, renamed over the old
one), removes the top-level files of earlier versions that the new one does
not have, then switches `CURRENT` and retires old versions. If mirroring or
the switch fails, the previous version is put back at the top level and
stays current.

Guarantees
----------
* Nothing the saver did not write is deleted, moved or overwritten, by
  `save` and `save_checkpoint` alike. The saver's files are those listed in
  the manifest of any version in `.policy_versions/` or of the top-level
  export. Other files in `export_dir` stay beside the export, as with
  upstream; if one has a name the export needs (e.g. an upstream export's
  `saved_model.pb`), the save is refused with `ExportWriteError` naming the
  files, before anything is written.
* `export_dir` itself is never renamed, replaced or removed: it may be a
  mount point (a Docker or Kubernetes volume) or a user's symbolic link,
  which is written through and stays a link.
* Readers of this repository (`SavedPolicy`, `policy_loader`,
  `export_verify`, `saved_policy_cli`) resolve the version once (one small
  read of `CURRENT`, `current_version`) and read every file from that
  version's directory, so one load or update sees one version, never a mix
  and never a false corruption error while a writer publishes. A version is
  retired (its marker removed first) only when it is neither current nor
  the one before it, and stopped being current more than 10 seconds ago; a
  reader whose version was retired under it anyway starts again on the
  current one (`read_consistent`). Pollers learn whether anything changed
  from the pointer alone (`version_id`).
* Copies: `cp -r`, `tar`, `rsync -a` and `gsutil cp -r` copy the export with
  its versions; the copy loads everywhere (`tar` and `cp -a` keep the hard
  links, `cp -r` stores the current version twice). `tar
  --exclude=.policy_versions` copies only the top-level export, which this
  repository's readers then check against its top-level manifest.
* A killed writer leaves the previous version current; the next save
  removes its leftovers (incomplete versions and temporary files of dead
  local writers, and incomplete versions older than an hour).

What is not atomic, and why
---------------------------
A set of files at fixed names cannot be replaced atomically without
replacing their directory, which would break mount points and user links
(the reason this design replaced the earlier switched symbolic link, which
also deleted users' files). So a plain reader (`tf.saved_model.load`, TF
Serving) that reads the top level while a re-save mirrors into the same
directory, or after a writer was killed while mirroring, can see files of
two versions, as with upstream's saver; the next complete save repairs the
top level, and `export_verify.verify` reports a top level that differs from
the current version. On object stores (`gs://`, `ram://`) files are copied,
not linked (a version then costs its size again), `CURRENT` is overwritten
in place (a reader that finds it empty or garbled reads it again), and two
writers publishing into one directory at once leave the last pointer
written; on local disks a lock (`flock`) orders their pointer switches and
mirrors.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from typing import (Any, Callable, Dict, Iterable, List, Optional, Set, Text,
                    Tuple, TypeVar)

from absl import logging
import tensorflow as tf

from tf_agents.policies import export_errors

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # Not POSIX: no lock between local writers.
  fcntl = None

MANIFEST_FILENAME = 'export_manifest.json'
COMPLETE_MARKER = 'export_complete'
VERSIONS_DIRNAME = '.policy_versions'
POINTER_FILENAME = 'CURRENT'
MANIFEST_FORMAT = 2
# Formats `read_manifest` accepts. Format 1 gave every file a sha256.
_READABLE_FORMATS = (1, 2)
_HASH_CHUNK_BYTES = 256 << 10
# How the manifest marks a checkpoint data shard checked by its tensors'
# CRC32C (see `write_manifest`).
TENSOR_CRC32C = 'tensor_crc32c'
_DATA_SHARD = re.compile(r'(^|/)variables/[^/]+\.data-\d+-of-\d+$')
_LOCK_FILENAME = '.lock'

# How long (seconds) a version is kept after it stopped being current, for
# readers still loading it (the one just replaced is always kept; a reader
# whose version is retired anyway starts again).
_RETIRE_AFTER_SECONDS = 10.0
# Age (seconds) after which an incomplete version of a live or remote
# writer counts as abandoned.
_ABANDONED_SECONDS = 3600.0
# How often a reader tries again when the pointer is being rewritten (object
# stores) or its version was retired while it read.
_READ_ATTEMPTS = 20
_RETRY_SECONDS = 0.02

_HOST = re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())[:32] or 'host'
_VERSION_NAME = re.compile(
    r'^v-(?P<seq>\d+)-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+$'
)
# A file being put in place under a temporary name (see `_temporary`).
_TEMPORARY_NAME = re.compile(
    r'^\..+\.tmp-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+$')

_T = TypeVar('_T')


def is_local(path: Text) -> bool:
  """Whether `path` is on the local file system (no URL scheme)."""
  return '://' not in path


def normalize_dir(export_dir: Any) -> Text:
  """`export_dir` as text without a trailing separator.

  Args:
    export_dir: A `str`, `bytes` or `os.PathLike` path.

  Returns:
    The path as `str`.

  Raises:
    ExportWriteError: It is empty or not a path.
  """
  try:
    path = os.fsdecode(export_dir)
  except TypeError as e:
    raise export_errors.ExportWriteError(
        'export_dir must be a str, bytes or os.PathLike path, got {!r}.'
        .format(export_dir)) from e
  stripped = path.rstrip('/') or path
  if not stripped or stripped.endswith('://'):
    raise export_errors.ExportWriteError(
        'Cannot export to {!r}: not a directory name.'.format(path))
  return stripped


def versions_dir(export_dir: Text) -> Text:
  return os.path.join(export_dir, VERSIONS_DIRNAME)


def discard(path: Optional[Text]) -> None:
  """Removes `path` recursively, ignoring errors."""
  if not path:
    return
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  except (tf.errors.OpError, OSError):
    pass


def list_files(root: Text) -> List[Text]:
  """Relative paths (with `/`) of the files under `root`, sorted.

  `root`'s own `.policy_versions` directory is left out: it holds versions,
  not files of the export.

  Args:
    root: A directory.

  Returns:
    The sorted relative paths.
  """
  files = []
  # TensorFlow's `ram://` file system lists by name prefix: the listing of
  # `ram://x/policy` also shows entries of a sibling `ram://x/policy_1` (as
  # `_1`), which do not exist under `root`.
  confirm = not is_local(root)
  skip = versions_dir(root.rstrip('/'))
  for dirname, _, filenames in tf.io.gfile.walk(root):
    dirname = dirname.rstrip('/')
    if dirname == skip or dirname.startswith(skip + '/'):
      continue
    rel_dir = os.path.relpath(dirname, root) if dirname != root else ''
    for filename in filenames:
      if confirm and not tf.io.gfile.exists(os.path.join(dirname, filename)):
        continue
      rel = os.path.join(rel_dir, filename) if rel_dir else filename
      files.append(rel.replace(os.sep, '/'))
  return sorted(files)


def file_sha256(path: Text) -> Dict[Text, Any]:
  """Returns `{'sha256': hex, 'size': bytes}` of the file at `path`."""
  digest = hashlib.sha256()
  size = 0
  with tf.io.gfile.GFile(path, 'rb') as f:
    while True:
      # Small reads: each chunk is copied more than once on its way from
      # the file system, so large ones raise the save's peak memory.
      chunk = f.read(_HASH_CHUNK_BYTES)
      if not chunk:
        break
      digest.update(chunk)
      size += len(chunk)
  return {'sha256': digest.hexdigest(), 'size': size}


def is_data_shard(rel: Text) -> bool:
  """Whether `rel` (relative, `/`-separated) is a checkpoint data shard."""
  return bool(_DATA_SHARD.search(rel))


def write_manifest(
    staging: Text, extra: Optional[Dict[Text, Any]] = None
) -> Dict[Text, Any]:
  """Writes the manifest, then the completion marker, into `staging`.

  Every file gets its size and sha256, except the checkpoint's data shards
  (`variables/*.data-*`), which get their size and `'check':
  'tensor_crc32c'`: TensorFlow stores a CRC32C of every tensor of a shard in
  `variables/*.index` (whose sha256 is in the manifest) and checks it on
  every restore, so a garbled shard never loads, while hashing the shards
  again would make a large policy's save and checked load slower than
  upstream's by a tenth (e.g. about 100 ms for 129 MiB). Truncation is
  caught by the size, here; `export_verify.verify` reads every tensor.

  Args:
    staging: A directory holding every other file of the export.
    extra: JSON-serializable fields added to the manifest.

  Returns:
    The manifest as a dict.
  """
  files = {}
  for rel in list_files(staging):
    if rel in (MANIFEST_FILENAME, COMPLETE_MARKER):
      continue
    path = os.path.join(staging, rel)
    if is_data_shard(rel):
      files[rel] = {'size': tf.io.gfile.stat(path).length,
                    'check': TENSOR_CRC32C}
    else:
      files[rel] = file_sha256(path)
  manifest = {'format': MANIFEST_FORMAT, 'files': files}
  manifest.update(extra or {})
  data = json.dumps(
      manifest, sort_keys=True, separators=(',', ':')).encode('utf-8')
  with tf.io.gfile.GFile(os.path.join(staging, MANIFEST_FILENAME), 'wb') as f:
    f.write(data)
  with tf.io.gfile.GFile(os.path.join(staging, COMPLETE_MARKER), 'wb') as f:
    f.write(hashlib.sha256(data).hexdigest().encode('ascii'))
  return manifest


def read_manifest(export_dir: Text) -> Optional[Dict[Text, Any]]:
  """Returns the manifest of a complete export, None if it has none.

  Args:
    export_dir: An export or version directory.

  Returns:
    The manifest dict, or None for an export without a manifest (e.g.
    written by upstream's saver).

  Raises:
    NotAnExportError: The manifest exists but the completion marker does not
      (an interrupted copy).
    ManifestMismatchError: Manifest and marker disagree, or the manifest is
      not valid JSON.
  """
  path = os.path.join(export_dir, MANIFEST_FILENAME)
  if not tf.io.gfile.exists(path):
    return None
  marker = os.path.join(export_dir, COMPLETE_MARKER)
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = f.read()
    with tf.io.gfile.GFile(marker, 'rb') as f:
      expected = f.read().decode('ascii', 'replace').strip()
  except tf.errors.NotFoundError as e:
    raise export_errors.NotAnExportError(
        '{}: export is incomplete (no {} marker).'.format(
            export_dir, COMPLETE_MARKER
        )
    ) from e
  if hashlib.sha256(data).hexdigest() != expected:
    raise export_errors.ManifestMismatchError(
        '{}: {} does not match its {} marker.'.format(
            export_dir, MANIFEST_FILENAME, COMPLETE_MARKER
        )
    )
  try:
    manifest = json.loads(data.decode('utf-8'))
    if not isinstance(manifest.get('files'), dict):
      raise ValueError('no files')
  except (ValueError, UnicodeDecodeError, AttributeError) as e:
    raise export_errors.ManifestMismatchError(
        '{}: {} is not a valid manifest.'.format(export_dir, MANIFEST_FILENAME)
    ) from e
  if manifest.get('format') not in _READABLE_FORMATS:
    raise export_errors.ManifestMismatchError(
        '{}: {} has format {!r}; this version checks formats {}.'.format(
            export_dir, MANIFEST_FILENAME, manifest.get('format'),
            ', '.join(str(f) for f in _READABLE_FORMATS)
        )
    )
  return manifest


def check_manifest(export_dir: Text) -> Optional[Dict[Text, Any]]:
  """Checks every file the manifest of `export_dir` lists.

  Files the manifest does not list (e.g. added by a user or a tool after
  the save) do not fail the check: `uncovered_files` lists them.

  Args:
    export_dir: An export or version directory.

  Returns:
    The manifest, or None if the export has none.

  Raises:
    NotAnExportError, ManifestMismatchError: as `read_manifest`, or when a
      listed file is missing or differs in size or sha256 (the message names
      the file). Data shards are checked by size only here; TensorFlow checks
      their tensors' CRC32C when it restores them (see `write_manifest`).
  """
  manifest = read_manifest(export_dir)
  if manifest is None:
    return None
  for rel, problem in mismatches(export_dir, manifest, first_only=True):
    raise export_errors.ManifestMismatchError(
        '{}: file {} {}.'.format(export_dir, rel, problem))
  return manifest


def mismatches(
    directory: Text, manifest: Dict[Text, Any], first_only: bool = False
) -> List[Tuple[Text, Text]]:
  """Files of `directory` that differ from what `manifest` lists.

  Args:
    directory: Where the files are (the manifest's own directory, or the
      top level of an export whose version the manifest describes).
    manifest: A manifest (see `write_manifest`).
    first_only: Stop at the first mismatch.

  Returns:
    `(relative path, what is wrong)` pairs, in path order. Data shards are
    compared by size only (TensorFlow checks their tensors' CRC32C).
  """
  found = []
  for rel, entry in sorted(manifest['files'].items()):
    path = os.path.join(directory, rel)
    try:
      size = tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
      size = None
    if size is None:
      found.append((rel, 'listed in {} is missing'.format(MANIFEST_FILENAME)))
    elif size != entry.get('size'):
      found.append((rel, 'has the wrong size'))
    elif not (entry.get('check') == TENSOR_CRC32C and is_data_shard(rel)) and (
        file_sha256(path)['sha256'] != entry.get('sha256')):
      found.append((rel, 'does not match its sha256 in {}'.format(
          MANIFEST_FILENAME)))
    if found and first_only:
      break
  return found


def uncovered_files(export_dir: Text, manifest: Dict[Text, Any]) -> List[Text]:
  """Files in `export_dir` that `manifest` does not list, sorted."""
  present = set(list_files(export_dir)) - {MANIFEST_FILENAME, COMPLETE_MARKER}
  return sorted(present - set(manifest['files']))


# ----------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Version:
  """One published version of an export, as a reader resolved it.

  Attributes:
    export_dir: The directory the reader was given.
    path: The directory every file of this version is read from: the
      version's directory in `.policy_versions/`, or `export_dir` itself for
      an export without versions (upstream's, or a copy without them).
    version_id: The version's identity (changes with every publish), or None
      for an export without versions.
    seq: The publish sequence number (None without versions).
    kind: `'full'`, `'variables_only'` or `'checkpoint'` (None if unknown).
    train_step: The train step the saver recorded (None if unknown).
  """

  export_dir: Text
  path: Text
  version_id: Optional[Text] = None
  seq: Optional[int] = None
  kind: Optional[Text] = None
  train_step: Optional[int] = None


def _read_pointer(export_dir: Text) -> Optional[Dict[Text, Any]]:
  """The parsed `CURRENT` pointer; None if absent; {} if unreadable."""
  path = os.path.join(versions_dir(export_dir), POINTER_FILENAME)
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = f.read()
  except tf.errors.NotFoundError:
    return None
  try:
    pointer = json.loads(data.decode('utf-8'))
    if _VERSION_NAME.match(str(pointer.get('version'))):
      return pointer
  except (ValueError, UnicodeDecodeError, AttributeError):
    pass
  return {}  # Being rewritten in place (object stores), or damaged.


def version_id(export_dir: Text) -> Optional[Text]:
  """The current version's identity from one small read; None if none.

  Args:
    export_dir: An export directory.

  Returns:
    The version id, or None when `export_dir` has no versions (or its
    pointer is being rewritten right now).
  """
  pointer = _read_pointer(normalize_dir(export_dir))
  return pointer.get('version') if pointer else None


def current_version(export_dir: Text) -> Version:
  """Resolves the version a reader should read, with one small read.

  Args:
    export_dir: An export or checkpoint directory (any `tf.io.gfile` path).

  Returns:
    The current `Version`.

  Raises:
    ExportNotFoundError: `export_dir` does not exist.
    NotAnExportError: Its pointer stays unreadable, or names a version that
      is not there.
  """
  export_dir = normalize_dir(export_dir)
  for _ in range(_READ_ATTEMPTS):
    pointer = _read_pointer(export_dir)
    if pointer is None:
      pointer = _newest_complete(export_dir)
    if pointer is None:
      if not tf.io.gfile.exists(export_dir):
        raise export_errors.ExportNotFoundError(
            '{}: no such file or directory.'.format(export_dir))
      numbered = _newest_numbered(export_dir)
      if numbered is not None:
        return numbered
      return Version(export_dir=export_dir, path=export_dir)
    if pointer:
      path = os.path.join(versions_dir(export_dir), pointer['version'])
      if tf.io.gfile.exists(os.path.join(path, COMPLETE_MARKER)):
        return Version(
            export_dir=export_dir, path=path, version_id=pointer['version'],
            seq=int(pointer.get('seq', 0)), kind=pointer.get('kind'),
            train_step=pointer.get('train_step'))
    time.sleep(_RETRY_SECONDS)  # Pointer or version changing under us.
  raise export_errors.NotAnExportError(
      '{}: {}/{} does not name a complete version (no {} marker).'.format(
          export_dir, VERSIONS_DIRNAME, POINTER_FILENAME, COMPLETE_MARKER))


def _newest_complete(export_dir: Text) -> Optional[Dict[Text, Any]]:
  """A pointer to the newest complete version, for a lost `CURRENT`."""
  for name in reversed(_version_names(export_dir)):
    path = os.path.join(versions_dir(export_dir), name)
    if tf.io.gfile.exists(os.path.join(path, COMPLETE_MARKER)):
      return {'version': name,
              'seq': int(_VERSION_NAME.match(name).group('seq'))}
  return None


def _is_whole(path: Text) -> bool:
  """Whether `path` holds a whole export (this saver's, or another's)."""
  if tf.io.gfile.exists(os.path.join(path, COMPLETE_MARKER)):
    return True
  return tf.io.gfile.exists(
      os.path.join(path, tf.saved_model.SAVED_MODEL_FILENAME_PB)
  ) and not tf.io.gfile.exists(os.path.join(path, MANIFEST_FILENAME))


def _newest_numbered(base_dir: Text) -> Optional[Version]:
  """The highest whole `base_dir/<number>` (TF Serving's layout), if any."""
  if tf.io.gfile.exists(
      os.path.join(base_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)):
    return None  # An export itself.
  try:
    children = [c.rstrip('/') for c in tf.io.gfile.listdir(base_dir)]
  except tf.errors.OpError:
    return None
  for number in sorted((int(c) for c in children if c.isdigit()),
                       reverse=True):
    path = os.path.join(base_dir, str(number))
    if _is_whole(path):
      return Version(export_dir=base_dir, path=path, version_id=str(number),
                     seq=number)
  return None


def is_retired(version: Version) -> bool:
  """Whether `version` was retired (or is being removed) since resolved."""
  if version.version_id is None:
    return False
  return not _is_whole(version.path)


def read_consistent(
    export_dir: Text, read: Callable[[Version], _T]
) -> _T:
  """Runs `read(version)` on the current version, again if it was retired.

  Args:
    export_dir: An export or checkpoint directory.
    read: Reads every file it needs from `version.path`.

  Returns:
    What `read` returned.

  Raises:
    Whatever `current_version` or `read` raised, unless `read` failed
    because its version was retired while it read (then it runs again on
    the new current version).
  """
  for attempt in range(_READ_ATTEMPTS):
    version = current_version(export_dir)
    try:
      return read(version)
    except Exception:  # pylint: disable=broad-except
      if attempt + 1 == _READ_ATTEMPTS or not is_retired(version):
        raise
  raise AssertionError('unreachable')


# ----------------------------------------------------------------- writing


def _foreign_files(export_dir: Text, names: Iterable[Text],
                   owned: Set[Text]) -> List[Text]:
  """Which of `names` exist at the top of `export_dir` but are not `owned`."""
  return sorted(
      rel for rel in names
      if rel not in owned and tf.io.gfile.exists(os.path.join(export_dir, rel))
  )


# Manifests of complete versions, by directory: a version never changes
# once complete and its name is never reused, so each is read once per
# process (a writer saving often keeps many recent versions).
_VERSION_MANIFESTS: Dict[Text, Dict[Text, Any]] = {}
_MAX_CACHED_MANIFESTS = 4096


def _valid_manifest(directory: Text) -> Optional[Dict[Text, Any]]:
  """The manifest of `directory` if it is valid, else None."""
  cached = _VERSION_MANIFESTS.get(directory)
  if cached is not None:
    return cached
  try:
    manifest = read_manifest(directory)
  except export_errors.ExportError:
    return None
  if manifest and _VERSION_NAME.match(os.path.basename(directory)):
    if len(_VERSION_MANIFESTS) >= _MAX_CACHED_MANIFESTS:
      _VERSION_MANIFESTS.clear()
    _VERSION_MANIFESTS[directory] = manifest
  return manifest


def _manifest_files(directory: Text) -> Set[Text]:
  """Files a valid manifest in `directory` lists, with itself and marker."""
  manifest = _valid_manifest(directory)
  if not manifest:
    return set()
  return set(manifest['files']) | {MANIFEST_FILENAME, COMPLETE_MARKER}


def _version_names(export_dir: Text) -> List[Text]:
  try:
    children = tf.io.gfile.listdir(versions_dir(export_dir))
  except tf.errors.NotFoundError:
    return []
  names = [c.rstrip('/') for c in children]
  # `ram://` lists by prefix (see `list_files`): keep real entries only.
  return sorted(n for n in names if _VERSION_NAME.match(n))


def _published_at(path: Text) -> float:
  """When the version in `path` was published (0 if unknown)."""
  return float((_valid_manifest(path) or {}).get('published_at', 0.0))


def owned_files(export_dir: Text) -> Set[Text]:
  """Top-level names the saver wrote into `export_dir` (any version)."""
  owned = _manifest_files(export_dir)
  for name in _version_names(export_dir):
    owned |= _manifest_files(os.path.join(versions_dir(export_dir), name))
  return owned


def _refuse(export_dir: Text, foreign: List[Text]) -> None:
  shown = ', '.join(foreign[:5]) + (
      ' and {} more'.format(len(foreign) - 5) if len(foreign) > 5 else '')
  raise export_errors.ExportWriteError(
      'Cannot export to {}: it holds files this saver did not write and '
      'never overwrites: {}. Remove them or choose another directory.'
      .format(export_dir, shown))


def _temporary(target: Text) -> Text:
  """A hidden temporary name beside `target`, naming this writer."""
  return os.path.join(
      os.path.dirname(target), '.{}.tmp-{}-{}-{}'.format(
          os.path.basename(target), _HOST, os.getpid(), uuid.uuid4().hex[:12]))


def _link_or_copy(source: Text, target: Text) -> None:
  """Puts `source`'s content at `target`; atomic replace on local disks."""
  if not is_local(target):
    # Removed first: some file systems (e.g. `ram://`) do not truncate a
    # file overwritten by `copy`.
    if tf.io.gfile.exists(target):
      tf.io.gfile.remove(target)
    tf.io.gfile.copy(source, target)
    return
  if os.path.exists(target) and os.path.samefile(source, target):
    return  # Already there (renaming a hard link onto itself does nothing).
  temporary = _temporary(target)
  try:
    try:
      os.link(source, temporary)
    except OSError:  # No hard links here (some network or FUSE mounts).
      shutil.copyfile(source, temporary)
    os.replace(temporary, target)
  except BaseException:
    if os.path.lexists(temporary):
      os.remove(temporary)
    raise


def _mirror_order(rel: Text) -> int:
  # Data shards before the index that names them; the manifest and marker
  # (which tell this repository's readers the top level is whole) last.
  if rel == COMPLETE_MARKER:
    return 4
  if rel == MANIFEST_FILENAME:
    return 3
  if is_data_shard(rel):
    return 0
  return 1 if rel.startswith(tf.saved_model.VARIABLES_DIRECTORY + '/') else 2


class _Lock(object):
  """An exclusive `flock` on a local file; does nothing elsewhere."""

  def __init__(self, path: Text):
    self._path = path
    self._file = None

  def __enter__(self):
    if fcntl is not None and is_local(self._path):
      self._file = open(self._path, 'a')
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
    return self

  def __exit__(self, *unused_exc):
    if self._file is not None:
      self._file.close()  # Releases the lock.
      self._file = None


def _writer_dead(host: Text, pid: int) -> bool:
  if host != _HOST or pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except OSError:
    return False
  return False


class Publication(object):
  """One `save` or `save_checkpoint` into `export_dir`.

  Usage: `p = Publication(export_dir, names)`, write every file of the new
  version into `p.staging`, then `p.commit(extra)`; `p.abort()` on failure.

  Attributes:
    export_dir: The export directory (never renamed or removed).
    previous: The version current when the publication started, or None.
    staging: The new version's directory, to be filled by the caller.
  """

  def __init__(self, export_dir: Any, names: Iterable[Text] = ()):
    """Checks `export_dir` and creates the new version's directory.

    Args:
      export_dir: The export directory (`str`, `bytes` or path-like).
      names: Top-level files the new version will have, as far as known
        before writing: checked now so a refusal writes nothing.

    Raises:
      ExportWriteError: `export_dir` is a file, or holds files the saver did
        not write under names the export needs.
    """
    self.export_dir = normalize_dir(export_dir)
    if tf.io.gfile.exists(self.export_dir) and not tf.io.gfile.isdir(
        self.export_dir):
      raise export_errors.ExportWriteError(
          'Cannot export to {}: it is an existing file.'.format(
              self.export_dir))
    self._owned = owned_files(self.export_dir)
    foreign = _foreign_files(self.export_dir, names, self._owned)
    if foreign:
      _refuse(self.export_dir, foreign)
    # Directories this publication creates, removed again by `abort` if
    # they are still empty then.
    self._created = [d for d in (self.export_dir,
                                 versions_dir(self.export_dir))
                     if not tf.io.gfile.exists(d)]
    try:
      self.previous = current_version(self.export_dir)
    except export_errors.ExportError:
      self.previous = None
    seqs = [int(_VERSION_NAME.match(n).group('seq'))
            for n in _version_names(self.export_dir)]
    if self.previous is not None and self.previous.seq:
      seqs.append(self.previous.seq)
    self.seq = max(seqs, default=0) + 1
    self.version_id = 'v-{:08d}-{}-{}-{}'.format(
        self.seq, _HOST, os.getpid(), uuid.uuid4().hex[:12])
    self.staging = os.path.join(versions_dir(self.export_dir),
                                self.version_id)
    tf.io.gfile.makedirs(self.staging)

  def previous_files(self) -> Dict[Text, Text]:
    """Files of the previous version this saver wrote: `{rel: path}`."""
    if self.previous is None:
      return {}
    listed = _manifest_files(self.previous.path) - {MANIFEST_FILENAME,
                                                    COMPLETE_MARKER}
    return {rel: os.path.join(self.previous.path, rel) for rel in listed}

  def carry(self, rel: Text, source: Text) -> None:
    """Puts an unchanged file of the previous version into the new one."""
    target = os.path.join(self.staging, rel)
    tf.io.gfile.makedirs(os.path.dirname(target))
    _link_or_copy(source, target)

  def abort(self) -> None:
    """Removes the new version and the directories made for it, if empty."""
    discard(self.staging)
    for directory in reversed(self._created):
      try:
        if set(tf.io.gfile.listdir(directory)) <= {_LOCK_FILENAME}:
          tf.io.gfile.rmtree(directory)
      except (tf.errors.OpError, OSError):
        pass

  def commit(self, extra: Dict[Text, Any]) -> Dict[Text, Any]:
    """Completes the new version and makes it current.

    Args:
      extra: Fields for the manifest and pointer (`kind`, `train_step`).

    Returns:
      The manifest written.

    Raises:
      ExportWriteError: A file the saver did not write has a name the new
        version needs (the new version is removed; nothing else changed).
      OSError, tf.errors.OpError: Writing failed.
    """
    fields = dict(extra, version=self.version_id, seq=self.seq)
    pointer = {k: fields.get(k) for k in ('version', 'seq', 'kind',
                                          'train_step')}
    with _Lock(os.path.join(versions_dir(self.export_dir), _LOCK_FILENAME)):
      # Under the lock: another local writer may have published since this
      # publication started (its files are the saver's too), and the version
      # is complete (its marker written) only now, so that writer's
      # retirement, also under the lock, never takes it while it waits.
      self._owned = owned_files(self.export_dir)
      manifest = write_manifest(
          self.staging, dict(fields, published_at=time.time()))
      files = sorted(manifest['files']) + [MANIFEST_FILENAME,
                                           COMPLETE_MARKER]
      foreign = _foreign_files(self.export_dir, files, self._owned)
      if foreign:
        self.abort()
        _refuse(self.export_dir, foreign)
      # The pointer switches last: if mirroring fails, or the writer is
      # killed, this repository's readers stay on the previous version.
      replaced = (_read_pointer(self.export_dir) or {}).get('version')
      try:
        self._mirror(self.staging, files, self._owned)
        self._write_pointer(pointer)
      except BaseException:
        self._restore_top_level(files)
        raise
      try:
        self._remove_leftovers(replaced)
      except (OSError, tf.errors.OpError) as e:
        logging.warning('Could not remove old versions in %s: %s',
                        self.export_dir, export_errors.one_line(e))
    return manifest

  def _restore_top_level(self, new_files: List[Text]) -> None:
    """Puts the previous version back at the top level, as far as possible."""
    previous = self.previous
    if previous is None or previous.version_id is None:
      return
    try:
      files = sorted(_manifest_files(previous.path))
      self._mirror(previous.path, files, self._owned | set(new_files))
    except (OSError, tf.errors.OpError) as e:
      logging.warning('Could not restore the top level of %s: %s',
                      self.export_dir, export_errors.one_line(e))

  def _write_pointer(self, pointer: Dict[Text, Any]) -> None:
    # Written aside, then renamed over the old one: atomic on local disks
    # and `ram://`; on object stores a rename is a copy, and the new object
    # appears whole.
    path = os.path.join(versions_dir(self.export_dir), POINTER_FILENAME)
    temporary = _temporary(path)
    try:
      with tf.io.gfile.GFile(temporary, 'wb') as f:
        f.write(json.dumps(pointer, sort_keys=True).encode('utf-8'))
      tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
      if tf.io.gfile.exists(temporary):
        tf.io.gfile.remove(temporary)
      raise

  def _mirror(self, source: Text, files: List[Text],
              owned: Set[Text]) -> None:
    """Makes the top of `export_dir` the version in `source`.

    Args:
      source: The version's directory.
      files: The version's files (manifest and marker included).
      owned: Top-level files the saver wrote; those not in `files` go.
    """
    top_marker = os.path.join(self.export_dir, COMPLETE_MARKER)
    if not is_local(self.export_dir) and tf.io.gfile.exists(top_marker):
      tf.io.gfile.remove(top_marker)  # Copies below are not atomic.
    for dirname, _, _ in tf.io.gfile.walk(source):
      # Empty ones too (e.g. `assets/`, as upstream's layout has it).
      rel = os.path.relpath(dirname.rstrip('/'), source)
      tf.io.gfile.makedirs(os.path.normpath(
          os.path.join(self.export_dir, rel)))
    for rel in sorted(files, key=lambda r: (_mirror_order(r), r)):
      target = os.path.join(self.export_dir, rel)
      tf.io.gfile.makedirs(os.path.dirname(target))
      _link_or_copy(os.path.join(source, rel), target)
    for rel in sorted(owned - set(files)):
      path = os.path.join(self.export_dir, rel)
      if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        tf.io.gfile.remove(path)

  def _remove_leftovers(self, replaced: Optional[Text]) -> None:
    """Retires old versions; removes what dead writers left behind."""
    self._retire_old_versions(replaced)
    if not is_local(self.export_dir):
      return
    directories = {versions_dir(self.export_dir)} | {
        os.path.dirname(os.path.join(self.export_dir, rel))
        for rel in self._owned}
    for directory in sorted(directories):
      try:
        children = os.listdir(directory)
      except OSError:
        continue
      for child in children:
        match = _TEMPORARY_NAME.match(child)
        if match and _writer_dead(match.group('host'),
                                  int(match.group('pid'))):
          try:
            os.remove(os.path.join(directory, child))
          except OSError:
            pass

  def _retire_old_versions(self, replaced: Optional[Text]) -> None:
    """Removes old complete versions and abandoned incomplete ones.

    Args:
      replaced: The version that was current until this publish (kept).
    """
    complete, now = [], time.time()
    for name in _version_names(self.export_dir):
      path = os.path.join(versions_dir(self.export_dir), name)
      match = _VERSION_NAME.match(name)
      if tf.io.gfile.exists(os.path.join(path, COMPLETE_MARKER)):
        complete.append((int(match.group('seq')), name))
        continue
      if name == self.version_id:
        continue
      try:
        mtime = tf.io.gfile.stat(path).mtime_nsec / 1e9
      except tf.errors.NotFoundError:
        continue
      age = now - mtime if mtime else 0.0  # Unknown (0): not abandoned.
      if (_writer_dead(match.group('host'), int(match.group('pid')))
          or age > _ABANDONED_SECONDS):
        discard(path)
    # Keep this version, the one it replaced, anything newer (another
    # writer's), and any that stopped being current (its successor was
    # published) less than `_RETIRE_AFTER_SECONDS` ago.
    older = sorted((c for c in complete
                    if c[0] <= self.seq and c[1] != self.version_id),
                   reverse=True)
    superseded_at = now
    for _, name in older:
      path = os.path.join(versions_dir(self.export_dir), name)
      recent = now - superseded_at < _RETIRE_AFTER_SECONDS
      superseded_at = _published_at(path)
      if name == replaced or recent:
        continue
      # The marker goes first: readers of this version then know to start
      # again (`read_consistent`).
      try:
        tf.io.gfile.remove(os.path.join(path, COMPLETE_MARKER))
      except tf.errors.NotFoundError:
        continue
      discard(path)


_TRAILING_NUMBER = re.compile(r'^(?P<stem>.*?)(?P<number>\d+)$')


def _only_saver_files(directory: Text) -> bool:
  """Whether every file in `directory` was written by the saver."""
  return set(list_files(directory)) <= owned_files(directory)


def retire_checkpoints(checkpoint_dir: Any, max_to_keep: int) -> List[Text]:
  """Removes the oldest checkpoints beside `checkpoint_dir`.

  Siblings named like `checkpoint_dir` up to a different trailing number
  (`policy_checkpoint_0000001000`, as `PolicySavedModelTrigger` names them,
  or TF Serving's `base/<number>`) and written by the saver are ordered by
  that number; the `max_to_keep` highest stay. An older one is
  removed only if every file in it was written by the saver (a directory
  holding anything else is kept, and logged) and the checkpoint after it was
  published at least 10 seconds ago, so a reader that found it newest a
  moment ago can still load it. Its versions' markers go first.

  Args:
    checkpoint_dir: The checkpoint just written.
    max_to_keep: How many of the newest checkpoints stay (> 0).

  Returns:
    The directories removed.
  """
  parent, name = os.path.split(normalize_dir(checkpoint_dir))
  match = _TRAILING_NUMBER.match(name)
  if match is None:
    return []
  numbered = []
  for child in tf.io.gfile.listdir(parent or '.'):
    child = child.rstrip('/')
    other = _TRAILING_NUMBER.match(child)
    if other and other.group('stem') == match.group('stem'):
      numbered.append((int(other.group('number')),
                       os.path.join(parent, child)))
  numbered.sort(reverse=True)
  removed = []
  successor_published = time.time()
  for index, (_, path) in enumerate(numbered):
    recent = time.time() - successor_published < _RETIRE_AFTER_SECONDS
    try:
      published = _published_at(current_version(path).path)
    except export_errors.ExportError:
      published = 0.0
    if not published:
      continue  # Not a complete checkpoint of the saver: not touched.
    successor_published = published
    if index < max_to_keep or recent:
      continue
    if not _only_saver_files(path):
      logging.warning('Keeping %s: it holds files the saver did not write.',
                      path)
      continue
    markers = [os.path.join(path, COMPLETE_MARKER)] + [
        os.path.join(versions_dir(path), name, COMPLETE_MARKER)
        for name in _version_names(path)]
    for marker in markers:
      if tf.io.gfile.exists(marker):
        tf.io.gfile.remove(marker)
    discard(path)
    removed.append(path)
  return removed


class NumberedPublication(object):
  """One save into TF Serving's layout: `base_dir/<number>/`.

  TF Serving, TFX and Vertex AI serve the highest numbered subdirectory of a
  base directory. The export is written into a hidden sibling
  (`.tmp-<number>-...`, which they ignore), completed with its manifest and
  marker, then renamed to `<number>` in one step on local disks. On object
  stores, where a rename is a copy, its files are copied in with
  `saved_model.pb` and then the manifest and marker last, so a server that
  waits for `saved_model.pb` sees every variable file, and this
  repository's readers (which take the highest number with a marker, see
  `current_version`) never see a partial one. Same interface as
  `Publication`.

  Attributes:
    export_dir: The base directory.
    previous: Always None (a numbered version is written whole).
    staging: The directory to fill.
    number: The version's number.
  """

  def __init__(self, base_dir: Any, number: Optional[int] = None):
    """Picks the number and creates the staging directory.

    Args:
      base_dir: The base directory.
      number: The version number; default: one above the highest present.

    Raises:
      ExportWriteError: `base_dir` is a file or an export itself, or version
        `number` exists.
    """
    self.export_dir = normalize_dir(base_dir)
    if tf.io.gfile.exists(self.export_dir) and (
        not tf.io.gfile.isdir(self.export_dir) or tf.io.gfile.exists(
            os.path.join(self.export_dir,
                         tf.saved_model.SAVED_MODEL_FILENAME_PB))):
      raise export_errors.ExportWriteError(
          'Cannot write numbered versions into {}: it is a file or an export '
          'itself.'.format(self.export_dir))
    try:
      children = [c.rstrip('/') for c in tf.io.gfile.listdir(self.export_dir)]
    except tf.errors.NotFoundError:
      children = []
    numbers = [int(c) for c in children if c.isdigit()]
    if number is None:
      number = max(numbers, default=0) + 1
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
      raise export_errors.ExportWriteError(
          'A version number must be an integer >= 0, got {!r}.'.format(
              number))
    if number in numbers:
      raise export_errors.ExportWriteError(
          'Cannot write version {} into {}: it exists (versions are never '
          'overwritten).'.format(number, self.export_dir))
    self.number = number
    self.previous = None
    self.target = os.path.join(self.export_dir, str(number))
    self.staging = os.path.join(self.export_dir, '.tmp-{}-{}-{}-{}'.format(
        number, _HOST, os.getpid(), uuid.uuid4().hex[:12]))
    tf.io.gfile.makedirs(self.staging)

  def previous_files(self) -> Dict[Text, Text]:
    return {}

  def abort(self) -> None:
    discard(self.staging)

  def commit(self, extra: Dict[Text, Any]) -> Dict[Text, Any]:
    """Completes the version and renames (or copies) it into place."""
    manifest = write_manifest(self.staging, dict(
        extra, version=str(self.number), seq=self.number,
        published_at=time.time()))
    if is_local(self.target):
      os.rename(self.staging, self.target)  # Fails if it appeared since.
      return manifest
    files = sorted(manifest['files'], key=lambda rel: (
        rel == tf.saved_model.SAVED_MODEL_FILENAME_PB, rel))
    for rel in files + [MANIFEST_FILENAME, COMPLETE_MARKER]:
      target = os.path.join(self.target, rel)
      tf.io.gfile.makedirs(os.path.dirname(target))
      tf.io.gfile.copy(os.path.join(self.staging, rel), target)
    discard(self.staging)
    return manifest
