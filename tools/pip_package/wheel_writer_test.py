# coding=utf-8
"""Unit tests for the wheel writer's checks and METADATA adjustments."""

import importlib.metadata
import os
import zipfile

from absl.testing import parameterized
import tensorflow as tf

from tools.pip_package import wheel_writer

_METADATA = """\
Metadata-Version: 2.1
Name: tf-agents
Version: 0.19.0
Requires-Dist: absl-py >=0.6.1
Requires-Dist: typing-extensions ==4.5.0
Requires-Dist: tensorflow-probability ~=0.23.0
Provides-Extra: reverb
Requires-Dist: tensorflow ~=2.15.0 ; extra == 'reverb'

# Description

Requires-Dist: not-a-header
"""


class AdjustMetadataTest(tf.test.TestCase):

  def test_replaces_version_and_overridden_requirements(self):
    out = wheel_writer.adjust_metadata(
        _METADATA, "0.19.0+label",
        {"typing_extensions": "typing-extensions>=4.5.0"}, ["tf-keras>=2.15"])
    header, _, body = out.partition("\n\n")
    self.assertIn("Version: 0.19.0+label\n", header)
    self.assertNotIn("Version: 0.19.0\n", header)
    self.assertEqual(
        [l for l in header.splitlines() if l.startswith("Requires-Dist")], [
            "Requires-Dist: absl-py >=0.6.1",
            "Requires-Dist: typing-extensions>=4.5.0",
            "Requires-Dist: tensorflow-probability ~=0.23.0",
            "Requires-Dist: tf-keras>=2.15",
            "Requires-Dist: tensorflow ~=2.15.0 ; extra == 'reverb'",
        ])
    self.assertEqual(body, _METADATA.partition("\n\n")[2])

  def test_override_of_a_project_upstream_does_not_require_fails(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "gym"):
      wheel_writer.adjust_metadata(_METADATA, "1", {"gym": "gym>=0.17"}, [])

  def test_override_does_not_touch_extras(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "tensorflow"):
      wheel_writer.adjust_metadata(_METADATA, "1",
                                   {"tensorflow": "tensorflow>=2"}, [])

  def test_added_requirement_duplicating_upstream_fails(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "override"):
      wheel_writer.adjust_metadata(_METADATA, "1", {}, ["Absl_Py>=1"])


class NamesTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(
      ("0.19.0", "", "tf_agents-0.19.0-py3-none-any.whl"),
      ("0.19.0", "policyexport",
       "tf_agents-0.19.0+policyexport-py3-none-any.whl"),
      ("0.19.0", "a.1", "tf_agents-0.19.0+a.1-py3-none-any.whl"),
  )
  def test_wheel_filename(self, version, label, want):
    self.assertEqual(
        wheel_writer.wheel_filename(
            "tf-agents", wheel_writer.wheel_version(version, label)), want)

  @parameterized.parameters("a-b", "x+y", ".a", "a_b", "a..b")
  def test_bad_local_label_fails(self, label):
    with self.assertRaisesRegex(wheel_writer.WheelError, "local"):
      wheel_writer.wheel_version("1.0", label)

  def test_record_hash_is_urlsafe_unpadded_sha256(self):
    self.assertEqual(wheel_writer.record_hash(b""),
                     "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")


class OverlayAndEntryPointsTest(tf.test.TestCase):

  def _file(self, content: bytes) -> str:
    return self.create_tempfile(content=content, mode="wb").full_path

  def test_init_overlay_is_refused(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "shim"):
      wheel_writer.overlay_files(
          ["tf_agents/policies/__init__.py=" + self._file(b"")], ["tf_agents"])

  def test_overlay_outside_top_level_is_refused(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "outside"):
      wheel_writer.overlay_files(["other/x.py=" + self._file(b"")],
                                 ["tf_agents"])

  def test_overlay_reads_the_file(self):
    got = wheel_writer.overlay_files(
        ["tf_agents/policies/x.py=" + self._file(b"X = 1\n")], ["tf_agents"])
    self.assertEqual(got, {"tf_agents/policies/x.py": b"X = 1\n"})

  def test_console_script_needs_its_module_and_function(self):
    scripts = {"tool": "tf_agents.policies.tool:run"}
    self.assertIsNone(wheel_writer.entry_points(scripts, {}))
    self.assertEqual(
        wheel_writer.entry_points(
            scripts, {"tf_agents/policies/tool.py": b"def run():\n  pass\n"}),
        "[console_scripts]\ntool = tf_agents.policies.tool:run\n")
    with self.assertRaisesRegex(wheel_writer.WheelError, "run"):
      wheel_writer.entry_points(
          scripts, {"tf_agents/policies/tool.py": b"def main():\n  pass\n"})
    with self.assertRaisesRegex(wheel_writer.WheelError, "without arguments"):
      wheel_writer.entry_points(
          scripts, {"tf_agents/policies/tool.py": b"def run(argv):\n  pass\n"})
    optional_args = b"def run(argv=None, *, a=1):\n  pass\n"
    self.assertIsNotNone(
        wheel_writer.entry_points(
            scripts, {"tf_agents/policies/tool.py": optional_args}))


class BuildTest(tf.test.TestCase):

  def _args(self, output_name, *extra):
    out = os.path.join(self.create_tempdir().full_path, output_name)
    return wheel_writer.parse_args([
        "--output=" + out, "--distribution=tf-agents",
        "--upstream_version=0.19.0"
    ] + list(extra))

  def test_other_installed_version_fails(self):
    args = self._args("tf_agents-0.18.0-py3-none-any.whl")
    args.upstream_version = "0.18.0"
    with self.assertRaisesRegex(wheel_writer.WheelError,
                                "has tf-agents 0.19.0.*pinned 0.18.0"):
      wheel_writer.build(args)

  def test_misnamed_output_fails(self):
    with self.assertRaisesRegex(wheel_writer.WheelError, "must be named"):
      wheel_writer.build(self._args("tf_agents.whl"))

  def test_upstream_only_wheel_holds_upstream_files(self):
    args = self._args("tf_agents-0.19.0-py3-none-any.whl")
    wheel_writer.build(args)
    dist = importlib.metadata.distribution("tf-agents")
    want = sorted(
        p.as_posix() for p in dist.files
        if not p.parts[0].endswith(".dist-info") and p.suffix != ".pyc")
    with zipfile.ZipFile(args.output) as wheel:
      names = wheel.namelist()
    self.assertEqual(
        sorted(n for n in names if not n.startswith("tf_agents-0.19.0.")),
        want)
    self.assertEqual(names[-1], "tf_agents-0.19.0.dist-info/RECORD")


if __name__ == "__main__":
  tf.test.main()
