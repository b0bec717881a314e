#!/usr/bin/env bash
# Regenerates the hash-locked requirement files of the Python environments.
#
#   third_party/py/update_locks.sh [CONFIG...]      (default: cpu tf2.15 gpu)
#
# For each CONFIG it resolves requirements_CONFIG.in with overrides_CONFIG.txt
# into requirements_CONFIG.lock (every distribution pinned, with sha256
# hashes). The overrides drop or replace pins that tf-agents 0.19.0 declares
# but does not need on the newer stack (see the comments in those files). The
# environments install the lock with `pip install --no-deps --require-hashes`,
# so the lock is the complete, exact list of what an environment holds.
set -euo pipefail
cd "$(dirname "$0")"

configs=("$@")
if [[ ${#configs[@]} -eq 0 ]]; then
  configs=(cpu tf2.15 gpu)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
"${PYTHON_BIN_PATH:-python3.11}" -m venv "${tmp}/venv"
"${tmp}/venv/bin/pip" install --quiet --disable-pip-version-check uv==0.13.9

for config in "${configs[@]}"; do
  echo "locking ${config}..." >&2
  "${tmp}/venv/bin/uv" pip compile --quiet --generate-hashes \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --override "overrides_${config}.txt" \
    --custom-compile-command "third_party/py/update_locks.sh ${config}" \
    "requirements_${config}.in" -o "requirements_${config}.lock"
done
