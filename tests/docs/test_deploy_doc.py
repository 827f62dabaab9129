"""docs/deploy.md and build/Containerfile agree with the node they deploy.

- The systemd units of the page pass ``systemd-analyze verify`` (unknown keys, bad values, a
  missing section all fail it), with ``ExecStart`` pointed at this tree's ``taskd``; their
  flags parse (``test_cli_doc.py``) and every ``TASKD_*`` variable the page names is one the
  node reads.
- The Containerfile copies the binary from its build context, configures the node only with
  variables the node reads, exposes the ports it listens on, health-checks ``/healthz`` on the
  HTTP port, keeps the data dir in its volume, and is based on the build machine's Debian
  release (the one-file binary needs that glibc or newer). The page shows the commands that
  build and run it with that volume and those ports.
(No container engine runs on the CI machines, so the image itself is not built here.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskd.node import config as node_config
from tests.docs import mdblocks

PAGE = mdblocks.DOCS / "deploy.md"
CONTAINERFILE = mdblocks.ROOT / "build" / "Containerfile"
VARIABLES = {name for name, _ in node_config.environment()} | {
    "TASKD_SERVER",  # the clients' variable
}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def container_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    # Given the units of the page, run by this tree's taskd
    units = mdblocks.tagged(PAGE, "file")
    assert [b.tag.args[0] for b in units if b.tag] == ["taskd.service", "taskd-cluster.service"]
    taskd = Path(sys.executable).with_name("taskd")
    assert taskd.exists(), taskd
    for block in units:
        assert block.tag is not None
        path = tmp_path / block.tag.args[0]
        path.write_text(block.text.replace("/usr/local/bin/taskd", str(taskd)))
        assert "ExecStart=" + str(taskd) in path.read_text()

        # When systemd checks it / Expect no complaint at all
        done = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
            f"{block.where}: {done.stdout}{done.stderr}"
        )


def test_every_variable_the_page_names_is_read_by_the_node() -> None:
    named = set(re.findall(r"\bTASKD_[A-Z_]+\b", PAGE.read_text()))
    assert {"TASKD_PEERS", "TASKD_CLUSTER_SECRET", "TASKD_HTTP", "TASKD_GRPC"} <= named
    assert named <= VARIABLES, sorted(named - VARIABLES)


def test_the_containerfile_configures_what_the_node_reads() -> None:
    # Given the Containerfile
    steps = instructions()
    kinds = [word for word, _ in steps]
    env = container_env()

    # Expect the binary copied from the context (dist/), run as the entry point by a user
    assert ("COPY", "taskd /usr/local/bin/taskd") in steps
    assert ("ENTRYPOINT", '["/usr/local/bin/taskd"]') in steps
    assert "USER" in kinds and kinds.index("USER") > kinds.index("COPY")
    # only variables the node reads; its data dir in the volume
    assert set(env) <= VARIABLES, sorted(set(env) - VARIABLES)
    [volume] = [rest for word, rest in steps if word == "VOLUME"]
    assert env["TASKD_DATA_DIR"] in volume
    # the ports it listens on exposed, and the health check on the HTTP one
    http_port = env["TASKD_HTTP"].rsplit(":", 1)[1]
    grpc_port = env["TASKD_GRPC"].rsplit(":", 1)[1]
    [exposed] = [rest.split() for word, rest in steps if word == "EXPOSE"]
    assert sorted(exposed) == sorted([http_port, grpc_port])
    [check] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{http_port}/healthz" in check
    assert ("STOPSIGNAL", "SIGTERM") in steps


def test_the_image_is_based_on_the_build_machine_release() -> None:
    # Given this machine's release (where `make build` makes dist/taskd)
    lines = Path("/etc/os-release").read_text().splitlines()
    release = dict(line.split("=", 1) for line in lines if "=" in line)
    if release.get("ID") != "debian":
        pytest.skip(f"this machine is not Debian ({release.get('ID')}); the Containerfile says why")
    codename = release["VERSION_CODENAME"].strip('"')
    # Expect the image's base to be the same release
    [base] = [rest for word, rest in instructions() if word == "FROM"]
    assert base == f"debian:{codename}-slim", base


def test_the_page_builds_and_runs_the_image_with_its_volume_and_ports() -> None:
    text = PAGE.read_text()
    env = container_env()
    assert "docker build -f build/Containerfile -t taskd:0.1.0 dist/" in text
    assert f":{env['TASKD_DATA_DIR']}" in text
    for variable in ("TASKD_HTTP", "TASKD_GRPC"):
        port = env[variable].rsplit(":", 1)[1]
        assert f"-p {port}:{port}" in text
