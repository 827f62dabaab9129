"""What the clients do, written once as coroutines that run on the engine's loop.

Theory of operation: ``Operations`` holds the engine (channels, deadlines, failover) and the
coalescer; each public method of ``TaskSchedulerClient`` and ``AsyncTaskSchedulerClient`` is
one of these methods, bridged to the caller (see ``taskd.client.client``). Every call has a
deadline: ``call_timeout`` seconds (the client's default unless given). ``wait`` follows a
``Watch`` stream on the task and reads it with ``Get`` — a poll with backoff covers events a
reconnecting stream can miss — until it is terminal or ``timeout`` passes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from taskd.api.taskd import v1 as pb
from taskd.client.coalesce import SUBMIT, SUBMIT_BATCH, Coalescer, as_submitted, for_caller
from taskd.client.engine import Engine
from taskd.client.errors import (
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    TaskdClientError,
    TaskFailed,
    Unavailable,
)
from taskd.client.specs import Duration, Payload, build_spec
from taskd.client.task import TO_PB, Priority, Task, TaskEvent, TaskState

_SERVICE = "/taskd.v1.TaskService/"
_SPEC_KEYS = frozenset(
    {
        "payload", "name", "queue", "priority", "timeout", "max_retries", "delay", "run_at",
        "depends_on", "labels", "idempotency_key", "ref",
    }
)  # fmt: skip
MAX_POLL = 1.0  # seconds between two reads of a task wait() follows, at most


def task_id(task: str | Task, field: str = "task") -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, str) and task:
        return task
    raise InvalidArgument(f"give a task id or a Task, not {task!r}", field)


def _state(value: TaskState | str | None) -> pb.TaskState:
    if value is None:
        return pb.TaskState(0)
    try:
        return TO_PB[TaskState(value)]
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidArgument(f"{value!r} is not a state; use one of {names}", "state") from None


class Operations:
    def __init__(self, engine: Engine, *, linger: float, max_batch: int, coalesce: bool) -> None:
        self.engine = engine
        self.coalesce = coalesce
        self.coalescer = Coalescer(
            self._submit_one, self._submit_specs, self._read, linger=linger, max_batch=max_batch
        )

    # ---- the wire calls the coalescer is built on ----

    async def _submit_one(self, spec: pb.TaskSpec, deadline: float) -> Task:
        reply = await self.engine.unary(
            SUBMIT, pb.SubmitRequest(task=spec), pb.SubmitResponse,
            deadline=deadline, idempotent=True,
        )  # fmt: skip
        if reply.task is None:
            raise TaskdClientError("the node answered a submit without its task")
        return Task.from_proto(reply.task, duplicate=reply.duplicate)

    async def _submit_specs(
        self, specs: list[pb.TaskSpec], deadline: float
    ) -> pb.SubmitBatchResponse:
        return await self.engine.unary(
            SUBMIT_BATCH, pb.SubmitBatchRequest(tasks=specs), pb.SubmitBatchResponse,
            deadline=deadline, idempotent=True,
        )  # fmt: skip

    async def _read(self, task_id: str, deadline: float, stale: bool = False) -> Task:
        reply = await self.engine.unary(
            _SERVICE + "Get", pb.GetRequest(id=task_id, stale=stale), pb.Task,
            deadline=deadline, idempotent=True,
        )  # fmt: skip
        return Task.from_proto(reply)

    # ---- the public operations ----

    async def submit_task(
        self,
        payload: Payload = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: Priority | int | str | None = None,
        timeout: Duration | None = None,  # noqa: ASYNC109 -- the task's run limit (design §3)
        max_retries: int | None = None,
        delay: Duration | None = None,
        run_at: datetime | float | None = None,
        depends_on: Iterable[str | Task] | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        call_timeout: float | None = None,
    ) -> Task:
        """Submit one task and return it (``task.id``; ``task.duplicate`` when an earlier task
        had this ``idempotency_key``).

        payload: bytes as they are; str as UTF-8 (``json.dumps(x)`` arrives as JSON); any other
        value as its JSON. timeout: the task's run time limit per attempt (seconds,
        ``timedelta`` or "5m"); ``call_timeout``: this call's deadline. Without an
        ``idempotency_key`` the SDK sets a fresh one, so its retries never make a second task.
        Concurrent calls share a connection and are sent together as one SubmitBatch.
        """
        spec = build_spec(
            payload, name=name, queue=queue, priority=priority, timeout=timeout,
            max_retries=max_retries, delay=delay, run_at=run_at, depends_on=depends_on,
            labels=labels, idempotency_key=idempotency_key,
        )  # fmt: skip
        deadline = self.engine.deadline(call_timeout)
        if self.coalesce:
            return await self.coalescer.submit(spec, deadline)
        try:
            return await self._submit_one(spec, deadline)
        except TaskdClientError as exc:
            raise for_caller(exc) from None

    async def submit_batch(
        self, tasks: Sequence[Mapping[str, Any]], *, call_timeout: float | None = None
    ) -> list[Task]:
        """Submit several tasks at once, all or nothing. Each item is a dict of submit_task's
        arguments, plus ``ref``: a name that ``depends_on`` of a later item may use.
        Returns the tasks in order (as submitted; ``get_task`` reads their current state)."""
        if isinstance(tasks, Mapping | str | bytes) or not isinstance(tasks, Sequence):
            raise InvalidArgument("give a list of dicts of submit_task's arguments", "tasks")
        specs = []
        for i, item in enumerate(tasks):
            if not isinstance(item, Mapping):
                raise InvalidArgument("must be a dict of submit_task's arguments", f"tasks[{i}]")
            unknown = sorted(set(item) - _SPEC_KEYS)
            if unknown:
                raise InvalidArgument(
                    f"unknown argument {unknown[0]!r}", f"tasks[{i}].{unknown[0]}"
                )
            try:
                specs.append(build_spec(**item))
            except InvalidArgument as exc:
                raise InvalidArgument(exc.message, f"tasks[{i}].{exc.field}") from None
        deadline = self.engine.deadline(call_timeout)
        try:
            reply = await self._submit_specs(specs, deadline)
        except TaskdClientError as exc:
            raise for_caller(exc, keep_index=True) from None
        refs = {spec.ref: tid for spec, tid in zip(specs, reply.ids, strict=False) if spec.ref}
        out = []
        for spec, tid, dup in zip(specs, reply.ids, reply.duplicate, strict=False):
            if dup:
                out.append(await self._read(tid, deadline))
            else:
                out.append(as_submitted(tid, spec, refs))
        return out

    async def get_task(
        self, task: str | Task, *, stale: bool = False, call_timeout: float | None = None
    ) -> Task:
        """The task as it is now (``stale=True``: from the member's replica, without the
        read barrier)."""
        try:
            return await self._read(task_id(task), self.engine.deadline(call_timeout), stale)
        except TaskdClientError as exc:
            raise for_caller(exc) from None

    async def list_tasks(
        self,
        *,
        queue: str | None = None,
        state: TaskState | str | None = None,
        limit: int | None = None,
        page_size: int = 100,
        stale: bool = False,
        call_timeout: float | None = None,
    ) -> AsyncIterator[Task]:
        """Tasks newest first, page by page (``limit``: at most this many in all)."""
        request = pb.ListRequest(queue=queue or "", state=_state(state), stale=stale)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise InvalidArgument("must be a positive int", "page_size")
        left = math.inf if limit is None else limit
        while left > 0:
            request.limit = int(min(page_size, left))
            try:
                page = await self.engine.unary(
                    _SERVICE + "List", request, pb.ListResponse,
                    deadline=self.engine.deadline(call_timeout), idempotent=True,
                )  # fmt: skip
            except TaskdClientError as exc:
                raise for_caller(exc) from None
            for msg in page.tasks:
                yield Task.from_proto(msg)
            left -= len(page.tasks)
            if not page.next or not page.tasks:
                return
            request.after = page.next

    async def cancel(self, task: str | Task, *, call_timeout: float | None = None) -> Task:
        """Cancel a task that is not finished yet (Conflict if it is)."""
        return await self._change("Cancel", pb.CancelRequest(id=task_id(task)), call_timeout)

    async def retry(self, task: str | Task, *, call_timeout: float | None = None) -> Task:
        """Queue a failed or canceled task again (Conflict otherwise)."""
        return await self._change("Retry", pb.RetryRequest(id=task_id(task)), call_timeout)

    async def _change(self, method: str, request: Any, call_timeout: float | None) -> Task:
        try:
            reply = await self.engine.unary(
                _SERVICE + method, request, pb.Task,
                deadline=self.engine.deadline(call_timeout), idempotent=False,
            )  # fmt: skip
        except TaskdClientError as exc:
            raise for_caller(exc) from None
        return Task.from_proto(reply)

    async def wait(
        self,
        task: str | Task,
        timeout: float | None = None,  # noqa: ASYNC109 -- wait(task, timeout) is the contract
        *,
        raise_on_failure: bool = False,
        call_timeout: float | None = None,
    ) -> Task:
        """Wait until the task is finished and return it, with its ``result`` (``error``).

        timeout: seconds to wait in all (None: as long as it takes) → DeadlineExceeded.
        raise_on_failure: raise TaskFailed when it ended failed or canceled."""
        tid = task_id(task)
        loop = asyncio.get_running_loop()
        end = math.inf if timeout is None else loop.time() + max(0.0, timeout)
        woke = asyncio.Event()
        seen: list[Task] = []
        follower = loop.create_task(self._follow(tid, woke, seen))
        pause = 0.02
        try:
            while True:
                found = next((t for t in reversed(seen) if t.done), None)
                if found is None:
                    found = await self._read_for_wait(tid, end, call_timeout)
                if found is not None and found.done:
                    break
                left = end - loop.time()
                if left <= 0:
                    state = found.state.value if found else "unknown (no member answered)"
                    raise DeadlineExceeded(f"task {tid} is still {state} after {timeout} s")
                woke.clear()
                try:
                    await asyncio.wait_for(woke.wait(), min(pause, left))
                except TimeoutError:
                    pass
                pause = min(pause * 2, MAX_POLL)
        finally:
            follower.cancel()
        if raise_on_failure and not found.succeeded:
            raise TaskFailed(found)
        return found

    async def _read_for_wait(self, tid: str, end: float, call_timeout: float | None) -> Task | None:
        loop = asyncio.get_running_loop()
        limit = self.engine.call_timeout if call_timeout is None else call_timeout
        try:
            return await self._read(tid, min(end, loop.time() + limit))
        except (Unavailable, DeadlineExceeded):
            return None  # wait()'s own deadline decides; the next round tries again

    async def _follow(self, tid: str, woke: asyncio.Event, seen: list[Task]) -> None:
        """Wake ``wait`` on each event of the task; re-open the stream when it breaks."""
        pause = 0.05
        while True:
            try:
                async for event in self.engine.server_stream(
                    _SERVICE + "Watch", pb.WatchRequest(ids=[tid]), pb.TaskEvent
                ):
                    if event.task is not None:
                        seen.append(Task.from_proto(event.task))
                        del seen[:-1]
                        woke.set()
                    pause = 0.05
            except TaskdClientError:
                pass  # polling covers the gap
            woke.set()  # re-read at once: an event may have been missed
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL)

    async def watch(
        self, *, queue: str | None = None, ids: Iterable[str | Task] | None = None
    ) -> AsyncIterator[TaskEvent]:
        """State changes as they happen (of one queue, of some tasks, or of all). The stream
        re-opens on another member when its node goes away; events in the gap are not
        replayed (read the state with get_task/list_tasks). Overloaded when this watcher
        fell too far behind."""
        request = pb.WatchRequest(
            queue=queue or "",
            ids=[task_id(t, f"ids[{i}]") for i, t in enumerate(ids or [])],
        )
        pause = 0.05
        while True:
            try:
                async for event in self.engine.server_stream(
                    _SERVICE + "Watch", request, pb.TaskEvent
                ):
                    pause = 0.05
                    yield TaskEvent.from_proto(event)
                # the node ended the stream (shutting down): re-open it below
            except (Unavailable, DeadlineExceeded):
                pass
            except Overloaded:
                raise
            except TaskdClientError as exc:
                raise for_caller(exc) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL)
