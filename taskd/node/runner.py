"""One node: the root nursery that owns every long-lived task of the process.

Start-up order matters and is visible here: recover the store (replaying the log), start the
leader duties' supervisor (``taskd.node.app.duties``) and wait until it settled, start the
executors, then open the gRPC port (which also carries Raft traffic between members: the
store's internal service is mounted on it) and the HTTP port, and report ready. Nothing here
assumes this node leads: whenever the store reports leadership gained in a term, the
supervisor logs the limits the flags ask for, renews remote workers' leases a full period (a
new leader extends leases, never shortens them), then runs the timer loop; when it is lost,
they stop.

This node's local executors lease as ``local@<node id>``. Their attempts die with the process,
so at start-up (and only then: a member that becomes leader again still runs its attempts)
the node releases its previous process's leases of that name, through the store, on any
member: on a follower the write is forwarded once a leader takes writes. Local executors lease
nothing until that release is written, or it would take back their new attempts too. A
single node tries it before it reports ready; a member of a cluster keeps trying in the
background (a leader may not be elected before every member's port is open).

A disk that refuses writes after recovery does not stop the node: those start-up writes are
retried in the background, and ``/readyz`` reports the store's reason it is not ready
(``not_ready_reason``: no leader known, catching up, the disk). SIGTERM or SIGINT starts a
graceful shutdown: executors stop taking work and get ``shutdown_grace`` seconds to finish; a
leader hands its leadership to the most caught-up member (at most 2 s, so a rolling restart
costs no election timeout); the servers close, the store finishes its last durability round,
and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
import zlib
from functools import partial
from typing import Any

import grpclib.events
import trio
import trio_asyncio

from taskd import __version__
from taskd.errors import ClusterError, StartupError
from taskd.exec.local import LocalExecutor
from taskd.exec.work import WorkerRegistry
from taskd.node import speedups
from taskd.node.api.grpc import handlers as grpc_api
from taskd.node.api.grpc.bridge import TrioBridge
from taskd.node.api.grpc.server import GuardedServer
from taskd.node.api.grpc.workers import WorkerStreamService
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.api.http.origin import OriginPolicy, is_loopback_listener
from taskd.node.api.http.server import hypercorn_config, serve_http
from taskd.node.api.http.workers import HttpWorkerTracker
from taskd.node.api.present import rfc3339
from taskd.node.api.transport import (
    SHED_QUIET,
    ConnectionTable,
    LogEvery,
    bind_listener,
    connection_cap,
    raise_open_files_limit,
    sweep,
)
from taskd.node.app import taskrows
from taskd.node.app.cluster import ClusterAdmin, SharedMembership
from taskd.node.app.duties import LeaderDuties
from taskd.node.app.leaderclock import LeaderClock
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.memory import MemoryBounds, available_memory, default_bounds
from taskd.node.app.service import NodeService, ServiceConfig
from taskd.node.app.sources import LOCAL_LEASE, ServiceSource
from taskd.node.config import NodeConfig, split_host_port
from taskd.node.observe.metrics import NodeGauge, NodeMetrics, cluster_gauges
from taskd.queue import codec
from taskd.queue.commands import Outcome, SetConfig
from taskd.queue.task import SchedulerConfig
from taskd.raft.core import RaftConfig
from taskd.store.raft.driver import RaftStore
from taskd.store.shared import redisurl
from taskd.store.shared.backend import Backend
from taskd.store.shared.driver import SharedStore
from taskd.store.shared.forwards import ForwardClient, ForwardService
from taskd.web.stream import StreamHub

log = logging.getLogger("taskd.node")

TICK_SECONDS = 0.05  # one logical Raft tick (contract §5)
TRANSFER_ON_STOP = 2.0  # seconds a stopping leader spends handing over leadership
LOCAL_RELEASE = "the release of this node's previous local attempts"


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.bounds = _memory_bounds(config)
        # The scheduler config is not taken from the flags here: it is state, set through the
        # log (SetConfig, proposed when this node takes leadership and the flags differ), so
        # that replaying the log decides every command under the config it was decided under.
        self.machine = SchedulerMachine(SchedulerConfig())
        self.clock = LeaderClock()
        self.store: RaftStore | SharedStore = self._make_store(config)
        membership = (
            SharedMembership(self.store.status)
            if isinstance(self.store, SharedStore)
            else self.store
        )
        self.cluster = ClusterAdmin(membership, clustered=config.clustered or config.shared_store)
        multi = config.clustered or config.shared_store  # other nodes may write: barriers matter
        self.service = NodeService(
            self.machine,
            self.store,
            ServiceConfig(local_worker=f"local@{config.node_id}", alone=not multi),
            clock=self.clock,
        )
        self.metrics = NodeMetrics(lambda: self.machine.scheduler, self._gauges)
        self.machine.listeners.append(self.metrics.on_applied)
        self.registry = WorkerRegistry()
        self.service.revoke = self.registry.revoke
        self.service.consumers = self.registry.consumers
        self.duties = LeaderDuties(
            self.store.leadership,
            prepare=self._prepare_to_lead,
            takeover=self._takeover,
            retry=self.service.until_written,
            duties=[self.service.run_timers],
        )
        self.bridge = TrioBridge()
        self.local_released = trio.Event()  # this node's previous local leases are released
        self.ready = False
        self.events: StreamHub | None = None  # the event stream's hub, once HTTP serves
        self.started_at = time.time()
        self.grpc_connections = ConnectionTable("gRPC", 0, config.idle_timeout)
        self.http_connections = ConnectionTable("HTTP", 0, config.idle_timeout)

    def _make_store(self, config: NodeConfig) -> RaftStore | SharedStore:
        """The embedded Raft log, or a store on the database ``--store`` names."""
        if config.shared_store:
            backend: Backend
            # Imported here: their clients (libpq, redis-py) cost a node on the embedded store
            # 13 MB of idle memory it would never use.
            if config.store_kind == "redis":
                from taskd.store.shared.redis import RedisBackend  # noqa: PLC0415

                url, prefix = redisurl.split(config.store)
                backend = RedisBackend(url, prefix=prefix)
                rows = every_row = None  # Redis keeps no queryable table
            else:
                from taskd.store.shared.postgres import PostgresBackend  # noqa: PLC0415

                backend = PostgresBackend(config.store, lease_ttl=config.store_lease)
                rows = taskrows.projection(lambda: self.machine.scheduler)
                every_row = taskrows.all_rows(lambda: self.machine.scheduler)
            # Followers forward writes to the lease holder, proving with the database's secret
            # that they share its database (taskd/store/shared/forwards.py).
            self.forward_client = ForwardClient(self._peer_secret)
            return SharedStore(
                backend,
                self.machine,
                node_id=config.node_id,
                lease_ttl=config.store_lease,
                projection=rows,
                all_rows=every_row,
                forwards=self.forward_client,
                # the leader re-stamps forwarded commands with its own time, as Raft's does
                stamp=lambda data: codec.restamp(data, self.clock()),
            )
        return RaftStore(
            config.data_dir,
            self.machine,
            node_id=config.node_id,
            snapshot_every=config.snapshot_every,
            snapshot_bytes=config.snapshot_bytes,
            accept_data_loss=config.accept_data_loss,
            peers=config.peers,
            join=config.join,
            routes=dict(config.peer_routes),
            cluster_secret=config.cluster_secret,
            # the leader re-stamps forwarded commands with its own time (design.md §1 "Time")
            stamp=lambda data: codec.restamp(data, self.clock()),
            raft_config=raft_config(config),
            tick_seconds=TICK_SECONDS,
        )

    def _peer_secret(self) -> bytes | None:
        return self.store.peer_secret if isinstance(self.store, SharedStore) else None

    # ---- views for the API layers ------------------------------------------------------

    def cluster_status(self) -> dict[str, Any]:
        return self.cluster.status()

    def workers(self) -> list[dict[str, Any]]:
        return [
            {
                "worker": w.name,
                "kind": w.kind,
                "queues": list(w.queues),
                "capacity": w.capacity,
                "running": list(w.running),
                "last_heartbeat": rfc3339(w.last_seen) if w.last_seen is not None else None,
            }
            for w in self.registry.workers()
        ]

    # ---- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        log.info(
            "taskd starting",
            extra={
                "fields": {
                    "version": __version__,
                    "grpc": config.grpc,
                    "http": config.http,
                    "data_dir": str(config.data_dir),
                    # never the --store URL itself: it may hold a password
                    "store": self.store.backend.name
                    if isinstance(self.store, SharedStore)
                    else "raft",
                    "max_tasks": self.bounds.max_tasks,
                    "max_memory": self.bounds.max_bytes,
                    "memory_seen": self.bounds.memory,
                }
            },
        )
        _warn_if_exposed(config)
        open_files = raise_open_files_limit()
        cap = connection_cap(config.max_connections, open_files)
        self.grpc_connections.cap = self.http_connections.cap = cap
        log.info(
            "connections: at most %d per listener, idle ones closed after %gs (open files: %d)",
            cap,
            config.idle_timeout,
            open_files,
        )
        # A node holds millions of long-lived objects (tasks, their indexes); CPython's default
        # GC thresholds rescan them so often that W1b lost 12% of its throughput and gained
        # 200 ms p99 stalls. Rarer young collections, and freezing what recovery loaded, keep
        # collections proportional to new garbage (W1b: 16.2k -> 18.4k tasks/s, p99 211 -> 85 ms).
        gc.set_threshold(20_000, 50, 50)
        async with trio_asyncio.open_loop() as loop, trio.open_nursery() as root:
            # trio-asyncio re-raises whatever asyncio reports to its exception handler into
            # its nursery, which ends the node: asyncio code reports there what it survives.
            loop.set_exception_handler(AsyncioErrorLog().report)
            gc.disable()  # recovery builds millions of long-lived objects and little garbage
            if isinstance(self.store, SharedStore):
                root.start_soon(self.forward_client.serve)
            try:
                await root.start(self.store.serve)
            finally:
                gc.enable()
            gc.freeze()  # everything recovery built is long-lived
            self.service.rates.start()  # replayed history is not current throughput
            self.service.stream.start()  # idem for the event stream's counts and latencies
            self.service.log_failures = True  # idem: failures replayed are not news
            # Leader-only duties start (and stop) on the store's leadership signal; the node
            # reports ready once this node does not lead or its takeover was tried once. Local
            # executors lease nothing until the takeover is written, or its release would take
            # back their new attempts too.
            root.start_soon(self.duties.run)
            await self.duties.settled()

            source = ServiceSource(
                self.service, lease_ttl=LOCAL_LEASE, gate=self.local_released.is_set
            )
            executors = [
                LocalExecutor(
                    spec.queue,
                    spec.argv,
                    source,
                    worker=self.service.config.local_worker,
                    concurrency=config.concurrency,
                    registry=self.registry,
                )
                for spec in config.execs
            ]
            for executor in executors:
                await root.start(executor.serve)

            await root.start(self.bridge.serve)
            grpc_server = await self._start_grpc(root)
            http_stop = trio.Event()
            await root.start(self._serve_http, http_stop.wait)
            root.start_soon(
                sweep, [self.grpc_connections, self.http_connections], config.idle_timeout
            )
            # In the background where other nodes lead: a Raft leader may need this node's
            # port open to be elected, and a shared-database follower cannot write until it leads.
            if config.clustered or config.shared_store:
                root.start_soon(self._release_local, False)
            else:
                await self._release_local(True)
            self.ready = True
            log.info(
                "taskd ready",
                extra={
                    "fields": {
                        "grpc": config.grpc,
                        "http": f"http://{config.http}",
                        "tasks": len(self.machine.scheduler),
                        "startup_seconds": round(time.time() - self.started_at, 3),
                    }
                },
            )
            task_status.started()

            await _wait_for_stop_signal()
            log.info(
                "shutting down: no new work is taken; running tasks get %.0fs",
                config.shutdown_grace,
            )
            self.ready = False
            if self.events is not None:  # event streams say bye (1001) while they can
                self.events.close_all()
            async with trio.open_nursery() as drain:
                for executor in executors:
                    drain.start_soon(executor.drain, config.shutdown_grace)
            await self._hand_over()
            # Closed worker streams release their leases ("worker lost") through the store,
            # which must still run for that (and, on a follower, still receive the log from
            # the leader: peers' connections stay open): give them a moment.
            grpc_server.close_public()
            with trio.move_on_after(5):
                await self.bridge.drain()
            grpc_server.close()
            await trio_asyncio.aio_as_trio(grpc_server.wait_closed)()
            http_stop.set()
            root.cancel_scope.cancel()
        log.info("taskd stopped")

    async def _prepare_to_lead(self, term: int) -> None:
        """A new term's first step: this node's clock runs on from the last applied command,
        and the scheduler config the flags ask for is logged if it changed."""
        self.clock.not_before(self.machine.latest_time)
        await self._set_config()

    async def _takeover(self) -> None:
        """Remote workers lost contact while no leader ran: give every lease a full period
        to be heartbeated (a new leader extends leases, never shortens them). Local attempts
        are not released here: a member that leads again still runs its own."""
        await self.service.renew_leases(self.config.worker_lease)

    async def _release_local(self, once_first: bool) -> None:
        """Release the leases this node's previous process held as ``local@<node id>`` (its
        attempts died with it), then let the local executors lease. ``once_first``: try once
        here (a single node answers its first request with it written), then, if refused,
        in the background."""
        worker = self.service.config.local_worker
        if once_first:
            try:
                await self.service.release_worker(worker)
            except ClusterError as exc:
                log.error("start-up release refused, retrying in the background: %s", exc)
            else:
                self.local_released.set()
                return
        await self.service.until_written(LOCAL_RELEASE, lambda: self.service.release_worker(worker))
        self.local_released.set()

    async def _hand_over(self) -> None:
        """SIGTERM on a leader of a cluster: hand leadership over before the servers close,
        so the others need not wait an election timeout (bounded: a stop is never held up)."""
        # (a shared-database store releases its lease as it stops: another node takes over)
        store = self.store
        if not isinstance(store, RaftStore) or not self.config.clustered:
            return
        if store.leadership.term is None:
            return
        with trio.move_on_after(TRANSFER_ON_STOP + 0.5):
            try:
                await store.transfer_leadership(timeout=TRANSFER_ON_STOP)
            except ClusterError as exc:
                log.warning("leadership not handed over before stopping: %s", exc)
                return
            log.info("leadership handed over: %s leads", self.store.status().leader)

    def _gauges(self) -> list[NodeGauge]:
        """What ``/metrics`` shows of the node itself: can the store write, and connections."""
        fault = self.store.fault
        tables = (self.grpc_connections, self.http_connections)
        status = self.store.status()
        return [
            (
                "taskd_store_writable",
                "1 when the store takes writes; 0 on a full or failing disk (see /readyz)",
                [],
                [([], 0.0 if fault is not None else 1.0)],
            ),
            *cluster_gauges(status),
            (
                "taskd_connections",
                "Open connections per listener",
                ["listener"],
                [([t.name], float(len(t))) for t in tables],
            ),
            (
                "taskd_connections_shed",
                "Idle connections closed to make room or for lack of descriptors, since start",
                ["listener"],
                [([t.name], float(t.shed_total)) for t in tables],
            ),
            (
                "taskd_connections_refused",
                "Connections refused at the cap with every connection busy, since start",
                ["listener"],
                [([t.name], float(t.refused_total)) for t in tables],
            ),
        ]

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` says 503 although the node runs: no leader known, catching up, the
        disk refuses writes (the store's reason)."""
        return self.store.not_ready_reason()

    def _shed_idle(self) -> int:
        """Out of descriptors: close the idle connections of both listeners."""
        return sum(t.shed_idle(SHED_QUIET) for t in (self.grpc_connections, self.http_connections))

    async def _set_config(self) -> None:
        """Log the scheduler config the flags (or this machine's memory) ask for, if it changed.

        The scheduler decides only under the config the log set (``SetConfig``): a node started
        with other flags changes nothing until this entry is committed and applied.
        """
        wanted = SchedulerConfig(
            retention=self.config.retention,
            max_queue_depth=self.config.max_queue_depth,
            max_tasks=self.bounds.max_tasks,
            max_bytes=self.bounds.max_bytes,
        )
        current = self.machine.scheduler.config
        if current == wanted:
            return
        log.info("scheduler config change: %s -> %s", current, wanted)
        try:
            outcome = await self.store.propose(codec.encode(SetConfig(wanted), self.clock(), 0))
        except ClusterError as exc:  # e.g. a full disk: keep serving under the logged config
            log.warning(
                "cannot log the new scheduler config (%s); the node keeps deciding under %s "
                "until a restart can log it",
                exc,
                self.machine.scheduler.config,
            )
            return
        assert isinstance(outcome, Outcome) and outcome.ok, outcome

    async def _start_grpc(self, root: trio.Nursery) -> GuardedServer:
        # The server's own choice, made here and not as a side effect of an import (an SDK
        # importing taskd.api must not have betterproto2 patched under it).
        speedups.install()
        leader = self.cluster.leader
        server = GuardedServer(
            [
                grpc_api.TaskService(
                    self.service, self.bridge, max_payload=self.config.max_payload, leader=leader
                ),
                grpc_api.ClusterService(
                    self.service,
                    self.bridge,
                    self.cluster_status,
                    self.workers,
                    admin=self.cluster,
                    leader=leader,
                ),
                WorkerStreamService(
                    self.service,
                    self.registry,
                    self.bridge,
                    lease_ttl=self.config.worker_lease,
                    max_payload=self.config.max_payload,
                ),
                # Raft between members (a single node has no one to talk to), or forwards
                # between the nodes on one shared database
                *(
                    self.store.grpc_handlers()
                    if isinstance(self.store, RaftStore) and self.config.clustered
                    else [ForwardService(self.store)]
                    if isinstance(self.store, SharedStore)
                    else []
                ),
            ],
            codec=grpc_api.StrictCodec(max_payload=self.config.max_payload),
            table=self.grpc_connections,
            max_message=self.config.max_body,
            keepalive=self.config.grpc_keepalive,
            request_timeout=self.config.idle_timeout,
        )
        grpclib.events.listen(
            server, grpclib.events.SendTrailingMetadata, grpc_api.add_leader_trailer
        )
        listener = _listen(self.config.grpc, "--grpc")
        await root.start(partial(server.serve, listener, on_exhausted=self._shed_idle))
        return server

    async def _serve_http(
        self, stop: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        app = create_app(
            self.service,
            extras=HttpExtras(
                cluster_status=self.cluster_status,
                workers=self.workers,
                ready=lambda: self.ready,
                not_ready_reason=self.not_ready_reason,
                cluster_admin=self.cluster,
                leader=self.cluster.leader,
                metrics=self.metrics.render,
                max_payload=self.config.max_payload,
                max_body=self.config.max_body,
                http_lease_ttl=self.config.worker_lease,
                http_workers=HttpWorkerTracker(self.registry, self.config.worker_lease),
                origin=OriginPolicy(
                    loopback=is_loopback_listener(split_host_port(self.config.http, "--http")[0]),
                    allow_origins=self.config.allow_origins,
                    allow_hosts=self.config.allow_hosts,
                ),
            ),
        )
        self.events = app.state.events
        hconfig = hypercorn_config(self.config.idle_timeout)
        hconfig.errorlog = logging.getLogger("hypercorn.error")
        await serve_http(
            app,
            hconfig,
            _listen(self.config.http, "--http"),
            self.http_connections,
            on_exhausted=self._shed_idle,
            shutdown_trigger=stop,
            task_status=task_status,
        )


def _listen(address: str, flag: str) -> socket.socket:
    host, port = split_host_port(address, flag)
    try:
        return bind_listener(host, port)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {address} ({flag}): {exc.strerror}; "
            f"is another node running? pick another port with {flag}"
        ) from None


