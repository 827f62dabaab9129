"""Fixtures for the one-file packaging: build/pack.py, a compiled launcher, small packed trees.

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
        if os.environ.get("TASKD_SMOKE_REQUIRED") == "1":
            pytest.fail(f"no C compiler {cc!r} to build the launcher", pytrace=False)
        pytest.skip(f"no C compiler {cc!r} to build the launcher (install gcc and zlib1g-dev)")
    out = tmp_path_factory.mktemp("launcher") / "launcher"
    pack.compile_launcher(out, cc)
    return out
