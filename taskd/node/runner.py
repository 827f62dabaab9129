"""One node: the root nursery that owns every long-lived task of the process.

Start-up order matters and is visible here: recover the store (replaying the log), release
attempts a previous incarnation's local executors held (their processes died with it), start
the timer loop and the executors, then open the gRPC and HTTP ports and report ready. SIGTERM
or SIGINT starts a graceful shutdown: executors stop taking work and get ``shutdown_grace``
seconds to finish, the servers close, the store finishes its last durability round, and the
process exits 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from typing import Any, cast

import trio
import trio_asyncio
from grpclib.server import Server
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from taskd import __version__
from taskd.errors import ClusterError, StartupError, first_of
from taskd.exec.local import LocalExecutor
from taskd.exec.work import WorkerRegistry
from taskd.node import grpc as grpc_api
from taskd.node.bridge import TrioBridge
from taskd.node.config import NodeConfig, split_host_port
from taskd.node.http import HttpExtras, create_app
from taskd.node.httpworkers import HttpWorkerTracker
from taskd.node.leaderclock import LeaderClock
from taskd.node.machine import SchedulerMachine
from taskd.node.memory import MemoryBounds, available_memory, default_bounds
from taskd.node.metrics import NodeMetrics
from taskd.node.origin import OriginPolicy, is_loopback_listener
from taskd.node.raftstore import RaftStore
from taskd.node.service import NodeService, ServiceConfig
from taskd.node.sources import LOCAL_LEASE, ServiceSource
from taskd.node.workers import WorkerStreamService
from taskd.queue import codec
from taskd.queue.commands import Outcome, SetLimits
from taskd.queue.task import SchedulerConfig

log = logging.getLogger("taskd.node")


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.bounds = _memory_bounds(config)
        # The bounds are not taken from the flags here: they are state, set through the log
        # (SetLimits, proposed after recovery when the flags differ), so that replaying the log
        # decides every command under the bounds it was decided under the first time.
        self.machine = SchedulerMachine(SchedulerConfig(retention=config.retention))
        self.store = RaftStore(
            config.data_dir,
            self.machine,
            node_id=config.node_id,
            snapshot_every=config.snapshot_every,
        )
        self.clock = LeaderClock()
        self.service = NodeService(
            self.machine,
            self.store,
            ServiceConfig(local_worker=f"local@{config.node_id}"),
            clock=self.clock,
        )
        self.metrics = NodeMetrics(lambda: self.machine.scheduler)
        self.machine.listeners.append(self.metrics.on_applied)
        self.registry = WorkerRegistry()
        self.service.revoke = self.registry.revoke
        self.bridge = TrioBridge()
        self.ready = False
        self.started_at = time.time()

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
        # A node holds millions of long-lived objects (tasks, their indexes); CPython's default
        # GC thresholds rescan them so often that W1b lost 12% of its throughput and gained
        # 200 ms p99 stalls. Rarer young collections, and freezing what recovery loaded, keep
        # collections proportional to new garbage (W1b: 16.2k -> 18.4k tasks/s, p99 211 -> 85 ms).
        gc.set_threshold(20_000, 50, 50)
        async with trio_asyncio.open_loop(), trio.open_nursery() as root:
            await root.start(self.store.serve)
            self.clock.not_before(self.machine.latest_time)
            await self._set_limits()
            gc.freeze()  # everything recovery built is long-lived
            self.service.rates.start()  # replayed history is not current throughput
            # This node's local attempts died with its previous process: retry them now.
            # Remote workers lost contact while no leader ran: give them a full lease period
            # to reconnect and report (a new leader extends leases, never shortens them).
            await self.service.release_worker(self.service.config.local_worker)
            await self.service.renew_leases(config.worker_lease)
            root.start_soon(self.service.run_timers)

            source = ServiceSource(self.service, lease_ttl=LOCAL_LEASE)
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
            grpc_server = await self._start_grpc()
            http_stop = trio.Event()
            await root.start(self._serve_http, http_stop.wait)
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

    async def _set_limits(self) -> None:
        """Log the bounds the flags (or this machine's memory) ask for, if they changed."""
        wanted = (self.config.max_queue_depth, self.bounds.max_tasks, self.bounds.max_bytes)
        if self.machine.scheduler.limits() == wanted:
            return
        log.info(
            "limits change: max_queue_depth, max_tasks, max_memory %s -> %s",
            self.machine.scheduler.limits(),
            wanted,
        )
        try:
            outcome = await self.store.propose(codec.encode(SetLimits(*wanted), self.clock(), 0))
        except ClusterError as exc:  # e.g. a full disk: keep serving under the logged limits
            log.warning(
                "cannot log the new limits (%s); the node keeps deciding under %s until a "
                "restart can log them",
                exc,
                self.machine.scheduler.limits(),
            )
            return
        assert isinstance(outcome, Outcome) and outcome.ok, outcome

    async def _start_grpc(self) -> Server:
        host, port = split_host_port(self.config.grpc, "--grpc")
        server = Server(
            [
                grpc_api.TaskService(
                    self.service, self.bridge, max_payload=self.config.max_payload
                ),
                grpc_api.ClusterService(
                    self.service, self.bridge, self.cluster_status, self.workers
                ),
                WorkerStreamService(
                    self.service, self.registry, self.bridge, lease_ttl=self.config.worker_lease
                ),
            ],
            codec=grpc_api.StrictCodec(),
        )
        try:
            await trio_asyncio.aio_as_trio(server.start)(host, port, reuse_address=True)
        except OSError as exc:
            raise StartupError(
                f"cannot listen for gRPC on {self.config.grpc}: {exc.strerror}; "
                "is another node running? pick another port with --grpc"
            ) from None
        return server

    async def _serve_http(
        self, stop: Any, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        app = create_app(
            self.service,
            extras=HttpExtras(
                cluster_status=self.cluster_status,
                workers=self.workers,
                ready=lambda: self.ready,
                metrics=self.metrics.render,
                max_payload=self.config.max_payload,
                max_body=self.config.max_payload * 2 + (64 << 10),
                http_lease_ttl=self.config.worker_lease,
                http_workers=HttpWorkerTracker(self.registry, self.config.worker_lease),
                origin=OriginPolicy(
                    loopback=is_loopback_listener(split_host_port(self.config.http, "--http")[0]),
                    allow_origins=self.config.allow_origins,
                    allow_hosts=self.config.allow_hosts,
                ),
            ),
        )
        hconfig = HypercornConfig()
        hconfig.bind = [self.config.http]
        hconfig.accesslog = None
        hconfig.errorlog = logging.getLogger("hypercorn.error")
        hconfig.graceful_timeout = 5.0
        try:
            await hypercorn_serve(
                cast(Any, app), hconfig, shutdown_trigger=stop, task_status=task_status
            )
        except (OSError, BaseExceptionGroup) as exc:
            # hypercorn binds inside its own nursery: the OSError arrives wrapped in a group
            bind_error = first_of(exc, OSError)
            if bind_error is None:
                raise
            raise StartupError(
                f"cannot listen for HTTP on {self.config.http}: {bind_error.strerror}; "
                "is another node running? pick another port with --http"
            ) from None


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
