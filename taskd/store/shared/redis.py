"""The Redis backend of the shared-database store: ``RedisBackend(url, prefix=...)``.

Theory of operation: five keys under one hash tag, ``{prefix}``, so that a cluster-mode Redis
keeps them in one slot and a Lua script may touch them all:

- ``{prefix}:lease``: a hash (``holder``, ``term``) whose PX expiry *is* the lease, judged by
  Redis's clock; once it expires the key is gone and anyone may take the lease.
- ``{prefix}:term``: the term counter, a plain integer that never expires, so that terms never
  go back even when the lease key expired or was released.
- ``{prefix}:log``: the log, a Redis STREAM whose entry IDs are ``<index>-0`` (fields ``t``,
  the term, and ``d``, the data). Why a stream rather than a list or a hash: ``read(after,
  limit)`` is one ``XRANGE (after+1)-0 + COUNT limit`` (a radix-tree seek, O(log n + limit)),
  the last index is ``XREVRANGE + - COUNT 1``, dropping what a snapshot covers is ``XTRIM
  MINID`` (the stream remembers its last ID, so appends keep growing from there), and
  ``wait_for_entries`` is a native ``XREAD BLOCK`` with the last index known: no notify key, no
  polling, and no missed wake-up between "read" and "wait", since XREAD answers at once when an
  entry after the given ID already exists. A list would need LRANGE offsets that shift on
  every trim and a separate BLPOP key; a hash would have no blocking read at all.
- ``{prefix}:snap``: the snapshot, a hash (``index``, ``term``, ``data``).
- ``{prefix}:peer-secret``: 32 random bytes the nodes present to each other when a follower
  forwards writes to the leader (``peer_secret``; set once, by the first node to ask).
- ``{prefix}:nodes``: a hash, node -> ``"<ms>:<applied>"``: when it last announced itself
  (Redis's clock) and how far it had applied the log: the members the cluster view lists
  (``announce``).

Every write (``acquire``, ``renew``, ``release``, ``append``, ``save_snapshot``; and
``announce``, which is not fenced) is one Lua script (EVALSHA, loaded again on NOSCRIPT): the
fencing check (the lease key exists, so it has not expired on Redis's clock, and names this
holder and term), the last-index check and the write run in one atomic step; ``append`` writes
every item of the round in that one script. Nothing is retried by the client: a write whose
answer was lost raises ``BackendDown`` (a retried append could run twice), and the driver finds
out where the log ends. Reads that need two keys (the snapshot's index and the stream) go in
one MULTI. ``wait_for_entries`` has a client (and connection) of its own, so that a blocked
XREAD never holds up the writer.

At ``open()`` the server must have ``maxmemory-policy noeviction`` (any other policy lets Redis
evict the log, the lease or the snapshot under memory pressure: acknowledged commands lost,
or two leaders); otherwise ``open()`` raises ``ValueError`` saying what to set. Redis 6.2 or
later is required (``XTRIM MINID``).

Durability
----------
taskd's Redis store is exactly as durable as the Redis server's append-only file, never more:
a write is acknowledged when Redis has answered the script, and what that answer is worth is
set by Redis's ``appendonly`` and ``appendfsync``. ``open()`` reads them (``CONFIG GET``) and
logs a warning that says which of these applies (or that they could not be checked, when
``CONFIG`` is disabled):

- ``appendonly no``: nothing survives a Redis restart (RDB snapshots, if configured, keep only
  what the last save caught; everything after it is lost, and with it the lease's term).
- ``appendonly yes`` with ``appendfsync everysec`` (Redis's default): up to about one second of
  acknowledged writes can be lost on a crash of the Redis host (or of Redis itself while it
  writes); a clean restart loses nothing.
- ``appendonly yes`` with ``appendfsync always``: every acknowledged write is on disk: Redis
  fsyncs the AOF before it answers the script.
- ``appendonly yes`` with ``appendfsync no``: the operating system decides when to flush (about
  30 s on Linux): that much can be lost on a crash of the host.

Replicas do not change this: Redis replication is asynchronous, so a failover to a replica can
lose what the primary acknowledged last (``WAIT`` is not used).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry
from redis.typing import EncodableT

from taskd.store.shared import redisurl
from taskd.store.shared.backend import (
    BackendDown,
    Entry,
    Fenced,
    Lease,
    LeaseView,
    Row,
    Snapshot,
)

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 5.0  # seconds for a command's answer (and for connecting)
WAIT_CAP = 10.0  # seconds one XREAD BLOCK lasts at most (a longer wait returns early: fine)
MIN_VERSION = (6, 2)  # XTRIM MINID

# KEYS[1] lease, KEYS[2] term counter; ARGV node, ttl_ms, min_term.
# -> {term, ttl_ms} when granted or extended; {0, pttl_ms, holder} when another holds it.
_ACQUIRE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder then
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(redis.call('HGET', KEYS[1], 'term')), tonumber(ARGV[2])}
  end
  return {0, redis.call('PTTL', KEYS[1]), holder}
end
local term = redis.call('INCR', KEYS[2])
if term < tonumber(ARGV[3]) then
  term = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], term)
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'term', term)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {term, tonumber(ARGV[2])}
"""

