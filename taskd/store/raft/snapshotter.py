"""Snapshots written by a forked child, so the node never stops to serialize its state.

Serializing the scheduler takes ~5.7 µs per task held (0.57 s for 100k tasks, seconds for
millions); done on the trio loop it stalls every request for that long. Like Redis's BGSAVE,
the node instead forks: the child sees the state exactly as it was at the fork (copy-on-write),
serializes it, writes the snapshot file atomically and exits; the loop carries on at once and a
thread waits for the child. Only after the child succeeded does the parent compact the log.

The child runs no trio code and touches no descriptor but the snapshot file, leaves with
``os._exit`` (no finalizers, no atexit), and asks the kernel to kill it if the node dies, so a
stale child can never write into a data dir a restarted node already uses. Cost: while the
child runs, pages the parent changes are copied, up to doubling the node's memory in the worst
case. Where ``os.fork`` is unavailable, the snapshot is serialized on the loop instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
from collections.abc import Callable

import trio

log = logging.getLogger("taskd.raft")

_PR_SET_PDEATHSIG = 1
_ERRNO_EXIT = 100  # a child that failed with an OSError exits with 100 + its errno


def _die_with_parent(parent: int) -> None:
    """In the child: be killed when the parent dies (Linux), and leave if it already has."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the child still finishes; it cannot outlive its parent for long
    if os.getppid() != parent:
        os._exit(3)


def start_child(serialize_and_write: Callable[[], None]) -> int | None:
    """Fork a child that runs ``serialize_and_write`` and exits; return its pid.

    Synchronous on purpose: call it exactly where the state is consistent (between two
    applied entries), since the child sees the state as it is at the fork. Without ``os.fork``
    it runs ``serialize_and_write`` right here and returns None.
    """
    if not hasattr(os, "fork"):
        serialize_and_write()
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: no await, no return to the caller, ever
        code = 1
        try:
            _die_with_parent(parent)
            serialize_and_write()
            code = 0
        except OSError as exc:  # the errno travels in the exit code (ENOSPC is 28 -> 128)
            code = _ERRNO_EXIT + exc.errno if exc.errno and 0 < exc.errno < 256 - _ERRNO_EXIT else 2
        except BaseException:  # reported to the parent by the exit code
            code = 2
        finally:
            os._exit(code)
    return pid


async def wait_child(pid: int | None) -> None:
    """Wait for a ``start_child`` child; raise ``OSError`` if it failed. Cancelling kills it."""
    if pid is None:
        return
    try:
        _, status = await trio.to_thread.run_sync(os.waitpid, pid, 0, abandon_on_cancel=True)
    except trio.Cancelled:
        # The node is stopping: the snapshot is not needed (the log holds everything).
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # the abandoned waiter may reap it first
            os.waitpid(pid, 0)  # noqa: ASYNC222  # SIGKILLed: returns at once
        raise
    code = os.waitstatus_to_exitcode(status)
    if code > _ERRNO_EXIT:
        number = code - _ERRNO_EXIT
        raise OSError(number, f"the snapshot child failed: {os.strerror(number)}")
    if code != 0:
        raise OSError(f"the snapshot child exited with {code}")
