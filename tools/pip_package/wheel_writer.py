# coding=utf-8
"""Writes the tf-agents wheel: the pinned upstream distribution plus overlays.

Driven by Bazel (`//tools/pip_package:wheel.bzl`); see decision 4 of the
architecture doc. The wheel holds

* every file of the installed upstream distribution (read through
  `importlib.metadata`; its RECORD lists them and their sha256, which are
  verified) except byte code and its `.dist-info`, which is regenerated;
* this repository's owned modules layered over them (`--overlay`); overlays of
  an `__init__.py` are refused: the repository's `__init__` files are overlay
  shims and upstream's ship instead;
* a fresh `.dist-info`: upstream's METADATA with the version (plus an optional
  local label) and the requirement adjustments given on the command line,
  WHEEL, top_level.txt, the license, entry_points.txt for console scripts
  whose module is in the wheel, and RECORD with sha256 digests.

The output is byte-reproducible: entries are sorted (the `.dist-info` last,
RECORD at the very end), every entry has the date 1980-01-01, mode 0644 and
the same deflate level, and nothing depends on the clock, the user, the
locale or the file system's order.

Uses the standard library only (issue 5 asks for a stdlib-only writer), hence
`argparse` and `logging` rather than absl. Arguments may come from a params
file: `wheel_writer.py @params --output=out.whl`.
"""

import argparse
import ast
import base64
import hashlib
import importlib.metadata
import logging
import os
import re
import stat
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
import zipfile

# The zip format's earliest representable date; used for every entry.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = stat.S_IFREG | 0o644
_COMPRESS_LEVEL = 9
_GENERATOR = "tf_agents_policy_export wheel_writer 1.0"
_TAG = "py3-none-any"

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOCAL_LABEL_RE = re.compile(r"^[A-Za-z0-9]+(\.[A-Za-z0-9]+)*$")


class WheelError(Exception):
  """The wheel cannot be written from the given inputs."""


def normalize_name(name: str) -> str:
  """Returns the PEP 503 normalized form of a project name."""
  return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
  match = _NAME_RE.match(requirement)
  if not match:
    raise WheelError("Cannot parse the requirement %r." % requirement)
  return normalize_name(match.group(1))


def record_hash(data: bytes) -> str:
  """Returns the RECORD form of `data`'s sha256: `sha256=<urlsafe b64>`."""
  digest = hashlib.sha256(data).digest()
  return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def wheel_version(version: str, local_label: str) -> str:
  """Returns `version`, plus `+local_label` when one is given."""
  if not local_label:
    return version
  if not _LOCAL_LABEL_RE.match(local_label):
    raise WheelError(
        "The local version label %r is not a PEP 440 local label (letters, "
        "digits, dots)." % local_label)
  return "%s+%s" % (version, local_label)


def wheel_filename(name: str, version: str) -> str:
  """Returns the wheel file name for a pure-Python py3 wheel."""
  escaped = re.sub(r"[-_.]+", "_", name).lower()
  return "%s-%s-%s.whl" % (escaped, version.replace("-", "_"), _TAG)


def adjust_metadata(metadata: str, version: str,
                    overrides: Mapping[str, str],
                    extra_requirements: Sequence[str]) -> str:
  """Returns upstream's METADATA with a new version and adjusted requirements.

  Args:
    metadata: The text of upstream's METADATA file.
    version: The version to write in the `Version` field.
    overrides: Maps a project name to the requirement that replaces upstream's
      unconditional `Requires-Dist` on that project.
    extra_requirements: Requirements added after upstream's unconditional ones.

  Returns:
    The adjusted METADATA text.

  Raises:
    WheelError: if the text has no `Version` field, an override names a
      project upstream does not require, or an added requirement duplicates
      one upstream already has.
  """
  header, sep, body = metadata.partition("\n\n")
  lines = header.split("\n")
  wanted = {normalize_name(k): v for k, v in overrides.items()}
  used = set()
  unconditional = set()
  out = []
  last_unconditional = None
  saw_version = False
  for line in lines:
    field, colon, value = line.partition(":")
    if colon and field == "Version":
      line = "Version: " + version
      saw_version = True
    elif colon and field == "Requires-Dist" and "extra ==" not in value:
      name = _requirement_name(value)
      unconditional.add(name)
      if name in wanted:
        line = "Requires-Dist: " + wanted[name]
        used.add(name)
      out.append(line)
      last_unconditional = len(out)
      continue
    out.append(line)
  if not saw_version:
    raise WheelError("Upstream METADATA has no Version field.")
  unused = sorted(set(wanted) - used)
  if unused:
    raise WheelError(
        "Requirement overrides for %s, which upstream METADATA does not "
        "require unconditionally." % ", ".join(unused))
  added = []
  for requirement in extra_requirements:
    name = _requirement_name(requirement)
    if name in unconditional:
      raise WheelError(
          "Added requirement %r duplicates upstream's; use an override." %
          requirement)
    added.append("Requires-Dist: " + requirement)
  if added:
    at = last_unconditional if last_unconditional is not None else len(out)
    out[at:at] = added
  return "\n".join(out) + sep + body


