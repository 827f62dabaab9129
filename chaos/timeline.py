"""A run's story in time order: faults, leader changes, and writes per second.

``python -m chaos timeline RUN_DIR/history.json`` prints, from the start of the run, one line
per nemesis action, one per change of who some node says leads (and in which term), and one per
second with the submits acknowledged, failed and unknown in it — enough to see which fault a
violation followed and how long the cluster took to take writes again. Pure: history in, lines
out.
"""

from __future__ import annotations

from collections import Counter

from chaos.history import History


def timeline(h: History) -> list[str]:
    start = float(h.meta.get("started") or min((s.invoked for s in h.submits), default=0.0))
    events: list[tuple[float, int, str]] = []
    for e in h.nemesis:
        events.append((e.at, 0, f"nemesis  {e.detail}"))
    seen: dict[str, tuple[int, str | None]] = {}
    for v in sorted(h.views, key=lambda v: v.at):
        now = (v.term, v.leader)
        if seen.get(v.node) != now:
            seen[v.node] = now
            says = f"{v.leader} leads" if v.leader else "no leader known"
            events.append((v.at, 1, f"view     {v.node} ({v.role}, term {v.term}): {says}"))
    per_second: dict[int, Counter[str]] = {}
    for s in h.submits:
        per_second.setdefault(int(s.completed - start), Counter())[s.outcome] += 1
    for second, c in per_second.items():
        line = f"writes   ok {c['ok']:4d}  fail {c['fail']:4d}  info {c['info']:4d}"
        events.append((start + second + 0.999, 2, line))
    events.sort()
    return [f"{at - start:7.2f} s  {text}" for at, _, text in events]
