"""One local attempt: run the command for one leased task and decide how it ended.

Theory of operation: ``Attempt.run`` starts the command (see ``spawn``), feeds the payload to
its stdin, collects stdout (at most ``output_limit`` bytes) and a 4 KiB tail of stderr, and
waits for the group leader to exit. It returns an ``AttemptResult``; it never reports to the
node itself, so the executor alone decides whether a result is still worth reporting.

Ending a process group:
- normal exit: the leader is gone; the rest of its group (background grandchildren) is
  SIGKILLed before the leader is reaped, so nothing outlives its attempt or holds our pipes;
- timeout (a trio cancel scope of ``item.timeout`` seconds): SIGTERM to the group, then
  SIGKILL after ``kill_grace`` seconds, so a command gets a chance to clean up; the error is
  exactly ``timeout``;
- revocation, output overflow, shutdown (``kill``): SIGKILL to the group at once.
The attempt never returns while its leader is unreaped, even when cancelled from outside.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from taskd.exec.spawn import Child, Spawner
from taskd.exec.work import WorkItem

STDERR_TAIL = 4096


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    result: bytes = b""
    error: str = ""
    log: str = ""  # a successful run's stderr tail


class Attempt:
    """Runs ``argv`` once for ``item``; ``kill`` may be called at any time, from any task."""

    def __init__(
        self,
        item: WorkItem,
        argv: Sequence[str],
        spawner: Spawner,
        *,
        env: Mapping[str, str],
        output_limit: int,
        kill_grace: float,
    ) -> None:
        self.item = item
        self._argv = argv
        self._spawner = spawner
        self._env = env
        self._output_limit = output_limit
        self._kill_grace = kill_grace
        self._child: Child | None = None
        self._killed_because: str | None = None
        self._stdout = bytearray()
        self._stderr = bytearray()

    def kill(self, error: str) -> None:
        """SIGKILL the whole group now; the attempt fails with ``error`` (first reason wins)."""
        if self._killed_because is None:
            self._killed_because = error
        if self._child is not None:
            self._child.signal_group(signal.SIGKILL)

    async def run(self) -> AttemptResult:
        if self._killed_because is not None:  # killed before it started: do not start it
            return AttemptResult(False, error=self._killed_because)
        deadline = trio.current_time() + self.item.timeout
        env = {
            **self._env,
            "TASKD_TASK_ID": self.item.id,
            "TASKD_ATTEMPT": str(self.item.attempt),
            "TASKD_QUEUE": self.item.queue,
        }
        try:
            child = await self._spawner.spawn(self._argv, env)
        except OSError as exc:
            return AttemptResult(
                False,
                error=f"cannot start {self._argv[0]!r}: [Errno {exc.errno}] {exc.strerror} "
                "(check the --exec command)",
            )
        self._child = child
        try:
            if self._killed_because is not None:  # killed while it was being started
                child.signal_group(signal.SIGKILL)
            with trio.CancelScope(deadline=deadline) as timer:
                await self._supervise(child)
            if timer.cancelled_caught:
                self._killed_because = self._killed_because or "timeout"
                await self._terminate(child)
        finally:
            if not child.reaped:  # cancelled from outside: never leave the group running
                with trio.CancelScope(shield=True):
                    child.signal_group(signal.SIGKILL)
                    await self._collect(child)
            with trio.CancelScope(shield=True):
                await child.aclose_pipes()
        return self._verdict(child.popen.returncode)

    async def _supervise(self, child: Child) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed, child)
            nursery.start_soon(self._read_stdout, child)
            nursery.start_soon(self._read_stderr, child)
            await self._collect(child)

    async def _collect(self, child: Child) -> None:
        """Wait for the leader, sweep the rest of its group, then reap it."""
        await child.wait_exited()
        child.signal_group(signal.SIGKILL)  # the leader is a zombie: its group id is still ours
        child.reap()

    async def _terminate(self, child: Child) -> None:
        if child.reaped:  # it exited, but something it left held our pipes past the deadline
            return
        child.signal_group(signal.SIGTERM)
        with trio.move_on_after(self._kill_grace):
            await child.wait_exited()
        child.signal_group(signal.SIGKILL)
        await self._collect(child)

    async def _feed(self, child: Child) -> None:
        try:
            # The contract is "the payload as JSON on stdin": no payload is JSON null.
            await child.stdin.send_all(self.item.payload or b"null")
            await child.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the command does not read its stdin: that is its business

    async def _read_stdout(self, child: Child) -> None:
        while chunk := await child.stdout.receive_some(65536):
            self._stdout += chunk
            if len(self._stdout) > self._output_limit:
                self.kill(f"output exceeded {self._output_limit} bytes")
                del self._stdout[self._output_limit :]
                return

    async def _read_stderr(self, child: Child) -> None:
        while chunk := await child.stderr.receive_some(65536):
            self._stderr += chunk
            if len(self._stderr) > 2 * STDERR_TAIL:
                del self._stderr[: len(self._stderr) - STDERR_TAIL - 1]

    def _verdict(self, returncode: int | None) -> AttemptResult:
        if self._killed_because is not None:
            return AttemptResult(False, error=self._killed_because)
        if returncode == 0:
            return AttemptResult(
                True,
                result=_without_final_newline(bytes(self._stdout)),
                log=stderr_tail(bytes(self._stderr)),
            )
        tail = stderr_tail(bytes(self._stderr))
        if returncode is not None and returncode < 0:
            try:
                what = f"killed by signal {signal.Signals(-returncode).name}"
            except ValueError:
                what = f"killed by signal {-returncode}"
        else:
            what = f"exit status {returncode}"
        return AttemptResult(False, error=f"{what}: {tail}" if tail else what)


def stderr_tail(data: bytes) -> str:
    """The last whole lines of ``data`` within ``STDERR_TAIL`` bytes, as text."""
    clipped = len(data) > STDERR_TAIL
    text = data[-STDERR_TAIL:].decode("utf-8", "replace")
    if clipped and "\n" in text:
        text = text.partition("\n")[2]  # drop the partial first line
    return text.strip()


def _without_final_newline(output: bytes) -> bytes:
    """``print("done")`` means the result ``done``: drop the one line break that ends output."""
    if output.endswith(b"\r\n"):
        return output[:-2]
    return output[:-1] if output.endswith(b"\n") else output
