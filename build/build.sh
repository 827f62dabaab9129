#!/usr/bin/env bash
# Build the one-file binary dist/taskd (`make build` runs this; build/README.md explains it):
#  1. PyInstaller makes the one-folder build build/work/dist/taskd/ from build/taskd.spec;
#  2. build/pack.py compiles build/launcher/launcher.c and writes dist/taskd = launcher + the
#     folder, which extracts itself once per build into $XDG_CACHE_HOME/taskd/<build-id>/.
# PyInstaller's scratch space goes to build/work/ (git-ignored); the repo's build/ folder holds
# only the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath build/work/dist --workpath build/work build/taskd.spec
mkdir -p dist
VERSION="$("$PY" -c 'import taskd; print(taskd.__version__)')"
"$PY" build/pack.py --tree build/work/dist/taskd --out dist/taskd --version "$VERSION"
ls -l dist/taskd
