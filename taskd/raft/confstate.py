"""Membership: which configuration is in force, read from the log (Raft dissertation §4.1).

Theory of operation: changes go one server at a time, and each ``CONF_CHANGE`` entry carries
the FULL new configuration. A member uses the latest configuration in its log as soon as the
entry is appended, committed or not; when the tail holding it is cut, the one before it is back
in force. Without a change in the log, the configuration is the snapshot's (when the snapshot
names voters), else the bootstrap one the node was started with (``--peers``).

``Membership`` keeps the base configuration (snapshot's or bootstrap) and the changes in the
log, by index, so that "the configuration as of index i" is a lookup, a cut drops changes, a
compaction folds them into the base and a snapshot replaces everything.

Also here: counting votes and acknowledgements over the voters of a configuration (a strict
majority; learners never count), and ``ConfChangeError``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from enum import Enum

from taskd.errors import TaskdError
from taskd.raft.types import ConfState, Entry, EntryKind, SnapshotMeta, decode_conf


class ConfChangeError(TaskdError, ValueError):
    """A membership change that cannot be made; the message names the problem."""


def changed(conf: ConfState, *, add: str | None, remove: str | None) -> ConfState:
    """``conf`` with ``add`` as a new learner or without ``remove``; ``ConfChangeError``
    says why not."""
    if (add is None) == (remove is None):
        raise ConfChangeError("name exactly one member, to add or to remove")
    if add is not None:
        if add in conf:
            raise ConfChangeError(f"{add} is already a member")
        return ConfState(conf.voters, (*conf.learners, add))
    if remove not in conf:
        raise ConfChangeError(f"{remove} is not a member")
    if conf.voters == (remove,):
        raise ConfChangeError(f"cannot remove the last voter ({remove}); add another first")
    voters = tuple(v for v in conf.voters if v != remove)
    return ConfState(voters, tuple(m for m in conf.learners if m != remove))


def promoted(conf: ConfState, learner: str) -> ConfState:
    """``conf`` with ``learner`` made a voter."""
    return ConfState((*conf.voters, learner), tuple(m for m in conf.learners if m != learner))


class Membership:
    def __init__(self, bootstrap: ConfState, snapshot: SnapshotMeta, entries: Iterable[Entry]):
        self.base = snapshot.conf if snapshot.voters else bootstrap
        self.base_index = snapshot.index
        self._indexes: list[int] = []
        self._confs: list[ConfState] = []
        self.appended(entries)

    @property
    def current(self) -> ConfState:
        return self._confs[-1] if self._confs else self.base

    @property
    def last_change(self) -> int:
        """Index of the entry the current configuration comes from (0: none in the log)."""
        return self._indexes[-1] if self._indexes else 0

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force once the log up to ``index`` is applied."""
        position = bisect_right(self._indexes, index)
        return self._confs[position - 1] if position else self.base

    def appended(self, entries: Iterable[Entry]) -> bool:
        """Note the changes among ``entries`` (appended in index order). True if any."""
        changed = False
        for entry in entries:
            if entry.kind is EntryKind.CONF_CHANGE:
                self._indexes.append(entry.index)
                self._confs.append(decode_conf(entry.data))
                changed = True
        return changed

    def cut(self, index: int) -> bool:
        """The log was cut from ``index`` on: forget the changes there. True if any."""
        position = bisect_right(self._indexes, index - 1)
        changed = position < len(self._indexes)
        del self._indexes[position:]
        del self._confs[position:]
        return changed

    def compacted(self, index: int) -> ConfState:
        """The log up to ``index`` is now a snapshot: fold its changes into the base."""
        self.base = self.conf_at(index)
        self.base_index = index
        position = bisect_right(self._indexes, index)
        del self._indexes[:position]
        del self._confs[:position]
        return self.base

    def restored(self, snapshot: SnapshotMeta) -> None:
        """The log restarts at ``snapshot``: its configuration (if it names one) is the base."""
        if snapshot.voters:
            self.base = snapshot.conf
        else:
            self.base = self.current
        self.base_index = snapshot.index
        self._indexes.clear()
        self._confs.clear()


class Tally(Enum):
    WON = "won"
    LOST = "lost"
    PENDING = "pending"


def tally(voters: tuple[str, ...], votes: Mapping[str, bool]) -> Tally:
    """Whether ``votes`` (member → yes/no) already decide an election among ``voters``."""
    quorum = len(voters) // 2 + 1
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    if yes >= quorum:
        return Tally.WON
    if len(voters) - no < quorum:
        return Tally.LOST
    return Tally.PENDING


def has_quorum(voters: tuple[str, ...], members: Iterable[str]) -> bool:
    """Whether ``members`` include a strict majority of ``voters``."""
    present = set(members)
    return sum(1 for v in voters if v in present) * 2 > len(voters)


def quorum_index(voters: tuple[str, ...], match: Mapping[str, int]) -> int:
    """The highest index a strict majority of ``voters`` hold (0 without voters)."""
    if not voters:
        return 0
    matched = sorted((match.get(v, 0) for v in voters), reverse=True)
    return matched[len(voters) // 2]
