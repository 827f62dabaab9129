"""Which members a bench run talks to: ``--server URL[,URL...]`` and ``--server-grpc A[,B...]``.

Theory of operation: each ``--server`` URL is one member's REST address. Its gRPC address is,
in order: the ``--server-grpc`` entry at the same position; else what the member says about
itself (``GET /api/v1/cluster`` → ``id``: a member's identity is its gRPC address); else, with
one URL only, the leader it names (so ``--server`` alone still finds a single node's gRPC
port); else ``127.0.0.1:50051``. With ``--cluster``, the gRPC members are instead every member
the first URL's ``/api/v1/cluster`` lists (REST calls, W1c, go to the URLs given, in turn:
a member's REST address is not in that list). The workloads then spread their client connections and
worker streams over the members round robin (``submit``, ``worker``).
"""

from __future__ import annotations

from taskd.bench import admin

DEFAULT_GRPC = "127.0.0.1:50051"


def split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def normalise_url(url: str) -> str:
    url = url.rstrip("/")
    return url if "://" in url else f"http://{url}"


def resolve(http_urls: list[str], grpc: list[str]) -> list[admin.Target]:
    """One ``Target`` per member; ``ValueError`` names a bad address or a count mismatch."""
    urls = [normalise_url(u) for u in http_urls]
    if grpc and len(grpc) != len(urls):
        if len(urls) != 1:
            raise ValueError(
                f"give one --server-grpc address per --server URL ({len(urls)} URLs, "
                f"{len(grpc)} gRPC addresses), or none to discover them"
            )
        urls = urls * len(grpc)  # one REST URL for several gRPC members: REST goes there
    targets = []
    for i, url in enumerate(urls):
        text = grpc[i] if grpc else admin.discover_self(url)
        if text is None and len(urls) == 1:
            text = admin.discover_grpc(url)
        try:
            host, port = admin.parse_grpc_address(text or DEFAULT_GRPC)
        except ValueError as exc:
            raise ValueError(f"--server-grpc: {exc}") from None
        targets.append(admin.Target(host, port, url))
    return targets


def discover(http_urls: list[str]) -> list[admin.Target]:
    """``--cluster``: every member the first URL knows, paired with the given URLs in turn."""
    urls = [normalise_url(u) for u in http_urls]
    found = admin.discover_members(urls[0])
    if not found:
        raise ValueError(
            f"--cluster: {urls[0]}/api/v1/cluster listed no members; is it a taskd node? "
            "Pass every member with --server instead"
        )
    targets = []
    for i, text in enumerate(found):
        host, port = admin.parse_grpc_address(text)
        targets.append(admin.Target(host, port, urls[i % len(urls)]))
    return targets
