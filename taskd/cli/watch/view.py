"""How ``taskd watch`` draws a ``WatchModel``: ``render(model)`` → one rich renderable.

Theory of operation: a pure function of the model (no clock, no I/O), so a test renders it
into a ``Console(record=True)`` and reads the text. From top to bottom: the status line (the
node, its role and version, the node's time, or why we are not connected and which retry this
is), the totals by state and the rates, the queues (depth by state and, for queued tasks, by
priority; paused; consumers; rates; pickup and run latency p50/p95 over the last minute), the
workers, the cluster (term, leader, commit index; each member's role, lag and reachability)
and the newest transitions, newest first.

Everything the node names (queues, task names, worker names, reasons) is shown as plain
``Text`` with control characters escaped: a name can neither carry rich markup nor drive the
terminal. A field the message lacks is shown as "—".
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from taskd.cli.parser import STATES
from taskd.cli.table import clean
from taskd.cli.watch.model import LinkState, WatchModel, as_dict, as_list

NONE = "—"
SHOWN_RUNNING = 3  # running task ids shown per worker; the rest are counted
# the queue table's state columns and their headers: the live states, then the finished ones
_STATE_COLUMNS = {
    "queued": "queued",
    "running": "run",
    "pending": "pend",
    "blocked": "blk",
    "succeeded": "ok",
    "failed": "fail",
    "canceled": "cncl",
}


def _table(title: str | Text) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),  # with the box's blank column: two spaces between columns
        pad_edge=False,
        show_edge=False,
    )


def _empty(title: str, note: str) -> Text:
    line = Text(f"{title}  ", style="bold")
    line.append(note, style="dim")
    return line


def _text(value: object, style: str = "") -> Text:
    return Text(NONE if value is None else clean(str(value)), style=style)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else NONE


def _rate(value: object) -> str:
    if not isinstance(value, (int, float)):
        return NONE
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ms(value: object) -> str:
    if not isinstance(value, (int, float)):
        return NONE
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def _percentiles(latency: object, key: str) -> str:
    found = latency.get(key) if isinstance(latency, dict) else None
    if not isinstance(found, dict) or (found.get("p50") is None and found.get("p95") is None):
        return NONE
    return f"{_ms(found.get('p50'))}/{_ms(found.get('p95'))}"


def _priorities(by_priority: object) -> str:
    if not isinstance(by_priority, dict):
        return NONE
    shown = [f"{p}:{n}" for p, n in sorted(by_priority.items(), reverse=True) if n]
    return " ".join(shown) if shown else ""


def _status(model: WatchModel) -> Text:
    """The connection on one line; the node (as last seen, when we are not connected) below."""
    link, node = model.link, model.node
    line = Text()
    if link.state is LinkState.LIVE:
        line.append("● live  ", style="bold green")
        line.append_text(_text(link.address))
    elif link.attempt:
        line.append(f"disconnected: {clean(link.reason or 'the connection ended')}", "bold red")
        line.append(f" — reconnecting (attempt {link.attempt})", style="red")
    else:
        line.append("○ connecting to ", style="yellow")
        line.append_text(_text(link.address, "yellow"))
    if node is not None:
        line.append("\nnode ")
        line.append_text(_text(node.get("id"), "bold"))
        line.append(" (")
        line.append_text(_text(node.get("role"), "cyan"))
        line.append(f", v{clean(str(node.get('version') or '?'))})")
        if model.at:
            line.append(f"  at {clean(model.at)}", style="dim")
        if link.state is not LinkState.LIVE:
            line.append("  (as last seen)", style="dim")
    return line


def _totals(model: WatchModel) -> Text:
    line = Text("totals  ", style="bold")
    for state in STATES:
        line.append(f"{state} ", style="dim")
        line.append(f"{_count(model.totals.get(state, 0))}  ")
    rates = model.rates or {}
    line.append("\nrates   ", style="bold")
    for key, label in (
        ("submitted_per_s", "submitted/s"),
        ("finished_per_s", "finished/s"),
        ("transitions_per_s", "transitions/s"),
    ):
        line.append(f"{label} ", style="dim")
        line.append(f"{_rate(rates.get(key))}  ")
    if model.dropped:
        line.append(f"(transitions sampled out: {model.dropped:,})", style="dim")
    return line


def _queues(model: WatchModel) -> RenderableType:
    if not model.queues:
        return _empty("queues", "none yet: a queue appears with its first task")
    omitted = f" (+{model.queues_omitted:,} not listed)" if model.queues_omitted else ""
    table = _table(f"queues{omitted}")
    table.add_column("queue", overflow="fold")
    table.add_column("depth", justify="right")
    for header in _STATE_COLUMNS.values():
        table.add_column(header, justify="right")
    table.add_column("prio", overflow="fold")
    table.add_column("cons", justify="right")
    table.add_column("in/s", justify="right")
    table.add_column("out/s", justify="right")
    table.add_column("pickup p50/95", justify="right", no_wrap=True)
    table.add_column("run p50/95", justify="right", no_wrap=True)
    for name, q in model.queues.items():
        by_state, rates = as_dict(q.get("by_state")), as_dict(q.get("rates"))
        label = _text(name)
        if q.get("paused"):
            label.append(" paused", style="bold yellow")
        table.add_row(
            label,
            _count(q.get("depth")),
            *(_count(by_state.get(state)) for state in _STATE_COLUMNS),
            _priorities(q.get("by_priority")),
            _count(q.get("consumers")),
            _rate(rates.get("submitted_per_second")),
            _rate(rates.get("finished_per_second")),
            _percentiles(q.get("latency"), "pickup_ms"),
            _percentiles(q.get("latency"), "run_ms"),
        )
    return table


def _workers(model: WatchModel) -> RenderableType:
    if not model.workers:
        return _empty(
            "workers",
            "none connected: start a node with --exec QUEUE=COMMAND, or run `taskd worker`",
        )
    table = _table("workers")
    table.add_column("worker", overflow="fold")
    table.add_column("kind")
    table.add_column("queues", overflow="fold")
    table.add_column("capacity", justify="right")
    table.add_column("running", justify="right")
    table.add_column("running tasks", overflow="fold")
    workers = sorted(model.workers, key=lambda w: str(w.get("worker")))
    for w in workers:
        running = as_list(w.get("running"))
        ids = " ".join(clean(str(i)) for i in running[:SHOWN_RUNNING])
        if len(running) > SHOWN_RUNNING:
            ids += f" +{len(running) - SHOWN_RUNNING} more"
        queues = as_list(w.get("queues"))
        table.add_row(
            _text(w.get("worker")),
            _text(w.get("kind")),
            _text(", ".join(str(q) for q in queues)),
            _count(w.get("capacity")),
            _count(len(running)),
            Text(ids or "idle", style="" if ids else "dim"),
        )
    return table


def _cluster(model: WatchModel) -> RenderableType:
    cluster: dict[str, Any] = model.cluster or {}
    table = _table(_cluster_title(cluster))
    table.add_column("member", overflow="fold")
    table.add_column("role")
    table.add_column("match", justify="right")
    table.add_column("lag", justify="right")
    table.add_column("reachable")
    commit = cluster.get("commit_index")
    leader_view = cluster.get("role") == "leader"
    for m in as_list(cluster.get("members")):
        if not isinstance(m, dict):
            continue
        match = m.get("match_index")
        # only the leader knows each member's match index; a node may also report the lag
        known = leader_view and isinstance(match, int)
        lag = m.get("lag")
        if lag is None and known and isinstance(match, int) and isinstance(commit, int):
            lag = max(0, commit - match)
        address = clean(str(m.get("address")))
        reachable = m.get("reachable")
        table.add_row(
            Text(f"{address} (this node)" if address == cluster.get("id") else address),
            _text(m.get("role")),
            _count(match) if known else NONE,
            _count(lag),
            Text("yes", style="green")
            if reachable
            else (Text("no", style="bold red") if reachable is False else Text(NONE)),
        )
    return table


def _cluster_title(cluster: dict[str, Any]) -> Text:
    title = Text("cluster", style="bold")
    for key, label in (("term", "term"), ("leader", "leader"), ("commit_index", "commit")):
        if key in cluster:
            title.append(f"  {label} ", style="dim")
            title.append_text(_text(cluster.get(key) if cluster.get(key) is not None else NONE))
    return title


def _transitions(model: WatchModel) -> RenderableType:
    if not model.recent:
        return _empty("transitions", "none since we connected")
    table = _table(f"transitions (the last {model.recent.maxlen}, newest first)")
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("queue", overflow="fold")
    table.add_column("name", overflow="fold")
    table.add_column("change", no_wrap=True)
    table.add_column("try", justify="right")
    for e in model.recent:
        at = str(e.get("at") or "")
        change = Text(clean(str(e.get("from") or "new")), style="dim")
        change.append(" → ")
        change.append(clean(str(e.get("to"))), style=_state_style(e.get("to")))
        table.add_row(
            _text(at[11:23] if len(at) >= 23 else at or None, "dim"),
            _text(e.get("id")),
            _text(e.get("queue")),
            _text(e.get("name")),
            change,
            _count(e.get("attempt")),
        )
    return table


def _state_style(state: object) -> str:
    return {"succeeded": "green", "failed": "red", "canceled": "yellow", "running": "cyan"}.get(
        str(state), ""
    )


def _subscription(model: WatchModel) -> Text | None:
    parts = [
        f"{key}={','.join(clean(str(v)) for v in values)}"
        for key, values in model.subscription.items()
        if values
    ]
    return Text(f"transitions filtered: {' '.join(parts)}", style="dim") if parts else None


def render(model: WatchModel) -> RenderableType:
    """The whole view of ``model``."""
    parts: list[RenderableType] = [_status(model)]
    if model.snapshots:
        parts += [_totals(model), _queues(model), _workers(model), _cluster(model)]
        subscription = _subscription(model)
        if subscription is not None:
            parts.append(subscription)
        parts.append(_transitions(model))
    return Group(*parts)
