"""Serving the monitor page's files: ``/`` is index.html, ``/static/...`` everything else.

Theory of operation: the files ship inside the package (and the PyInstaller binary, which
extracts them next to this module), so the directory is found from ``__file__``. index.html is
read once; the rest is Starlette's ``StaticFiles`` (ETag, If-None-Match, HEAD, content types).
Every answer says ``Cache-Control: no-cache`` (the browser revalidates with the ETag, so a
node upgrade shows its own page at once) and ``nosniff``; the page itself carries a
Content-Security-Policy that allows this origin only: no inline script, no other host, no
framing. The page talks to the node by REST and the ``/api/v1/events`` WebSocket of the same
origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

_COMMON = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # REST and the event stream (ws: of the same host counts as self)
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
PAGE_HEADERS = {**_COMMON, "Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"}


class _Static(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(_COMMON)
        return response


class MonitorAssets:
    """The page's two endpoints: ``index`` for ``/`` and ``static`` (an ASGI app) for
    ``/static``. Raises at construction when the files are missing (a broken install)."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        index = directory / "index.html"
        if not index.is_file():
            raise RuntimeError(
                f"the monitor page is missing ({index} not found): reinstall taskd, or rebuild "
                "the binary with build/taskd.spec, which packs taskd/web/static"
            )
        self._index = index.read_bytes()
        self.static = _Static(directory=directory)

    async def index(self, request: Request) -> Response:
        return Response(self._index, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
