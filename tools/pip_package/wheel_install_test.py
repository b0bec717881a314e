# coding=utf-8
"""Installs the wheel with pip into a fresh virtual environment and uses it.

The virtual environment gets the selected Python environment's packages
(the lock's dependencies) through a `.pth` file that adds a directory of
symbolic links to every entry of that environment's site-packages except
tf-agents itself, so nothing is downloaded and the only tf-agents the
virtual environment sees is the one pip installs into it. Everything runs
from a temporary directory outside the repository with PYTHONPATH unset.

Steps: install the upstream-only wheel (as a user's environment has
tf-agents 0.19.0), install :wheel over it (it must replace it), check pip
sees our requirements satisfied, import `tf_agents.policies.policy_saver`
from site-packages (it must be this repository's), save and reload a policy,
run the saved-policy tool if the wheel has it, and `pip uninstall tf-agents`
(nothing may remain).
"""

import configparser
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Dict, List, Mapping
import zipfile

from absl import flags
import tensorflow as tf

flags.DEFINE_string("wheel", None, "The wheel, relative to the runfiles root.")
flags.DEFINE_string("upstream_wheel", None, "The upstream-only wheel.")

FLAGS = flags.FLAGS

_OURS = "tf_agents-0.19.0+policyexport.dist-info"
_UPSTREAM = "tf_agents-0.19.0.dist-info"
_CLI_MODULE = "tf_agents/policies/saved_policy_cli.py"

# Runs in the virtual environment: uses the installed tf-agents end to end.
_USE_PROGRAM = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "testdata", "use_wheel.py")


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _clean_env(**extra: str) -> Dict[str, str]:
  """The environment of a process that never saw this repository."""
  env = {
      k: v for k, v in os.environ.items()
      if not k.startswith(("PYTHON", "PIP_", "RUNFILES", "VIRTUAL_ENV"))
  }
  env.update(
      PIP_CONFIG_FILE=os.devnull,
      PIP_DISABLE_PIP_VERSION_CHECK="1",
      PIP_NO_INPUT="1",
      PYTHONNOUSERSITE="1",
      # tf-agents needs Keras 2 on TensorFlow >= 2.16 (as with upstream).
      TF_USE_LEGACY_KERAS="1",
      TF_CPP_MIN_LOG_LEVEL="2",
  )
  env.update(extra)
  return env


def _wheel_package_files(wheel: str) -> Dict[str, bytes]:
  with zipfile.ZipFile(wheel) as z:
    return {n: z.read(n) for n in z.namelist() if ".dist-info/" not in n}


def _wheel_member(wheel: str, name: str) -> bytes:
  with zipfile.ZipFile(wheel) as z:
    return z.read(name)


class WheelInstallTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self._root = self.create_tempdir().full_path
    self._cwd = os.path.join(self._root, "work")
    os.mkdir(self._cwd)
    self._wheel = os.path.abspath(FLAGS.wheel)
    self._upstream_wheel = os.path.abspath(FLAGS.upstream_wheel)

  def _run(self, argv: List[str], check: bool = True,
           **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, cwd=self._cwd, env=_clean_env(**env), capture_output=True,
        text=True, check=False)
    if check and result.returncode != 0:
      self.fail("%s failed (%d):\n%s\n%s" % (
          " ".join(argv), result.returncode, result.stdout, result.stderr))
    return result

  def _make_venv(self) -> Mapping[str, str]:
    """Creates the virtual environment; returns its python, pip, site, bin."""
    venv = os.path.join(self._root, "venv")
    # Run from a virtual environment, `venv` bases the new one on the base
    # interpreter, with its own pip (ensurepip, offline).
    self._run([sys.executable, "-m", "venv", venv])
    cfg = configparser.ConfigParser()
    with open(os.path.join(venv, "pyvenv.cfg")) as f:
      cfg.read_string("[venv]\n" + f.read())
    self.assertEqual(cfg["venv"]["include-system-site-packages"], "false")
    python = os.path.join(venv, "bin", "python")
    site = self._run([
        python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
    ]).stdout.strip()
    self.assertTrue(site.startswith(venv), site)

    # The selected environment's packages, without tf-agents.
    env_site = sysconfig.get_path("purelib")
    deps = os.path.join(self._root, "deps")
    os.mkdir(deps)
    for entry in sorted(os.listdir(env_site)):
      if entry == "tf_agents" or entry.startswith("tf_agents-"):
        continue
      os.symlink(os.path.join(env_site, entry), os.path.join(deps, entry))
    with open(os.path.join(site, "_lock_dependencies.pth"), "w") as f:
      f.write("import site; site.addsitedir(%r)\n" % deps)
    return {"python": python, "site": site, "bin": os.path.join(venv, "bin")}

  def _pip(self, venv: Mapping[str, str], *args: str) -> str:
    return self._run([venv["python"], "-m", "pip", *args]).stdout

  def _install(self, venv: Mapping[str, str], wheel: str) -> None:
    self._pip(venv, "install", "--no-deps", "--no-index", "--no-cache-dir",
              wheel)

  def _installed_tf_agents(self, site: str) -> Dict[str, bytes]:
    """tf_agents' files in `site`, without byte code."""
    files = {}
    for root, dirs, names in os.walk(os.path.join(site, "tf_agents")):
      dirs[:] = [d for d in dirs if d != "__pycache__"]
      for name in names:
        path = os.path.join(root, name)
        files[os.path.relpath(path, site).replace(os.sep, "/")] = _read(path)
    return files

  def _dist_infos(self, site: str) -> List[str]:
    return sorted(e for e in os.listdir(site) if e.startswith("tf_agents-"))

  def test_install_replace_use_uninstall(self):
    self.assertEqual(importlib.metadata.version("tf-agents"), "0.19.0")
    env_policy_saver = importlib.metadata.distribution(
        "tf-agents").locate_file("tf_agents/policies/policy_saver.py")
    env_policy_saver_bytes = _read(env_policy_saver)
    venv = self._make_venv()
    site = venv["site"]
    probe = self._run([venv["python"], "-c", "import tf_agents"], check=False)
    self.assertNotEqual(probe.returncode, 0)
    self.assertIn("No module named 'tf_agents'", probe.stderr)

    # A user's environment with upstream tf-agents 0.19.0.
    self._install(venv, self._upstream_wheel)
    self.assertEqual(self._dist_infos(site), [_UPSTREAM])
    self.assertEqual(self._installed_tf_agents(site),
                     _wheel_package_files(self._upstream_wheel))

    # Installing ours replaces it.
    self._install(venv, self._wheel)
    self.assertEqual(self._dist_infos(site), [_OURS])
    ours = _wheel_package_files(self._wheel)
    self.assertEqual(self._installed_tf_agents(site), ours)
    repo_policy_saver = _read("tf_agents/policies/policy_saver.py")
    self.assertEqual(ours["tf_agents/policies/policy_saver.py"],
                     repo_policy_saver)
    self.assertNotEqual(repo_policy_saver, env_policy_saver_bytes)
    # Our requirements are met by the lock's packages.
    check = self._run([venv["python"], "-m", "pip", "check"], check=False)
    self.assertEqual(
        [l for l in check.stdout.splitlines() if l.startswith("tf-agents ")],
        [], check.stdout)

    # Use it from outside the repository.
    # Copied out of the repository: nothing beside it can be imported.
    script = os.path.join(self._root, "use_wheel.py")
    shutil.copyfile(_USE_PROGRAM, script)
    export_dir = os.path.join(self._root, "export")
    out = self._run([venv["python"], script, export_dir]).stdout
    result = json.loads(out.strip().splitlines()[-1])
    self.assertEqual(result["version"], "0.19.0+policyexport")
    self.assertEqual(
        os.path.realpath(result["policy_saver"]),
        os.path.realpath(
            os.path.join(site, "tf_agents", "policies", "policy_saver.py")))
    self.assertEqual(
        hashlib.sha256(_read(result["policy_saver"])).digest(),
        hashlib.sha256(repo_policy_saver).digest())
    self.assertEqual(
        os.path.realpath(result["q_network"]),
        os.path.realpath(
            os.path.join(site, "tf_agents", "networks", "q_network.py")))
    self.assertTrue(result["has_specs_from_saved_model"])
    self.assertEqual(result["got"], result["want"])
    self.assertEqual(result["train_step"], 7)
    self.assertTrue(
        os.path.exists(os.path.join(export_dir, "policy_specs.pbtxt")))

    # The console script runs the tool from the wheel on that export.
    cli = os.path.join(venv["bin"], "saved_policy_cli")
    self.assertIn(_CLI_MODULE, ours)
    self.assertTrue(os.access(cli, os.X_OK))
    inspect_run = self._run([cli, "inspect", export_dir, "--json"],
                            check=False)
    self.assertEqual(inspect_run.returncode, 0, inspect_run.stderr)
    self.assertNotIn("Traceback", inspect_run.stderr)
    self.assertEqual(json.loads(inspect_run.stdout)["train_step"], 7)
    # `verify` runs export_verify_child.py from the wheel in a fresh process.
    verify_run = self._run([cli, "verify", export_dir, "--json"], check=False)
    self.assertEqual(verify_run.returncode, 0, verify_run.stderr)
    verified = json.loads(verify_run.stdout)
    self.assertTrue(verified["ok"], verified["problems"])
    self.assertEqual(verified["train_step"], 7)
    missing_run = self._run(
        [cli, "inspect", os.path.join(self._root, "no_such_export")],
        check=False)
    self.assertNotEqual(missing_run.returncode, 0)
    self.assertNotIn("Traceback", missing_run.stderr)

    # Uninstalling leaves nothing behind.
    self._pip(venv, "uninstall", "-y", "tf-agents")
    self.assertEqual(self._dist_infos(site), [])
    self.assertFalse(os.path.exists(os.path.join(site, "tf_agents")))
    self.assertFalse(os.path.exists(cli))
    probe = self._run([venv["python"], "-c", "import tf_agents"], check=False)
    self.assertIn("No module named 'tf_agents'", probe.stderr)
    # The selected environment was never touched.
    self.assertEqual(_read(env_policy_saver), env_policy_saver_bytes)
    self.assertEqual(importlib.metadata.version("tf-agents"), "0.19.0")


if __name__ == "__main__":
  tf.test.main()
