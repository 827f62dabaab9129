"""The coalescer's decisions, over a fake wire (the node is not what is tested here): a lone
caller goes at once as a unary Submit; closed-loop callers settle into one batch per round
trip; a batch refused because of one task answers that caller and re-sends the others; other
refusals fall back to one unary call each; a caller that gave up is not sent."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from taskd.api.taskd import v1 as pb
from taskd.client.coalesce import Coalescer
from taskd.client.errors import InvalidArgument, Overloaded
from taskd.client.task import Task, TaskState

T = TypeVar("T")
ROUND_TRIP = 0.01  # seconds the fake node takes per call


class FakeWire:
    """Answers Submit and SubmitBatch after ``ROUND_TRIP``; records what each call carried."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.refuse: dict[int, Exception] = {}  # batch call number -> what it raises
        self._ids = itertools.count(1)

    async def unary(self, spec: pb.TaskSpec, deadline: float) -> Task:
        self.calls.append(("unary", [spec.queue]))
        await asyncio.sleep(ROUND_TRIP)
        if spec.queue == "bad":
            raise InvalidArgument("not a queue name", "task.queue")
        return Task(id=f"t{next(self._ids)}", queue=spec.queue, name="", priority=5,
                    state=TaskState.QUEUED)  # fmt: skip

    async def batch(self, specs: list[pb.TaskSpec], deadline: float) -> pb.SubmitBatchResponse:
        self.calls.append(("batch", [s.queue for s in specs]))
        number = sum(1 for kind, _ in self.calls if kind == "batch")
        await asyncio.sleep(ROUND_TRIP)
        if number in self.refuse:
            raise self.refuse[number]
        for i, spec in enumerate(specs):
            if spec.queue == "bad":
                raise InvalidArgument("not a queue name", f"tasks[{i}].queue")
        return pb.SubmitBatchResponse(
            ids=[f"t{next(self._ids)}" for _ in specs], duplicate=[False] * len(specs)
        )

    async def read(self, task_id: str, deadline: float) -> Task:
        raise AssertionError("no duplicates in these tests")

    def coalescer(self, linger: float = 0.002) -> Coalescer:
        return Coalescer(self.unary, self.batch, self.read, linger=linger, max_batch=100)


def spec(queue: str = "q") -> pb.TaskSpec:
    return pb.TaskSpec(queue=queue, idempotency_key="k")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_a_lone_caller_is_sent_at_once_as_a_unary_submit() -> None:
    # Given a coalescer with a long linger
    wire = FakeWire()

    async def main() -> tuple[Task, float]:
        c = wire.coalescer(linger=1.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        task = await c.submit(spec(), loop.time() + 5)
        return task, loop.time() - start

    # When one caller submits
    task, took = run(main())
    # Expect one unary call, without waiting for the linger
    assert wire.calls == [("unary", ["q"])]
    assert task.id == "t1" and took < 0.5


def test_closed_loop_callers_settle_into_one_batch_per_round_trip() -> None:
    # Given 8 callers that each submit again as soon as they are answered
    wire = FakeWire()

    async def main() -> None:
        c = wire.coalescer()
        loop = asyncio.get_running_loop()

        async def caller() -> None:
            for _ in range(20):
                await c.submit(spec(), loop.time() + 5)
                await asyncio.sleep(0.0005)  # the caller's own work between submits

        await asyncio.gather(*(caller() for _ in range(8)))

    # When they submit 160 tasks in all
    run(main())
    # Expect every task sent once: the first caller alone (nothing was in flight), then
    # batches of all 8 (the first caller one round ahead, so the last batch lacks it)
    sizes = [len(queues) for _, queues in wire.calls]
    assert sum(sizes) == 160
    assert sizes[0] == 1 and sizes.count(8) >= 17, str(sizes)  # exactly [1, 8 x 19, 7] idle


def test_a_batch_refused_for_one_task_answers_that_caller_and_sends_the_rest() -> None:
    # Given a send in flight, so that three callers share the next batch, one of them bad
    wire = FakeWire()

    async def main() -> list[object]:
        c = wire.coalescer()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(c.submit(spec(), loop.time() + 5))
        await asyncio.sleep(0)
        rest = [c.submit(spec(q), loop.time() + 5) for q in ("a", "bad", "b")]
        answers = await asyncio.gather(*rest, return_exceptions=True)
        await first
        return answers

    # When the node refuses that batch naming tasks[1]
    a, bad, b = run(main())
    # Expect the bad caller to get the error under its own argument's name, the others tasks
    assert isinstance(bad, InvalidArgument) and bad.field == "queue"
    assert isinstance(a, Task) and isinstance(b, Task)
    assert wire.calls[1:] == [("batch", ["a", "bad", "b"]), ("batch", ["a", "b"])]


def test_any_other_refusal_of_a_batch_is_retried_one_call_per_task() -> None:
    # Given the node refuses the first batch as a whole (a queue full, say)
    wire = FakeWire()
    wire.refuse[1] = Overloaded("queue q is full")

    async def main() -> list[Task]:
        c = wire.coalescer()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(c.submit(spec(), loop.time() + 5))
        await asyncio.sleep(0)
        answers = await asyncio.gather(*(c.submit(spec(), loop.time() + 5) for _ in range(3)))
        await first
        return answers

    # When three callers shared that batch
    answers = run(main())
    # Expect each answered by its own unary call
    assert all(isinstance(t, Task) for t in answers)
    assert [kind for kind, _ in wire.calls] == ["unary", "batch", "unary", "unary", "unary"]


def test_a_caller_that_gave_up_before_the_send_is_not_sent() -> None:
    # Given a send in flight and two callers waiting behind it
    wire = FakeWire()

    async def main() -> None:
        c = wire.coalescer()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(c.submit(spec(), loop.time() + 5))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(c.submit(spec("gone"), loop.time() + 5))
        kept = asyncio.ensure_future(c.submit(spec("kept"), loop.time() + 5))
        await asyncio.sleep(0)
        # When one of them is cancelled before its batch goes out
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await asyncio.gather(first, kept)

    run(main())
    # Expect only the other one sent
    assert wire.calls == [("unary", ["q"]), ("unary", ["kept"])]
