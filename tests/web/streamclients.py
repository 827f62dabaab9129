"""Clients of a real node's event stream for the tests: a raw WebSocket that never reads, the
node's view of one of its connections (from ``/proc/net/tcp``), and a batch submitter.

``RawSubscriber`` does the upgrade by hand over a plain socket with a small receive buffer,
then reads nothing, as a browser tab whose machine froze would; ``frames`` parses what it
got once the test finally drains it. ``held_by_node`` tells whether the node still has the
connection's socket open: while it does, the kernel lists it with the node's inode; once the
node closed it, the entry is gone or orphaned (inode 0) while the kernel delivers the rest.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.request
from pathlib import Path
from typing import Any

_ESTABLISHED = "01"


class RawSubscriber:
    def __init__(self, port: int, query: str = "", receive_buffer: int = 4096) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # set before connect, so that the window the node sees is small from the start
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /api/v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: leave every frame unread
            byte = self.sock.recv(1)
            if not byte:
                raise ConnectionError(f"the node closed the upgrade: {head!r}")
            head += byte
        self.status = int(head.split(b" ", 2)[1])
        self.local_port: int = self.sock.getsockname()[1]

    def held_by_node(self) -> bool:
        """The node still holds this connection's socket (an open, established entry)."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if (
                int(local.split(":")[1], 16) == self.port
                and int(remote.split(":")[1], 16) == self.local_port
            ):
                return state == _ESTABLISHED and inode != "0"
        return False

    def drain(self) -> tuple[bytes, str]:
        """Read everything until the connection ends: the bytes, and how it ended."""
        chunks = []
        try:
            while chunk := self.sock.recv(1 << 16):
                chunks.append(chunk)
            ending = "eof"
        except ConnectionResetError:
            ending = "reset"
        except TimeoutError:
            ending = "still open"
        return b"".join(chunks), ending

    def close(self) -> None:
        self.sock.close()


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The whole (opcode, payload) frames of a server's unmasked byte stream, in order; a frame
    cut short by the end of the data is left out."""
    found = []
    at = 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            if at + 2 > len(data):
                break
            (length,) = struct.unpack_from(">H", data, at)
            at += 2
        elif length == 127:
            if at + 8 > len(data):
                break
            (length,) = struct.unpack_from(">Q", data, at)
            at += 8
        if at + length > len(data):
            break
        found.append((opcode, data[at : at + length]))
        at += length
    return found


def submit_batch(http_url: str, queue: str, count: int, timeout: float = 30.0) -> list[str]:
    """``count`` tasks to ``queue`` in one ``POST /api/v1/tasks/batch`` (at most 1,000)."""
    body = json.dumps({"tasks": [{"queue": queue} for _ in range(count)]}).encode()
    request = urllib.request.Request(
        f"{http_url}/api/v1/tasks/batch", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        tasks: list[dict[str, Any]] = json.load(reply)["tasks"]
    return [t["id"] for t in tasks]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