# The fencing check every fenced script starts with: the lease key exists (not expired on
# Redis's clock) and names ARGV[1] in term ARGV[2]. Otherwise the script answers
# {-1, holder or '', term or ''} and writes nothing.
_FENCE = """
local lease = redis.call('HMGET', KEYS[1], 'holder', 'term')
if lease[1] ~= ARGV[1] or tonumber(lease[2]) ~= tonumber(ARGV[2]) then
  return {-1, lease[1] or '', lease[2] or ''}
end
"""

# KEYS[1] lease; ARGV node, term, ttl_ms. -> {1}
_RENEW = (
    _FENCE
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1}
"""
)

# KEYS[1] lease; ARGV node, term. -> {1} (or the fence's answer: nothing to give up)
_RELEASE = (
    _FENCE
    + """
redis.call('DEL', KEYS[1])
return {1}
"""
)

# KEYS[1] nodes; ARGV node, applied, within (ms). -> {node, applied, ...} of the nodes seen
# within that, this one included (each field's value is "<ms>:<applied>"); a node not seen
# for a day is dropped.
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local up = {}
for i = 1, #all, 2 do
  local seen, applied = string.match(all[i + 1], '^(%d+):(%d+)$')
  local age = seen and now - tonumber(seen) or 86400001
  if age <= tonumber(ARGV[3]) then
    table.insert(up, all[i])
    table.insert(up, applied)
  elseif age > 86400000 then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return up
"""

# Where the log ends: its last entry, or the snapshot's index when that is further.
_LAST = """
local last = tonumber(redis.call('HGET', KEYS[3], 'index') or '0')
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 then
  local id = tonumber(string.match(top[1][1], '^(%d+)'))
  if id > last then last = id end
end
"""

# KEYS[1] lease, KEYS[2] log, KEYS[3] snapshot; ARGV node, term, first_index, item...
# -> {1, last} appended; {0, last} the log does not end at first_index - 1.
_APPEND = (
    _FENCE
    + _LAST
    + """
local first = tonumber(ARGV[3])
if last ~= first - 1 then return {0, last} end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[2], string.format('%d-0', first + i - 4), 't', ARGV[2], 'd', ARGV[i])
end
return {1, first + #ARGV - 4}
"""
)

# KEYS[1] lease, KEYS[2] log, KEYS[3] snapshot; ARGV node, term, index, snapshot term, data.
# -> {1} saved; {0, index} a newer snapshot is stored already.
_SAVE_SNAPSHOT = (
    _FENCE
    + """
local index = tonumber(ARGV[3])
local stored = tonumber(redis.call('HGET', KEYS[3], 'index') or '0')
if index < stored then return {0, stored} end
redis.call('HSET', KEYS[3], 'index', ARGV[3], 'term', ARGV[4], 'data', ARGV[5])
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', index + 1))
return {1}
"""
)


