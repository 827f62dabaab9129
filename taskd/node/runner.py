"""One node: the root nursery that owns every long-lived task of the process.

Start-up order matters and is visible here: recover the store (replaying the log), start the
leader duties' supervisor (``taskd.node.app.duties``) and wait until it settled, start the
executors, then open the gRPC and HTTP ports and report ready. Nothing here assumes this node
leads: whenever the store reports leadership gained in a term, the supervisor logs the limits
the flags ask for, releases attempts this node's local executors held (their processes died
with the previous one), renews remote workers' leases, then runs the timer loop; when it is
lost, they stop. A disk that refuses writes after recovery does not stop the node: those
start-up writes are retried in the background (local executors lease nothing until they are
in), and ``/readyz`` reports the store's fault as the reason it is not ready. SIGTERM
or SIGINT starts a graceful shutdown: executors stop taking work and get ``shutdown_grace``
seconds to finish, the servers close, the store finishes its last durability round, and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
from functools import partial
from typing import Any

import trio
import trio_asyncio

from taskd import __version__
from taskd.api import speedups
from taskd.errors import ClusterError, StartupError
from taskd.exec.local import LocalExecutor
from taskd.exec.work import WorkerRegistry
from taskd.node.api.grpc import handlers as grpc_api
from taskd.node.api.grpc.bridge import TrioBridge
from taskd.node.api.grpc.server import GuardedServer
from taskd.node.api.grpc.workers import WorkerStreamService
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.api.http.origin import OriginPolicy, is_loopback_listener
from taskd.node.api.http.server import hypercorn_config, serve_http
from taskd.node.api.http.workers import HttpWorkerTracker
from taskd.node.api.transport import (
    SHED_QUIET,
    ConnectionTable,
    LogEvery,
    bind_listener,
    connection_cap,
    raise_open_files_limit,
    sweep,
)
from taskd.node.app.duties import LeaderDuties
from taskd.node.app.leaderclock import LeaderClock
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.memory import MemoryBounds, available_memory, default_bounds
from taskd.node.app.service import NodeService, ServiceConfig
from taskd.node.app.sources import LOCAL_LEASE, ServiceSource
from taskd.node.config import NodeConfig, split_host_port
from taskd.node.observe.metrics import NodeGauge, NodeMetrics
from taskd.queue import codec
from taskd.queue.commands import Outcome, SetConfig
from taskd.queue.task import SchedulerConfig
from taskd.store.raft.driver import RaftStore

log = logging.getLogger("taskd.node")


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.bounds = _memory_bounds(config)
        # The scheduler config is not taken from the flags here: it is state, set through the
        # log (SetConfig, proposed when this node takes leadership and the flags differ), so
        # that replaying the log decides every command under the config it was decided under.
        self.machine = SchedulerMachine(SchedulerConfig())
        self.store = RaftStore(
            config.data_dir,
            self.machine,
            node_id=config.node_id,
            snapshot_every=config.snapshot_every,
            accept_data_loss=config.accept_data_loss,
        )
        self.clock = LeaderClock()
        self.service = NodeService(
            self.machine,
            self.store,
            ServiceConfig(local_worker=f"local@{config.node_id}"),
            clock=self.clock,
        )
        self.metrics = NodeMetrics(lambda: self.machine.scheduler, self._gauges)
        self.machine.listeners.append(self.metrics.on_applied)
        self.registry = WorkerRegistry()
        self.service.revoke = self.registry.revoke
        self.duties = LeaderDuties(
            self.store.leadership,
            prepare=self._prepare_to_lead,
            takeover=self._takeover,
            retry=self.service.until_written,
            duties=[self.service.run_timers],
        )
        self.bridge = TrioBridge()
        self.ready = False
        self.started_at = time.time()
        self.grpc_connections = ConnectionTable("gRPC", 0, config.idle_timeout)
        self.http_connections = ConnectionTable("HTTP", 0, config.idle_timeout)

    # ---- views for the API layers ------------------------------------------------------

    def cluster_status(self) -> dict[str, Any]:
        s = self.store.status()
        return {
            "id": s.id,
            "role": s.role,
            "term": s.term,
            "leader": s.leader,
            "commit_index": s.commit_index,
            "members": [
                {
                    "address": m.id,
                    "role": m.role,
                    "match_index": m.match_index,
                    "reachable": m.reachable,
                }
                for m in s.members
            ],
        }

    def workers(self) -> list[dict[str, Any]]:
        return [
            {
                "worker": w.name,
                "kind": w.kind,
                "queues": list(w.queues),
                "capacity": w.capacity,
                "running": list(w.running),
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
            await root.start(self.store.serve)
            gc.freeze()  # everything recovery built is long-lived
            self.service.rates.start()  # replayed history is not current throughput
            # Leader-only duties start (and stop) on the store's leadership signal; the node
            # reports ready once this node does not lead or its takeover was tried once. Local
            # executors lease nothing until the takeover is written, or its release would take
            # back their new attempts too.
            root.start_soon(self.duties.run)
            await self.duties.settled()

            source = ServiceSource(self.service, lease_ttl=LOCAL_LEASE, gate=self.duties.taken_over)
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
            async with trio.open_nursery() as drain:
                for executor in executors:
                    drain.start_soon(executor.drain, config.shutdown_grace)
            grpc_server.close()
            await trio_asyncio.aio_as_trio(grpc_server.wait_closed)()
            # Closed worker streams release their leases ("worker lost") through the store,
            # which must still run for that: give them a moment before everything stops.
            with trio.move_on_after(5):
                await self.bridge.drain()
            http_stop.set()
            root.cancel_scope.cancel()
        log.info("taskd stopped")

    async def _prepare_to_lead(self, term: int) -> None:
        """A new term's first step: this node's clock runs on from the last applied command,
        and the scheduler config the flags ask for is logged if it changed."""
        self.clock.not_before(self.machine.latest_time)
        await self._set_config()

    async def _takeover(self) -> None:
        """This node's local attempts died with its previous process (or, in a cluster, with
        the previous leader's view of them): retry them now. Remote workers lost contact while
        no leader ran: give them a full lease period to reconnect and report (a new leader
        extends leases, never shortens them)."""
        await self.service.release_worker(self.service.config.local_worker)
        await self.service.renew_leases(self.config.worker_lease)

    def _gauges(self) -> list[NodeGauge]:
        """What ``/metrics`` shows of the node itself: can the store write, and connections."""
        fault = self.store.fault
        tables = (self.grpc_connections, self.http_connections)
        return [
            (
                "taskd_store_writable",
                "1 when the store takes writes; 0 on a full or failing disk (see /readyz)",
                [],
                [([], 0.0 if fault is not None else 1.0)],
            ),
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
        """Why ``/readyz`` says 503 although the node runs: the store's disk refuses writes."""
        fault = self.store.fault
        return str(fault) if fault is not None else None

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
        server = GuardedServer(
            [
                grpc_api.TaskService(
                    self.service, self.bridge, max_payload=self.config.max_payload
                ),
                grpc_api.ClusterService(
                    self.service, self.bridge, self.cluster_status, self.workers
                ),
                WorkerStreamService(
                    self.service,
                    self.registry,
                    self.bridge,
                    lease_ttl=self.config.worker_lease,
                    max_payload=self.config.max_payload,
                ),
            ],
            codec=grpc_api.StrictCodec(max_payload=self.config.max_payload),
            table=self.grpc_connections,
            max_message=self.config.max_body,
            keepalive=self.config.grpc_keepalive,
            request_timeout=self.config.idle_timeout,
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


def _memory_bounds(config: NodeConfig) -> MemoryBounds:
    """The node-wide bounds: the flags, or defaults derived from this machine's memory."""
    derived = default_bounds(available_memory())
    return MemoryBounds(
        max_tasks=config.max_tasks if config.max_tasks is not None else derived.max_tasks,
        max_bytes=config.max_memory if config.max_memory is not None else derived.max_bytes,
        memory=derived.memory,
    )


async def _wait_for_stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


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
