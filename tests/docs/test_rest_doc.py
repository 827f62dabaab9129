"""docs/rest.md is what a real node answers.

Given a fresh node (a cluster of one, so that membership changes can be shown too), every
block of docs/rest.md tagged ``<!-- test: run status=N -->`` is run in page order with bash and
curl, as a reader would paste it (``$TASKD`` is the node, ``$MEMBER`` a free loopback address,
later variables are saved from earlier answers with ``save=NAME:path``). Expect each status
as tagged, and each answer to match the JSON (or text) block that follows it in the page
(``tests/docs/transcript.py`` says how). Every curl block of the page is either run or tagged
``not-run`` with a reason, and every route of the OpenAPI document has its section.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskd.node.api.http import openapi
from tests.conftest import NodeFactory, free_ports
from tests.docs import mdblocks
from tests.docs.transcript import Shell, blank, differences

pytestmark = pytest.mark.slow

PAGE = mdblocks.DOCS / "rest.md"


def _answers(blocks: list[mdblocks.Block]) -> list[tuple[mdblocks.Block, mdblocks.Block | None]]:
    """Each run block with the answer block that follows it (the next fence, when it is not
    another shell block)."""
    pairs = []
    for i, block in enumerate(blocks):
        if block.tag is None or block.tag.kind != "run":
            continue
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        answer = after if after is not None and after.lang in ("json", "text") else None
        pairs.append((block, answer))
    return pairs


def _text_differences(documented: str, real: str) -> list[str]:
    """Every documented line (but ``...``) is a line of the real text, numbers blanked."""
    lines = {blank(line) for line in real.splitlines()}
    return [
        f"documented line not in the answer: {line!r}"
        for line in documented.splitlines()
        if line.strip() != "..." and blank(line) not in lines
    ]


def test_every_curl_block_is_run_or_says_why_not() -> None:
    # Given the page's shell blocks / Expect every one that calls curl tagged run or not-run
    for block in mdblocks.blocks(PAGE):
        if block.lang == "sh" and "curl " in block.text:
            assert block.tag is not None and block.tag.kind in ("run", "not-run"), block.where
            if block.tag.kind == "not-run":
                assert block.tag.args, f"{block.where}: not-run says why"


def test_every_route_has_its_section() -> None:
    # Given the routes of the served OpenAPI document
    text = PAGE.read_text()
    document = openapi.document("0")
    # Expect a heading naming each method and path
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    for path, operations in document["paths"].items():
        for method in operations:
            name = f"{method.upper()} {path}"
            assert any(name in h for h in headings), f"docs/rest.md has no section for {name}"


def test_the_examples_give_the_documented_answers(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    # Given a fresh node, a cluster of one
    grpc, http, member = free_ports(3)
    node_factory("--peers", f"127.0.0.1:{grpc}", grpc_port=grpc, http_port=http)
    shell = Shell(f"http://127.0.0.1:{http}", tmp_path)
    shell.env["MEMBER"] = f"127.0.0.1:{member}"
    pairs = _answers(mdblocks.blocks(PAGE))
    assert len(pairs) >= 30

    # When each example runs, in page order
    failures: list[str] = []
    for block, documented in pairs:
        assert block.tag is not None
        answer = shell.run(block.text)

        # Expect its status, and the answer the page shows
        want = int(block.tag.options["status"])
        problems = [] if answer.status == want else [f"status {answer.status}, not {want}"]
        if documented is not None and documented.lang == "json":
            problems += differences(json.loads(documented.text), answer.json())
        elif documented is not None:
            problems += _text_differences(documented.text, answer.text)
        if want == 405 and not answer.headers.get("allow"):
            problems.append("no Allow header")
        if problems:
            failures.append(
                f"{block.where} (answer at {documented.where if documented else '-'}):\n  "
                + "\n  ".join(problems)
                + f"\n  the node answered: {answer.text[:3000]}"
            )
        if "save" in block.tag.options:
            shell.save(answer, block.tag.options["save"])
    assert not failures, "\n".join(failures)
