# coding=utf-8
"""Tests the Bazel-built wheels: contents, METADATA, RECORD, reproducibility.

`--wheel` is //tools/pip_package:wheel (upstream tf-agents with this
repository's owned modules over it), `--upstream_wheel` the upstream-only
repackaging. Paths are relative to the runfiles root, the test's working
directory, as are the paths in the writer's params files (`<target>.args`).
"""

import base64
import csv
import email.message
import email.parser
import hashlib
import importlib.metadata
import io
import os
import stat
import subprocess
import sys
from typing import Dict, List
import zipfile

from absl import flags
from absl.testing import parameterized
import tensorflow as tf

flags.DEFINE_string("wheel", None, "The wheel, relative to the runfiles root.")
flags.DEFINE_string("upstream_wheel", None, "The upstream-only wheel.")

FLAGS = flags.FLAGS

_WRITER = os.path.join("tools", "pip_package", "wheel_writer.py")
_VERSION = "0.19.0+policyexport"
_DIST_INFO = "tf_agents-%s.dist-info" % _VERSION


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _sha256(path: str) -> str:
  return hashlib.sha256(_read(path)).hexdigest()


def _params_path(wheel_flag: str) -> str:
  target = "upstream_wheel" if wheel_flag == "upstream_wheel" else "wheel"
  return os.path.join(os.path.dirname(FLAGS[wheel_flag].value),
                      target + ".args")


def _params(wheel_flag: str) -> List[str]:
  return _read(_params_path(wheel_flag)).decode("utf-8").splitlines()


def _overlays() -> Dict[str, str]:
  """Archive path -> repository file, from :wheel's params."""
  pairs = [a.split("=", 1)[1] for a in _params("wheel")
           if a.startswith("--overlay=")]
  return dict(p.split("=", 1) for p in pairs)


def _contents(path: str) -> Dict[str, bytes]:
  with zipfile.ZipFile(path) as wheel:
    return {name: wheel.read(name) for name in wheel.namelist()}


def _installed_upstream() -> Dict[str, bytes]:
  """The installed tf-agents' package files (no byte code, no dist-info)."""
  dist = importlib.metadata.distribution("tf-agents")
  return {
      p.as_posix(): p.read_binary()
      for p in dist.files
      if not p.parts[0].endswith(".dist-info") and
      "__pycache__" not in p.parts and p.suffix != ".pyc"
  }


def _record_hash(data: bytes) -> str:
  """RECORD's hash form, computed independently of the writer."""
  digest = hashlib.sha256(data).digest()
  return "sha256=" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _metadata(data: bytes) -> email.message.Message:
  return email.parser.BytesParser().parsebytes(data)


