"""Is the cluster on this branch? Tests of real clusters skip only when it is not.

"Absent" means the node has no ``--peer-route`` flag, or the Raft core's membership is still a
stub (``NotImplementedError``). Anything else — a cluster that exists but misbehaves — must
fail the test, never skip it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cluster_absent() -> str | None:
    """Why the cluster cannot run on this branch, or None when it can."""
    text = subprocess.run(
        [sys.executable, "-m", "taskd", "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    if "--peer-route" not in text:
        return "the node has no --peer-route flag (the cluster has not landed on this branch)"
    from taskd.raft.core import RaftCore  # noqa: PLC0415  # only once the flag says it exists

    try:
        _ = RaftCore("a", ("a", "b", "c")).conf
    except NotImplementedError as exc:
        return f"the Raft core is a stub here ({exc})"
    return None
