"""The event stream's hub without sockets: a real scheduler and ``StreamTracker`` wired as the
node wires them (taskd/node/app/service.py: the tracker listens to every applied command),
a fake ``Picture`` over that scheduler, and explicit monotonic and wall times.

What it checks: the snapshot comes first; deltas arrive at the next cut; a flood within one
cut becomes one sampled ``transitions`` message per distinct filter, shared by subscribers;
a subscriber that never reads holds at most one message per kind, its transitions merged
with their counts conserved; a send left unfinished ``slow_after`` seconds is closed with
1013 and a bye; stats count exactly the changes since the previous stats; the last
unsubscribe stops the buffering.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from taskd.queue.commands import (
    TERMINAL,
    Command,
    Complete,
    Lease,
    Outcome,
    State,
    StateChanged,
    Submit,
    TaskSpec,
)
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import Task
from taskd.web.filters import TransitionFilter
from taskd.web.messages import SAMPLE, Message, rfc3339
from taskd.web.outbox import TRY_AGAIN_LATER
from taskd.web.stream import StreamConfig, StreamHub, Subscriber
from taskd.web.tracker import MAX_BUFFERED, StreamTracker

WALL = 1_900_000_000.0  # an epoch second well clear of 0, so "at" values are realistic
CUT = 0.1
CONFIG = StreamConfig(interval=1.0, cut=CUT, slow_after=2.0)


class FakeNode:
    """What the hub sees of a node: a real scheduler whose applied commands feed a real
    ``StreamTracker``, and a ``Picture`` of it (the fake's part: workers and cluster are
    whatever the test sets)."""

    def __init__(self) -> None:
        self.scheduler = Scheduler()
        self.leader_time = WALL
        self.tracker = StreamTracker(self.scheduler.get, lambda: self.leader_time)
        self.tracker.start()
        self.workers_view: list[dict[str, Any]] = []
        self.cluster_view: dict[str, Any] = {"role": "leader", "term": 1, "leader": "n1"}
        self._seq = 0
        self._entropy = 0

    # ---- driving it ----------------------------------------------------------------------

    def apply(self, command: Command, at: float) -> Outcome:
        """Apply ``command`` at leader time ``at``, as the node's state machine does."""
        self.leader_time = at
        self._entropy += 1
        outcome = self.scheduler.apply(command, at, self._entropy)
        assert outcome.ok, outcome.rejection
        self.tracker.on_applied(command, outcome)
        return outcome

    def submit(self, queue: str, count: int, at: float) -> list[str]:
        ids = [self._next_id() for _ in range(count)]
        specs = tuple(TaskSpec(queue=queue, name=f"job-{i}") for i in ids)
        self.apply(Submit(specs, tuple(ids)), at)
        return ids

    def flood(self, queues: list[str], changes: int, at: float, per_command: int = 100) -> int:
        """``changes`` submits spread round robin over ``queues``, ``per_command`` per applied
        command, as the tracker sees them. Only the tracker applies them (the scheduler would
        take ~10 µs a task): the changes carry no task record, so their name is null."""
        specs = {queue: TaskSpec(queue=queue) for queue in queues}
        self.leader_time = at
        for start in range(0, changes, per_command):
            n = min(per_command, changes - start)
            ids = [self._next_id() for _ in range(n)]
            events = [
                StateChanged(task_id, queues[(start + k) % len(queues)], None, State.QUEUED, 0)
                for k, task_id in enumerate(ids)
            ]
            command = Submit(tuple(specs[e.queue] for e in events), tuple(ids))
            self.tracker.on_applied(command, Outcome(events=events))
        return changes

    def _next_id(self) -> str:
        self._seq += 1
        return f"T{self._seq:08d}"  # ids sort in the order of the changes

    # ---- the Picture protocol --------------------------------------------------------------

    def node(self) -> dict[str, Any]:
        return {"id": "n1", "role": self.cluster_view["role"], "version": "test"}

    def queues(self, wall: float) -> list[dict[str, Any]]:
        views = []
        for name in self.scheduler.queue_names():
            stats = self.scheduler.queue_stats(name)
            by_state = {state.value: stats.by_state.get(state, 0) for state in State}
            views.append(
                {
                    "name": name,
                    "depth": sum(n for s, n in stats.by_state.items() if s not in TERMINAL),
                    "by_state": by_state,
                    "latency": self.tracker.latency(name, wall),
                }
            )
        return views

    def workers(self) -> list[dict[str, Any]]:
        return list(self.workers_view)

    def cluster(self) -> dict[str, Any]:
        return dict(self.cluster_view)

    def task(self, task_id: str) -> Task | None:
        return self.scheduler.get(task_id)


