"""Free loopback ports in the chaos range (23000-23999), so concurrent runs do not collide.

Each allocation starts at an offset derived from the process id and takes ports that can be
bound right now, skipping the rest. The port is released before the caller binds it, so a
race with another process is possible but rare; a node that cannot bind says so and the run
fails loudly, never silently.
"""

from __future__ import annotations

import os
import socket

LOW, HIGH = 23000, 23999


def _free(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortPool:
    def __init__(self, low: int = LOW, high: int = HIGH, *, host: str = "127.0.0.1") -> None:
        self.low, self.high, self.host = low, high, host
        self._next = low + (os.getpid() * 37) % (high - low + 1)
        self._taken: set[int] = set()

    def take(self) -> int:
        span = self.high - self.low + 1
        for _ in range(span):
            port = self._next
            self._next = self.low + (self._next - self.low + 1) % span
            if port not in self._taken and _free(port, self.host):
                self._taken.add(port)
                return port
        raise RuntimeError(
            f"no free port in {self.low}-{self.high} on {self.host}: stop other chaos runs"
        )

    def take_many(self, n: int) -> list[int]:
        return [self.take() for _ in range(n)]
