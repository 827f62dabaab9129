"""Running a doc's curl blocks against a node, and comparing a real answer with a documented one.

``Shell`` runs one block in bash with ``$TASKD`` set to the node's URL and the variables saved
by earlier blocks, and with ``curl`` wrapped so that the status and the body are captured
whatever flags the doc gives (the doc's command runs as written; only its output goes to files).

``differences(documented, real)`` compares the answer a doc shows with the one the node gave:
- objects have the same keys, unless the documented object has a key ``"..."``: then its keys
  are a subset (the doc left fields out on purpose);
- arrays have the same length, unless the documented array ends with the string ``"..."``;
- strings are equal once ids (ULIDs), times, addresses and numbers in them are blanked
  (``<id>``, ``<time>``, ``<addr>``, ``<n>``): a message may name another task, never say
  something else;
- numbers are equal, except for the keys in ``VARYING`` (epochs, terms, indexes, rates), where
  only the type must match;
- object keys that are ids (``dependency_results``) are blanked the same way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
ADDR = re.compile(r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|localhost):\d+\b")
NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
VARYING = frozenset(
    {
        "lease",
        "term",
        "commit_index",
        "match_index",
        "submitted_per_second",
        "finished_per_second",
    }
)
MORE = "..."


def blank(text: str) -> str:
    text = ULID.sub("<id>", text)
    text = TIME.sub("<time>", text)
    text = ADDR.sub("<addr>", text)
    return NUMBER.sub("<n>", text)


def differences(documented: Any, real: Any, where: str = "$") -> list[str]:
    if isinstance(documented, dict):
        if not isinstance(real, dict):
            return [f"{where}: documented an object, got {real!r}"]
        partial = MORE in documented
        doc = {blank(k): v for k, v in documented.items() if k != MORE}
        got = {blank(k): v for k, v in real.items()}
        out = []
        missing = sorted(set(doc) - set(got))
        extra = sorted(set(got) - set(doc))
        if missing:
            out.append(f"{where}: documented keys the answer lacks: {missing}")
        if extra and not partial:
            out.append(f"{where}: keys the doc does not show: {extra}")
        for key in sorted(set(doc) & set(got)):
            if key in VARYING and _number(doc[key]) and _number(got[key]):
                continue
            out += differences(doc[key], got[key], f"{where}.{key}")
        return out
    if isinstance(documented, list):
        if not isinstance(real, list):
            return [f"{where}: documented an array, got {real!r}"]
        partial = bool(documented) and documented[-1] == MORE
        doc = documented[:-1] if partial else documented
        if len(real) < len(doc) or (not partial and len(real) != len(doc)):
            return [f"{where}: documented {len(doc)} items, got {len(real)}"]
        out = []
        for i, (d, r) in enumerate(zip(doc, real, strict=False)):
            out += differences(d, r, f"{where}[{i}]")
        return out
    if isinstance(documented, str):
        if not isinstance(real, str) or blank(documented) != blank(real):
            return [f"{where}: documented {documented!r}, got {real!r}"]
        return []
    if isinstance(documented, bool) or documented is None:
        return [] if real is documented else [f"{where}: documented {documented!r}, got {real!r}"]
    if _number(documented):
        if not _number(real) or float(documented) != float(real):
            return [f"{where}: documented {documented!r}, got {real!r}"]
        return []
    raise AssertionError(f"{where}: cannot compare {documented!r}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def pick(value: Any, path: str) -> Any:
    """``tasks.0.id`` of an answer."""
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


PRELUDE = r"""
curl() {
    command curl --silent --show-error --dump-header "$DOC_HEADERS" --output "$DOC_BODY" \
        --write-out '%{http_code}' "$@" >"$DOC_STATUS"
}
"""


class Shell:
    """Runs blocks one after another against ``url``; ``env`` keeps the saved variables."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {"TASKD": url}

    def run(self, script: str, timeout: float = 30.0) -> Answer:
        if script.count("curl ") != 1:
            raise AssertionError(f"a runnable block makes exactly one curl call:\n{script}")
        files = {name: self.workdir / name for name in ("status", "body", "headers")}
        for path in files.values():
            path.unlink(missing_ok=True)
        env = {
            **os.environ,
            **self.env,
            "DOC_STATUS": str(files["status"]),
            "DOC_BODY": str(files["body"]),
            "DOC_HEADERS": str(files["headers"]),
        }
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", PRELUDE + script],
            env=env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0 or not files["status"].exists():
            raise AssertionError(f"exit {done.returncode}: {done.stderr}\n{script}")
        headers: dict[str, str] = {}
        for line in files["headers"].read_text().splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        return Answer(int(files["status"].read_text()), headers, files["body"].read_text())

    def save(self, answer: Answer, spec: str) -> None:
        """``ID:id,LEASE:tasks.0.lease``: set variables for later blocks from this answer."""
        for item in spec.split(","):
            name, _, path = item.partition(":")
            self.env[name] = str(pick(answer.json(), path))
