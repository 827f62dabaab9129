"""One subscriber's outbox: at most one message per kind, transitions merged with their counts
conserved and their order kept, a snapshot superseding what was unsent, a close refusing
everything after it, and the slow-send clock."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskd.web import messages
from taskd.web.messages import SAMPLE, Transitions, merge_transitions
from taskd.web.outbox import TRY_AGAIN_LATER, Outbox

_serial = iter(range(10**9))


def changes(count: int, dropped: int = 0) -> Transitions:
    """A transitions message of ``count`` changes (ids in the order they happened)."""
    events: list[dict[str, Any]] = [{"id": f"T{next(_serial):09d}"} for _ in range(count)]
    return Transitions(events, dropped)


def stats(n: int) -> messages.Message:
    return messages.stats(
        at=0.0, queues=[], queues_omitted=0, seconds=1.0, transitions=n, submitted=0, finished=0
    )


def snapshot() -> messages.Message:
    return messages.snapshot(
        at=0.0,
        node={},
        queues=[],
        queues_omitted=0,
        workers=[],
        cluster={},
        interval_ms=1000,
        subscription={"queues": [], "states": [], "ids": []},
    )


def outbox(slow_after: float = 2.0) -> Outbox:
    return Outbox(slow_after, random.Random(5))


def drain(box: Outbox) -> list[messages.Message]:
    taken = []
    while (m := box.take(0.0)) is not None:
        box.sent()
        taken.append(m)
    return taken


def test_messages_leave_in_the_order_their_kind_first_arrived() -> None:
    # Given stats, then transitions, then newer stats and transitions
    box = outbox()
    box.offer(stats(1))
    box.offer(changes(3))
    box.offer(stats(2))
    box.offer(changes(4))
    # Expect two messages: the newest stats (replacing the first, in its place), then the
    # seven changes merged
    taken = drain(box)
    assert [m.kind for m in taken] == ["stats", "transitions"]
    assert taken[0].body["counts"]["transitions"] == 2
    assert len(taken[1].body["events"]) == 7 and taken[1].body["dropped"] == 0
    assert (box.replaced, box.merged) == (1, 1)


def test_a_snapshot_supersedes_everything_unsent() -> None:
    # Given unsent stats, transitions and workers
    box = outbox()
    box.offer(stats(1))
    box.offer(changes(3))
    box.offer(messages.workers([]))
    # When a snapshot arrives (a new subscribe), then a transitions message
    box.offer(snapshot())
    box.offer(changes(2))
    # Expect the snapshot first and only what came after it
    taken = drain(box)
    assert [m.kind for m in taken] == ["snapshot", "transitions"]
    assert len(taken[1].body["events"]) == 2


def test_close_replaces_everything_with_a_bye_and_refuses_what_comes_after() -> None:
    # Given pending messages and a notify hook
    woken: list[int] = []
    box = Outbox(2.0, random.Random(1), lambda: woken.append(1))
    box.offer(stats(1))
    box.offer(changes(3))
    # When it is closed as too slow, then offered more, then closed again for another reason
    box.close(TRY_AGAIN_LATER, "too slow")
    box.offer(changes(5))
    box.offer(snapshot())
    box.close(1001, "shutting down")
    # Expect only the first bye, the first code, and no wake-up for the refused offers
    assert box.closing and box.close_code == TRY_AGAIN_LATER
    assert [(m.kind, m.body) for m in drain(box)] == [("bye", {"reason": "too slow"})]
    assert len(woken) == 3  # two offers and the close
    assert len(box) == 0


def test_a_send_is_too_slow_exactly_slow_after_seconds_after_it_started() -> None:
    # Given a send that starts at 10.0
    box = outbox(slow_after=2.0)
    box.offer(stats(1))
    assert not box.too_slow(100.0)  # nothing is being sent: no client to wait for
    box.take(10.0)
    # Expect not slow just before 12.0, slow from 12.0; and not once it completed
    assert not box.too_slow(11.999)
    assert box.too_slow(12.0)
    box.sent()
    assert not box.too_slow(50.0)
    assert box.sent_count == 1


def test_merging_past_the_sample_keeps_sample_changes_in_order_from_both() -> None:
    # Given an older message of 150 matched (150 sent) and a newer of 1,000 (200 + 800 dropped)
    older, newer = changes(150), changes(200, dropped=800)
    # When merged
    merged = merge_transitions(older, newer, random.Random(2))
    # Expect SAMPLE changes, drawn in proportion (150 : 1000 -> 26 : 174), in order
    assert len(merged.events) == SAMPLE
    assert merged.matched == 1_150
    ids = [e["id"] for e in merged.events]
    assert ids == sorted(ids)
    from_older = sum(e in older.events for e in merged.events)
    assert from_older == round(SAMPLE * 150 / 1_150)


@settings(max_examples=40, deadline=None)  # fast: each example is a whole lagging client
@given(
    sizes=st.lists(
        st.tuples(st.integers(0, SAMPLE), st.integers(0, 5_000)), min_size=1, max_size=40
    ),
    seed=st.integers(0, 2**32),
)
def test_merging_any_sequence_conserves_the_matched_count(
    sizes: list[tuple[int, int]], seed: int
) -> None:
    # Given a lagging client's outbox offered transitions messages of any sizes
    box = Outbox(2.0, random.Random(seed))
    for count, dropped in sizes:
        box.offer(changes(count, dropped))
    # When it finally reads
    [message] = drain(box)
    # Expect one message: at most SAMPLE changes, in order, and every matched change counted
    events = message.body["events"]
    assert len(events) <= SAMPLE
    assert len(events) + message.body["dropped"] == sum(c + d for c, d in sizes)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert box.merged == len(sizes) - 1
