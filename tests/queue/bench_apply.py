"""Throughput of ``Scheduler.apply`` and the codec alone (no I/O): run with
``.venv/bin/python tests/queue/bench_apply.py [N]``. Not collected by pytest."""

from __future__ import annotations

import sys
import time

from taskd.queue.codec import decode, encode
from taskd.queue.commands import Command, Complete, Lease, Submit, TaskSpec
from taskd.queue.scheduler import Scheduler


def main(n: int) -> None:
    specs = [TaskSpec(priority=i % 10, payload=b"x" * 100) for i in range(n)]
    ids = [f"01J{i:023d}" for i in range(n)]

    for batch in (1, 100):
        s = Scheduler()
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            out = s.apply(Submit(tuple(specs[i : i + batch]), tuple(ids[i : i + batch])), 1.0, i)
            assert out.ok
        dt = time.perf_counter() - t0
        print(f"submit   batch={batch:<4} {n / dt:>10,.0f} specs/s")

    for lease_max in (1, 100):
        s = Scheduler()
        for i in range(0, n, 100):
            s.apply(Submit(tuple(specs[i : i + 100]), tuple(ids[i : i + 100])), 1.0, i)
        t0 = time.perf_counter()
        done = 0
        while done < n:
            out = s.apply(Lease("default", "w1", lease_max, 30.0), 2.0, done)
            for leased in out.reply:  # type: ignore[attr-defined]
                r = s.apply(Complete(leased.task_id, leased.epoch, b"ok"), 3.0, done)
                assert r.ok
                done += 1
        dt = time.perf_counter() - t0
        print(f"lease+complete max={lease_max:<4} {n / dt:>10,.0f} tasks/s")

    cmds: list[Command] = [
        Submit(tuple(specs[i : i + 100]), tuple(ids[i : i + 100])) for i in range(0, n, 100)
    ]
    cmds += [Complete(ids[i], i, b"result") for i in range(n)]
    t0 = time.perf_counter()
    blobs = [encode(c, 1.0, 7) for c in cmds]
    t1 = time.perf_counter()
    for b in blobs:
        decode(b)
    t2 = time.perf_counter()
    print(f"codec: {len(cmds)} entries ({n // 100} submit-100 + {n} complete)")
    print(f"  encode {len(cmds) / (t1 - t0):>10,.0f} entries/s")
    print(f"  decode {len(cmds) / (t2 - t1):>10,.0f} entries/s")
    sub = [blobs[i] for i in range(n // 100)]
    t0 = time.perf_counter()
    for b in sub:
        decode(b)
    print(f"  decode submit-100 {len(sub) * 100 / (time.perf_counter() - t0):>10,.0f} specs/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
