"""The peers as the agent drives them: how to send each task, how to start workers, what to
clean. Runs in the peers' venv.

Each ``Peer`` loads only its own library (``load``), so a run of RQ never imports Celery.
Workers (one command line each, run from the repository root):

- Celery: one ``celery worker``, prefork pool, ``-c`` = concurrency (default: the cores),
  Celery's default prefetch (4 per process) and early acks;
- RQ: ``concurrency`` ``rq worker`` processes, ``SimpleWorker`` by default (jobs run in the
  worker process, as the other peers' pools do; ``fork``: RQ's default ``Worker``, which forks a
  work horse per job and drains no-op jobs about 10x slower here);
- Dramatiq: one ``dramatiq`` command with ``--processes`` = concurrency, 8 threads each
  (Dramatiq's default).

Cleaning: the agent flushes the recording DB (the Redis peers' broker too) itself; a RabbitMQ
peer also deletes its own queue (and Celery's exchange, Dramatiq's ``.DQ``/``.XQ`` queues),
nothing else on the server.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

import pika
import pika.exceptions
import rq

from bench.peers import jobs

Sender = Callable[..., object]
SYSTEMS = ("celery-redis", "celery-rabbitmq", "rq", "dramatiq-redis", "dramatiq-rabbitmq")


class Peer(Protocol):
    name: str

    def sender(self, kind: str) -> Sender:
        """A function that enqueues one task of ``kind`` (noop | count | pickup); built in the
        producer (process or thread) that will call it."""
        ...

    def worker_commands(self, concurrency: int) -> list[list[str]]: ...

    def workers_note(self, concurrency: int) -> str: ...

    def clean(self) -> None: ...

    def versions(self) -> dict[str, str]: ...


def _library(*names: str) -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in names}


def _redis_server() -> dict[str, str]:
    info = jobs.recorder().info("server")
    return {"redis-server": str(info.get("redis_version", "?"))}


def _rabbitmq_server(settings: jobs.Settings) -> dict[str, str]:
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        props = cast(dict[str, Any], connection._impl.server_properties or {})  # no public API
    finally:
        connection.close()
    version = props.get("version", b"?")
    return {"rabbitmq": version.decode() if isinstance(version, bytes) else str(version)}


def delete_amqp(settings: jobs.Settings, queues: list[str], exchanges: list[str]) -> None:
    """Delete the named queues and exchanges (absent ones are fine), and nothing else."""
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        for queue in queues:
            try:
                connection.channel().queue_delete(queue)
            except pika.exceptions.ChannelClosedByBroker:
                pass  # older servers refuse to delete what is not there
        for exchange in exchanges:
            try:
                connection.channel().exchange_delete(exchange)
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        connection.close()


class CeleryPeer:
    def __init__(self, settings: jobs.Settings) -> None:
        from bench.peers import celery_app  # noqa: PLC0415 - only the peer under test is loaded

        self.name = f"celery-{settings.broker}"
        self.settings = settings
        self._tasks = {"noop": celery_app.noop, "count": celery_app.count}
        self._tasks["pickup"] = celery_app.pickup

    def sender(self, kind: str) -> Sender:
        return cast(Sender, self._tasks[kind].delay)

    def worker_commands(self, concurrency: int) -> list[list[str]]:
        return [
            [
                sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
                "-Q", self.settings.queue, "-c", str(concurrency), "-P", "prefork",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-l", "WARNING", "-n", "taskd-peers@%h",
            ]
        ]  # fmt: skip

    def workers_note(self, concurrency: int) -> str:
        return f"1 celery worker, prefork pool of {concurrency}"

    def clean(self) -> None:
        if self.settings.broker == "rabbitmq":
            delete_amqp(self.settings, [self.settings.queue], [self.settings.queue])

    def versions(self) -> dict[str, str]:
        server = (
            _redis_server() if self.settings.broker == "redis" else _rabbitmq_server(self.settings)
        )
        return {**_library("celery", "kombu"), **server}


RQ_WORKERS = {"simple": "rq.worker.SimpleWorker", "fork": "rq.worker.Worker"}


class RqPeer:
    def __init__(self, settings: jobs.Settings, worker: str = "simple") -> None:
        self.name = "rq"
        self.settings = settings
        self.worker = worker

    def sender(self, kind: str) -> Sender:
        function = {"noop": jobs.noop, "count": jobs.count, "pickup": jobs.pickup}[kind]
        queue = rq.Queue(self.settings.queue, connection=jobs.recorder())

        def send(*args: object) -> object:
            return queue.enqueue(function, *args)

        return send

    def worker_commands(self, concurrency: int) -> list[list[str]]:
        command = [sys.executable, "-m", "rq.cli", "worker", "--url", self.settings.redis_url]
        command += ["--quiet", "--worker-class", RQ_WORKERS[self.worker], self.settings.queue]
        return [command for _ in range(concurrency)]

    def workers_note(self, concurrency: int) -> str:
        kind = (
            "SimpleWorker: jobs run in the worker"
            if self.worker == "simple"
            else ("the default Worker: a fork per job")
        )
        return f"{concurrency} rq worker processes ({kind})"

    def clean(self) -> None:
        pass  # RQ lives in the recording DB, which the agent flushes

    def versions(self) -> dict[str, str]:
        return {**_library("rq"), **_redis_server()}


class DramatiqPeer:
    def __init__(self, settings: jobs.Settings) -> None:
        from bench.peers import dramatiq_app  # noqa: PLC0415 - only the peer under test is loaded

        self.name = f"dramatiq-{settings.broker}"
        self.settings = settings
        self._actors = {"noop": dramatiq_app.noop, "count": dramatiq_app.count}
        self._actors["pickup"] = dramatiq_app.pickup

    def sender(self, kind: str) -> Sender:
        return cast(Sender, self._actors[kind].send)

    def worker_commands(self, concurrency: int) -> list[list[str]]:
        return [
            [
                sys.executable, "-m", "dramatiq", "bench.peers.dramatiq_app",
                "--processes", str(concurrency), "--threads", "8",
                "--queues", self.settings.queue,
            ]
        ]  # fmt: skip

    def workers_note(self, concurrency: int) -> str:
        return f"1 dramatiq command, {concurrency} processes x 8 threads"

    def clean(self) -> None:
        if self.settings.broker == "rabbitmq":
            q = self.settings.queue
            delete_amqp(self.settings, [q, f"{q}.DQ", f"{q}.XQ"], [])

    def versions(self) -> dict[str, str]:
        server = (
            _redis_server() if self.settings.broker == "redis" else _rabbitmq_server(self.settings)
        )
        return {**_library("dramatiq"), **server}


def load(system: str, settings: jobs.Settings, *, rq_worker: str = "simple") -> Peer:
    """The peer named ``system`` (one of SYSTEMS); the broker comes from the name."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown peer {system!r}; known: {', '.join(SYSTEMS)}")
    if system == "rq":
        return RqPeer(settings, rq_worker)
    family, broker = system.split("-")
    if settings.broker != broker:
        raise ValueError(f"{system}: TASKD_PEERS_BROKER is {settings.broker!r}")
    return CeleryPeer(settings) if family == "celery" else DramatiqPeer(settings)
