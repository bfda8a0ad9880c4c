#!/usr/bin/env bash
# README's test command: every test of the workspace. The cluster tests include a Python client
# (tools/python_client) talking to a live cluster, so its pinned grpcio / grpcio-tools go into the
# gitignored venv pyenv-ci first (from the Python package index; nothing else is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x pyenv-ci/bin/pip ]; then
    python3 -m venv pyenv-ci
fi
pyenv-ci/bin/pip install --quiet --disable-pip-version-check -r tools/python_client/requirements.txt
export TURBINE_PYTHON="$PWD/pyenv-ci/bin/python"

cargo test --workspace "$@"
