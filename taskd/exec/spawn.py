"""Starting command processes, and the handle to one started process.

Theory of operation: every child is started by one long-lived *spawner thread* per executor,
never by trio's thread cache. Two reasons: ``subprocess.Popen`` may block (fork of a large
heap), so it must stay off the event loop; and Linux's ``PR_SET_PDEATHSIG`` fires when the
*thread* that forked the child exits, not the process, so a cached worker thread retiring
after 10 idle seconds would SIGKILL healthy children. The spawner thread lives until its
executor has reaped every child, and dies with the node, which is exactly when children must
die too (best effort: a failure to set the death signal is ignored).

How the death signal is set: a ``preexec_fn`` would do it, but any preexec_fn makes CPython
fork instead of vfork and run Python in the child, which measured 4.3 ms per spawn against
1.5 ms. So when util-linux ``setpriv`` is installed (it is on Debian and most Linux systems),
the command runs as ``setpriv --pdeathsig KILL -- COMMAND``: one extra exec, same pid, and
the vfork fast path. Because setpriv would turn a missing or non-executable command into an
exit status, the spawner resolves the command itself first and raises the ``OSError`` that
exec would have raised. Without setpriv it falls back to the ctypes ``prctl`` preexec_fn.

Each child leads its own session (``start_new_session=True``), so its process group id is its
pid and ``signal_group`` reaches every grandchild. The leader is waited for with a pidfd,
which turns readable when the leader exits but before it is reaped: while it is a zombie, its
pid cannot be reused, so signalling its group after exit is safe. ``reap`` comes last.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import outcome
import trio

_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when its parent thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def set_death_signal() -> None:  # runs in the forked child: resolve nothing here
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the node died between fork and prctl
            os._exit(137)

    return set_death_signal


def _setpriv() -> str | None:
    """The path of a ``setpriv`` that knows ``--pdeathsig`` (util-linux >= 2.33), if any."""
    path = shutil.which("setpriv")
    if path is None or not sys.platform.startswith("linux"):
        return None
    try:
        probe = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def _resolve(program: str, env: Mapping[str, str]) -> str:
    """Find ``program`` as exec would, raising the ``OSError`` exec would raise."""
    if "/" in program:
        path: str | None = program
    else:
        path = shutil.which(program, mode=os.F_OK, path=env.get("PATH", os.defpath))
    if path is None or not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    return path


@dataclass(slots=True)
class Child:
    """One started command: its pipes, and its process group (led by ``pid``)."""

    popen: subprocess.Popen[bytes]
    stdin: trio.lowlevel.FdStream
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def reaped(self) -> bool:
        return self.popen.returncode is not None

    async def wait_exited(self) -> None:
        """Return once the group leader has exited (it stays a zombie until ``reap``)."""
        await trio.lowlevel.wait_readable(self.pidfd)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group; a no-op once reaped or already gone."""
        if self.reaped:
            return  # the pid (and so the group id) may belong to someone else now
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int:
        """Collect the exited leader's status (call after ``wait_exited``)."""
        returncode = self.popen.wait()
        os.close(self.pidfd)
        self.pidfd = -1
        return returncode

    async def aclose_pipes(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            await stream.aclose()


class Spawner:
    """Starts children from one dedicated thread (see the module docstring)."""

    def __init__(self, *, die_with_node: bool = True, use_setpriv: bool = True) -> None:
        self._die_with_node = die_with_node
        self._use_setpriv = use_setpriv
        self._setpriv: str | None = None  # decided in the spawner thread (it runs a probe)
        self._preexec: Callable[[], None] | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        """Start ``argv`` with piped stdio; raises ``OSError`` when it cannot start."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="taskd-spawner", daemon=True)
            self._thread.start()
        fds = [*os.pipe(), *os.pipe(), *os.pipe()]  # stdin r/w, stdout r/w, stderr r/w
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[subprocess.Popen[bytes]]] = []

        def job() -> None:  # runs in the spawner thread
            box.append(outcome.capture(self._popen, argv, env, fds[0], fds[3], fds[5]))
            token.run_sync_soon(done.set)

        self._jobs.put(job)
        with trio.CancelScope(shield=True):  # a started child must never be orphaned
            await done.wait()
        for fd in (fds[0], fds[3], fds[5]):
            os.close(fd)
        try:
            popen = box[0].unwrap()
        except BaseException:
            for fd in (fds[1], fds[2], fds[4]):
                os.close(fd)
            raise
        stdin, stdout, stderr = (trio.lowlevel.FdStream(fd) for fd in (fds[1], fds[2], fds[4]))
        return Child(popen, stdin, stdout, stderr, pidfd=os.pidfd_open(popen.pid))

    def _popen(
        self, argv: Sequence[str], env: Mapping[str, str], stdin: int, stdout: int, stderr: int
    ) -> subprocess.Popen[bytes]:
        command = list(argv)
        if self._setpriv is not None:
            command = [self._setpriv, "--pdeathsig", "KILL", "--", _resolve(argv[0], env)]
            command += argv[1:]
        return subprocess.Popen(
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env),
            start_new_session=True,
            preexec_fn=self._preexec,  # resolves prctl before the fork
        )

    def _serve(self) -> None:
        if self._die_with_node:
            self._setpriv = _setpriv() if self._use_setpriv else None
            if self._setpriv is None:
                self._preexec = _death_signal_setter()
        while (job := self._jobs.get()) is not None:
            job()

    def close(self) -> None:
        """Let the thread end; call only when every child it started has been reaped."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None
