"""Execution: local command executors and remote-worker stream sessions (design.md §1, §3).

The node talks to this package only through ``work``: it implements ``WorkSource``, owns one
``WorkerRegistry``, starts ``LocalExecutor.serve`` per ``--exec`` queue, and bridges each
``WorkerService.Work`` stream to a ``StreamSession``.
"""

from taskd.exec.concurrency import Concurrency
from taskd.exec.local import LocalExecutor
from taskd.exec.remote import Assignment, Outbound, ResultAck, Revocation, StreamSession
from taskd.exec.work import (
    Revocable,
    WorkerHandle,
    WorkerInfo,
    WorkerKind,
    WorkerRegistry,
    WorkItem,
    WorkSource,
)

__all__ = [
    "Assignment",
    "Concurrency",
    "LocalExecutor",
    "Outbound",
    "ResultAck",
    "Revocable",
    "Revocation",
    "StreamSession",
    "WorkItem",
    "WorkSource",
    "WorkerHandle",
    "WorkerInfo",
    "WorkerKind",
    "WorkerRegistry",
]