def _defines_no_argument_function(source: bytes, function: str) -> bool:
  """Whether `source` defines `function` at top level, callable without args."""
  for node in ast.parse(source).body:
    if isinstance(node, ast.FunctionDef) and node.name == function:
      args = node.args
      positional = len(args.posonlyargs) + len(args.args) - len(args.defaults)
      kw_only = sum(d is None for d in args.kw_defaults)
      return positional == 0 and kw_only == 0
  return False


def entry_points(console_scripts: Mapping[str, str],
                 files: Mapping[str, bytes]) -> Optional[str]:
  """Returns entry_points.txt for the console scripts whose module ships.

  Args:
    console_scripts: Maps a script name to `package.module:function`.
    files: The wheel's files, by archive path.

  Returns:
    The text of entry_points.txt, or None when no script's module is in
    `files`.

  Raises:
    WheelError: if a script's module ships but does not define its function
      at top level, callable without arguments, or a script spec is
      malformed.
  """
  lines = []
  for script, spec in sorted(console_scripts.items()):
    module, colon, function = spec.partition(":")
    if not colon or not module or not function.isidentifier():
      raise WheelError(
          "Console script %s=%r is not `package.module:function`." %
          (script, spec))
    path = module.replace(".", "/") + ".py"
    if path not in files:
      logging.info("Console script %s skipped: %s is not in the wheel.",
                   script, path)
      continue
    if not _defines_no_argument_function(files[path], function):
      raise WheelError(
          "Console script %s: %s defines no top-level function %s() callable "
          "without arguments." % (script, path, function))
    lines.append("%s = %s" % (script, spec))
  if not lines:
    return None
  return "[console_scripts]\n" + "\n".join(lines) + "\n"


def upstream_files(
    distribution: str,
    expected_version: str) -> Tuple[Dict[str, bytes], Dict[str, bytes]]:
  """Reads the installed distribution's files, verifying them against RECORD.

  Args:
    distribution: The distribution name, e.g. "tf-agents".
    expected_version: The version that must be installed.

  Returns:
    A pair: the package files by archive path (without byte code and without
    the `.dist-info`), and the `.dist-info` files by base name.

  Raises:
    WheelError: if the distribution is missing, has another version, has no
      RECORD, lists files outside the environment's library directory, or a
      file does not match its RECORD entry.
  """
  try:
    dist = importlib.metadata.distribution(distribution)
  except importlib.metadata.PackageNotFoundError as e:
    raise WheelError(
        "%s is not installed in the Python environment %s." %
        (distribution, sys.prefix)) from e
  if dist.version != expected_version:
    raise WheelError(
        "The Python environment %s has %s %s; the wheel is built on the "
        "pinned %s." % (sys.prefix, distribution, dist.version,
                        expected_version))
  if not dist.files:
    raise WheelError("%s %s has no RECORD." % (distribution, dist.version))
  package_files = {}
  dist_info = {}
  for path in dist.files:
    name = path.as_posix()
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
      raise WheelError(
          "%s's RECORD lists %s outside its library directory; only pure "
          "package files are supported." % (distribution, name))
    if parts[0].endswith(".dist-info"):
      if len(parts) == 2:
        dist_info[parts[1]] = path.read_binary()
      continue
    if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):
      continue
    data = path.read_binary()
    if path.hash is None or path.hash.mode != "sha256":
      raise WheelError("%s has no sha256 in %s's RECORD." %
                       (name, distribution))
    if record_hash(data) != "sha256=" + path.hash.value:
      raise WheelError(
          "%s in %s does not match its RECORD entry: the installed "
          "distribution was modified." % (name, dist.locate_file("")))
    package_files[name] = data
  return package_files, dist_info


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def overlay_files(overlays: Sequence[str],
                  top_level: Sequence[str]) -> Dict[str, bytes]:
  """Reads the `archive_path=file` overlays.

  Args:
    overlays: `archive_path=file` strings.
    top_level: The distribution's top-level packages.

  Returns:
    The overlay contents by archive path.

  Raises:
    WheelError: for an `__init__.py` overlay, a path outside the top-level
      packages, a malformed or duplicate entry.
  """
  files = {}
  for overlay in overlays:
    archive_path, eq, source = overlay.partition("=")
    if not eq or not archive_path or not source:
      raise WheelError("Overlay %r is not `archive_path=file`." % overlay)
    parts = archive_path.split("/")
    if parts[0] not in top_level or ".." in parts or len(parts) < 2:
      raise WheelError("Overlay %s is outside the packages %s." %
                       (archive_path, ", ".join(top_level)))
    if parts[-1] == "__init__.py":
      raise WheelError(
          "Overlay %s refused: the repository's __init__ files are overlay "
          "shims; upstream's ship." % archive_path)
    if archive_path in files:
      raise WheelError("Overlay %s given twice." % archive_path)
    files[archive_path] = _read(source)
  return files


def _zip_info(name: str) -> zipfile.ZipInfo:
  info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
  info.compress_type = zipfile.ZIP_DEFLATED
  info.create_system = 3  # Unix, so that external_attr holds the mode.
  info.external_attr = _FILE_MODE << 16
  return info


