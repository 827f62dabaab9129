"""W6 failover: SIGKILL the leader of a 3-node cluster N times under steady writes.

    .venv/bin/python -m bench.failover [--kills 10] [--nodes 3] [--writers 6] [--json]

Theory of operation: a fresh cluster (``bench.nodes``) takes steady REST submits from
``writers`` concurrent writers, each sending one task at a time to the members in turn (1 s
timeout; a refused or failed call moves on to the next member at once). Each round: wait
``--steady`` seconds, find the leader, SIGKILL it at ``t_kill``; the failover time is from
``t_kill`` to the first acknowledgement of a write *sent after* ``t_kill`` (a write already in
flight at the kill proves nothing about the new leader). Then the old leader is restarted and
the round waits until every node is ready again. The report gives each round's time and new
leader, the median and the max (design.md §4 W6; issue 7's target: median ≤ 1 s).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx
import orjson
import trio

from bench.nodes import BenchCluster

_JSON = {"content-type": "application/json"}
DESCRIPTION = "SIGKILL the leader of a fresh cluster N times under writes; time to the next write."


@dataclass(slots=True)
class Writes:
    acks: list[tuple[float, float]] = field(default_factory=list)  # (sent, acknowledged)
    errors: int = 0
    _acked: trio.Event = field(default_factory=trio.Event)

    def acknowledged(self, sent: float) -> None:
        self.acks.append((sent, time.monotonic()))
        self._acked.set()
        self._acked = trio.Event()

    async def next_ack(self) -> None:
        await self._acked.wait()

    def first_ack_sent_after(self, t: float) -> float | None:
        done = [acked for sent, acked in self.acks if sent > t]
        return min(done) if done else None


async def writer(client: httpx.AsyncClient, urls: list[str], start: int, writes: Writes) -> None:
    for i in itertools.count(start):
        url = urls[i % len(urls)]
        sent = time.monotonic()
        try:
            response = await client.post(
                f"{url}/api/v1/tasks",
                content=orjson.dumps({"queue": "failover", "payload": {"i": i}}),
                headers=_JSON,
                timeout=1.0,
            )
        except httpx.HTTPError:
            writes.errors += 1
            await trio.sleep(0.005)
            continue
        if response.status_code in (200, 201):
            writes.acknowledged(sent)
        else:
            writes.errors += 1
            await trio.sleep(0.005)


async def wait_for_ack(writes: Writes, after: float, seconds: float) -> float | None:
    with trio.move_on_after(seconds):
        while (acked := writes.first_ack_sent_after(after)) is None:
            await writes.next_ack()
        return acked
    return None


async def rounds(bench: BenchCluster, args: argparse.Namespace) -> list[dict[str, object]]:
    urls = [bench.url(m) for m in bench.members]
    writes = Writes()
    results: list[dict[str, object]] = []
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        for w in range(args.writers):
            nursery.start_soon(writer, client, urls, w, writes)
        for n in range(args.kills):
            await trio.sleep(args.steady)
            leader = await trio.to_thread.run_sync(bench.leader)
            if leader is None:
                raise RuntimeError("no leader before a kill; see the node logs")
            t_kill = time.monotonic()
            bench.cluster.node(leader).kill()
            acked = await wait_for_ack(writes, t_kill, args.give_up)
            seconds = None if acked is None else acked - t_kill
            new_leader = await trio.to_thread.run_sync(bench.leader)
            results.append(
                {"round": n + 1, "killed": leader, "seconds": seconds, "new_leader": new_leader}
            )
            shown = "no write within the limit" if seconds is None else f"{seconds:.3f} s"
            print(f"  kill {n + 1}: {leader} -> first write after {shown}; leader {new_leader}")
            bench.cluster.node(leader).start()
            await trio.to_thread.run_sync(bench.wait_ready)
        nursery.cancel_scope.cancel()
    return results


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.failover", description=__doc__.split("\n\n")[1]
    )
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--writers", type=int, default=6, help="concurrent REST writers")
    p.add_argument("--steady", type=float, default=2.0, help="seconds of writes before a kill")
    p.add_argument("--give-up", type=float, default=15.0, help="seconds to wait for a write")
    p.add_argument("--election-timeout", type=float, default=None, help="nodes' flag")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--json", action="store_true", help="the results as JSON on stdout")
    args = p.parse_args(argv)
    extra = ("--election-timeout", f"{args.election_timeout:g}") if args.election_timeout else ()
    print(f"failover: {args.nodes} nodes, {args.kills} leader SIGKILLs, {args.writers} writers")
    with BenchCluster(args.nodes, extra=extra, keep_logs=args.keep_logs) as bench:
        results = trio.run(rounds, bench, args)
    times = [r["seconds"] for r in results if isinstance(r["seconds"], float)]
    summary = {
        "kills": len(results),
        "recovered": len(times),
        "median_seconds": round(statistics.median(times), 3) if times else None,
        "max_seconds": round(max(times), 3) if times else None,
        "rounds": results,
    }
    if times:
        print(
            f"failover: median {summary['median_seconds']} s, max {summary['max_seconds']} s "
            f"over {len(times)} of {len(results)} kills (target: median <= 1 s)"
        )
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return 0 if len(times) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
