"""The monitor page's files as the node serves them (in process, no browser).

Every file index.html names and every module a module imports is served, with a JavaScript
or CSS content type as the browser requires of modules and stylesheets; nothing points at
another host; the page carries its Content-Security-Policy; vendored files are the ones
VENDORED.md records.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

from taskd.web.assets import STATIC_DIR
from tests.http.conftest import Api

_ASSET_REFS = re.compile(r'(?:src|href)="(/static/[^"]+)"')
_IMPORTS = re.compile(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', re.MULTILINE)
_EXTERNAL = re.compile(
    r'(?:src|href)="(?:https?:)?//|import[^;]*from\s+"(?:https?:)?//|url\((?:"|\')?(?:https?:)?//'
)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def test_the_page_is_served_with_its_policy(api: Api) -> None:
    # When the page is asked for
    page = await api.get("/")

    # Expect HTML that allows this origin only, revalidated on every load
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_every_file_the_page_needs_is_served(api: Api) -> None:
    # Given what index.html names, and then (transitively) what each module imports
    index = (await api.get("/")).body.decode()
    wanted = _ASSET_REFS.findall(index)
    assert "/static/app.js" in wanted
    seen: set[str] = set()
    while wanted:
        path = wanted.pop()
        if path in seen:
            continue
        seen.add(path)
        # When it is fetched
        reply = await api.get(path)
        # Expect it served, with the content type its kind needs
        assert reply.status == 200, path
        suffix = PurePosixPath(path).suffix
        assert reply.headers["content-type"].startswith(_TYPES[suffix]), (path, reply.headers)
        assert reply.headers["etag"], path
        if suffix == ".js":
            base = PurePosixPath(path).parent
            for spec in _IMPORTS.findall(reply.body.decode()):
                assert spec.startswith("."), f"{path} imports {spec!r}: only relative imports"
                wanted.append(str(_normalize(base / spec)))
    # Expect the whole page: its modules, both libraries, their styles
    assert {
        "/static/vendor/uPlot.esm.js",
        "/static/vendor/dagre.esm.js",
        "/static/js/views/task.js",
    } <= seen


def _normalize(path: PurePosixPath) -> PurePosixPath:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def test_nothing_points_at_another_host() -> None:
    for file in STATIC_DIR.rglob("*"):
        if file.suffix in (".html", ".js", ".css"):
            found = _EXTERNAL.search(file.read_text())
            assert found is None, f"{file.relative_to(STATIC_DIR)} loads from elsewhere: {found}"


def test_vendored_files_are_the_recorded_ones() -> None:
    table = (STATIC_DIR / "VENDORED.md").read_text()
    rows = re.findall(r"^\| (vendor/\S+) \|.*\| ([0-9a-f]{64}) \|$", table, re.MULTILINE)
    recorded = dict(rows)
    present = {str(p.relative_to(STATIC_DIR)) for p in (STATIC_DIR / "vendor").iterdir()}
    assert set(recorded) == present
    for name, digest in recorded.items():
        actual = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} changed without VENDORED.md saying so"


async def test_a_missing_file_is_the_apis_404(api: Api) -> None:
    reply = await api.get("/static/no-such-file.js")
    assert reply.status == 404 and reply.error["code"] == "not_found"