def durability(appendonly: str | None, appendfsync: str | None) -> str:
    """What an acknowledged write is worth under these AOF settings (None: unknown)."""
    if appendonly is None:
        return (
            "durability unknown: CONFIG GET is disabled or denied to this user, so appendonly "
            "and appendfsync could not be checked; taskd is exactly as durable as they make "
            "Redis (appendonly yes + appendfsync always: every acknowledged write on disk)"
        )
    if appendonly != "yes":
        return (
            "appendonly no: nothing taskd acknowledged survives a Redis restart (set "
            "appendonly yes and appendfsync always to have every acknowledged write on disk)"
        )
    if appendfsync == "always":
        return "appendonly yes, appendfsync always: every acknowledged write is on disk"
    if appendfsync == "everysec":
        return (
            "appendfsync everysec: up to ~1 s of acknowledged writes can be lost on a crash of "
            "the Redis host (appendfsync always: every acknowledged write on disk)"
        )
    return (
        f"appendfsync {appendfsync}: the OS flushes the AOF when it likes (~30 s on Linux), so "
        "that much acknowledged work can be lost on a crash of the Redis host (appendfsync "
        "always: every acknowledged write on disk)"
    )


class RedisBackend:
    """A ``Backend`` on one Redis database (``redis://[user:password@]host:port/db``)."""

    def __init__(self, url: str, *, prefix: str = "taskd") -> None:
        if not redisurl.valid_prefix(prefix):
            raise ValueError(f"key prefix {prefix!r}: not empty, and no braces (a hash tag)")
        options = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        # Named, so that CLIENT LIST shows whose connections these are.
        self._client = redis.Redis.from_url(url, client_name=f"taskd:{prefix}", **options)
        # Its own pool: a blocked XREAD must outlast SOCKET_TIMEOUT without being one.
        waiter = {**options, "socket_timeout": WAIT_CAP + 5, "client_name": f"taskd-wait:{prefix}"}
        self._waiter = redis.Redis.from_url(url, **waiter)
        where = self._client.connection_pool.connection_kwargs
        self._password = str(where.get("password") or "")
        db = where.get("db", 0)
        if "path" in where:
            self._name = f"redis at unix:{where['path']}/{db}"
        else:
            self._name = f"redis at {where.get('host')}:{where.get('port')}/{db}"
        tag = "{" + prefix + "}"
        self._lease_key = f"{tag}:lease"
        self._term_key = f"{tag}:term"
        self._log_key = f"{tag}:log"
        self._snap_key = f"{tag}:snap"
        self._secret_key = f"{tag}:peer-secret"
        self._nodes_key = f"{tag}:nodes"
        self._acquire = self._script(_ACQUIRE)
        self._renew = self._script(_RENEW)
        self._release = self._script(_RELEASE)
        self._append = self._script(_APPEND)
        self._save_snapshot = self._script(_SAVE_SNAPSHOT)
        self._announce = self._script(_ANNOUNCE)
        self.durability = durability(None, None)  # what open() found: see the module docstring

    @property
    def name(self) -> str:
        return self._name

    def _script(self, source: str) -> Script:
        return self._client.register_script(source)

    def _down(self, exc: Exception, doing: str) -> BackendDown:
        """``exc`` as a BackendDown whose reason names the server, never the password."""
        reason = str(exc) or type(exc).__name__
        # redis-py prefixes a pipeline's error with the command and its arguments (a secret,
        # a task's payload): keep the server's own words only
        reason = _PIPELINE_PREFIX.sub("", reason, count=1)
        if self._password:
            reason = reason.replace(self._password, "***")
        # wrong credentials or ACL: an operator must fix the URL or the user (see BackendDown)
        misconfigured = isinstance(
            exc, redis.AuthenticationError | redis.exceptions.AuthorizationError
        )
        return BackendDown(
            f"{self._name}: {doing} failed: {reason}",
            resumes_by_itself=_passes(exc, reason),
            misconfigured=misconfigured,
        )

    # -- opening ------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            server = self._client.info("server")
            policy = self._config("maxmemory-policy")
            if policy is None:  # CONFIG disabled: INFO says it too
                policy = str(self._client.info("memory").get("maxmemory_policy", "")) or None
            appendonly = self._config("appendonly")
            appendfsync = self._config("appendfsync") if appendonly is not None else None
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "opening") from exc
        version = tuple(int(part) for part in str(server.get("redis_version", "0")).split(".")[:2])
        if version < MIN_VERSION:
            raise ValueError(
                f"{self._name} is Redis {server.get('redis_version')}; taskd needs Redis 6.2 or "
                "later (XTRIM MINID drops the log entries a snapshot covers)"
            )
        if policy != "noeviction":
            found = f"maxmemory-policy is {policy}" if policy else "maxmemory-policy is unknown"
            raise ValueError(
                f"{self._name}: {found}; taskd needs maxmemory-policy noeviction (CONFIG SET "
                "maxmemory-policy noeviction, and the same line in redis.conf) because under "
                "any other policy Redis may evict taskd's log, lease or snapshot when memory "
                "runs short, losing acknowledged commands or letting two nodes lead at once"
            )
        self.durability = durability(appendonly, appendfsync)
        level = logging.INFO if appendfsync == "always" else logging.WARNING
        log.log(
            level, "%s: %s; taskd cannot be more durable than Redis", self._name, self.durability
        )

    def _config(self, parameter: str) -> str | None:
        """``CONFIG GET parameter``, or None when CONFIG is disabled (renamed, or denied)."""
        try:
            answer = self._client.config_get(parameter)
        except redis.ResponseError:  # unknown command (rename-command CONFIG ""), NOPERM
            return None
        value = answer.get(parameter)
        return None if value is None else str(value)

    def close(self) -> None:
        self._waiter.close()
        self._client.close()

    # -- the lease ----------------------------------------------------------------------------

    def _run(
        self, script: Script, doing: str, keys: list[str], args: list[EncodableT]
    ) -> list[object]:
        try:
            answer = script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, doing) from exc
        assert isinstance(answer, list), answer
        return answer

    def _fenced(self, answer: list[object], lease: Lease, doing: str) -> Fenced:
        holder, term = (_text(part) for part in answer[1:3])
        now = f"{holder} holds it in term {term}" if holder else "nobody holds it"
        return Fenced(
            f"{self._name}: {doing}: the lease is no longer {lease.holder}'s in term "
            f"{lease.term} ({now})"
        )

    def acquire(self, node: str, ttl: float, min_term: int = 0) -> Lease | None:
        answer = self._run(
            self._acquire,
            "acquire",
            [self._lease_key, self._term_key],
            [node, _ms(ttl), min_term],
        )
        term, ms = _int(answer[0]), _int(answer[1])
        if term == 0:
            return None
        return Lease(holder=node, term=term, seconds_left=ms / 1000)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        args: list[EncodableT] = [lease.holder, lease.term, _ms(ttl)]
        answer = self._run(self._renew, "renew", [self._lease_key], args)
        if _int(answer[0]) != 1:
            raise self._fenced(answer, lease, "renew")
        return Lease(holder=lease.holder, term=lease.term, seconds_left=_ms(ttl) / 1000)

    def release(self, lease: Lease) -> None:
        self._run(self._release, "release", [self._lease_key], [lease.holder, lease.term])

    def lease(self) -> LeaseView:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hget(self._lease_key, "holder")
                pipe.pttl(self._lease_key)
                pipe.get(self._term_key)
                holder, pttl, term = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "reading the lease") from exc
        latest = int(term) if term is not None else 0
        if holder is None:
            return LeaseView(holder=None, term=latest, seconds_left=0.0)
        return LeaseView(holder=_text(holder), term=latest, seconds_left=max(int(pttl), 0) / 1000)

    # -- the log ------------------------------------------------------------------------------

    def append(
        self, lease: Lease, first_index: int, items: Sequence[bytes], rows: Sequence[Row] = ()
    ) -> None:
        """``rows`` are ignored: Redis keeps no queryable task table."""
        keys = [self._lease_key, self._log_key, self._snap_key]
        args: list[EncodableT] = [lease.holder, lease.term, first_index, *items]
        answer = self._run(self._append, "append", keys, args)
        code = _int(answer[0])
        if code == -1:
            raise self._fenced(answer, lease, "append")
        if code == 0:
            raise Fenced(
                f"{self._name}: append: the log ends at {_int(answer[1])}, not at "
                f"{first_index - 1} (another leader appended, or this one lost count)"
            )

    def last_index(self) -> int:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hget(self._snap_key, "index")
                pipe.xrevrange(self._log_key, "+", "-", count=1)
                snap, top = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "reading the last index") from exc
        last = int(snap) if snap is not None else 0
        if top:
            last = max(last, _index(top[0][0]))
        return last

    def read(self, after: int, limit: int) -> list[Entry]:
        if limit <= 0:
            return []
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hget(self._snap_key, "index")
                pipe.xrange(self._log_key, f"{after + 1}-0", "+", count=limit)
                snap, found = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "reading the log") from exc
        if snap is not None and after < int(snap):
            raise ValueError(
                f"{self._name}: the entries after {after} up to {int(snap)} were dropped by a "
                "snapshot: restore it, then read after its index"
            )
        return [
            Entry(index=_index(entry_id), term=int(fields[b"t"]), data=bytes(fields[b"d"]))
            for entry_id, fields in found or ()
        ]

    def wait_for_entries(self, after: int, timeout: float) -> None:
        block = min(timeout, WAIT_CAP)
        if block <= 0:
            return
        try:
            snap = self._waiter.hget(self._snap_key, "index")
            if snap is not None and int(snap) > after:
                return  # dropped by a snapshot: read() says so at once
            # BLOCK 0 would mean forever: at least 1 ms.
            self._waiter.xread({self._log_key: f"{after}-0"}, count=1, block=max(1, _ms(block)))
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "waiting for entries") from exc

    # -- snapshots ----------------------------------------------------------------------------

    def save_snapshot(
        self, lease: Lease, snapshot: Snapshot, rows: Sequence[Row] | None = None
    ) -> None:
        keys = [self._lease_key, self._log_key, self._snap_key]
        args: list[EncodableT] = [
            lease.holder,
            lease.term,
            snapshot.index,
            snapshot.term,
            snapshot.data,
        ]
        answer = self._run(self._save_snapshot, "save_snapshot", keys, args)
        code = _int(answer[0])
        if code == -1:
            raise self._fenced(answer, lease, "save_snapshot")
        if code == 0:
            raise ValueError(
                f"{self._name}: a snapshot at {snapshot.index} is older than the stored one "
                f"at {_int(answer[1])}"
            )

    def load_snapshot(self) -> Snapshot | None:
        try:
            index, term, data = self._client.hmget(self._snap_key, ["index", "term", "data"])
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "loading the snapshot") from exc
        if index is None or term is None or data is None:
            return None
        return Snapshot(index=int(index), term=int(term), data=_bytes(data))

    def announce(self, node: str, applied: int, within: float) -> list[tuple[str, int]]:
        found = self._run(
            self._announce, "announce", [self._nodes_key], [node, applied, _ms(within)]
        )
        pairs = zip(found[0::2], found[1::2], strict=True)
        return sorted((_text(name), _int(index)) for name, index in pairs)

    def peer_secret(self) -> bytes:
        """Set at random by the first node to ask (SET NX), read by every one after (a read
        only, which works while the server refuses writes)."""
        try:
            found = self._client.get(self._secret_key)
            if found is not None:
                return _bytes(found)
            with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._secret_key, secrets.token_bytes(32), nx=True)
                pipe.get(self._secret_key)
                _, secret = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._down(exc, "reading the peer secret") from exc
        return _bytes(secret)


# Refusals that end without anyone acting: memory freed, a script or a load finishing, a
# failover completing, the server's disk writable again (MISCONF: Redis retries a failed AOF
# write every second, and a failed RDB save on its schedule, and takes writes again once one
# succeeds, e.g. when a full disk has room). Every other refusal (WRONGTYPE: someone else's
# data on taskd's key; READONLY: a replica; NOPERM) needs an operator.
_PASSING_REFUSALS = (
    "OOM", "BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "MISCONF",
)  # fmt: skip


_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def _passes(exc: Exception, reason: str) -> bool:
    """Whether the call may succeed later without anyone acting (``resumes_by_itself``)."""
    if isinstance(exc, redis.ResponseError):
        return reason.split(" ", 1)[0] in _PASSING_REFUSALS
    return True  # connection refused, lost or timed out


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _int(value: object) -> int:
    assert isinstance(value, int | bytes | str), value
    return int(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes), value
    return value


def _index(entry_id: object) -> int:
    """The log index of a stream entry ID ``b"<index>-0"``."""
    return int(_text(entry_id).partition("-")[0])
