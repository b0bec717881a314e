"""Builds a hermetic Python environment from a hash-locked requirements file.

Run by the `python_env` repository rule (python_env.bzl) with the base
interpreter; standard library only. The environment lives outside Bazel's
output tree at `<cache_root>/<name>-<sha256(lock)[:16]>`, so switching
`--config` or cleaning Bazel never reinstalls an environment that is already
built, and a changed lock gets a new directory.

A file lock serialises concurrent builds of one environment; a marker written
last tells a complete environment from an interrupted one, which is rebuilt.

Prints the environment's interpreter path on the last line of stdout.
"""

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

_MARKER = ".tf_agents_env_complete"


def _log(msg):
  print("python_env: " + msg, file=sys.stderr, flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--name", required=True)
  parser.add_argument("--lock", required=True)
  parser.add_argument("--cache_root", required=True)
  args = parser.parse_args()

  with open(args.lock, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  os.makedirs(args.cache_root, exist_ok=True)
  env_dir = os.path.join(args.cache_root, f"{args.name}-{digest[:16]}")
  python = os.path.join(env_dir, "bin", "python3")
  marker = os.path.join(env_dir, _MARKER)

  with open(env_dir + ".lock", "w") as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    if os.path.exists(marker):
      with open(marker) as f:
        if f.read().strip() == digest:
          print(python)
          return 0
    if os.path.exists(env_dir):
      _log(f"removing incomplete environment {env_dir}")
      shutil.rmtree(env_dir)
    _log(f"building {args.name} environment in {env_dir} "
         f"from {os.path.basename(args.lock)} (one time per lock)")
    subprocess.run([sys.executable, "-m", "venv", env_dir], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--require-hashes",
         "--no-input", "--disable-pip-version-check", "--progress-bar=off",
         "-r", args.lock],
        check=True,
        stdout=sys.stderr)
    with open(marker, "w") as f:
      f.write(digest + "\n")
    _log(f"{args.name} environment ready")
  print(python)
  return 0


if __name__ == "__main__":
  sys.exit(main())
