"""The one-file launcher (build/launcher/launcher.c) on small packed trees.

Each test packs a tree whose program is a shell script behind the real, freshly compiled
launcher and runs it as a user would, with its own HOME, XDG_CACHE_HOME and TMPDIR. The script
prints the directory it runs from and its pid, then does what its arguments say (exit with a
code, wait for SIGTERM, kill itself), so each test can see where the launcher ran it from, in
which process, and what was left behind.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

PROGRAM = """#!/bin/sh
here=$(cd "$(dirname "$0")" && pwd)
echo "dir=$here"
echo "pid=$$"
case "$1" in
  exit) exit "$2" ;;
  serve) trap 'echo term > "$2"; exit 0' TERM; echo $$ > "$2.pid"; while :; do sleep 0.02; done ;;
  suicide) kill -KILL $$ ;;
esac
"""
BLOB_SIZE = 3 * 1024 * 1024  # random: checks the copy's content
ZEROS_SIZE = 32 * 1024 * 1024  # packs small, but takes a first run some ms to write out
DEADLINE = 10.0


@dataclass
class Packed:
    binary: Path
    build_id: str
    tree: Path
    home: Path
    cache: Path  # XDG_CACHE_HOME
    tmp: Path  # TMPDIR

    @property
    def cached(self) -> Path:
        return self.cache / "taskd" / self.build_id

    @property
    def unusable_home(self) -> str:
        """A HOME under which no directory can be created: not a directory (holds for root,
        whom a read-only mode does not stop)."""
        home = self.home / "not-a-directory"
        home.touch()
        return str(home)

    def env(self, **changes: str | None) -> dict[str, str]:
        env: dict[str, str | None] = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.cache),
            "TMPDIR": str(self.tmp),
            "TASKD_LAUNCHER_DEBUG": "1",
            **changes,
        }
        return {k: v for k, v in env.items() if v is not None}

    def run(self, *args: str, **env: str | None) -> Run:
        done = subprocess.run(
            [str(self.binary), *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.binary), *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def field(self, name: str) -> str:
        for line in self.stdout.splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1]
        raise AssertionError(f"no {name}= in {self.stdout!r} (stderr: {self.stderr!r})")


@pytest.fixture
def packed(pack: ModuleType, launcher: Path, tmp_path: Path) -> Packed:
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "empty").mkdir()
    program = tree / "taskd"
    program.write_text(PROGRAM)
    program.chmod(0o755)
    (tree / "data" / "blob.bin").write_bytes(os.urandom(BLOB_SIZE))
    (tree / "data" / "zeros.bin").write_bytes(bytes(ZEROS_SIZE))
    (tree / "data" / "link").symlink_to("blob.bin")
    binary = tmp_path / "bin" / "taskd"
    binary.parent.mkdir()
    build_id = pack.pack(launcher, tree, binary, "9.9.9")
    dirs = {name: tmp_path / name for name in ("home", "cache", "tmp")}
    for path in dirs.values():
        path.mkdir()
    return Packed(binary, build_id, tree, **dirs)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_the_first_run_extracts_into_the_cache_and_the_next_run_reuses_it(packed: Packed) -> None:
    # Given a packed tree that was never run
    assert packed.build_id.startswith("9.9.9-")

    # When it runs twice
    first = packed.run("exit", "0")
    second = packed.run("exit", "0")

    # Expect both runs to run the program from the cache directory named by the build id
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    assert first.field("dir") == second.field("dir") == str(packed.cached)
    assert "cache miss" in first.stderr and "extracted" in first.stderr
    assert "cache hit" in second.stderr and "extracted" not in second.stderr
    # And the copy to be the tree: contents, modes and links
    blob = packed.cached / "data" / "blob.bin"
    assert blob.read_bytes() == (packed.tree / "data" / "blob.bin").read_bytes()
    assert os.readlink(packed.cached / "data" / "link") == "blob.bin"
    assert (packed.cached / "empty").is_dir()
    assert (packed.cached / "taskd").stat().st_mode & 0o777 == 0o755
    # And nothing but the copy and its lock file to be left behind
    assert sorted(p.name for p in (packed.cache / "taskd").iterdir()) == [
        packed.build_id,
        f"{packed.build_id}.lock",
    ]
    assert list(packed.tmp.iterdir()) == []


def test_the_cached_program_runs_in_the_launchers_own_process(packed: Packed) -> None:
    # Given a packed tree already extracted
    assert packed.run("exit", "0").code == 0

    # When it runs a program that exits with 7
    proc = packed.start("exit", "7")
    stdout, stderr = proc.communicate(timeout=DEADLINE)

    # Expect the program to have replaced the launcher (same pid: signals reach it directly)
    assert Run(proc.returncode, stdout, stderr).field("pid") == str(proc.pid)
    # And its exit code to be the command's
    assert proc.returncode == 7


@pytest.mark.parametrize("damage", ["append", "truncate", "delete", "chmod"])
def test_an_altered_copy_is_extracted_again(packed: Packed, damage: str) -> None:
    # Given an extracted copy in which one file was changed
    assert packed.run("exit", "0").code == 0
    blob = packed.cached / "data" / "blob.bin"
    if damage == "append":
        with blob.open("ab") as f:
            f.write(b"x")
    elif damage == "truncate":
        blob.write_bytes(b"")
    elif damage == "delete":
        blob.unlink()
    else:
        blob.chmod(0o600)

    # When it runs again
    again = packed.run("exit", "0")

    # Expect the launcher to notice and put the build's file back before running it
    assert again.code == 0, again.stderr
    assert "cache miss" in again.stderr and "extracted" in again.stderr
    assert again.field("dir") == str(packed.cached)
    assert blob.read_bytes() == (packed.tree / "data" / "blob.bin").read_bytes()
    assert packed.run("exit", "0").stderr.count("cache hit") == 1


def test_a_symlink_in_place_of_the_copy_is_replaced_not_followed(packed: Packed) -> None:
    # Given the cache entry of this build is a symlink to another directory with a file in it
    elsewhere = packed.home / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("mine")
    (packed.cache / "taskd").mkdir(mode=0o700)
    packed.cached.symlink_to(elsewhere)

    # When the program runs
    run = packed.run("exit", "0")

    # Expect a real copy in its place, and the link's target left alone
    assert run.code == 0, run.stderr
    assert run.field("dir") == str(packed.cached)
    assert packed.cached.is_dir() and not packed.cached.is_symlink()
    assert (elsewhere / "keep").read_text() == "mine"
    assert sorted(p.name for p in (packed.cache / "taskd").iterdir()) == [
        packed.build_id,
        f"{packed.build_id}.lock",
    ]


# Holds each run at a shared flock on argv[1] until the test lets go of its exclusive one.
BARRIER = (
    "import fcntl, os, sys; fcntl.flock(open(sys.argv[1]), fcntl.LOCK_SH); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def _blocked_on(path: Path) -> int:
    """How many processes wait for a lock on ``path`` (the "->" lines of /proc/locks)."""
    inode = f":{path.stat().st_ino} "
    return sum(
        "->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


def test_concurrent_first_runs_extract_once(packed: Packed, tmp_path: Path) -> None:
    # Given eight runs of a never-run binary, held at a barrier until all of them are started
    gate = tmp_path / "gate"
    gate.touch()
    with gate.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BARRIER, str(gate), str(packed.binary), "exit", "0"],
                env=packed.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(8)
        ]
        _wait_for(lambda: _blocked_on(gate) == 8, "the eight runs to reach the barrier")

        # When they are let go at once
        fcntl.flock(held, fcntl.LOCK_UN)
        runs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=DEADLINE)
            runs.append(Run(proc.returncode, stdout, stderr))

    # Expect all of them to run the one cached copy, which exactly one of them extracted
    assert [run.code for run in runs] == [0] * 8, [run.stderr for run in runs]
    assert {run.field("dir") for run in runs} == {str(packed.cached)}
    assert sum("extracted" in run.stderr for run in runs) == 1
    # And no half-done copy to be left behind
    assert sorted(p.name for p in (packed.cache / "taskd").iterdir()) == [
        packed.build_id,
        f"{packed.build_id}.lock",
    ]


def test_a_home_where_nothing_can_be_created_falls_back_to_a_temporary_copy(
    packed: Packed,
) -> None:
    # Given a HOME under which no directory can be created, and no XDG_CACHE_HOME
    # When the program runs and exits with 3
    run = packed.run("exit", "3", HOME=packed.unusable_home, XDG_CACHE_HOME=None)

    # Expect it to have run from a fresh directory under TMPDIR, with its exit code
    assert run.code == 3, run.stderr
    assert run.field("dir").startswith(f"{packed.tmp}/taskd-{packed.build_id}-")
    assert "extracting for this run only" in run.stderr
    # And that directory to be gone once it exited
    assert list(packed.tmp.iterdir()) == []


def test_the_fallback_is_silent_without_debug(packed: Packed) -> None:
    # Given an unusable cache location
    # When the program runs without TASKD_LAUNCHER_DEBUG
    run = packed.run(
        "exit", "0", HOME=packed.unusable_home, XDG_CACHE_HOME=None, TASKD_LAUNCHER_DEBUG=None
    )

    # Expect only the program's own output: a client command's output stays parseable
    assert run.code == 0
    assert run.stderr == ""
    assert run.field("dir").startswith(f"{packed.tmp}/taskd-")


def test_a_cache_others_may_write_to_is_not_used(packed: Packed) -> None:
    # Given a cache directory that group and others may write to (they could plant files)
    shared = packed.cache / "taskd"
    shared.mkdir()
    shared.chmod(0o777)

    # When the program runs
    run = packed.run("exit", "0")

    # Expect it to have run from a temporary copy, leaving the shared directory alone
    assert run.code == 0, run.stderr
    assert run.field("dir").startswith(f"{packed.tmp}/taskd-")
    assert "writable by group or others" in run.stderr
    assert list(shared.iterdir()) == []


def _fallback_serve(packed: Packed) -> tuple[subprocess.Popen[str], Path, int]:
    mark = packed.home / "mark"
    proc = packed.start("serve", str(mark), HOME=packed.unusable_home, XDG_CACHE_HOME=None)
    pid_file = mark.with_name("mark.pid")
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the program to start")
    child = int(pid_file.read_text())
    assert child != proc.pid  # the fallback runs the program as a child of the launcher
    return proc, mark, child


def test_sigterm_to_the_fallback_launcher_reaches_the_program(packed: Packed) -> None:
    # Given a program running from a temporary copy (a child of the launcher)
    proc, mark, child = _fallback_serve(packed)

    # When a supervisor sends SIGTERM to the pid it started
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=DEADLINE)

    # Expect the program to have got it and exited 0, and the launcher with it
    assert mark.read_text().strip() == "term"
    assert proc.returncode == 0
    assert _gone(child)
    # And the temporary copy to be removed
    assert list(packed.tmp.iterdir()) == []


def test_sigkill_of_the_fallback_launcher_leaves_no_orphan(packed: Packed) -> None:
    # Given a program running from a temporary copy
    proc, _, child = _fallback_serve(packed)

    # When a supervisor SIGKILLs the pid it started
    proc.kill()
    proc.communicate(timeout=DEADLINE)

    # Expect the program to die too (PR_SET_PDEATHSIG), not to live on as an orphan
    assert proc.returncode == -signal.SIGKILL
    _wait_for(lambda: _gone(child), f"the orphaned program {child} to die")


def test_a_program_killed_by_a_signal_ends_the_fallback_launcher_the_same_way(
    packed: Packed,
) -> None:
    # Given an unusable cache location
    # When the program kills itself with SIGKILL
    run = packed.run("suicide", HOME=packed.unusable_home, XDG_CACHE_HOME=None)

    # Expect the launcher's parent to see the same death, and no copy left behind
    assert run.code == -signal.SIGKILL
    assert list(packed.tmp.iterdir()) == []


def test_a_truncated_binary_says_it_is_damaged(packed: Packed) -> None:
    # Given a binary cut short, as by an interrupted download
    data = packed.binary.read_bytes()
    packed.binary.write_bytes(data[: len(data) // 2])

    # When it runs
    run = packed.run("exit", "0")

    # Expect one line saying so and what to do, and nothing extracted
    assert run.code == 127
    assert run.stderr.startswith("taskd: this binary is damaged or truncated")
    assert "copy or build it again" in run.stderr
    assert not (packed.cache / "taskd").exists()


def test_the_build_id_follows_the_content(
    pack: ModuleType, launcher: Path, packed: Packed, tmp_path: Path
) -> None:
    # Given the same tree packed again, and a tree that differs in one byte
    again = pack.pack(launcher, packed.tree, tmp_path / "again", "9.9.9")
    (packed.tree / "data" / "extra").write_text("1")
    changed = pack.pack(launcher, packed.tree, tmp_path / "changed", "9.9.9")

    # Expect the same id for the same content (one cache directory) and a new one otherwise
    assert again == packed.build_id
    assert changed != packed.build_id


def test_packing_a_tree_without_its_program_is_refused(
    pack: ModuleType, launcher: Path, tmp_path: Path
) -> None:
    # Given a tree with no program at its top
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "other").write_text("")

    # Expect pack to refuse, naming what is missing
    with pytest.raises(pack.PackError, match="no program 'taskd'"):
        pack.pack(launcher, tree, tmp_path / "out", "1.0")