def make_hub(config: StreamConfig = CONFIG, seed: int = 7) -> tuple[FakeNode, StreamHub]:
    node = FakeNode()
    return node, StreamHub(node.tracker, node, config, random.Random(seed))


def take_all(sub: Subscriber, now: float) -> list[Message]:
    """Everything pending, each send completing at once (a client that reads)."""
    taken = []
    while (message := sub.outbox.take(now)) is not None:
        sub.outbox.sent()
        taken.append(message)
    return taken


def of_kind(messages: list[Message], kind: str) -> list[Message]:
    return [m for m in messages if m.kind == kind]


def queue_filter(*queues: str) -> TransitionFilter:
    return TransitionFilter(queues=frozenset(queues))


# ---- the first picture and deltas -----------------------------------------------------------


def test_the_snapshot_is_the_first_message_and_a_submit_follows_at_the_next_cut() -> None:
    # Given a node holding one task, and a subscriber to queue "a" at mono 0
    node, hub = make_hub()
    node.submit("a", 1, at=WALL - 5)
    sub = hub.subscribe(queue_filter("a"), mono=0.0, wall=WALL)
    # When a task is submitted to "b", then one to "a", and the hub is pumped at the cut
    node.submit("b", 1, at=WALL + 0.01)
    [task_id] = node.submit("a", 1, at=WALL + 0.02)
    first = take_all(sub, 0.0)
    hub.pump(CUT - 0.001, WALL + CUT)  # not yet due
    early = take_all(sub, CUT - 0.001)
    hub.pump(CUT, WALL + CUT)
    later = take_all(sub, CUT)
    # Expect the whole picture first, with the subscription it answers
    assert [m.kind for m in first] == ["snapshot"]
    snapshot = first[0].body
    assert snapshot["subscription"] == {"queues": ["a"], "states": [], "ids": []}
    assert snapshot["interval_ms"] == 1000
    assert snapshot["at"] == rfc3339(WALL)
    assert [q["name"] for q in snapshot["queues"]] == ["a"]
    assert snapshot["totals"]["by_state"]["queued"] == 1
    assert snapshot["cluster"]["leader"] == "n1" and snapshot["node"]["id"] == "n1"
    # then nothing before the cut, and at the cut only queue "a"'s change, with the task's data
    assert early == []
    [transitions] = of_kind(later, "transitions")
    assert transitions.body["dropped"] == 0
    assert transitions.body["events"] == [
        {
            "id": task_id,
            "queue": "a",
            "name": f"job-{task_id}",
            "from": None,
            "to": "queued",
            "at": rfc3339(WALL + 0.02),
            "attempt": 0,
            "priority": 5,
        }
    ]


def test_a_lease_and_a_completion_are_deltas_of_the_same_task_in_order() -> None:
    # Given a subscriber to every change, and a queued task
    node, hub = make_hub()
    [task_id] = node.submit("a", 1, at=WALL)
    sub = hub.subscribe(TransitionFilter(), mono=0.0, wall=WALL)
    take_all(sub, 0.0)
    # When a worker leases and completes it within one cut
    [leased] = node.apply(Lease("a", "w1", 1, 30.0), WALL + 0.01).events
    node.apply(Complete(task_id, leased.epoch, b"{}"), WALL + 0.02)
    hub.pump(CUT, WALL + CUT)
    [transitions] = of_kind(take_all(sub, CUT), "transitions")
    # Expect both changes, oldest first, "from" chaining into "to"
    moves = [(e["from"], e["to"]) for e in transitions.body["events"]]
    assert moves == [("queued", "running"), ("running", "succeeded")]
    assert [e["attempt"] for e in transitions.body["events"]] == [1, 1]


