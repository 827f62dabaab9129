"""What a shared database must offer a taskd store: a fenced lease, an append-only command log,
snapshots, a way to wait for new entries, and a roll of the nodes that are up.

Theory of operation: every node of a deployment opens the same database. One of them holds the
**lease**: a single record naming its holder, a **term** (the fencing token, one higher for every
new holder) and an expiry judged by the *database's* clock, so the nodes' clocks never matter.
Only the holder appends, and every append checks, in the same atomic step (one transaction in
PostgreSQL, one Lua script in Redis), that the lease is still its own in that term and that
the log ends where it expects; a former leader that was paused or cut off past its lease fails
that check (``Fenced``) and can never write again in its term. A node that finds the lease
expired takes it in a new term.

Entries are numbered from 1 without gaps; ``append`` refuses (``Fenced``) unless the log's last
index is ``first_index - 1``. A snapshot covers every entry up to its index; saving one lets
the backend drop those entries. Reading starts after a given index: a new leader or a follower
restores the latest snapshot and reads what follows it.

Every method is synchronous and blocking, called by the driver from a worker thread (the
database clients are synchronous: psycopg, redis-py); one backend object serves one thread at
a time, except ``wait_for_entries``, which the driver calls from a second thread and which a
backend serves on a connection of its own. Errors are translated where they enter: a database
that cannot be reached or refuses raises ``BackendDown`` with a reason that never contains
credentials; a lost lease raises ``Fenced``. Nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class BackendDown(Exception):
    """The database cannot be reached or refused the operation. ``str()`` is the reason, fit
    for logs and 503 answers: host, port and database name at most, never credentials.

    ``resumes_by_itself``: True (the default) when the same call may succeed later without
    anyone acting (connection lost, server restarting, out of connections or disk space);
    False when an operator must fix something first (permission denied, read-only database,
    an I/O error or corruption on the server, a schema someone changed): the store then
    refuses writes until it is restarted, as the Raft store does after a failed fsync.

    ``misconfigured``: the server refused the *connection* for something only an operator
    changes (a database or role that does not exist, credentials, ``pg_hba.conf``, a bad
    parameter of the URL). Nothing was written, so it passes by itself as far as the store
    goes: a running node keeps trying (a database being restored, a password fixed on the
    server); a node starting on it stops at once, since its ``--store`` URL may be wrong."""

    def __init__(
        self, reason: str, *, resumes_by_itself: bool = True, misconfigured: bool = False
    ) -> None:
        self.resumes_by_itself = resumes_by_itself
        self.misconfigured = misconfigured
        super().__init__(reason)


class Fenced(Exception):
    """The lease is no longer this node's in its term (expired and taken, or released): it
    must stop writing at once and follow the new holder."""


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str  # the node id (its gRPC address)
    term: int  # the fencing token: strictly greater for every new holder
    seconds_left: float  # the lease's remaining time on the database's clock when granted


@dataclass(frozen=True, slots=True)
class LeaseView:
    """Who holds the lease now, as the database sees it (holder None: nobody, or expired)."""

    holder: str | None
    term: int  # the latest term ever granted (0 before the first)
    seconds_left: float


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int  # the term of the leader that appended it
    data: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: int  # covers every entry up to and including this one
    term: int
    data: bytes


Row = Mapping[str, object]  # one projected task row (PostgreSQL's queryable table; see postgres)


class Backend(Protocol):
    @property
    def name(self) -> str:
        """What it is and where, for logs and errors: ``"postgres at db.example:5432/taskd"``
        (never credentials)."""

    def open(self) -> None:
        """Connect, check the server is fit (Redis: ``maxmemory-policy noeviction``), and
        create or migrate the schema (PostgreSQL: under an advisory lock, versioned). Raises
        ``BackendDown`` or ``ValueError`` (unfit: the message says what to change)."""

    def close(self) -> None: ...

    def acquire(self, node: str, ttl: float, min_term: int = 0) -> Lease | None:
        """Take the lease for ``ttl`` seconds if nobody holds it or it expired (a new term, at
        least ``min_term``: a database that lost its term counter must not hand out a term a
        node has seen already), or extend it if ``node`` already holds it (same term); None
        if another node holds it."""

    def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease`` by ``ttl`` from now; raises ``Fenced`` if it is no longer held."""

    def release(self, lease: Lease) -> None:
        """Give the lease up (on a clean stop), so another node takes over at once."""

    def lease(self) -> LeaseView: ...

    def append(
        self, lease: Lease, first_index: int, items: Sequence[bytes], rows: Sequence[Row] = ()
    ) -> None:
        """Append ``items`` as entries ``first_index...`` in term ``lease.term``, atomically with
        checking that ``lease`` is still held and the log's last index is ``first_index - 1``
        (``Fenced`` otherwise: nothing is written), and with upserting ``rows`` into the task
        table (backends without one ignore them). Durable when it returns."""

    def last_index(self) -> int:
        """The index of the last entry (or of the snapshot, when the log after it is empty)."""

    def read(self, after: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries after ``after``, in order (empty: none yet). Raises
        ``ValueError`` if entries after ``after`` were dropped by a snapshot (restore it)."""

    def wait_for_entries(self, after: int, timeout: float) -> None:
        """Block until an entry after ``after`` may exist, or ``timeout`` seconds pass
        (PostgreSQL: LISTEN/NOTIFY; Redis: a blocking stream read). Spurious returns are fine."""

    def save_snapshot(
        self, lease: Lease, snapshot: Snapshot, rows: Sequence[Row] | None = None
    ) -> None:
        """Store ``snapshot`` (fenced like ``append``) and drop the entries it covers. With
        ``rows``, the task table is replaced by them in the same step (a log rebuilt from a
        node's memory; backends without a table ignore them)."""

    def load_snapshot(self) -> Snapshot | None: ...

    def announce(self, node: str, applied: int, within: float) -> list[tuple[str, int]]:
        """Record that ``node`` is up now (by the database's clock), having applied the log up
        to ``applied``, and return every node that announced itself in the last ``within``
        seconds, ``node`` included, with the index it gave, sorted by node: the deployment's
        members as ``GET /api/v1/cluster`` lists them. A node not seen for a day is
        forgotten."""

    def peer_secret(self) -> bytes:
        """The deployment's secret for calls between its nodes (a follower forwarding writes
        to the leader), created at random by the first node that opens the database and
        the same for every node after: a node proves it belongs by reading it."""
