"""The account as a table: one row per check with its counts, then the violations.

Violations are listed up to ``MAX_LISTED`` per check here; ``account.json`` has all of them.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from chaos.checker import MAX_LISTED, Account
from chaos.history import History


def summary(history: History) -> str:
    meta = history.meta
    kinds = Counter(e.kind for e in history.nemesis)
    faults = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
    return (
        f"chaos: {meta.get('nodes')} nodes, {meta.get('duration')} s, seed {meta.get('seed')}; "
        f"nemesis: {faults}"
    )


def table(account: Account) -> Table:
    out = Table(title="chaos account", title_justify="left")
    out.add_column("check")
    out.add_column("result")
    out.add_column("counts")
    for check in account.checks:
        result = (
            Text("ok", style="green")
            if check.ok
            else Text(f"{len(check.violations)} violation(s)", style="bold red")
        )
        counts = ", ".join(f"{k} {v}" for k, v in check.counts.items())
        out.add_row(check.name, result, counts)
    return out


def show(console: Console, history: History, account: Account) -> None:
    console.print(summary(history), soft_wrap=True)
    console.print(table(account))
    for check in account.checks:
        for line in check.violations[:MAX_LISTED]:
            console.print(Text(f"  {check.name}: {line}", style="red"), soft_wrap=True)
        if len(check.violations) > MAX_LISTED:
            rest = len(check.violations) - MAX_LISTED
            console.print(f"  {check.name}: ... and {rest} more (account.json)")
    verdict = "PASS: no violation" if account.ok else f"FAIL: {account.violations} violation(s)"
    console.print(Text(verdict, style="bold green" if account.ok else "bold red"))
