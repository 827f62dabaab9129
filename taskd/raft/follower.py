"""A follower's side: taking a leader's appends, heartbeats and snapshots.

Theory of operation (Raft §5.3, §7): any message of the current term from a leader makes the
node follow it (a candidate gives up) and resets its election timer. An APPEND is taken only
if the log holds the entry just before it (``index``, ``log_term``); then entries already held
with the same term are kept, the log is cut at the first conflict and the rest appended, and
the commit index follows the leader's as far as these entries go. A refusal carries a hint
(the last index at or below the refused one whose term is at most the leader's term there),
so the leader skips a whole diverging term per round trip. An APPEND before the commit index
is answered with the commit index: everything up to it already matches.

A SNAPSHOT is installed only when it is ahead of the commit index and the log does not
already hold its last entry; the log then restarts, empty, at it, and the configuration is
the snapshot's. Every answer that acknowledges entries waits until they are handed out to be
persisted (``after``), so it never leaves before they are durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskd.raft.roles import Event, Role
from taskd.raft.types import Message, MessageKind

if TYPE_CHECKING:
    from taskd.raft.core import RaftCore


def follow(core: RaftCore, leader: str) -> None:
    if core.role is Role.LEADER:
        raise AssertionError(f"two leaders in term {core.term}: {core.id}, {leader}")
    core.become(Event.LEADER_SEEN)
    core.leader = leader
    core.elapsed = 0


def on_append(core: RaftCore, message: Message) -> None:
    follow(core, message.src)
    log = core.log
    if message.index < log.committed:
        # Everything up to the commit index matches the leader's already.
        core.send(
            MessageKind.APPEND_RESPONSE, message.src, index=log.committed, after=log.committed
        )
        return
    if not log.matches(message.index, message.log_term):
        hint = log.last_at_or_below_term(min(message.index, log.last_index), message.log_term)
        core.send(
            MessageKind.APPEND_RESPONSE,
            message.src,
            index=message.index,
            reject=True,
            reject_hint=hint,
            log_term=log.term_at(hint),
        )
        return
    old_last = log.last_index
    cut = log.merge(message.entries)
    first_new = old_last + 1 if cut is None else cut
    if cut is not None:
        core.membership.cut(cut)
        core.drop_messages_past(cut - 1)
    core.membership.appended(e for e in message.entries if e.index >= first_new)
    last_new = message.index + len(message.entries)
    if message.commit > log.committed:
        log.commit_to(min(message.commit, last_new))
    core.send(MessageKind.APPEND_RESPONSE, message.src, index=last_new, after=last_new)


def on_heartbeat(core: RaftCore, message: Message) -> None:
    follow(core, message.src)
    log = core.log
    if message.commit > log.committed:
        # The leader sends at most what it knows this log matches.
        log.commit_to(min(message.commit, log.last_index))
    core.send(MessageKind.HEARTBEAT_RESPONSE, message.src, context=message.context)


def on_snapshot(core: RaftCore, message: Message) -> None:
    meta = message.snapshot
    if meta is None:
        return
    follow(core, message.src)
    log = core.log
    if meta.index <= log.committed:
        core.send(
            MessageKind.APPEND_RESPONSE, message.src, index=log.committed, after=log.committed
        )
        return
    if log.matches(meta.index, meta.term):
        # The log already holds it (a late offer): installing would forget entries past
        # it that this node may have acknowledged. Only the commit index moves.
        log.commit_to(meta.index)
        core.send(MessageKind.APPEND_RESPONSE, message.src, index=meta.index, after=meta.index)
        return
    log.restore(meta)
    core.membership.restored(meta)
    core.drop_messages_past(meta.index)
    core.to_install = meta
    core.send(MessageKind.APPEND_RESPONSE, message.src, index=meta.index, after=meta.index)
