"""``DaemonThreads``: sync handlers' threads, which never hold the process up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from taskd.client.worker.threads import DaemonThreads


def test_results_and_exceptions_come_back_on_the_loop_and_threads_are_daemons() -> None:
    async def main() -> tuple[object, BaseException | None, list[bool]]:
        pool = DaemonThreads(4)
        daemons: list[bool] = []

        def job(x: int) -> int:
            daemons.append(threading.current_thread().daemon)
            return x * 2

        def boom(_: object) -> None:
            raise ValueError("boom")

        result = await pool.run(job, 21)
        try:
            await pool.run(boom, None)
        except ValueError as exc:
            error: BaseException | None = exc
        else:
            error = None
        pool.shutdown()
        return result, error, daemons

    result, error, daemons = asyncio.run(main())
    assert result == 42 and isinstance(error, ValueError) and daemons == [True]


def test_jobs_up_to_the_maximum_run_at_once_never_more_threads() -> None:
    # Given a pool of 3 and three jobs that wait for each other
    async def main() -> int:
        pool = DaemonThreads(3)
        barrier = threading.Barrier(3, timeout=5)
        names: set[str] = set()

        def job(_: object) -> None:
            names.add(threading.current_thread().name)
            barrier.wait()  # only passes if all three run at the same time

        await asyncio.gather(*(pool.run(job, None) for _ in range(3)))
        await asyncio.gather(*(pool.run(job, None) for _ in range(3)))  # reused
        pool.shutdown()
        return len(names)

    # Expect all three at once, on three threads reused for the second round
    assert asyncio.run(main()) == 3


def test_a_cancelled_job_drops_its_outcome_and_its_thread_serves_again() -> None:
    async def main() -> object:
        pool = DaemonThreads(1)
        release = threading.Event()
        stuck = pool.run(lambda _: release.wait(5), None)
        stuck.cancel()
        release.set()
        result = await pool.run(lambda x: x, "next")
        pool.shutdown()
        return result

    assert asyncio.run(main()) == "next"


@pytest.mark.slow
def test_a_stuck_handler_thread_does_not_keep_the_process_alive() -> None:
    # Given a process whose pool thread sleeps for a minute
    code = (
        "import asyncio, time\n"
        "from taskd.client.worker.threads import DaemonThreads\n"
        "async def main():\n"
        "    pool = DaemonThreads(1)\n"
        "    pool.run(time.sleep, 60)\n"
        "    await asyncio.sleep(0.1)\n"
        "asyncio.run(main())\n"
    )
    # When its main code ends
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    # Expect it to exit at once
    assert time.monotonic() - start < 10
