"""The SDK installs and works without the server (issue 8, "Installing").

Two distributions come from this checkout: taskd-client (sdk/pyproject.toml, the SDK) and
taskd-scheduler (pyproject.toml, the server, which requires taskd-client). These tests build
both wheels from the current sources — the client's through its sdist, as ``python -m build
sdk`` does — and install the client's alone into a fresh virtualenv, offline: its dependencies
come from the wheels `make venv` put in .venv/wheelhouse. No network, no index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import taskd

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SDK_APP = Path(__file__).with_name("sdk_app.py")
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"

# What a user application that installs the SDK must not get: the server's modules and the
# server's dependencies (distribution names and the modules they install).
SERVER_DISTRIBUTIONS = {
    "taskd-scheduler", "trio", "trio-asyncio", "trio-websocket", "hypercorn", "starlette",
    "psycopg", "psycopg-binary", "redis", "orjson", "msgpack", "python-ulid", "rich", "httpx",
    "prometheus-client",
}  # fmt: skip
SERVER_MODULES = {
    "trio", "trio_asyncio", "trio_websocket", "hypercorn", "starlette", "psycopg", "redis",
    "orjson", "msgpack", "ulid", "rich", "httpx", "prometheus_client", "taskd.node",
    "taskd.raft", "taskd.queue", "taskd.store", "taskd.exec", "taskd.cli", "taskd.bench",
    "taskd.web", "taskd.api.taskd.internal",
}  # fmt: skip
# The SDK's own runtime dependencies: what sdk/pyproject.toml declares.
SDK_DEPENDENCIES = {"grpclib", "betterproto2", "sniffio"}


def run(argv: list[str | Path], *, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build(hook: str, project: Path, out: Path) -> Path:
    """Call setuptools' PEP 517 ``hook`` (build_sdist, build_wheel) in ``project``; the file."""
    out.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    name = run([sys.executable, "-c", code], cwd=project).stdout.strip().splitlines()[-1]
    return out / name


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}


def wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def as_module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def copy_sources(dest: Path) -> None:
    """This checkout's taskd package, as a build sees it (no caches, no build leftovers)."""
    shutil.copytree(REPO / "taskd", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("wheels")
    # taskd-client: sdist first (sdk/taskd is a symlink: the sdist must hold the files), then
    # the wheel from the unpacked sdist alone.
    sdk = base / "sdk"
    sdk.mkdir()
    shutil.copy(REPO / "sdk" / "pyproject.toml", sdk)
    copy_sources(sdk / "taskd")
    sdist = build("build_sdist", sdk, base / "out")
    with tarfile.open(sdist) as archive:
        archive.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    client = build("build_wheel", unpacked, base / "out")
    # taskd-scheduler, from a copy of what its build reads.
    server = base / "server"
    server.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, server)
    copy_sources(server / "taskd")
    return {"client": client, "server": build("build_wheel", server, base / "out")}


