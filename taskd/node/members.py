"""Cluster members as the flags name them: ``--peers``, ``--grpc``, ``--join``, ``--peer-route``.

Theory of operation: a member IS its gRPC address as written in ``--peers``, normalised to
``host:port`` (port 50051 when omitted, IPv6 hosts in brackets, host names lower-cased). That
string is the Raft node id, what ``GET /api/v1/cluster`` shows, and the address clients are
sent to when they reach a follower. Dialing may be re-routed (``--peer-route ID=HOST:PORT``,
for proxies and NAT) without changing identity.

Which entry of ``--peers`` is this node: the one equal to ``--grpc`` when it is given (it must
be one of them, unless ``--join`` says this node is not a member yet); else the only entry;
else the only entry whose host is an address of this machine (``is_local``: can a socket
bind to it). On one machine (every entry on 127.0.0.1) that is ambiguous, and the error says
to pass ``--grpc``.

Everything here is parsing: a bad value raises ``ValueError`` with a message that names the
flag and shows what to write; ``taskd.node.config`` turns it into a ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

DEFAULT_PORT = 50051


def normalize(text: str, flag: str) -> str:
    """``host[:port]`` → ``host:port`` (IPv6 as ``[addr]:port``); ``ValueError`` naming
    ``flag`` for anything else."""
    raw = text.strip()
    example = f"{flag} wants host[:port] (e.g. 10.0.0.1:50051 or node-a), got {text!r}"
    if not raw or any(c.isspace() for c in raw) or "/" in raw or "@" in raw:
        raise ValueError(example)
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(example)
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(example) from None
        host = f"[{host.lower()}]"
    elif raw.count(":") > 1:  # a bare IPv6 address: no port can be told apart
        try:
            ipaddress.IPv6Address(raw)
        except ValueError:
            raise ValueError(example) from None
        host, port_text = f"[{raw.lower()}]", str(DEFAULT_PORT)
    else:
        host, sep, port_text = raw.partition(":")
        if not sep:
            port_text = str(DEFAULT_PORT)
        host = host.lower()
        if not host or not all(c.isalnum() or c in "-._" for c in host):
            raise ValueError(example)
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{flag}: the port of {text!r} must be 1-65535")
    return f"{host}:{int(port_text)}"


def host_of(address: str) -> str:
    """The host of a normalised address, without IPv6 brackets."""
    return address.rpartition(":")[0].strip("[]")


def parse_peers(text: str) -> tuple[str, ...]:
    """``a,b:7000,c`` → normalised members, in order; duplicates are an error."""
    peers: list[str] = []
    for entry in text.split(","):
        if not entry.strip():
            continue
        address = normalize(entry, "--peers")
        if address in peers:
            raise ValueError(
                f"--peers names {address} twice; list every member once, this node included"
            )
        peers.append(address)
    return tuple(peers)


def pick_self(
    peers: Sequence[str],
    grpc: str | None,
    *,
    join: bool,
    default: str,
    is_local: Callable[[str], bool],
) -> str:
    """This node's member id (and gRPC listen address); see the module's doc."""
    if grpc is not None:
        me = normalize(grpc, "--grpc")
        if peers and me not in peers and not join:
            raise ValueError(
                f"--grpc {me} is not one of --peers ({', '.join(peers)}): a member is its "
                "address in --peers, so give this node's entry to --grpc (or add it to --peers; "
                "to add a new node to a running cluster, start it with --join)"
            )
        return me
    if join:
        raise ValueError(
            "--join needs --grpc: the address this node listens on, exactly as the cluster "
            "will know it (`taskd cluster add ADDRESS` on a member)"
        )
    if not peers:
        return default
    if len(peers) == 1:
        return peers[0]
    local = [p for p in peers if is_local(host_of(p))]
    if len(local) == 1:
        return local[0]
    if not local:
        raise ValueError(
            f"none of --peers ({', '.join(peers)}) is an address of this machine; pass "
            "--grpc with this node's entry"
        )
    raise ValueError(
        f"several entries of --peers are addresses of this machine ({', '.join(local)}); "
        "pass --grpc with this node's entry"
    )


def parse_route(text: str) -> tuple[str, str]:
    """``ID=HOST:PORT`` → (member id, dial address), both normalised."""
    member, sep, target = text.partition("=")
    if not sep or not member.strip() or not target.strip():
        raise ValueError(
            f"--peer-route wants MEMBER=HOST:PORT (e.g. 10.0.0.2:50051=127.0.0.1:23001), "
            f"got {text!r}"
        )
    return normalize(member, "--peer-route (member)"), normalize(target, "--peer-route (target)")


def is_local(host: str) -> bool:
    """True when ``host`` resolves to an address of this machine (a socket can bind to it)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except (OSError, UnicodeError):
        return False
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((sockaddr[0], 0))
            except OSError:
                continue
            return True
    return False