class WheelTest(parameterized.TestCase, tf.test.TestCase):

  def test_file_name(self):
    self.assertEqual(
        os.path.basename(FLAGS.wheel),
        "tf_agents-0.19.0+policyexport-py3-none-any.whl")
    self.assertEqual(
        os.path.basename(FLAGS.upstream_wheel),
        "tf_agents-0.19.0-py3-none-any.whl")

  @parameterized.parameters("wheel", "upstream_wheel")
  def test_zip_entries_are_normalized(self, wheel_flag):
    with zipfile.ZipFile(FLAGS[wheel_flag].value) as wheel:
      infos = wheel.infolist()
    names = [i.filename for i in infos]
    dist_info = [n for n in names if ".dist-info/" in n]
    package = [n for n in names if ".dist-info/" not in n]
    self.assertEqual(names, package + dist_info, "dist-info must come last")
    self.assertEqual(package, sorted(package))
    self.assertEqual(dist_info[:-1], sorted(dist_info[:-1]))
    self.assertTrue(dist_info[-1].endswith(".dist-info/RECORD"))
    self.assertLen(set(names), len(names))
    for info in infos:
      self.assertEqual(info.date_time, (1980, 1, 1, 0, 0, 0), info.filename)
      self.assertEqual(info.external_attr >> 16, stat.S_IFREG | 0o644,
                       info.filename)
      self.assertEqual(info.compress_type, zipfile.ZIP_DEFLATED)
      self.assertNotIn("__pycache__", info.filename)
      self.assertFalse(info.filename.endswith(".pyc"), info.filename)

  @parameterized.parameters("wheel", "upstream_wheel")
  def test_record_lists_every_file_with_its_sha256(self, wheel_flag):
    files = _contents(FLAGS[wheel_flag].value)
    record_name = [n for n in files if n.endswith(".dist-info/RECORD")]
    self.assertLen(record_name, 1)
    rows = list(csv.reader(io.StringIO(files[record_name[0]].decode())))
    self.assertEqual(sorted(r[0] for r in rows), sorted(files))
    for name, digest, size in rows:
      if name == record_name[0]:
        self.assertEqual((digest, size), ("", ""))
        continue
      self.assertEqual(digest, _record_hash(files[name]), name)
      self.assertEqual(int(size), len(files[name]), name)

  def test_owned_modules_are_layered_over_upstream(self):
    overlays = _overlays()
    self.assertIn("tf_agents/policies/policy_saver.py", overlays)
    # A new module beside upstream's (upstream has no suite_gymnasium).
    self.assertIn("tf_agents/environments/suite_gymnasium.py", overlays)
    files = _contents(FLAGS.wheel)
    upstream = _installed_upstream()
    for archive_path, source in overlays.items():
      self.assertEqual(archive_path, source)  # A source file of this repo.
      self.assertEqual(files[archive_path], _read(source), archive_path)
    package = {n: d for n, d in files.items() if ".dist-info/" not in n}
    self.assertEqual(set(package), set(upstream) | set(overlays))
    for name, data in package.items():
      if name not in overlays:
        self.assertEqual(data, upstream[name], name)
    self.assertNotEqual(package["tf_agents/policies/policy_saver.py"],
                        upstream["tf_agents/policies/policy_saver.py"])

  def test_overlay_init_shims_never_ship(self):
    files = _contents(FLAGS.wheel)
    upstream = _installed_upstream()
    inits = [n for n in files if n.endswith("__init__.py")]
    self.assertIn("tf_agents/__init__.py", inits)
    self.assertIn("tf_agents/policies/__init__.py", inits)
    self.assertIn("tf_agents/environments/__init__.py", inits)
    for name in inits:
      self.assertEqual(files[name], upstream[name], name)
    for shim in ("tf_agents/__init__.py", "tf_agents/policies/__init__.py",
                 "tf_agents/environments/__init__.py"):
      self.assertIn(b"extend_path", _read(shim))  # The repository's shim.
      self.assertNotEqual(files[shim], _read(shim))

  def test_metadata(self):
    files = _contents(FLAGS.wheel)
    raw = files[_DIST_INFO + "/METADATA"]
    ours = _metadata(raw)
    upstream_raw = importlib.metadata.distribution("tf-agents").read_text(
        "METADATA").encode("utf-8")
    upstream = _metadata(upstream_raw)
    self.assertEqual(ours["Name"], "tf-agents")
    self.assertEqual(ours["Version"], _VERSION)
    self.assertEqual(upstream["Version"], "0.19.0")
    requires = ours.get_all("Requires-Dist")
    for added in ("tf-keras>=2.15", "tensorboard",
                  "typing-extensions>=4.5.0",
                  "tensorflow-probability>=0.23.0", "numpy>=1.19.0,<2.4"):
      self.assertIn(added, requires)
    changed = ("numpy", "typing-extensions", "tensorflow-probability")
    kept = [r for r in upstream.get_all("Requires-Dist")
            if not r.startswith(changed) or "extra ==" in r]
    self.assertContainsSubset(kept, requires)
    self.assertLen(requires, len(upstream.get_all("Requires-Dist")) + 2)
    self.assertEqual(ours.get_payload(), upstream.get_payload())
    for field in ("Summary", "License", "Requires-Python", "Provides-Extra"):
      self.assertEqual(ours.get_all(field), upstream.get_all(field), field)

  def test_wheel_file_license_and_top_level(self):
    files = _contents(FLAGS.wheel)
    wheel = _metadata(files[_DIST_INFO + "/WHEEL"])
    self.assertEqual(wheel["Wheel-Version"], "1.0")
    self.assertEqual(wheel["Root-Is-Purelib"], "true")
    self.assertEqual(wheel.get_all("Tag"), ["py3-none-any"])
    self.assertEqual(files[_DIST_INFO + "/LICENSE"], _read("LICENSE"))
    self.assertIn(b"Apache License", files[_DIST_INFO + "/LICENSE"])
    self.assertEqual(files[_DIST_INFO + "/top_level.txt"], b"tf_agents\n")

  def test_console_script_ships_with_its_module(self):
    files = _contents(FLAGS.wheel)
    module = "tf_agents/policies/saved_policy_cli.py"
    entry_points = _DIST_INFO + "/entry_points.txt"
    # Both must ship: the console script's module and its entry point.
    self.assertIn(module, files)
    self.assertIn(module, _overlays())
    self.assertEqual(files[module], _read(module))
    self.assertIn(b"def run()", files[module])
    self.assertIn(entry_points, files)
    self.assertEqual(
        files[entry_points].decode(), "[console_scripts]\n"
        "saved_policy_cli = tf_agents.policies.saved_policy_cli:run\n")
    # The modules the CLI imports that upstream lacks ship too.
    for needed in ("tf_agents/policies/export_conversion.py",
                   "tf_agents/policies/export_verify.py",
                   # The program export_verify runs in a fresh process.
                   "tf_agents/policies/export_verify_child.py",
                   "tf_agents/policies/export_errors.py",
                   "tf_agents/policies/export_publish.py"):
      self.assertIn(needed, files)
    # The upstream-only repackaging has no console script.
    self.assertNotIn("tf_agents-0.19.0.dist-info/entry_points.txt",
                     _contents(FLAGS.upstream_wheel))

  def test_upstream_wheel_is_the_installed_distribution(self):
    files = _contents(FLAGS.upstream_wheel)
    dist = importlib.metadata.distribution("tf-agents")
    info = "tf_agents-0.19.0.dist-info/"
    self.assertEqual(files[info + "METADATA"],
                     dist.read_text("METADATA").encode("utf-8"))
    self.assertEqual(files[info + "LICENSE"],
                     dist.read_text("LICENSE").encode("utf-8"))
    self.assertEqual(
        {n: d for n, d in files.items() if not n.startswith(info)},
        _installed_upstream())

  @parameterized.parameters("wheel", "upstream_wheel")
  def test_writer_is_reproducible(self, wheel_flag):
    built = FLAGS[wheel_flag].value
    digests = []
    for tz, umask in (("UTC", 0o022), ("Asia/Kathmandu", 0o077)):
      out = os.path.join(self.create_tempdir().full_path,
                         os.path.basename(built))
      env = dict(os.environ, TZ=tz, SOURCE_DATE_EPOCH="1700000000")
      subprocess.run(
          [sys.executable, _WRITER, "@" + _params_path(wheel_flag),
           "--output=" + out],
          env=env, check=True, preexec_fn=lambda m=umask: os.umask(m))
      digests.append(_sha256(out))
    self.assertEqual(digests[0], digests[1])
    self.assertEqual(digests[0], _sha256(built))


if __name__ == "__main__":
  tf.test.main()
