"""One chaos run, start to finish: cluster up, load and nemesis for a while, heal, read back.

Theory of operation (all in one trio run, with a trio-asyncio loop for the gRPC clients):

1. lay out ports and dirs; serve one proxy per directed link (on a shared database: one per
   node, between it and the database, which ``chaos.databases`` made fresh); start the nodes;
2. wait for a leader and every node ready (``/readyz``), then start polling cluster status;
3. for ``duration`` seconds: submitters and HTTP workers run, and the nemesis applies its
   seeded faults;
4. heal everything, stop the submitters, wait until a leader is known and every node is ready
   again, let the workers drain the queues (bounded), then stop them (each reports what it
   holds first);
5. read every node's replica (``?stale=true``) and a linearizable copy from the leader, again
   and again until all agree or ``settle`` seconds pass (lease expiries may still change
   states for a moment); stop the nodes; read "leading in term N" lines from their logs.

The result is the ``History``; judging it is ``chaos.checker``'s job. A cluster that never
elects a leader at the start raises ``RunError`` naming the logs (there is nothing to judge);
one that does not recover after healing is judged (its final reads fail or disagree).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import trio
import trio_asyncio

from chaos.checker import differences
from chaos.cluster import DATABASE, DEFAULT_TASKD, Cluster, layout
from chaos.databases import Database
from chaos.history import FinalRead, History, LogLeader
from chaos.load import Acknowledged, GrpcPool, LoadConfig, Submitter
from chaos.nemesis import Nemesis, schedule
from chaos.observe import Observer, read_tasks, ready
from chaos.ports import PortPool
from chaos.proxy import Link, Network
from chaos.workers import HttpWorker

_LEADING = re.compile(r"leading in term (\d+)")
_PROGRESS_EVERY = 5.0


class RunError(Exception):
    """The run could not produce a history worth checking (the cluster never came up)."""


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 60.0
    nodes: int = 3
    seed: int = 0
    out: Path = Path("chaos-runs/latest")
    load: LoadConfig = field(default_factory=LoadConfig)
    taskd: tuple[str, ...] = DEFAULT_TASKD
    worker_lease: float = 5.0  # --worker-lease of the nodes: orphaned attempts come back soon
    snapshot_every: int = 2000  # --snapshot-every: so lagging followers need snapshots
    shutdown_grace: float = 1.0  # --shutdown-grace: a SIGTERMed node is gone within the hold
    election_timeout: float | None = None  # --election-timeout (default: the node's)
    node_args: tuple[str, ...] = ()  # anything else for every node
    proxied: bool = True
    start_timeout: float = 60.0
    settle: float = 30.0  # after healing: for a leader, readiness, and agreeing replicas
    drain: float = 15.0  # after the submitters stop: for the workers to empty the queues
    keep_data: bool = False
    database: Database | None = None  # nodes on this shared store instead of Raft
    store_lease: float = 1.0  # --store-lease on a shared store: takeovers within the faults

    def extra_args(self) -> list[str]:
        args = ["--worker-lease", f"{self.worker_lease:g}", "--snapshot-every"]
        args += [str(self.snapshot_every), "--shutdown-grace", f"{self.shutdown_grace:g}"]
        if self.database is not None:
            args += ["--store-lease", f"{self.store_lease:g}"]
        if self.election_timeout is not None:
            args += ["--election-timeout", f"{self.election_timeout:g}"]
        if self.load.exec_queue:
            args += ["--exec", f"{self.load.exec_queue}=cat"]
        return [*args, *self.node_args]


async def _wait_ready(client: httpx.AsyncClient, urls: list[str], seconds: float) -> list[str]:
    """The URLs still not ready after ``seconds`` (empty: every node is ready)."""
    pending = list(urls)
    with trio.move_on_after(seconds):
        while pending:
            pending = [u for u in pending if not await ready(client, u)]
            if pending:
                await trio.sleep(0.2)
    return pending


async def _leader_within(observer: Observer, seconds: float) -> str | None:
    with trio.move_on_after(seconds):
        return await observer.wait_for_leader()
    return None


async def _queue_busy(client: httpx.AsyncClient, url: str, queues: list[str]) -> int | None:
    """Tasks of ``queues`` not yet finished nor blocked, or None if the node did not say."""
    try:
        response = await client.get(f"{url}/api/v1/queues", timeout=3.0)
        stats = response.json().get("queues", []) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if stats is None:
        return None
    busy = 0
    for q in stats:
        if q.get("name") in queues:
            by_state = q.get("by_state", {})
            busy += sum(int(by_state.get(s, 0)) for s in ("queued", "running", "pending"))
    return busy


class ChaosRun:
    def __init__(self, settings: Settings, say: Callable[[str], None] = lambda _: None) -> None:
        self.s = settings
        self.say = say  # progress lines, every few seconds
        self.history = History()
        self.data_root = Path(tempfile.mkdtemp(prefix="taskd-chaos-"))
        settings.out.mkdir(parents=True, exist_ok=True)
        db = settings.database
        lay = layout(
            settings.nodes,
            PortPool(),
            self.data_root,
            settings.out,
            proxied=settings.proxied,
            database=db,
        )
        self.cluster = Cluster(lay, taskd=settings.taskd, extra=settings.extra_args(), database=db)
        name = {n.member: f"n{n.index}" for n in lay.nodes} | {DATABASE: "db"}
        self.links = {
            (ls.source, ls.destination): Link(
                f"{name[ls.source]}->{name[ls.destination]}", ls.target_port
            )
            for ls in lay.links
        }
        self.link_ports = {(ls.source, ls.destination): ls.port for ls in lay.links}
        self.network = Network(self.links) if self.links else None
        self.urls = {m: self.cluster.http_url(m) for m in lay.members}
        self.queues = [settings.load.queue]
        if settings.load.exec_queue:
            self.queues.append(settings.load.exec_queue)
        self.faults = schedule(
            settings.seed,
            settings.duration,
            settings.nodes,
            network=self.network is not None,
            shared=db is not None,
        )
        self.history.meta = {
            "seed": settings.seed,
            "duration": settings.duration,
            "nodes": settings.nodes,
            "members": lay.members,
            "http": self.urls,
            "load": asdict(settings.load),
            "node_args": self.cluster.node(lay.members[0]).argv,
            "schedule": [asdict(f) for f in self.faults],
            "worker_queues": [settings.load.queue],
            "queues": self.queues,
            "proxied": self.network is not None,
            "store": db.kind if db else "raft",
            "database": db.name if db else None,
            "started": time.time(),
        }

    async def run(self) -> History:
        try:
            async with trio_asyncio.open_loop():
                await self._run()
        except BaseExceptionGroup as group:  # a RunError from inside the nurseries: unwrap it
            found, rest = group.split(RunError)
            if found is not None and rest is None:
                raise _first(found) from None
            raise
        finally:
            self.cluster.close()
            self.history.log_leaders = self.leadership_lines()
            self.history.meta["finished"] = time.time()
            if self.network is not None:
                self.history.meta["links"] = self.network.stats()
            if not self.s.keep_data:
                shutil.rmtree(self.data_root, ignore_errors=True)
        return self.history

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        grpc = GrpcPool(self.cluster.members)
        async with httpx.AsyncClient(limits=limits) as client, trio.open_nursery() as root:
            for pair, link in self.links.items():
                await root.start(link.serve, self.link_ports[pair])
            if self.network is not None:
                for member in self.cluster.members:
                    self.network.member_down(member)  # listen once each node's own port does
                    self.network.member_up(member)
            self.cluster.start()
            observer = Observer(self.urls, self.history, client)
            await self._come_up(client, observer)
            root.start_soon(observer.run)
            try:
                await self._load_and_faults(client, grpc, observer)
                await self._final_reads(client, observer)
            finally:
                grpc.close()
                root.cancel_scope.cancel()

    async def _come_up(self, client: httpx.AsyncClient, observer: Observer) -> None:
        leader = await _leader_within(observer, self.s.start_timeout)
        if leader is None:
            raise RunError(
                f"no leader within {self.s.start_timeout:g} s of starting the nodes; "
                f"see the node logs in {self.s.out}"
            )
        late = await _wait_ready(client, list(self.urls.values()), self.s.start_timeout)
        if late:
            raise RunError(f"nodes not ready at start: {late}; see the logs in {self.s.out}")
        self.history.meta["first_leader"] = leader

    async def _load_and_faults(
        self, client: httpx.AsyncClient, grpc: GrpcPool, observer: Observer
    ) -> None:
        cfg = self.s.load
        acked = Acknowledged()
        nemesis = Nemesis(
            self.faults, self.cluster, self.network, observer, self.history, self.s.seed
        )
        stopping = False
        async with trio.open_nursery() as workers:
            for i in range(cfg.workers):
                w = HttpWorker(
                    f"chaos-w{i}", cfg, self.urls, self.history, client, lambda: stopping
                )
                workers.start_soon(w.run)
            async with trio.open_nursery() as load:
                for i in range(cfg.clients):
                    sub = Submitter(f"c{i}", cfg, self.urls, self.history, client, grpc, acked)
                    load.start_soon(sub.run)
                load.start_soon(nemesis.run)
                load.start_soon(self._progress, observer)
                await trio.sleep(self.s.duration)
                load.cancel_scope.cancel()
            nemesis.heal_all()
            self.history.meta["healed"] = time.time()
            self.say("  healed; waiting for a leader, readiness and drained queues")
            await self._settle(client, observer)
            await self._drain(client, observer)
            stopping = True
            workers.cancel_scope.deadline = trio.current_time() + 10.0

    async def _progress(self, observer: Observer) -> None:
        start = trio.current_time()
        while True:
            await trio.sleep(_PROGRESS_EVERY)
            h = self.history
            acked = sum(1 for x in h.submits if x.outcome == "ok")
            last = h.nemesis[-1].detail if h.nemesis else "none yet"
            self.say(
                f"  {trio.current_time() - start:5.1f} s: {acked} submits acknowledged of "
                f"{len(h.submits)}, {len(h.leases)} attempts leased; leader "
                f"{observer.leader() or 'unknown'}; last fault: {last}"
            )

    async def _settle(self, client: httpx.AsyncClient, observer: Observer) -> None:
        leader = await _leader_within(observer, self.s.settle)
        late = await _wait_ready(client, list(self.urls.values()), self.s.settle)
        # No leader after healing is the cluster's failure, not the run's: the final reads then
        # fail, and the account says so (with the history written for a look).
        self.history.meta["settled"] = {"leader": leader, "not_ready": late, "at": time.time()}

    async def _drain(self, client: httpx.AsyncClient, observer: Observer) -> None:
        with trio.move_on_after(self.s.drain):
            while True:
                leader = observer.leader()
                busy = await _queue_busy(client, self.urls[leader], self.queues) if leader else None
                if busy == 0:
                    break
                await trio.sleep(0.5)
        self.history.meta["drained"] = time.time()

    async def _final_reads(self, client: httpx.AsyncClient, observer: Observer) -> None:
        deadline = trio.current_time() + self.s.settle
        while True:
            replicas = [
                await read_tasks(client, m, url, self.queues, stale=True)
                for m, url in self.urls.items()
            ]
            leader = observer.leader() or self.cluster.members[0]
            truth = await read_tasks(client, leader, self.urls[leader], self.queues, stale=False)
            self.history.replicas, self.history.truth = replicas, truth
            if _agree(truth, replicas) or trio.current_time() > deadline:
                return
            await trio.sleep(0.5)

    def leadership_lines(self) -> list[LogLeader]:
        lines: list[LogLeader] = []
        for node in self.cluster.nodes.values():
            try:
                text = node.spec.log_path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if m := _LEADING.search(line):
                    lines.append(LogLeader(node.member, int(m.group(1)), line[:300]))
        return lines


def _agree(truth: FinalRead, replicas: list[FinalRead]) -> bool:
    if truth.error or any(r.error for r in replicas):
        return False
    return not any(next(iter(differences(truth, r)), None) for r in replicas)


def _first(group: BaseExceptionGroup[RunError]) -> RunError:
    leaf = group.exceptions[0]
    return _first(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf
