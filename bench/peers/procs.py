"""Process trees from /proc: a tree's resident memory, and killing a whole tree.

Standard library only: both sides use it, the harness in taskd's venv (the node's RSS) and the
agent in the peers' venv (the workers' RSS, and killing them with their pool children).
A process that is gone by the time it is read counts 0 kB; a kernel thread has no VmRSS.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1


def parents() -> dict[int, int]:
    """Every live process's parent: pid -> ppid."""
    out: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        out[int(entry.name)] = int(fields[1])
    return out


def tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    order, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        order.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return order


def rss_kb(pid: int) -> int:
    """VmRSS of one process in kB (0 when it is gone or has none)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_mb(roots: Iterable[int]) -> float:
    """The resident memory of every process under ``roots`` (roots included), in MB (10^6 B)."""
    pids = dict.fromkeys(pid for root in roots for pid in tree(root))
    return sum(rss_kb(pid) for pid in pids) * 1024 / 1e6


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` and its descendants (children first, so none is re-parented unseen)."""
    for pid in reversed(tree(root)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_descendants(root: int) -> None:
    """SIGKILL every descendant of ``root`` (children first), not ``root`` itself."""
    for pid in reversed(tree(root)[1:]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def die_with_parent() -> None:
    """In a child before exec: the kernel SIGKILLs it when the thread that forked it exits, so
    a harness killed with SIGKILL leaves no worker behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float,
    grace: float = 15.0,
) -> tuple[int, bytes]:
    """Run ``argv`` in a process group of its own, stdout captured and stderr passed through
    (its progress shows). Afterwards — done, failed, timed out or interrupted — a child still
    running gets SIGTERM and ``grace`` seconds to clean up after itself (the agent stops its
    workers and empties its queues), then whatever is left of the group (workers, pool
    children) gets SIGKILL. (exit code, stdout)."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
