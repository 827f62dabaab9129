"""LocalExecutor against real commands and a behaving fake WorkSource."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from taskd.exec.concurrency import Concurrency
from taskd.exec.local import LocalExecutor
from taskd.exec.work import WorkerRegistry
from taskd.queue.commands import State

PY = sys.executable


@asynccontextmanager
async def serving(
    source, argv: Sequence[str], concurrency: str = "1-4", **options: float
) -> AsyncIterator[LocalExecutor]:
    executor = LocalExecutor(
        "q",
        argv,
        source,
        worker="node-a/local/q",
        concurrency=Concurrency.parse(concurrency),
        registry=options.pop("registry", None) or WorkerRegistry(),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(executor.serve)
        yield executor
        await executor.drain(grace=0)


async def eventually(condition: Callable[[], bool], within: float) -> None:
    """Poll a condition that no event signals: a file a child writes, a process dying."""
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- the kernel or a child changes it, not trio
            await trio.sleep(0.01)


def has_pid(path: Path) -> bool:
    return path.exists() and path.read_text().strip() != ""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_payload_on_stdin_and_env_reach_the_command(source):
    # Given a command that echoes its stdin and the TASKD_* environment
    script = (
        "import json, os, sys; print(json.dumps({'stdin': sys.stdin.read(), "
        "'env': {k: v for k, v in os.environ.items() if k.startswith('TASKD_')}, "
        "'path': 'PATH' in os.environ}))"
    )
    task = source.submit(payload=b'{"data": 1}')
    # When it runs
    async with serving(source, [PY, "-c", script]):
        await source.settled(task)
    # Expect stdout to be the result, and the payload and variables to have reached it
    assert source.tasks[task].state is State.SUCCEEDED
    seen = json.loads(source.tasks[task].result)
    assert seen["stdin"] == '{"data": 1}'
    ours = {
        k: v
        for k, v in seen["env"].items()
        if k in ("TASKD_TASK_ID", "TASKD_ATTEMPT", "TASKD_QUEUE")
    }
    assert ours == {
        "TASKD_TASK_ID": task,
        "TASKD_ATTEMPT": "1",
        "TASKD_QUEUE": "q",
    }  # (CI sets others)
    assert seen["path"]  # the node's environment is kept


async def test_success_returns_stdout_bytes(source):
    task = source.submit()
    async with serving(source, ["sh", "-c", "printf 'hello\\nworld'"]):
        await source.settled(task)
    assert source.tasks[task].result == b"hello\nworld"


async def test_success_reports_the_stderr_tail_for_the_attempt_history(source):
    # Given a command that warns on stderr and succeeds
    task = source.submit()
    script = "echo 'warning: cache cold' >&2; echo 'took 3s' >&2; echo done"
    # When it runs
    async with serving(source, ["sh", "-c", script]):
        await source.settled(task)
    # Expect the result from stdout and the stderr tail carried with the completion
    assert source.tasks[task].result == b"done"
    assert source.logs[task] == "warning: cache cold\ntook 3s"


async def test_nonzero_exit_fails_with_the_stderr_tail(source):
    task = source.submit()
    script = "echo first >&2; echo 'second line' >&2; exit 3"
    async with serving(source, ["sh", "-c", script]):
        await source.settled(task)
    assert source.tasks[task].state is State.FAILED
    assert source.tasks[task].error == "exit status 3: first\nsecond line"


async def test_long_stderr_keeps_only_the_last_whole_lines_within_4_kib(source):
    task = source.submit()
    script = "import sys\nfor i in range(2000): print(f'line {i}', file=sys.stderr)\nsys.exit(1)"
    async with serving(source, [PY, "-c", script]):
        await source.settled(task)
    error = source.tasks[task].error
    assert error.startswith("exit status 1: line ")
    assert error.endswith("line 1999")
    assert len(error.encode()) <= 4096 + len("exit status 1: ")
    assert error.split(": ", 1)[1].split("\n")[0].split()[1].isdigit()  # a whole first line


async def test_killed_by_a_signal_names_it(source):
    task = source.submit()
    async with serving(source, ["sh", "-c", "kill -KILL $$"]):
        await source.settled(task)
    assert source.tasks[task].error == "killed by signal SIGKILL"


async def test_a_command_that_cannot_start_fails_clearly(source, tmp_path):
    # Given a missing program, and a file that is not executable
    script = tmp_path / "resize.py"
    script.write_text("print(1)\n")
    missing = source.submit()
    async with serving(source, ["/nonexistent/resize.py"]):
        await source.settled(missing)
    not_executable = source.submit()
    async with serving(source, [str(script)]):
        await source.settled(not_executable)
    # Expect errors that name the command and the cause
    assert source.tasks[missing].error == (
        "cannot start '/nonexistent/resize.py': [Errno 2] No such file or directory "
        "(check the --exec command)"
    )
    if os.geteuid() != 0 or not os.access(script, os.X_OK):
        assert "[Errno 13] Permission denied" in source.tasks[not_executable].error


@pytest.mark.slow
async def test_timeout_kills_the_whole_process_group(source, tmp_path):
    # Given a command that leaves a grandchild running beside itself
    pids = tmp_path / "pids"
    script = f"sleep 100 & echo $! > {pids}; echo $$ >> {pids}; exec sleep 100"
    task = source.submit(timeout=0.5)
    # When its attempt times out
    start = trio.current_time()
    async with serving(source, ["sh", "-c", script], kill_grace=5.0):
        await source.settled(task)
    # Expect the error "timeout", and both processes gone (SIGTERM sufficed: no grace wait)
    assert source.tasks[task].error == "timeout"
    assert 0.5 <= trio.current_time() - start < 3
    grandchild, leader = (int(line) for line in pids.read_text().split())
    assert not alive(leader)
    assert not alive(grandchild)


@pytest.mark.slow
async def test_timeout_escalates_to_sigkill_after_the_grace(source):
    task = source.submit(timeout=0.3)
    start = trio.current_time()
    async with serving(source, ["sh", "-c", "trap '' TERM; sleep 100"], kill_grace=0.3):
        await source.settled(task)
    assert source.tasks[task].error == "timeout"
    assert 0.6 <= trio.current_time() - start < 3


async def test_output_beyond_the_limit_kills_and_fails(source):
    task = source.submit()
    async with serving(source, ["yes"], output_limit=100_000):
        await source.settled(task)
    assert source.tasks[task].error == "output exceeded 100000 bytes"


async def test_output_at_the_limit_is_fine(source):
    task = source.submit()
    async with serving(source, [PY, "-c", "print('x' * 999)"], output_limit=1000):
        await source.settled(task)
    assert source.tasks[task].result == b"x" * 999  # the final line break is dropped


async def test_revoke_kills_at_once_and_reports_nothing(source, tmp_path):
    # Given a long command that announced its pid
    pidfile = tmp_path / "pid"
    task = source.submit()
    registry = WorkerRegistry()
    async with serving(
        source, ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 100"], registry=registry
    ) as executor:
        await source.until(lambda: source.running() == 1)
        await eventually(lambda: has_pid(pidfile), within=5)
        # When the node cancels it and routes the revocation
        epoch = source.cancel(task)
        assert registry.revoke(task, epoch, "canceled")
        # Expect the process dead at once, and no outcome reported for that lease
        await eventually(lambda: not alive(int(pidfile.read_text())), within=0.5)
        await eventually(lambda: executor.running == 0, within=0.5)
    assert source.reports == []
    assert source.tasks[task].state is State.CANCELED
    assert registry.holder_of(task) is None


async def test_revoke_with_another_epoch_is_ignored(source):
    task = source.submit()
    async with serving(source, ["sh", "-c", "sleep 0.1; echo ok"]) as executor:
        await source.until(lambda: source.running() == 1)
        executor.revoke(task, epoch=99, reason="lease expired")
        await source.settled(task)
    assert source.tasks[task].state is State.SUCCEEDED


async def test_a_lease_granted_with_its_answer_lost_is_failed_back_and_run_again(source):
    # Given a task, and a store that grants the first lease but loses its answer, and another
    # queue's task leased under the same worker name (another executor's: left alone)
    task = source.submit(retries=1)
    other = source.submit(queue="other")
    await source.lease("other", "node-a/local/q", 1)
    source.lose_lease_answers = 1
    async with serving(source, ["sh", "-c", "echo ran"]):
        # When the executor runs
        await source.settled(task)
    # Expect the lost lease failed as a lost worker's (epoch 1), then the task run once
    # (epoch 2) and succeeded; the other queue's lease untouched
    assert [r[:3] for r in source.reports if r[1] == task] == [
        ("fail", task, 1),
        ("complete", task, 2),
    ]
    assert source.tasks[task].errors[0].startswith("worker lost: the lease was granted")
    assert source.tasks[task].state is State.SUCCEEDED and source.tasks[task].result == b"ran"
    assert source.tasks[other].state is State.RUNNING


@pytest.mark.slow
async def test_drain_lets_attempts_finish_within_the_grace(source):
    task = source.submit()
    async with serving(source, ["sh", "-c", "sleep 0.3; echo done"]) as executor:
        await source.until(lambda: source.running() == 1)
        await executor.drain(grace=10)
        assert source.tasks[task].result == b"done"


@pytest.mark.slow
async def test_drain_kills_what_outlives_the_grace(source):
    task, waiting = source.submit(), source.submit()
    async with serving(source, ["sleep", "100"], concurrency="1") as executor:
        await source.until(lambda: source.running() == 1)
        start = trio.current_time()
        await executor.drain(grace=0.3)
        assert 0.3 <= trio.current_time() - start < 2
    assert source.tasks[task].error == "node shutting down"
    assert source.tasks[waiting].state is State.QUEUED  # never leased during the drain


@pytest.mark.slow
async def test_concurrency_grows_with_the_backlog_then_shrinks_when_idle(source):
    # Given a 1-3 executor and a backlog of 8 tasks
    tasks = [source.submit() for _ in range(8)]
    registry = WorkerRegistry()
    running: list[LocalExecutor] = []
    source.in_flight = lambda: running[0].running if running else 0
    async with serving(
        source, ["sleep", "0.2"], concurrency="1-3", registry=registry, idle_shrink_after=0.3
    ) as executor:
        running.append(executor)
        # When they run
        await source.settled(*tasks)
        # Expect three at a time, leased three in one call
        assert source.max_in_flight == 3
        assert source.lease_calls[0] == ("q", 3, 3)
        # (the registry's capacity may already be shrinking: idle_shrink_after is short)
        [info] = registry.workers()
        assert info.kind == "local" and 1 <= info.capacity <= 3
        # and back to one slot once idle
        await eventually(lambda: registry.workers()[0].capacity == 1, within=3)
    assert all(source.tasks[t].state is State.SUCCEEDED for t in tasks)


NODE = """
import sys, trio
sys.path.insert(0, {here!r})
from conftest import FakeSource
from taskd.exec.concurrency import Concurrency
from taskd.exec.local import LocalExecutor
from taskd.exec.spawn import Spawner

