"""The fenced code blocks of a markdown page, with the test tags the docs put before them.

A doc marks a block for a test with an HTML comment right before its fence (invisible when
rendered):

    <!-- test: file tasks.py -->          the block is the file tasks.py
    <!-- test: output submit.py -->       the block is what running submit.py prints
    <!-- test: run status=201 save=ID:id -->   run the block; expect status 201; keep ``id``
    <!-- test: not-run needs a cluster -->     shown, deliberately not run (says why)

``blocks(path)`` parses the page with markdown-it (CommonMark, as GitHub renders it) and
returns every fenced block with its language, text, line and tag. A tag that is not directly
followed by a fence is an error (a tag lost in an edit must not silently stop a test).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_TAG = re.compile(r"^<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Tag:
    kind: str  # file, output, run, not-run
    args: tuple[str, ...] = ()  # words after the kind that are not key=value
    options: dict[str, str] = field(default_factory=dict)  # key=value words

    @classmethod
    def parse(cls, body: str) -> Tag:
        words = shlex.split(body)
        if not words:
            raise ValueError("an empty test tag")
        args = tuple(w for w in words[1:] if "=" not in w)
        options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        return cls(words[0], args, options)


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    lang: str  # the fence's language ("" when none)
    text: str
    line: int  # 1-based line of the opening fence
    tag: Tag | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    out: list[Block] = []
    pending: tuple[Tag, int] | None = None
    for token in tokens:
        if token.type == "html_block" and (found := _TAG.match(token.content.strip())):
            line = (token.map or [0])[0] + 1
            if pending is not None:
                raise AssertionError(f"{path}:{pending[1]}: a test tag not followed by a fence")
            pending = (Tag.parse(found.group("body")), line)
            continue
        if token.type == "fence":
            tag = pending[0] if pending is not None else None
            pending = None
            lang = token.info.split()[0] if token.info.strip() else ""
            out.append(Block(path, lang, token.content, (token.map or [0])[0] + 1, tag))
        elif pending is not None and token.type != "html_block":
            raise AssertionError(f"{path}:{pending[1]}: a test tag not followed by a fence")
    if pending is not None:
        raise AssertionError(f"{path}:{pending[1]}: a test tag at the end of the page")
    return out


def inline_code(path: Path) -> list[tuple[int, str]]:
    """Every inline code span of the page (``like this``), with its paragraph's line."""
    out = []
    for token in MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8")):
        if token.type == "inline":
            line = (token.map or [0])[0] + 1
            out += [(line, c.content) for c in token.children or [] if c.type == "code_inline"]
    return out


def tagged(path: Path, kind: str) -> list[Block]:
    return [b for b in blocks(path) if b.tag is not None and b.tag.kind == kind]


def pages() -> list[Path]:
    """Every page of the documentation: the README and docs/*.md."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
