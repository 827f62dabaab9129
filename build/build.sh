#!/usr/bin/env bash
# Build the one-file binary dist/taskd from build/taskd.spec (`make build` runs this).
# PyInstaller's scratch space goes to build/work/ (git-ignored); the repo's build/ folder holds
# only the spec and this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/work build/taskd.spec
ls -l dist/taskd