@pytest.fixture(scope="module")
def fresh_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the taskd-client wheel and its dependencies, nothing else."""
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"{WHEELHOUSE} is missing: run `make venv` (it downloads the SDK's deps there)")
    env = tmp_path_factory.mktemp("fresh") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", env], cwd=env.parent)
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    install = [*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE, wheels["client"]]
    try:
        run(install, cwd=env.parent, timeout=120)
    except AssertionError as exc:
        hint = f"a dependency missing from {WHEELHOUSE}? run `make venv`"
        raise AssertionError(f"{exc}\n({hint})") from None
    run([*pip, "check"], cwd=env.parent)
    return python


def test_the_two_wheels_share_no_file_and_together_ship_all_of_taskd(wheels):
    # Given
    client, server = wheel_files(wheels["client"]), wheel_files(wheels["server"])
    sources = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "taskd").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }

    # Expect: no file has two owners (installing both never overwrites), none is left out
    assert client & server == set()
    assert sources - (client | server) == set()
    assert client | server == sources
    # and the client carries the public API and the SDK, nothing of the server
    assert {"taskd/__init__.py", "taskd/errors.py", "taskd/client/__init__.py",
            "taskd/client/worker/__init__.py", "taskd/api/taskd/v1/__init__.py",
            "taskd/api/taskd/v1/tasks.proto", "taskd/py.typed"} <= client  # fmt: skip
    assert not {as_module(f) for f in client} & SERVER_MODULES


def test_the_server_requires_exactly_its_own_client_release(wheels):
    # Given
    requires = wheel_requires(wheels["server"])
    client_meta = tomllib.loads((REPO / "sdk" / "pyproject.toml").read_text())["project"]

    # Expect: the two are released together, at the version taskd/__init__.py says
    assert f"taskd-client=={taskd.__version__}" in requires
    assert wheels["client"].name.startswith(f"taskd_client-{taskd.__version__}-")
    assert wheels["server"].name.startswith(f"taskd_scheduler-{taskd.__version__}-")
    names = {canonical(re.split(r"[<>=!~ ;\[]", r)[0]) for r in wheel_requires(wheels["client"])}
    assert names == SDK_DEPENDENCIES
    assert client_meta["name"] == "taskd-client"


def test_the_client_wheel_installs_alone_and_imports_no_server_module(fresh_python, wheels):
    # Given: a fresh virtualenv with only taskd-client (fresh_python)
    probe = (
        "import importlib.metadata, json, sys\n"
        "import taskd, taskd.client, taskd.client.worker\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'file': taskd.__file__,\n"
        "    'dists': sorted(d.metadata['Name'] for d in importlib.metadata.distributions())}))\n"
    )

    # When
    seen = json.loads(run([fresh_python, "-I", "-c", probe], cwd=fresh_python.parent).stdout)
    dists = {canonical(d) for d in seen["dists"]}
    taskd_modules = {m for m in seen["modules"] if m == "taskd" or m.startswith("taskd.")}
    main = subprocess.run(
        [fresh_python, "-I", "-m", "taskd", "--help"], capture_output=True, text=True, timeout=30
    )

    # Expect: the installed copy, the SDK's dependencies and not one of the server's
    assert Path(seen["file"]).is_relative_to(fresh_python.parents[1])
    assert {"taskd-client", *SDK_DEPENDENCIES} <= dists
    assert dists & SERVER_DISTRIBUTIONS == set()
    loaded_server = {
        m for m in seen["modules"] for s in SERVER_MODULES if m == s or m.startswith(s + ".")
    }
    assert loaded_server == set()
    # every module the wheel ships is one the SDK imports (__main__ only runs on `-m taskd`)
    shipped = {as_module(f) for f in wheel_files(wheels["client"]) if f.endswith(".py")}
    assert shipped - {"taskd.__main__"} == taskd_modules
    # and `python -m taskd` without the server says what to install, without a traceback
    assert main.returncode == 1
    assert "pip install taskd-scheduler" in main.stderr and "Traceback" not in main.stderr


def test_a_fresh_venv_sdk_app_submits_and_its_worker_completes_tasks(
    fresh_python, node_factory, tmp_path
):
    # Given: a real node run from the dev venv, and the application in an empty folder
    node = node_factory()
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(SDK_APP, app / "sdk_app.py")

    # When: the application (client + Worker, fresh venv Python) runs against the node
    done = run([fresh_python, "-I", "sdk_app.py", node.grpc_address, "fresh-venv"], cwd=app)
    out = json.loads(done.stdout.strip().splitlines()[-1])

    # Expect: both tasks completed by the fresh venv's worker, with their results
    assert [t["state"] for t in out["submitted"]] == ["queued", "queued"]
    assert [t["id"] for t in out["done"]] == [t["id"] for t in out["submitted"]]
    venv = str(fresh_python.parents[1])
    assert [t["state"] for t in out["done"]] == ["succeeded", "succeeded"]
    assert [t["result"] for t in out["done"]] == [
        {"doubled": 2, "python": venv},
        {"doubled": 42, "python": venv},
    ]
    assert {t["worker"] for t in out["done"]} == {"fresh-venv-worker"}
    assert out["worker_stopped"] and out["worker_acked"] == 2
    # and running them loaded nothing of the server either (no trio, not even lazily)
    for key in ("loaded_by_import", "loaded_at_end"):
        loaded = {m for m in out[key] for s in SERVER_MODULES if m == s or m.startswith(s + ".")}
        assert loaded == set(), key


def test_the_dev_venv_sees_one_taskd_package_with_client_and_server(tmp_path):
    # Given: the editable installs of both distributions (`make venv`), outside the checkout
    probe = "import taskd, taskd.client, taskd.node.main; print(taskd.__file__)"

    # When
    where = run([sys.executable, "-I", "-c", probe], cwd=tmp_path).stdout.strip()

    # Expect: the checkout's package (through sdk/taskd, the symlink), not a namespace
    assert Path(where).resolve() == REPO / "taskd" / "__init__.py"