async def main():
    source = FakeSource()
    source.submit()
    argv = ["sh", "-c", "echo $$ > {pidfile}; exec sleep 100"]
    executor = LocalExecutor("q", argv, source, worker="w", concurrency=Concurrency(1, 1))
    executor._spawner = Spawner(use_setpriv={use_setpriv})
    await executor.serve()

trio.run(main)
"""


@pytest.mark.slow
@pytest.mark.parametrize("use_setpriv", [True, False], ids=["setpriv", "preexec"])
async def test_commands_die_with_the_node(tmp_path, use_setpriv):
    # Given a node process running a long command
    pidfile = tmp_path / "pid"
    code = NODE.format(here=str(Path(__file__).parent), pidfile=pidfile, use_setpriv=use_setpriv)
    node = await trio.lowlevel.open_process([PY, "-c", code])
    await eventually(lambda: has_pid(pidfile), within=10)
    command = int(pidfile.read_text())
    assert alive(command)
    # When the node is SIGKILLed
    node.kill()
    await node.wait()
    # Expect its command to die too (PR_SET_PDEATHSIG)
    await eventually(lambda: not alive(command), within=5)


async def test_a_bare_command_name_is_looked_up_on_path(source):
    found = source.submit()
    async with serving(source, ["echo", "hi"]):
        await source.settled(found)
    missing = source.submit()
    async with serving(source, ["resize.py"]):
        await source.settled(missing)
    assert source.tasks[found].result == b"hi"
    assert source.tasks[missing].error == (
        "cannot start 'resize.py': [Errno 2] No such file or directory (check the --exec command)"
    )


async def test_a_payload_larger_than_a_pipe_buffer_reaches_the_command(source):
    payload = bytes(range(256)) * 4096  # 1 MiB
    task = source.submit(payload=payload)
    async with serving(source, ["cat"], output_limit=2 << 20):
        await source.settled(task)
    assert source.tasks[task].result == payload
