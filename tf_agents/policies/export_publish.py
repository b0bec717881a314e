# coding=utf-8
"""Crash-safe publishing of policy export directories.

New module (upstream writes exports in place, so a killed or failed save
leaves a directory that loads wrong or not at all). `PolicySaver.save` and
`save_checkpoint` write every file into a hidden staging sibling
`.<name>.tmp-<host>-<pid>-<hex>`, add an integrity manifest
(`export_manifest.json`, see `write_manifest`) and a completion marker
(`export_complete`, written last, holding the manifest's sha256), then
publish the staging directory in one step:

* Local file systems: `export_dir` is a relative symlink to a hidden version
  directory `.<name>.v-<host>-<pid>-<hex>` in the same parent. Publishing
  renames the staging directory to a new version directory and atomically
  replaces the symlink (`os.replace`), so a reader that opens `export_dir`
  sees the old export or the new one, never a mix and never nothing.
  `tf.saved_model.load` and every `tf.io.gfile` call follow the link, so
  `export_dir` stays a normal SavedModel directory to readers. `tf.io.gfile`
  has no symlink API, so this one step uses `os`. When `export_dir` is a
  real directory (e.g. written by upstream's saver), the first publish moves
  it aside and puts the link in its place: only that one-time conversion has
  a short window where `export_dir` is missing.
* Other schemes (`gs://`, `ram://`, ...) have no atomic directory rename:
  publishing removes the marker, moves the files in, deletes files the new
  export does not have and moves the marker in last. Readers treat an export
  with a manifest but no marker as incomplete.

Two writers publishing to one directory at once: each publishes a complete
export with one atomic step, so the last complete writer wins.

Leftovers of interrupted saves (staging and old version directories) are
removed by the next save when their writer is dead (same host and PID no
longer alive) or they are older than a grace period; the current version and
the one it just replaced (which a reader may still be loading) are kept.
"""

import hashlib
import json
import os
import re
import socket
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Text

import tensorflow as tf

from tf_agents.policies import export_errors

MANIFEST_FILENAME = 'export_manifest.json'
COMPLETE_MARKER = 'export_complete'
MANIFEST_FORMAT = 2
# Formats `read_manifest` accepts. Format 1 gave every file a sha256.
_READABLE_FORMATS = (1, 2)
_HASH_CHUNK_BYTES = 256 << 10
# How the manifest marks a checkpoint data shard checked by its tensors'
# CRC32C (see `write_manifest`).
TENSOR_CRC32C = 'tensor_crc32c'
_DATA_SHARD = re.compile(r'(^|/)variables/[^/]+\.data-\d+-of-\d+$')

# Grace periods (seconds) before a leftover of a live (or remote) writer is
# removed.
_VERSION_GRACE_SECONDS = 300.0
_STAGING_GRACE_SECONDS = 3600.0

_HOST = re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())[:32] or 'host'
_LEFTOVER = re.compile(
    r'^\.(?P<name>.+)\.(?P<kind>tmp|v|old|lnk)-(?P<host>[A-Za-z0-9]+)-'
    r'(?P<pid>\d+)-[0-9a-f]+$'
)


def is_local(path: Text) -> bool:
  """Whether `path` is on the local file system (no URL scheme)."""
  return '://' not in path


def _split(export_dir: Text):
  export_dir = export_dir.rstrip('/') or export_dir
  parent, name = os.path.split(export_dir)
  if not name:
    raise export_errors.ExportWriteError(
        'Cannot export to {!r}: not a directory name.'.format(export_dir)
    )
  return parent or '.', name


def _unique() -> Text:
  return '{}-{}-{}'.format(_HOST, os.getpid(), uuid.uuid4().hex[:12])


def new_staging_dir(export_dir: Text) -> Text:
  """Creates and returns a fresh hidden staging sibling of `export_dir`."""
  parent, name = _split(export_dir)
  tf.io.gfile.makedirs(parent)
  staging = os.path.join(parent, '.{}.tmp-{}'.format(name, _unique()))
  tf.io.gfile.makedirs(staging)
  return staging


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
  """Relative paths (with `/`) of all files under `root`, sorted."""
  files = []
  # TensorFlow's `ram://` file system lists by name prefix: the listing of
  # `ram://x/policy` also shows entries of a sibling `ram://x/policy_1` (as
  # `_1`), which do not exist under `root`.
  confirm = not is_local(root)
  for dirname, _, filenames in tf.io.gfile.walk(root):
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
    export_dir: An export directory.

  Returns:
    The manifest dict, or None for an export without a manifest (e.g.
    written by upstream's saver).

  Raises:
    NotAnExportError: The manifest exists but the completion marker does not
      (an interrupted non-atomic publish).
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
  """Checks every file of `export_dir` against its manifest.

  Args:
    export_dir: An export directory.

  Returns:
    The manifest, or None if the export has none.

  Raises:
    NotAnExportError, ManifestMismatchError: as `read_manifest`, or when a
      file is missing, extra, or differs in size or sha256 (the message names
      the file). Data shards are checked by size only here; TensorFlow checks
      their tensors' CRC32C when it restores them (see `write_manifest`).
  """
  manifest = read_manifest(export_dir)
  if manifest is None:
    return None
  present = set(list_files(export_dir)) - {MANIFEST_FILENAME, COMPLETE_MARKER}
  for rel, entry in sorted(manifest['files'].items()):
    if rel not in present:
      raise export_errors.ManifestMismatchError(
          '{}: file {} listed in {} is missing.'.format(
              export_dir, rel, MANIFEST_FILENAME
          )
      )
    path = os.path.join(export_dir, rel)
    if tf.io.gfile.stat(path).length != entry.get('size'):
      raise export_errors.ManifestMismatchError(
          '{}: file {} has the wrong size.'.format(export_dir, rel)
      )
    if entry.get('check') == TENSOR_CRC32C and is_data_shard(rel):
      continue
    if file_sha256(path)['sha256'] != entry.get('sha256'):
      raise export_errors.ManifestMismatchError(
          '{}: file {} does not match its sha256 in {}.'.format(
              export_dir, rel, MANIFEST_FILENAME
          )
      )
  extra = sorted(present - set(manifest['files']))
  if extra:
    raise export_errors.ManifestMismatchError(
        '{}: file {} is not listed in {}.'.format(
            export_dir, extra[0], MANIFEST_FILENAME
        )
    )
  return manifest


def publish(staging: Text, export_dir: Text) -> Optional[Text]:
  """Makes the complete export in `staging` visible as `export_dir`.

  Args:
    staging: A staging directory from `new_staging_dir`, manifest written.
    export_dir: The export directory.

  Returns:
    The version directory this publish replaced (local only), else None.

  Raises:
    ExportWriteError: `export_dir` is an existing file.
  """
  if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
    raise export_errors.ExportWriteError(
        'Cannot export to {}: it is an existing file.'.format(export_dir)
    )
  if is_local(export_dir):
    return _publish_local(staging, export_dir)
  _publish_copy(staging, export_dir)
  return None


def _publish_local(staging: Text, export_dir: Text) -> Optional[Text]:
  """Publishes by switching the `export_dir` symlink; undone on failure.

  If a step fails, the version directory and link made so far are removed
  and a real `export_dir` moved aside is moved back, so the previous export
  stays where it was and nothing is left behind (the caller discards
  `staging` if it was not renamed).

  Args:
    staging: The complete staging directory.
    export_dir: The export directory.

  Returns:
    The version directory the link pointed to before, or None.
  """
  parent, name = _split(export_dir)
  export_dir = os.path.join(parent, name)
  unique = _unique()
  version = os.path.join(parent, '.{}.v-{}'.format(name, unique))
  link = os.path.join(parent, '.{}.lnk-{}'.format(name, unique))
  os.rename(staging, version)
  moved_aside = None
  try:
    os.symlink(os.path.basename(version), link)
    previous = None
    if os.path.islink(export_dir):
      previous = os.path.join(parent, os.readlink(export_dir))
    elif os.path.isdir(export_dir):
      aside = os.path.join(parent, '.{}.old-{}'.format(name, unique))
      try:
        os.rename(export_dir, aside)
        moved_aside = aside
      except FileNotFoundError:
        pass  # Another writer moved it first.
    os.replace(link, export_dir)
  except BaseException:
    if moved_aside is not None and not os.path.lexists(export_dir):
      try:
        os.rename(moved_aside, export_dir)
      except OSError:
        pass  # Left for `cleanup`; nothing better can be done here.
    try:
      if os.path.lexists(link):
        os.remove(link)
    except OSError:
      pass
    discard(version)
    raise
  return previous


def _publish_copy(staging: Text, export_dir: Text) -> None:
  """Publishes on file systems without atomic rename; marker moved last."""
  tf.io.gfile.makedirs(export_dir)
  marker = os.path.join(export_dir, COMPLETE_MARKER)
  if tf.io.gfile.exists(marker):
    tf.io.gfile.remove(marker)
  new_files = [f for f in list_files(staging) if f != COMPLETE_MARKER]
  for rel in new_files:
    source = os.path.join(staging, rel)
    target = os.path.join(export_dir, rel)
    tf.io.gfile.makedirs(os.path.dirname(target))
    _replace_file(source, target)
  for rel in set(list_files(export_dir)) - set(new_files) - {COMPLETE_MARKER}:
    tf.io.gfile.remove(os.path.join(export_dir, rel))
  _replace_file(os.path.join(staging, COMPLETE_MARKER), marker)
  discard(staging)


def _replace_file(source: Text, target: Text) -> None:
  # Removed first: some file systems (e.g. `ram://`) do not truncate a file
  # overwritten by `copy`.
  if tf.io.gfile.exists(target):
    tf.io.gfile.remove(target)
  tf.io.gfile.copy(source, target)


def _writer_dead(host: Text, pid: int) -> bool:
  if host != _HOST:
    return False
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except OSError:
    return False
  return False


def cleanup(export_dir: Text, keep: Iterable[Optional[Text]] = ()) -> None:
  """Removes stale leftovers of earlier saves next to `export_dir`.

  Args:
    export_dir: The export directory.
    keep: Paths that must survive (e.g. the version just replaced).
  """
  parent, name = _split(export_dir)
  keep_names = {os.path.basename(p.rstrip('/')) for p in keep if p}
  if is_local(export_dir) and os.path.islink(os.path.join(parent, name)):
    keep_names.add(os.path.basename(os.readlink(os.path.join(parent, name))))
  try:
    children = tf.io.gfile.listdir(parent)
  except tf.errors.NotFoundError:
    return
  now = time.time()
  for child in children:
    child = child.rstrip('/')
    match = _LEFTOVER.match(child)
    if not match or match.group('name') != name or child in keep_names:
      continue
    path = os.path.join(parent, child)
    kind = match.group('kind')
    host, pid = match.group('host'), int(match.group('pid'))
    own = host == _HOST and pid == os.getpid()
    try:
      if is_local(path):
        # lstat: a dangling `.lnk-` symlink must still be cleaned up.
        age = now - os.lstat(path).st_mtime
      else:
        age = now - tf.io.gfile.stat(path).mtime_nsec / 1e9
    except (OSError, tf.errors.NotFoundError):
      continue
    if kind in ('v', 'old'):
      stale = own or _writer_dead(host, pid) or age > _VERSION_GRACE_SECONDS
    else:
      stale = _writer_dead(host, pid) or age > _STAGING_GRACE_SECONDS
    if not stale:
      continue
    if kind == 'lnk':
      try:
        os.remove(path)
      except OSError:
        pass
    else:
      discard(path)