def write_wheel(output: str, files: Mapping[str, bytes],
                dist_info_dir: str, dist_info: Mapping[str, bytes]) -> None:
  """Writes a wheel deterministically, generating its RECORD.

  Args:
    output: The path of the wheel to write.
    files: The package files by archive path.
    dist_info_dir: The `.dist-info` directory name.
    dist_info: The `.dist-info` files (without RECORD) by base name.
  """
  entries = sorted(files.items())
  entries += sorted(("%s/%s" % (dist_info_dir, k), v)
                    for k, v in dist_info.items())
  record_name = dist_info_dir + "/RECORD"
  record = "".join("%s,%s,%d\n" % (name, record_hash(data), len(data))
                   for name, data in entries)
  record += record_name + ",,\n"
  entries.append((record_name, record.encode("utf-8")))
  with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED,
                       compresslevel=_COMPRESS_LEVEL) as wheel:
    for name, data in entries:
      wheel.writestr(_zip_info(name), data, compresslevel=_COMPRESS_LEVEL)


def build(args: argparse.Namespace) -> str:
  """Builds the wheel described by the parsed command line.

  Args:
    args: The parsed arguments (see `parse_args`).

  Returns:
    The wheel's file name.

  Raises:
    WheelError: if the inputs do not make a valid wheel.
  """
  version = wheel_version(args.upstream_version, args.local_label)
  expected_name = wheel_filename(args.distribution, version)
  if os.path.basename(args.output) != expected_name:
    raise WheelError("The output must be named %s, not %s." %
                     (expected_name, os.path.basename(args.output)))
  package_files, upstream_info = upstream_files(args.distribution,
                                                args.upstream_version)
  for required in ("METADATA", "top_level.txt"):
    if required not in upstream_info:
      raise WheelError("Upstream's .dist-info has no %s." % required)
  top_level = upstream_info["top_level.txt"].decode("utf-8").split()
  files = dict(package_files)
  files.update(overlay_files(args.overlay, top_level))

  overrides = {}
  for override in args.requirement_override:
    name, eq, requirement = override.partition("=")
    if not eq or _requirement_name(requirement) != normalize_name(name):
      raise WheelError("Override %r is not `project=requirement on project`." %
                       override)
    overrides[name] = requirement
  metadata = adjust_metadata(
      upstream_info["METADATA"].decode("utf-8"), version, overrides,
      args.extra_requirement)

  dist_info = {
      "METADATA": metadata.encode("utf-8"),
      "WHEEL": ("Wheel-Version: 1.0\nGenerator: %s\nRoot-Is-Purelib: true\n"
                "Tag: %s\n" % (_GENERATOR, _TAG)).encode("utf-8"),
      "top_level.txt": upstream_info["top_level.txt"],
  }
  if args.license:
    dist_info["LICENSE"] = _read(args.license)
  elif "LICENSE" in upstream_info:
    dist_info["LICENSE"] = upstream_info["LICENSE"]
  scripts = {}
  for script in args.console_script:
    name, eq, spec = script.partition("=")
    if not eq or not name:
      raise WheelError("Console script %r is not `name=module:function`." %
                       script)
    scripts[name] = spec
  entry_points_txt = entry_points(scripts, files)
  if entry_points_txt:
    dist_info["entry_points.txt"] = entry_points_txt.encode("utf-8")

  dist_info_dir = "%s-%s.dist-info" % (
      re.sub(r"[-_.]+", "_", args.distribution).lower(), version)
  write_wheel(args.output, files, dist_info_dir, dist_info)
  return expected_name


def parse_args(argv: List[str]) -> argparse.Namespace:
  """Parses the command line (`@file` reads arguments, one per line)."""
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0], fromfile_prefix_chars="@")
  parser.add_argument("--output", required=True,
                      help="The wheel to write; its name must match.")
  parser.add_argument("--distribution", required=True,
                      help="Installed distribution to repackage.")
  parser.add_argument("--upstream_version", required=True,
                      help="The version the installed distribution must have.")
  parser.add_argument("--local_label", default="",
                      help="PEP 440 local version label; empty for none.")
  parser.add_argument("--overlay", action="append", default=[],
                      help="archive_path=file, layered over upstream.")
  parser.add_argument("--license", default="",
                      help="License file; default: upstream's.")
  parser.add_argument("--requirement_override", action="append", default=[],
                      help="project=requirement replacing upstream's.")
  parser.add_argument("--extra_requirement", action="append", default=[],
                      help="A requirement added to upstream's.")
  parser.add_argument("--console_script", action="append", default=[],
                      help="name=package.module:function; kept only when the "
                      "module is in the wheel.")
  return parser.parse_args(argv)


def main(argv: List[str]) -> int:
  """Entry point; returns the process exit status."""
  # Quiet on success: Bazel shows the stderr of successful actions.
  logging.basicConfig(level=logging.WARNING,
                      format="wheel_writer: %(message)s")
  args = parse_args(argv)
  try:
    name = build(args)
  except WheelError as e:
    logging.error("%s", e)
    return 1
  logging.info("wrote %s", name)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
