"""The recorded history of a chaos run: what every client, worker and observer saw, and when.

Theory of operation: the harness appends one frozen record per observation (a submit call, a
read of a task just acknowledged, a leased attempt, a complete/fail call, a cluster-status
poll, a leadership line in a node's log, a nemesis action) and, after healing, the final reads
of every node. The checker (``chaos.checker``) is a set of pure functions over this record and
nothing else, so a history written to ``history.json`` can be checked again, or doctored by
hand to prove a check fires.

Outcomes follow Jepsen: ``ok`` (the node acknowledged), ``fail`` (the call certainly changed
nothing: refused with a 4xx, or never sent because the connection was refused) and ``info``
(unknown: a timeout, a 503 or a broken connection after the request went out — the write may
or may not have been committed). Times are wall-clock seconds (``time.time()``): the leader
stamps wall-clock time into commands and every process shares the machine's clock.

Every submitted task carries its operation id in its payload (``{"op": ...}``), so any task
found on the cluster can be traced to the call that created it, whatever that call's outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

import orjson

Outcome = Literal["ok", "fail", "info"]

OK: Outcome = "ok"
FAIL: Outcome = "fail"
INFO: Outcome = "info"


@dataclass(frozen=True, slots=True)
class Submit:
    """One submit call for one task (a batch call records one per task, sharing the outcome)."""

    op: str  # unique per task the client meant to create; in the payload as "op"
    client: str
    node: str  # the member (gRPC address) the call went to
    api: str  # "rest" | "rest-batch" | "grpc" | "grpc-batch"
    queue: str
    invoked: float
    completed: float
    outcome: Outcome
    task_id: str | None = None  # when ok
    duplicate: bool = False  # the node said: an earlier task with this idempotency key
    key: str | None = None  # idempotency key
    deps: tuple[str, ...] = ()  # task ids it depends on
    max_retries: int = 3
    delay: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker received a leased attempt."""

    worker: str
    node: str
    task_id: str
    attempt: int
    lease: int  # the fencing epoch
    received: float
    op: str | None = None  # from the payload
    dependency_results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's complete or fail call for one leased attempt."""

    kind: Literal["complete", "fail"]
    worker: str
    node: str
    task_id: str
    lease: int
    invoked: float
    completed: float
    outcome: Outcome
    result: Any = None  # complete: the result sent (unique per attempt)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Read:
    """A linearizable ``GET /api/v1/tasks/{id}`` of a task just acknowledged, on another member."""

    client: str
    node: str
    task_id: str
    acked: float  # when the submit's acknowledgement arrived
    invoked: float
    completed: float
    status: int  # HTTP status; 0 when no answer came
    error: str = ""


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One poll of a node's ``GET /api/v1/cluster``: that node's own view."""

    node: str
    at: float
    role: str
    term: int
    leader: str | None
    commit_index: int = 0


@dataclass(frozen=True, slots=True)
class LogLeader:
    """A node's log said it leads ``term``."""

    node: str
    term: int
    line: str


@dataclass(frozen=True, slots=True)
class NemesisEvent:
    at: float
    kind: str  # "kill", "restart", "pause", "resume", "cut", "heal", "slow", ...
    detail: str
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as a final read returned it (the fields the checks need)."""

    id: str
    queue: str
    state: str
    attempt: int
    max_retries: int
    op: str | None
    depends_on: tuple[str, ...] = ()
    result: Any = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class FinalRead:
    """Every task of the chaos queues as one node returned them after healing."""

    node: str
    at: float
    stale: bool  # read from the node's local replica (?stale=true)
    tasks: dict[str, TaskView]
    error: str = ""  # the read failed: why


@dataclass(slots=True)
class History:
    meta: dict[str, Any] = field(default_factory=dict)
    submits: list[Submit] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    views: list[ClusterView] = field(default_factory=list)
    log_leaders: list[LogLeader] = field(default_factory=list)
    nemesis: list[NemesisEvent] = field(default_factory=list)
    replicas: list[FinalRead] = field(default_factory=list)  # one stale read per node
    truth: FinalRead | None = None  # a linearizable read of the healed cluster

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> History:
        raw = orjson.loads(data)
        return cls(
            meta=dict(raw.get("meta", {})),
            submits=[_build(Submit, r) for r in raw.get("submits", [])],
            leases=[_build(Lease, r) for r in raw.get("leases", [])],
            reports=[_build(Report, r) for r in raw.get("reports", [])],
            reads=[_build(Read, r) for r in raw.get("reads", [])],
            views=[_build(ClusterView, r) for r in raw.get("views", [])],
            log_leaders=[_build(LogLeader, r) for r in raw.get("log_leaders", [])],
            nemesis=[_build(NemesisEvent, r) for r in raw.get("nemesis", [])],
            replicas=[_final(r) for r in raw.get("replicas", [])],
            truth=_final(raw["truth"]) if raw.get("truth") else None,
        )


T = TypeVar("T")


def _build(cls: type[T], raw: dict[str, Any]) -> T:
    """A record from its JSON dict: lists back to tuples where the field is a tuple."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]  # every caller passes a dataclass
        if f.name in raw:
            value = raw[f.name]
            if isinstance(value, list) and str(f.type).startswith("tuple"):
                value = tuple(value)
            values[f.name] = value
    return cls(**values)


def _final(raw: dict[str, Any]) -> FinalRead:
    tasks = {tid: _build(TaskView, t) for tid, t in raw.get("tasks", {}).items()}
    return FinalRead(raw["node"], raw["at"], raw["stale"], tasks, raw.get("error", ""))