class AsyncioErrorLog:
    """An asyncio exception handler that logs instead of raising: each kind of report (its
    message) at most once per 10 s, with the traceback."""

    def __init__(self) -> None:
        self._every: dict[str, LogEvery] = {}

    def report(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "unhandled error"))
        if len(self._every) > 100:  # messages are asyncio's few fixed texts; stay bounded
            self._every.clear()
        every = self._every.setdefault(message, LogEvery(10.0))
        exc = context.get("exception")
        every.warning(
            log,
            "asyncio: %s",
            message,
            exc_info=exc if isinstance(exc, BaseException) else None,
        )


# A shared store saves the whole state as one value (docs/stores.md, Limits): at most 512 MB
# in Redis (proto-max-bulk-len's default) and 1 GB in a PostgreSQL bytea. The bounds keep the
# snapshot within 80 % of it, half for the tasks' fixed cost and half for their bytes.
SNAPSHOT_VALUE_LIMIT = {"redis": 512 << 20, "postgres": 1 << 30}
SNAPSHOT_BYTES_PER_TASK = 160  # a task's fixed cost in a snapshot (measured ~120, 100-byte payload)


def _memory_bounds(config: NodeConfig) -> MemoryBounds:
    """The node-wide bounds: the flags, or defaults derived from this machine's memory; on a
    shared store no more than its snapshot can hold (said in the log when that is lower)."""
    derived = default_bounds(available_memory())
    bounds = MemoryBounds(
        max_tasks=config.max_tasks if config.max_tasks is not None else derived.max_tasks,
        max_bytes=config.max_memory if config.max_memory is not None else derived.max_bytes,
        memory=derived.memory,
    )
    kind = config.store_kind
    if kind == "raft":
        return bounds
    half = SNAPSHOT_VALUE_LIMIT[kind] * 4 // 5 // 2
    capped = MemoryBounds(
        max_tasks=min(bounds.max_tasks, half // SNAPSHOT_BYTES_PER_TASK),
        max_bytes=min(bounds.max_bytes, half),
        memory=bounds.memory,
    )
    if capped != bounds:
        asked = (config.max_tasks is not None and capped.max_tasks < config.max_tasks) or (
            config.max_memory is not None and capped.max_bytes < config.max_memory
        )
        log.log(
            logging.WARNING if asked else logging.INFO,
            "on %s, taskd saves its state as one value of at most %d MB: this node holds at "
            "most %d tasks and %d MB of payloads, results and labels (%s %d tasks and %d MB; "
            "see docs/stores.md, Limits)",
            kind,
            SNAPSHOT_VALUE_LIMIT[kind] >> 20,
            capped.max_tasks,
            capped.max_bytes >> 20,
            "--max-tasks/--max-memory asked for" if asked else "this machine's memory allows",
            bounds.max_tasks,
            bounds.max_bytes >> 20,
        )
    return capped


async def _wait_for_stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


def raft_config(config: NodeConfig) -> RaftConfig:
    """Timeouts in ticks of ``TICK_SECONDS`` (contract §5): each term's election timeout is
    drawn from [T, 2T); heartbeats five times per T; the seed differs per member."""
    election = max(2, round(config.election_timeout / TICK_SECONDS))
    return RaftConfig(
        election_ticks=election,
        heartbeat_ticks=max(1, election // 5),
        seed=zlib.crc32(config.node_id.encode()),
    )


def _warn_if_exposed(config: NodeConfig) -> None:
    for flag, address in (("--grpc", config.grpc), ("--http", config.http)):
        host, _ = split_host_port(address, flag)
        if not is_loopback_listener(host):
            log.warning(
                "%s listens on %s, beyond loopback. This version has no authentication: anyone "
                "who can reach this port can submit, cancel and read every task. Bind it to "
                "127.0.0.1, or firewall the port to trusted hosts; API tokens and TLS arrive in "
                "a later release.",
                flag,
                address,
            )
    grpc_host, _ = split_host_port(config.grpc, "--grpc")
    if config.clustered and config.cluster_secret is None and not is_loopback_listener(grpc_host):
        log.warning(
            "--grpc %s carries Raft traffic beyond loopback and no --cluster-secret is set: "
            "only members' addresses are accepted, but anyone who can send from one of them "
            "(or spoof it) can speak Raft to this node. Set TASKD_CLUSTER_SECRET, the same on "
            "every member (e.g. `openssl rand -hex 32`).",
            config.grpc,
        )