def test_changes_from_before_anyone_watched_are_not_news() -> None:
    # Given changes while nobody watched
    node, hub = make_hub()
    node.submit("a", 3, at=WALL)
    # When a subscriber arrives and the first cut passes with nothing new
    sub = hub.subscribe(TransitionFilter(), mono=10.0, wall=WALL + 10)
    hub.pump(10.0 + CUT, WALL + 10 + CUT)
    # Expect the snapshot only: the old changes are in its picture, not in a transitions message
    assert [m.kind for m in take_all(sub, 10.0 + CUT)] == ["snapshot"]
    assert hub.built == 0


# ---- filters and coalescing under a flood ------------------------------------------------------


@pytest.mark.slow  # 50,000 state changes to make: 0.15-0.3 s
def test_a_flood_in_one_cut_becomes_one_sampled_message_per_distinct_filter() -> None:
    # Given subscribers with three distinct filters: everything, queue "a", and state running
    node, hub = make_hub()
    everything = hub.subscribe(TransitionFilter(), 0.0, WALL)
    only_a = hub.subscribe(queue_filter("a"), 0.0, WALL)
    running = hub.subscribe(TransitionFilter(states=frozenset({State.RUNNING})), 0.0, WALL)
    for sub in (everything, only_a, running):
        take_all(sub, 0.0)
    # When 50,000 submits (to "a" and "b", alternately) land within one cut
    total = node.flood(["a", "b"], 50_000, at=WALL + 0.05)
    hub.pump(CUT, WALL + CUT)
    # Expect two messages built (nothing matched "running": no message for it)
    assert hub.built == 2
    assert of_kind(take_all(running, CUT), "transitions") == []
    [all_msg] = of_kind(take_all(everything, CUT), "transitions")
    [a_msg] = of_kind(take_all(only_a, CUT), "transitions")
    # each a uniform sample of SAMPLE changes, in order, the rest counted as dropped
    for message, matched in ((all_msg, total), (a_msg, total // 2)):
        events = message.body["events"]
        assert len(events) == SAMPLE
        assert message.body["dropped"] == matched - SAMPLE
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == SAMPLE
    assert {e["queue"] for e in a_msg.body["events"]} == {"a"}
    assert {e["queue"] for e in all_msg.body["events"]} == {"a", "b"}
    # the sample spreads over the whole cut, not only its first changes
    first_half = sum(e["id"] <= "T00025000" for e in all_msg.body["events"])
    assert 60 <= first_half <= 140


def test_subscribers_with_equal_filters_share_one_built_message() -> None:
    # Given two subscribers to queue "a" (equal filters, built separately)
    node, hub = make_hub()
    one = hub.subscribe(queue_filter("a"), 0.0, WALL)
    two = hub.subscribe(TransitionFilter(queues=frozenset(["a"])), 0.0, WALL)
    take_all(one, 0.0)
    take_all(two, 0.0)
    # When a flood lands within one cut
    node.flood(["a"], 5_000, at=WALL + 0.05)
    hub.pump(CUT, WALL + CUT)
    # Expect one message built, the very same object (one encoding) in both outboxes
    assert hub.built == 1
    [m1] = of_kind(take_all(one, CUT), "transitions")
    [m2] = of_kind(take_all(two, CUT), "transitions")
    assert m1 is m2
    assert m1.encoded() is m2.encoded()


@pytest.mark.slow  # 101,000 state changes to make: 0.2-0.5 s
def test_a_flood_past_the_buffer_counts_the_excess_as_dropped() -> None:
    # Given a subscriber, and more changes in one cut than the tracker buffers
    node, hub = make_hub()
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    take_all(sub, 0.0)
    total = node.flood(["a"], MAX_BUFFERED + 1_000, at=WALL + 0.05, per_command=1_000)
    # When the cut passes
    hub.pump(CUT, WALL + CUT)
    [message] = of_kind(take_all(sub, CUT), "transitions")
    # Expect SAMPLE changes and every other one counted
    assert len(message.body["events"]) == SAMPLE
    assert message.body["dropped"] == total - SAMPLE


# ---- a subscriber that never reads ------------------------------------------------------------


def test_a_subscriber_that_never_reads_holds_one_message_per_kind_and_loses_no_count() -> None:
    # Given a subscriber that never takes anything, and one that reads everything
    node, hub = make_hub(seed=11)
    stuck = hub.subscribe(TransitionFilter(), 0.0, WALL)
    reader = hub.subscribe(TransitionFilter(), 0.0, WALL)
    rng = random.Random(3)
    offered = 0
    largest = 0
    # When 100 cuts pass (10 stats intervals) with floods of varying size, the workers and the
    # cluster changing now and then
    for i in range(1, 101):
        mono, wall = i * CUT, WALL + i * CUT
        offered += node.flood(["a", "b"], rng.randrange(1, 400), at=wall - 0.05)
        if i % 7 == 0:
            node.workers_view = [{"worker": f"w{i}", "kind": "stream", "queues": ["a"]}]
        if i % 13 == 0:
            node.cluster_view = {**node.cluster_view, "term": i}
        hub.pump(mono, wall)
        take_all(reader, mono)
        largest = max(largest, len(stuck.outbox))
    # Expect never more than one message per kind pending
    assert largest <= 5
    pending = take_all(stuck, 100 * CUT)
    kinds = [m.kind for m in pending]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) == {"snapshot", "transitions", "stats", "workers", "cluster"}
    # its transitions merged into one, conserving the count of every change offered
    assert hub.built >= 90  # a few cuts may come together: the float grid of the pumps
    assert stuck.outbox.merged == hub.built - 1
    [merged] = of_kind(pending, "transitions")
    assert len(merged.body["events"]) == SAMPLE
    assert len(merged.body["events"]) + merged.body["dropped"] == offered
    ids = [e["id"] for e in merged.body["events"]]
    assert ids == sorted(ids)  # still in order after 99 merges
    # the pictures pending are the newest ones
    assert of_kind(pending, "workers")[0].body["workers"] == node.workers_view
    assert of_kind(pending, "cluster")[0].body["cluster"]["term"] == 91
    assert stuck.outbox.replaced > 0
    # and the stuck subscriber cost the reader nothing: it got 100 messages
    assert reader.outbox.sent_count >= 1 + 100


# ---- the slow-client rule --------------------------------------------------------------------


def test_a_send_unfinished_for_slow_after_seconds_is_closed_with_1013_and_a_bye() -> None:
    # Given a subscriber whose client stops reading: the send of its snapshot starts at 0.5 s
    # and never completes; and a subscriber that reads
    node, hub = make_hub()
    slow = hub.subscribe(TransitionFilter(), 0.0, WALL)
    fine = hub.subscribe(TransitionFilter(), 0.0, WALL)
    assert slow.outbox.take(0.5) is not None
    # When the hub is pumped every cut until just before slow_after has passed (2.4 s)
    for i in range(1, 25):
        t = i * CUT
        node.flood(["a"], 10, at=WALL + t - 0.01)
        hub.pump(t, WALL + t)
        take_all(fine, t)
    # Expect it still open
    assert not slow.outbox.closing
    # When the pump reaches 0.5 + slow_after
    hub.pump(0.5 + CONFIG.slow_after, WALL + 2.5)
    # Expect it closed with 1013 ("try again later"), and its bye the only message it holds
    assert slow.outbox.close_code == TRY_AGAIN_LATER
    slow.outbox.sent()  # the stuck send finishes at last: only the bye follows
    [bye] = take_all(slow, 3.0)
    assert bye.kind == "bye"
    assert "too slow" in bye.body["reason"] and "2 s" in bye.body["reason"]
    # and nothing offered afterwards reaches it, while the reader stays open
    node.flood(["a"], 10, at=WALL + 2.55)
    hub.pump(2.6, WALL + 2.6)
    assert len(slow.outbox) == 0
    assert not fine.outbox.closing


def test_a_client_that_reads_slowly_but_within_slow_after_stays_open() -> None:
    # Given a subscriber whose every send takes just under slow_after to complete
    node, hub = make_hub()
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    started = 0  # the cut at which the current send started
    sub.outbox.take(0.0)
    sends = 0
    # When, for 20 s, each send completes 19 cuts (1.9 s) after it started
    for i in range(1, 201):
        t = i * CUT
        node.flood(["a"], 50, at=WALL + t - 0.01)
        hub.pump(t, WALL + t)
        if i - started >= 19:
            sub.outbox.sent()
            sends += 1
            assert sub.outbox.take(t) is not None
            started = i
    # Expect it never closed, and no more than 5 messages waiting at the end
    assert sends == 10
    assert not sub.outbox.closing
    assert len(sub.outbox) <= 5


# ---- stats -----------------------------------------------------------------------------------


def test_stats_carry_the_exact_counts_since_the_previous_stats() -> None:
    # Given a subscriber from mono 0, and 4 tasks submitted before it came
    node, hub = make_hub()
    node.submit("a", 4, at=WALL - 1)
    sub = hub.subscribe(queue_filter("nothing-here"), 0.0, WALL)
    # When, in the first second, 3 more are submitted and 2 leased and 1 of them completed
    node.submit("a", 3, at=WALL + 0.2)
    leased = node.apply(Lease("a", "w1", 2, 30.0), WALL + 0.3).events
    node.apply(Complete(leased[0].task_id, leased[0].epoch, b"{}"), WALL + 0.4)
    for i in range(1, 11):
        hub.pump(i * CUT, WALL + i * CUT)
    [first] = of_kind(take_all(sub, 1.0), "stats")
    # and in the next 1.0 s, 5 submits only
    node.submit("b", 5, at=WALL + 1.5)
    for i in range(11, 21):
        hub.pump(i * CUT, WALL + i * CUT)
    [second] = of_kind(take_all(sub, 2.0), "stats")
    # Expect exact counts per interval (changes of every queue, whatever the filter)
    assert first.body["counts"] == {
        "seconds": 1.0,
        "transitions": 3 + 2 + 1,
        "submitted": 3,
        "finished": 1,
    }
    assert first.body["rates"]["transitions_per_s"] == 6.0
    assert second.body["counts"] == {
        "seconds": 1.0,
        "transitions": 5,
        "submitted": 5,
        "finished": 0,
    }
    # and the queues as they stand: 4 + 3 - 2 queued in "a", 1 running, 1 succeeded
    by_name = {q["name"]: q["by_state"] for q in second.body["queues"]}
    assert by_name["a"]["queued"] == 5
    assert by_name["a"]["running"] == 1 and by_name["a"]["succeeded"] == 1
    assert by_name["b"]["queued"] == 5


def test_a_late_pump_reports_the_seconds_that_really_passed() -> None:
    # Given a subscriber and a pump that comes 1.75 s late for the first stats
    node, hub = make_hub()
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    node.flood(["a"], 30, at=WALL + 0.5)
    hub.pump(2.75, WALL + 2.75)
    [stats] = of_kind(take_all(sub, 2.75), "stats")
    # Expect the counts over the 2.75 s, and the rate over the same span
    assert stats.body["counts"]["seconds"] == 2.75
    assert stats.body["counts"]["transitions"] == 30
    assert stats.body["rates"]["transitions_per_s"] == pytest.approx(30 / 2.75, abs=1e-3)
    # and the next one due a whole interval later, not at once
    assert hub.next_due() == pytest.approx(2.75 + CUT)
    hub.pump(3.0, WALL + 3.0)
    assert of_kind(take_all(sub, 3.0), "stats") == []


# ---- subscribing and unsubscribing -------------------------------------------------------------


def test_unsubscribing_the_last_subscriber_stops_buffering() -> None:
    # Given two subscribers and a flood buffered for them
    node, hub = make_hub()
    one = hub.subscribe(TransitionFilter(), 0.0, WALL)
    two = hub.subscribe(TransitionFilter(), 0.0, WALL)
    node.flood(["a"], 1_000, at=WALL + 0.05)
    # When one leaves, the tracker still buffers; when the other leaves too, it stops
    hub.unsubscribe(one)
    assert node.tracker.buffering
    hub.unsubscribe(two)
    node.flood(["a"], 1_000, at=WALL + 0.06)
    # Expect nothing held for nobody, and a pump that does nothing
    assert not node.tracker.buffering
    assert node.tracker.take() == ([], 0)
    hub.pump(CUT, WALL + CUT)
    assert hub.built == 0
    # and a new subscriber later sees only what came after it
    three = hub.subscribe(TransitionFilter(), 5.0, WALL + 5)
    node.flood(["a"], 7, at=WALL + 5.05)
    hub.pump(5.0 + CUT, WALL + 5 + CUT)
    [message] = of_kind(take_all(three, 5.0 + CUT), "transitions")
    assert len(message.body["events"]) == 7 and message.body["dropped"] == 0


def test_a_new_subscribe_answers_with_a_fresh_snapshot_that_supersedes_what_was_unsent() -> None:
    # Given a subscriber with transitions and stats unsent
    node, hub = make_hub()
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    take_all(sub, 0.0)
    node.flood(["a"], 10, at=WALL + 0.5)
    for i in range(1, 11):
        hub.pump(i * CUT, WALL + i * CUT)
    assert len(sub.outbox) == 2
    # When it subscribes again, to queue "b" only
    hub.resubscribe(sub, queue_filter("b"), WALL + 1.05)
    node.flood(["a", "b"], 10, at=WALL + 1.06)
    hub.pump(1.1, WALL + 1.1)
    messages = take_all(sub, 1.1)
    # Expect the new snapshot first (naming the new filter), then only "b"'s changes
    assert [m.kind for m in messages] == ["snapshot", "transitions"]
    assert messages[0].body["subscription"]["queues"] == ["b"]
    assert {e["queue"] for e in messages[1].body["events"]} == {"b"}


def test_a_shutdown_says_bye_to_everyone_and_to_later_arrivals() -> None:
    # Given a subscriber
    _, hub = make_hub()
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    # When the node shuts down, and someone subscribes afterwards
    hub.close_all()
    late = hub.subscribe(TransitionFilter(), 0.1, WALL + 0.1)
    # Expect both get only a bye and the "going away" code
    for s in (sub, late):
        [bye] = take_all(s, 0.2)
        assert bye.kind == "bye" and "shutting down" in bye.body["reason"]
        assert s.outbox.close_code == 1001


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (StreamConfig(cut=2.0, interval=1.0), "cut"),
        (StreamConfig(cut=0.0), "cut"),
        (StreamConfig(slow_after=0.0), "slow_after"),
        (StreamConfig(max_queues=0), "max_queues"),
    ],
)
def test_a_bad_stream_config_is_refused_naming_the_setting(
    config: StreamConfig, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        make_hub(config)


def test_past_max_queues_the_deepest_are_shown_and_the_rest_counted() -> None:
    # Given 5 queues of depths 1..5 and a hub showing at most 3
    node, hub = make_hub(StreamConfig(max_queues=3))
    for depth, name in enumerate(["e", "d", "c", "b", "a"], start=1):
        node.submit(name, depth, at=WALL)
    # When a subscriber arrives
    sub = hub.subscribe(TransitionFilter(), 0.0, WALL)
    [snapshot] = take_all(sub, 0.0)
    # Expect the 3 deepest, by name, and 2 omitted
    assert [q["name"] for q in snapshot.body["queues"]] == ["a", "b", "c"]
    assert snapshot.body["queues_omitted"] == 2
