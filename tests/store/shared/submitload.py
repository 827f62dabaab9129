"""A submit load on a set of nodes, as a client that follows the leader would make it.

``SubmitLoad`` runs threads that each POST one task after another over REST to the node it
believes leads. A 201 records the task's id as acknowledged. A 503 is recorded with its
error object, and the thread goes where the error's ``leader`` points (a node's gRPC address),
or, when no leader is named, tries the next node after a short pause. A node that refuses the
connection (a killed one) is recorded and skipped the same way. Everything else (another
status, or no answer within the request timeout: a hang) is recorded as ``wrong``, for the
test to show. Answers carry the monotonic time they came, so a test can wait on "a write
was acknowledged after the database came back" rather than for a fixed time.
"""

from __future__ import annotations

import itertools
import threading
import time
import urllib.error
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tests.conftest import NodeProcess
from tests.node.rest import post

REQUEST_TIMEOUT = 10.0  # seconds: longer than this is a hang
_PAUSE_NO_LEADER = 0.02  # between tries while no node takes writes


@dataclass(frozen=True, slots=True)
class Answer:
    node: str  # the node's HTTP URL
    at: float  # time.monotonic() when it came
    took: float  # seconds
    code: int | None  # None: no HTTP answer
    body: Any  # the JSON body, or the exception's repr when there was no answer
    hung: bool = False  # no answer within the request timeout

    @property
    def error(self) -> dict[str, Any]:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    def __str__(self) -> str:
        return f"{self.node} after {self.took:.2f} s: {self.code} {self.body}"


class SubmitLoad:
    def __init__(
        self,
        nodes: list[NodeProcess],
        queue: str,
        *,
        threads: int = 2,
        pause: float = 0.01,
        timeout: float = REQUEST_TIMEOUT,
        task_timeout: float | None = None,  # each task's own timeout (seconds), if given
    ) -> None:
        self.nodes = list(nodes)
        self.task_timeout = task_timeout
        self.queue = queue
        self.pause = pause
        self.timeout = timeout
        self.acknowledged: list[Answer] = []  # 201s, in order
        self.refused: list[Answer] = []  # 503s
        self.unreachable: list[Answer] = []  # connection refused or reset
        self.wrong: list[Answer] = []  # any other status, or a timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"submit-{i}", daemon=True)
            for i in range(threads)
        ]
        self._serial = itertools.count()

    # -- what was seen ----------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [str(answer.body["id"]) for answer in self.acknowledged]

    def acknowledged_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for answer in self.acknowledged if answer.at > moment)

    def refused_after(self, moment: float) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.refused if answer.at > moment]

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
            assert not thread.is_alive(), f"{thread.name} did not stop"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, index: int) -> None:
        target = self.nodes[index % len(self.nodes)]
        while not self._stop.is_set():
            answer = self._submit(target)
            with self._lock:
                if answer.code == 201:
                    self.acknowledged.append(answer)
                elif answer.code == 503:
                    self.refused.append(answer)
                elif answer.code is None and not answer.hung:
                    self.unreachable.append(answer)
                else:
                    self.wrong.append(answer)
            if answer.code == 201:
                time.sleep(self.pause)
                continue
            target = self._follow(target, answer)

    def _submit(self, node: NodeProcess) -> Answer:
        serial = next(self._serial)
        body: dict[str, Any] = {"queue": self.queue, "payload": {"serial": serial}}
        if self.task_timeout is not None:
            body["timeout"] = self.task_timeout
        start = time.monotonic()
        try:
            code, answer = post(f"{node.http_url}/api/v1/tasks", body, timeout=self.timeout)
        except OSError as exc:  # urllib.error.URLError too
            now = time.monotonic()
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            hung = isinstance(reason, TimeoutError)
            return Answer(node.http_url, now, now - start, None, repr(exc), hung)
        now = time.monotonic()
        return Answer(node.http_url, now, now - start, code, answer)

    def _follow(self, node: NodeProcess, answer: Answer) -> NodeProcess:
        """The node to try next: the one the refusal names as leader, else the next one."""
        leader = answer.error.get("leader")
        for other in self.nodes:
            if leader is not None and other.grpc_address == leader and other is not node:
                return other
        time.sleep(_PAUSE_NO_LEADER)
        if leader is not None and leader == node.grpc_address:
            return node
        return self.nodes[(self.nodes.index(node) + 1) % len(self.nodes)]
