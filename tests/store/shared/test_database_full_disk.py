"""The database's disk fills up under load, and is freed again: a real full disk (a tmpfs of
the test's own, tests/store/shared/smalldisk.py) under a private server's files: Redis's
append-only file (``appendfsync everysec``: with ``always``, Redis exits on a failed write,
which the restart tests cover) or the tablespace of taskd's PostgreSQL database (its WAL
stays on the large disk, as a separate WAL volume would).

What must hold: while the disk is full, writes are answered with 503 naming the database and
the kernel's reason, saying that they resume by themselves (or with ``not_leader`` pointing
at the leader), never hanging; the leader's ``/readyz`` says it is not ready; once the disk
has room again, writes are taken again with no node restarted, every node is ready, and
every acknowledged task is there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get
from tests.store.shared.nodes import LEASE, ready, role, two_nodes, wait_for
from tests.store.shared.privateserver import PrivatePostgres, PrivateRedis
from tests.store.shared.smalldisk import SmallDisk
from tests.store.shared.submitload import SubmitLoad

pytestmark = pytest.mark.slow

QUEUE = "full"
STEADY = 50  # tasks acknowledged before the disk fills, and after it is freed
FULL_FOR = 3 * LEASE  # seconds the disk stays full at least


@dataclass
class OnSmallDisk:
    disk: SmallDisk
    address: str  # host:port of the server, as messages name it
    url: str


@pytest.fixture(params=["postgres", "redis"])
def database(request: pytest.FixtureRequest) -> Iterator[OnSmallDisk]:
    if request.param == "postgres":
        with PrivatePostgres() as pg, SmallDisk(owner=pg.owner) as disk:
            url = pg.create_database("taskd", location=disk.directory("tablespace"))
            yield OnSmallDisk(disk, pg.address, url)
    else:
        with SmallDisk() as disk, PrivateRedis(appendfsync="everysec", under=disk.path) as rd:
            yield OnSmallDisk(disk, rd.address, rd.url("full"))


def not_ready(node: NodeProcess) -> str | None:
    """/readyz's reason when it answers 503, else None."""
    code, body = get(f"{node.http_url}/readyz", timeout=5)
    return str(body) if code == 503 else None


def test_a_full_disk_refuses_writes_and_they_resume_by_themselves_when_it_has_room(
    database: OnSmallDisk, node_factory: NodeFactory
) -> None:
    # Given two nodes on a database whose disk can fill, under a submit load
    leader, follower = two_nodes(node_factory, database.url)
    with SubmitLoad([leader, follower], QUEUE) as load:
        wait_for(lambda: len(load.acknowledged) >= STEADY, 10, "the load acknowledged")
        # When the disk fills up
        full_at = time.monotonic()
        database.disk.fill()

        def refused_for_space() -> bool:
            return any(
                database.address in a.error.get("message", "")
                and "No space left on device" in a.error.get("message", "")
                for a in load.refused_after(full_at)
            )

        # Expect writes refused with the database and the reason, and a node not ready
        wait_for(refused_for_space, 20, "a 503 naming the database and the full disk")
        reasons: list[str] = []

        def one_not_ready() -> bool:
            reasons.extend(r for n in (leader, follower) if (r := not_ready(n)) is not None)
            return bool(reasons)

        wait_for(one_not_ready, 10, "/readyz saying not ready")
        assert database.address in reasons[0], reasons[0]
        # and kept so while the disk stays full, past every lease (no write hangs meanwhile)
        time.sleep(max(0.0, full_at + FULL_FOR - time.monotonic()))
        assert len(load.refused_after(full_at + FULL_FOR / 2)) >= 2, "writes went on refused"
        # When the disk has room again
        database.disk.free()
        freed_at = time.monotonic()
        # Expect writes taken again by themselves
        wait_for(lambda: load.acknowledged_after(freed_at) >= STEADY, 30, "writes resuming")
    for node in (leader, follower):
        wait_for(lambda node=node: ready(node), 30, f"{node} ready")  # type: ignore[misc]
    # every write answered in time, with 201 or a 503 that names the leader or the database
    assert not load.wrong, "\n".join(map(str, load.wrong[:10]))
    assert not load.unreachable, "\n".join(map(str, load.unreachable[:5]))
    for answer in load.refused:
        if answer.error.get("code") == "not_leader":
            continue
        message = answer.error.get("message", "")
        said = "resume by themselves" in message or "made this write durable" in message
        assert database.address in message and said, str(answer)
    # and every acknowledged task is there, on whichever node leads now
    [leading] = [n for n in (leader, follower) if role(n) == "leader"]
    for task_id in load.ids:
        code, task = get(f"{leading.http_url}/api/v1/tasks/{task_id}")
        assert code == 200, (task_id, task)
    print(f"\n{len(load.ids)} acknowledged, {len(load.refused)} refused (503); {reasons[0]}")
