"""Fixtures for the one-file binary and its packaging.

``binary`` is a copy of dist/taskd alone in a temp dir, for the tests of the real binary; it
skips them when dist/taskd is missing or older than the sources (so `make test` never judges a
stale binary), and fails them instead under `make smoke` (TASKD_SMOKE_REQUIRED=1).
``cache_home`` is the XDG_CACHE_HOME those tests give it: one per test module, so the module's
first run extracts the build and the others reuse it.

``pack`` is build/pack.py loaded by path (the repo's build/ folder is not a package, and the
name ``build`` belongs to pypa/build on the import path). ``launcher`` is
build/launcher/launcher.c compiled once per session; tests pack small trees behind it whose
program is a shell script, so the launcher's cache, lock, fallback and signal handling are
tested in milliseconds, without a PyInstaller build.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "taskd"
REQUIRED = os.environ.get("TASKD_SMOKE_REQUIRED") == "1"


def _newest_source_mtime() -> float:
    sources = [
        ROOT / "pyproject.toml",
        *(  # the build's inputs: not its scratch space (build/work), not its README
            path
            for path in ROOT.glob("build/**/*")
            if "work" not in path.relative_to(ROOT).parts and path.suffix != ".md"
        ),
        *(ROOT / "taskd").rglob("*"),
    ]
    return max(path.stat().st_mtime for path in sources if path.is_file())


def _unusable_reason() -> str | None:
    if not BINARY.exists():
        return f"{BINARY} does not exist; run `make build`"
    if BINARY.stat().st_mtime < _newest_source_mtime():
        return f"{BINARY} is older than the sources; run `make build`"
    return None


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_CACHE_HOME of every run of the binary in a test module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _unusable_reason()
    if reason:
        if REQUIRED:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    copy = tmp_path_factory.mktemp("bin") / "taskd"
    shutil.copy2(BINARY, copy)
    return copy


def _load_pack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("taskd_build_pack", ROOT / "build" / "pack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack() -> ModuleType:
    return _load_pack()


@pytest.fixture(scope="session")
def launcher(pack: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        if REQUIRED:
            pytest.fail(f"no C compiler {cc!r} to build the launcher", pytrace=False)
        pytest.skip(f"no C compiler {cc!r} to build the launcher (install gcc and zlib1g-dev)")
    out = tmp_path_factory.mktemp("launcher") / "launcher"
    pack.compile_launcher(out, cc)
    return out
