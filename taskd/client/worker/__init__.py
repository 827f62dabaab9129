"""The worker SDK: ``Worker`` runs decorated handlers for the tasks of its queues.

Modules: ``app`` (the ``Worker`` API), ``runtime`` (the one asyncio transport: a
``WorkerService.Work`` stream), and the I/O-free decisions it follows: ``ledger`` (held
attempts, capacity, unacked results), ``heartbeat`` (when to heartbeat), ``scaling``
(concurrency between a minimum and a maximum); ``taskd.client.targets.Rotation`` decides where
to reconnect and how long to back off.
"""

from taskd.client.worker.app import Worker
from taskd.client.worker.job import WorkerTask
from taskd.client.worker.outcome import Retry

__all__ = ["Retry", "Worker", "WorkerTask"]
