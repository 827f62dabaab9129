"""A full or failing disk stops writes, not the node (design.md §5), on real processes.

Given a node whose data dir is a small real filesystem (a 2 MiB tmpfs; ext4 on a loop device
whose backing file lives on a small tmpfs, for a disk that fails fsync or goes read-only),
When the disk fills up or fails at some moment (idle, mid-batch, during a snapshot, with
timers due),
Expect the process alive and serving reads, ``/readyz`` 503 with the reason, writes 503 with a
message that says what is wrong and what an operator must do (never "retry shortly"); and once
the cause is gone (space freed: by itself; a failed disk: after repair and a restart) writes
again, with every task acknowledged before still there and no refused submit ever applied.

These tests mount filesystems, so they run as root (CI does); nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskd.api.taskd import v1 as pb
from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get, post, wait_for_task

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # generous: a loaded 2-core machine


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        run("umount", "-l", str(mount))


@dataclass
class LoopDisk:
    """ext4 on a loop device whose 16 MiB (sparse) backing file sits on a 4 MiB tmpfs: fill the
    tmpfs and the device's writes fail, as a dying disk's do (EIO, then read-only)."""

    backing: Path
    image: Path
    mount: Path
    device: str

    def break_it(self) -> Path:
        return fill(self.backing)

    def repair(self, filler: Path) -> None:
        """What an operator does: unmount, fix the device, check the filesystem, mount again."""
        run("umount", str(self.mount))
        filler.unlink()
        subprocess.run(["e2fsck", "-fy", self.device], capture_output=True)  # exit 1: fixed
        run("mount", self.device, str(self.mount))


@contextlib.contextmanager
def loop_disk_on(tmp_path: Path, *, journal_on_backing: bool) -> Iterator[LoopDisk]:
    """``journal_on_backing``: the journal's blocks are written at mkfs time, so they keep
    working when the backing tmpfs is full and only data writes fail (fsync: EIO); otherwise
    the next journal commit fails too and ext4 remounts itself read-only (then EROFS)."""
    backing, mount = tmp_path / "backing", tmp_path / "ext4"
    backing.mkdir()
    mount.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(backing))
    image = backing / "disk.img"
    device = ""
    lazy = "lazy_itable_init=0,lazy_journal_init=" + ("0" if journal_on_backing else "1")
    try:
        run("truncate", "-s", "16M", str(image))
        run("mkfs.ext4", "-q", "-F", "-E", lazy, str(image))
        device = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        run("mount", "-o", "errors=remount-ro,commit=60", device, str(mount))
        yield LoopDisk(backing, image, mount, device)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True)
        subprocess.run(["umount", "-l", str(backing)], capture_output=True)


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[LoopDisk]:
    with loop_disk_on(tmp_path, journal_on_backing=True) as disk:
        yield disk


@pytest.fixture
def loop_disk_lazy_journal(tmp_path: Path) -> Iterator[LoopDisk]:
    with loop_disk_on(tmp_path, journal_on_backing=False) as disk:
        yield disk


def fill(disk: Path, leave: int = 0) -> Path:
    """A filler file that takes every free byte of ``disk`` (until a real ENOSPC) but about
    ``leave``."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(bytes(chunk))
        if leave:
            out.truncate(max(0, out.tell() - leave))
    return filler


def submit(node: NodeProcess, marker: str, size: int = 100) -> tuple[int, Any]:
    return post(
        f"{node.http_url}/api/v1/tasks",
        {"queue": "q", "payload": {"m": marker, "pad": "x" * size}},
        timeout=DEADLINE,
    )


def all_tasks(node: NodeProcess) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        url = f"{node.http_url}/api/v1/tasks?limit=1000" + (f"&after={after}" if after else "")
        status, page = get(url, timeout=DEADLINE)
        assert status == 200, page
        tasks.update((t["id"], t) for t in page["tasks"])
        after = page["next"]
        if not after:
            return tasks


def eventually(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    end = time.monotonic() + within
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)


def refuses_writes(node: NodeProcess, words: str, data_dir: Path) -> bool:
    status, body = submit(node, "refused-probe")
    if status == 201:
        return False  # writes still fit (the filler left a few bytes)
    assert status == 503, body
    return words in body["error"]["message"] and str(data_dir) in body["error"]["message"]


def expect_writes_refused_reads_served(
    node: NodeProcess, data_dir: Path, words: str, remedy: str, known: list[str]
) -> None:
    """The contract while the disk refuses writes."""
    assert node.proc is not None and node.proc.poll() is None, node.stderr_text()[-3000:]
    base = node.http_url
    # writes: 503, what is wrong, where, what to do; never "retry shortly"
    for method, path, body in (
        ("POST", "/api/v1/tasks", {"queue": "q", "payload": 1}),
        ("POST", "/api/v1/tasks/batch", {"tasks": [{"queue": "q"}, {"queue": "q"}]}),
        ("POST", "/api/v1/queues/q/pause", None),
        ("POST", f"/api/v1/tasks/{known[0]}/cancel", None),
    ):
        status, answer = post(base + path, body, timeout=DEADLINE)
        assert status == 503, (method, path, answer)
        message = answer["error"]["message"]
        assert words in message and str(data_dir) in message and remedy in message, message
        assert "retry shortly" not in message
    # readiness: 503 with the same reason
    status, answer = get(f"{base}/readyz", timeout=DEADLINE)
    assert status == 503 and words in answer["error"]["message"], answer
    # reads: all of them, answered well within a second each
    for path in (f"/api/v1/tasks/{known[-1]}", "/api/v1/tasks?limit=5", "/api/v1/queues"):
        started = time.monotonic()
        status, answer = get(base + path, timeout=DEADLINE)
        assert status == 200, (path, answer)
        assert time.monotonic() - started < 1.0
    for path in ("/healthz", "/metrics", "/api/v1/cluster", "/api/v1/workers"):
        status, answer = get(base + path, timeout=DEADLINE)
        assert status == 200, (path, answer)
    assert store_writable(node) == 0.0


def store_writable(node: NodeProcess) -> float:
    """The ``taskd_store_writable`` gauge of ``/metrics``."""
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=DEADLINE) as answer:
        text = answer.read().decode()
    [line] = [x for x in text.splitlines() if x.startswith("taskd_store_writable ")]
    return float(line.split()[1])


def expect_writes_resume(node: NodeProcess) -> str:
    eventually(lambda: get(f"{node.http_url}/readyz")[0] == 200, "/readyz is 200 again")
    assert store_writable(node) == 1.0
    status, body = submit(node, "after")
    assert status == 201, body
    return str(body["id"])


def expect_all_there(node: NodeProcess, acked: dict[str, str], refused: set[str]) -> None:
    tasks = all_tasks(node)
    missing = set(acked) - set(tasks)
    assert not missing, f"{len(missing)} acknowledged tasks lost, e.g. {sorted(missing)[:3]}"
    applied_markers = {t["payload"]["m"] for t in tasks.values() if isinstance(t["payload"], dict)}
    assert not applied_markers & refused, "a submit answered 503 was applied"


# ---- disk full: the moments it can happen ------------------------------------------------------


def test_disk_full_while_idle_then_space_returns(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    node = node_factory(data_dir=small_disk)
    acked = {submit(node, f"a{n}")[1]["id"]: f"a{n}" for n in range(20)}
    filler = fill(small_disk)
    refused: set[str] = set()
    n = 0
    while True:  # the filler may have left a few bytes: the next writes take them
        n += 1
        status, body = submit(node, f"r{n}", size=4000)
        if status == 503:
            refused.add(f"r{n}")
            break
        acked[body["id"]] = f"r{n}"
    expect_writes_refused_reads_served(
        node, small_disk, "disk full", "free space on the filesystem", list(acked)
    )
    time.sleep(2.5)  # several probes and (former crash) timer rounds pass: still alive
    expect_writes_refused_reads_served(
        node, small_disk, "disk full", "free space on the filesystem", list(acked)
    )
    filler.unlink()
    acked[expect_writes_resume(node)] = "after"
    expect_all_there(node, acked, refused)
    node.restart()
    expect_all_there(node, acked, refused)


def test_disk_full_mid_batch_under_concurrent_clients(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    node = node_factory(data_dir=small_disk)
    acked: dict[str, str] = {}
    refused: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    freed = threading.Event()

    def client(c: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            pad = 20 if freed.is_set() else 700
            marker = f"c{c}-{i}"
            batch = [
                {"queue": "q", "payload": {"m": f"{marker}-{j}", "pad": "x" * pad}}
                for j in range(8)
            ]
            try:
                status, body = post(
                    f"{node.http_url}/api/v1/tasks/batch", {"tasks": batch}, timeout=DEADLINE
                )
            except (OSError, http.client.HTTPException) as exc:
                raise AssertionError(f"the node stopped answering: {exc}") from exc
            with lock:
                if status == 201:
                    acked.update((t["id"], t["payload"]["m"]) for t in body["tasks"])
                else:
                    assert status == 503, body
                    message = body["error"]["message"]
                    assert "disk full" in message and "not applied" in message, message
                    refused.update(f"{marker}-{j}" for j in range(8))
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(4)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(acked) >= 100, "some batches acknowledged")
        # When the disk fills up while batches are being written
        filler = fill(small_disk)
        eventually(lambda: len(refused) >= 40, "batches refused")
        expect_writes_refused_reads_served(
            node, small_disk, "disk full", "free space on the filesystem", list(acked)
        )
        freed.set()
        filler.unlink()
        before = len(acked)
        eventually(lambda: len(acked) >= before + 80, "batches acknowledged again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)
    expect_all_there(node, acked, refused)
    node.kill()  # not even a clean shutdown
    node.restart()
    expect_all_there(node, acked, refused)


def test_disk_full_during_snapshots(node_factory: NodeFactory, small_disk: Path) -> None:
    # Given a node that snapshots every 40 entries, with a state of ~250 KB to snapshot
    node = node_factory("--snapshot-every", "40", data_dir=small_disk)
    acked: dict[str, str] = {}
    for n in range(120):
        status, body = submit(node, f"a{n}", size=2000)
        assert status == 201, body
        acked[body["id"]] = f"a{n}"
    # When the disk has room for more log but not for the next snapshot
    filler = fill(small_disk, leave=120_000)
    for n in range(45):
        status, body = submit(node, f"s{n}", size=10)
        assert status == 201, body
        acked[body["id"]] = f"s{n}"
    # Expect the snapshot's failure logged with its reason, its partial file removed, and
    # the node still taking writes
    eventually(
        lambda: "the snapshot child failed: No space left on device" in node.stderr_text(),
        "the snapshot failed for lack of space",
    )
    raft = small_disk / "raft"
    eventually(lambda: not list(raft.glob("snapshot-*.tmp")), "partial snapshot removed")
    assert get(f"{node.http_url}/readyz")[0] == 200
    # When the log then fills the disk too
    refused: set[str] = set()
    n = 0
    while not refused:
        n += 1
        status, body = submit(node, f"r{n}", size=4000)
        if status == 201:
            acked[body["id"]] = f"r{n}"
        else:
            assert status == 503, body
            refused.add(f"r{n}")
    expect_writes_refused_reads_served(
        node, small_disk, "disk full", "free space on the filesystem", list(acked)
    )
    # and space returns: writes resume, and the next interval's snapshot is written
    failed_at = len(node.stderr_text())
    filler.unlink()
    acked[expect_writes_resume(node)] = "after"
    for n in range(60):
        status, body = submit(node, f"b{n}")
        assert status == 201, body
        acked[body["id"]] = f"b{n}"
    eventually(lambda: " written in " in node.stderr_text()[failed_at:], "a snapshot written")
    expect_all_there(node, acked, refused)
    node.kill()
    node.restart()
    expect_all_there(node, acked, refused)
    assert "Traceback" not in node.stderr_text()


def test_disk_full_with_timers_due_pauses_them_and_they_run_after(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    # Given a delayed task, a task leased by an HTTP worker that will never heartbeat (its
    # lease lapses in 1 s), and a local executor with a delayed task of its own
    node = node_factory("--worker-lease", "1", "--exec", "loc=true", data_dir=small_disk)
    base = node.http_url
    status, delayed = post(f"{base}/api/v1/tasks", {"queue": "q", "delay": 1.5})
    assert status == 201, delayed
    status, local = post(f"{base}/api/v1/tasks", {"queue": "loc", "delay": 1.5})
    assert status == 201, local
    status, leasable = post(f"{base}/api/v1/tasks", {"queue": "w"})
    assert status == 201, leasable
    status, leased = post(f"{base}/api/v1/queues/w/lease", {"worker": "gone", "max": 1})
    assert status == 200 and leased["tasks"], leased
    # When the disk fills before any of those deadlines
    filler = fill(small_disk)
    eventually(lambda: refuses_writes(node, "disk full", small_disk), "writes refused")
    # Expect the node to outlive every deadline (it used to exit within seconds)
    time.sleep(3.0)
    known = [delayed["id"], local["id"], leasable["id"]]
    expect_writes_refused_reads_served(
        node, small_disk, "disk full", "free space on the filesystem", known
    )
    assert get(f"{base}/api/v1/tasks/{delayed['id']}")[1]["state"] == "pending"
    assert get(f"{base}/api/v1/tasks/{leasable['id']}")[1]["state"] == "running"
    # and once space returns, the paused timers catch up: the delays end, the lease lapses,
    # and the local executor runs its task
    filler.unlink()
    expect_writes_resume(node)
    wait_for_task(base, delayed["id"], {"queued"}, DEADLINE)
    wait_for_task(base, local["id"], {"succeeded"}, DEADLINE)
    lapsed = wait_for_task(base, leasable["id"], {"queued", "pending"}, DEADLINE)
    assert lapsed["attempt"] >= 1
    assert "Traceback" not in node.stderr_text()


def test_restart_on_a_full_disk_says_why_and_starts_once_space_returns(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    node = node_factory(data_dir=small_disk)
    acked = {submit(node, f"a{n}")[1]["id"]: f"a{n}" for n in range(10)}
    assert node.terminate() == 0
    filler = fill(small_disk)
    node.start()
    assert node.proc is not None
    code = node.proc.wait(DEADLINE)
    # Expect a clear refusal to start, naming the cause, the place and the remedy
    err = node.stderr_text().split("[conftest] run 2")[-1]
    assert code == 1, err
    assert "disk full" in err and str(small_disk) in err and "start it again" in err, err
    assert "Traceback" not in err
    filler.unlink()
    node.restart()
    expect_all_there(node, acked, set())


# ---- a failing disk: failed fsync, read-only filesystem ------------------------------------------


def test_failed_fsync_stops_writes_until_repair_and_restart(
    node_factory: NodeFactory, loop_disk: LoopDisk
) -> None:
    data = loop_disk.mount / "data"
    node = node_factory(data_dir=data)
    acked = {submit(node, f"a{n}")[1]["id"]: f"a{n}" for n in range(20)}
    # When the device under the filesystem starts failing its writes
    filler = loop_disk.break_it()
    status, body = submit(node, "unknown", size=200_000)  # dirty pages that cannot be written
    assert status == 503, body
    message = body["error"]["message"]
    # Expect the failed fsync named as such, the remedy (restart), the outcome unknown
    assert f"disk failure at {data}: fsync of the Raft log failed" in message, message
    # the block layer reports the device's failure as EIO or ENOSPC: either way a failed
    # fsync, never retried, never "free space and wait"
    assert "[Errno 5 EIO]" in message or "[Errno 28 ENOSPC]" in message, message
    assert "takes no writes until it is restarted" in message and "resume by" not in message
    assert "outcome of this request is unknown" in message
    expect_writes_refused_reads_served(node, data, "at " + str(data), "restart", list(acked))
    node.kill()
    # When an operator repairs the disk and restarts the node
    loop_disk.repair(filler)
    node.restart()
    expect_all_there(node, acked, set())
    expect_writes_resume(node)


def test_read_only_filesystem_stops_writes_until_remount_and_restart(
    node_factory: NodeFactory, loop_disk_lazy_journal: LoopDisk
) -> None:
    loop_disk = loop_disk_lazy_journal
    data = loop_disk.mount / "data"
    node = node_factory(data_dir=data)
    acked = {submit(node, f"a{n}")[1]["id"]: f"a{n}" for n in range(20)}
    # When the kernel remounts the filesystem read-only under the node (ext4 errors=remount-ro
    # after another writer's I/O error; `mount -o remount,ro` is refused while files are open
    # for writing)
    filler = loop_disk.break_it()
    with contextlib.suppress(OSError):
        fd = os.open(loop_disk.mount / "other-writer", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, bytes(300_000))
            os.fsync(fd)
        finally:
            os.close(fd)
    eventually(lambda: _read_only(loop_disk.mount), "the kernel remounted it read-only")
    status, body = submit(node, "refused")
    assert status == 503, body
    message = body["error"]["message"]
    assert f"read-only filesystem at {data}" in message and "restart" in message, message
    # the batch whose write was refused is reported as unknown (a write error may come after
    # part of it landed); every later write is refused before it reaches the disk
    assert "outcome of this request is unknown" in message, message
    status, body = submit(node, "refused-too")
    assert status == 503 and "not applied" in body["error"]["message"], body
    expect_writes_refused_reads_served(node, data, "read-only filesystem", "remount", list(acked))
    node.kill()
    loop_disk.repair(filler)
    node.restart()
    expect_all_there(node, acked, {"refused-too"})
    expect_writes_resume(node)


def _read_only(mount: Path) -> bool:
    """Force a journal commit (it fails on the broken device and ext4 aborts the journal),
    then see whether creating a file is refused with EROFS."""
    subprocess.run(["sync", "-f", str(mount)], capture_output=True)
    try:
        os.close(os.open(mount / "ro-check", os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


def test_start_on_a_read_only_mount_says_why(node_factory: NodeFactory, small_disk: Path) -> None:
    node = node_factory(data_dir=small_disk)
    acked = {submit(node, f"a{n}")[1]["id"]: f"a{n}" for n in range(10)}
    assert node.terminate() == 0
    run("mount", "-o", "remount,ro", str(small_disk))  # nothing holds it open now
    node.start()
    assert node.proc is not None
    code = node.proc.wait(DEADLINE)
    err = node.stderr_text().split("[conftest] run 2")[-1]
    assert code == 1 and "Read-only file system" in err and str(small_disk) in err, err
    assert "Traceback" not in err
    run("mount", "-o", "remount,rw", str(small_disk))
    node.restart()
    expect_all_there(node, acked, set())


# ---- gRPC: the same answers, and a worker stream that outlives the outage ------------------------


def test_grpc_writes_refused_with_the_reason_and_a_worker_stream_survives(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    node = node_factory(data_dir=small_disk)
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "gw"})
    assert status == 201, task
    filler: list[Path] = []

    async def session() -> tuple[str, str, list[pb.ResultAck]]:
        channel = Channel("127.0.0.1", node.grpc_port)
        try:
            tasks = pb.TaskServiceStub(channel)
            stub = pb.WorkerServiceStub(channel)
            out: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
            await out.put(
                pb.WorkerMessage(hello=pb.WorkerHello(worker="w-disk", queues=["gw"], capacity=1))
            )

            async def outgoing() -> AsyncIterator[pb.WorkerMessage]:
                while (msg := await out.get()) is not None:
                    yield msg

            acks: list[pb.ResultAck] = []
            refused = got = ""
            async for reply in stub.work(outgoing()):
                if reply.assignment is not None and reply.assignment.items:
                    item = reply.assignment.items[0]
                    # the disk fills while the worker runs the task
                    filler.append(await asyncio.to_thread(fill, small_disk))
                    while not refused:  # the filler may leave room for a few
                        try:
                            await tasks.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="other")))
                        except GRPCError as exc:
                            assert exc.status == Status.UNAVAILABLE
                            refused = str(exc.message)
                    got = (await tasks.get(pb.GetRequest(id=item.id))).id
                    result = pb.TaskResult(id=item.id, lease=item.lease, success=True, result=b"1")
                    await out.put(pb.WorkerMessage(result=result))
                if reply.ack is not None:
                    acks.append(reply.ack)
                    if not reply.ack.accepted:  # refused for the disk: free it, send again
                        filler[0].unlink()
                        await asyncio.to_thread(
                            eventually,
                            lambda: get(f"{node.http_url}/readyz")[0] == 200,
                            "writes resume",
                        )
                        await out.put(pb.WorkerMessage(result=result))
                    else:
                        await out.put(None)
                        break
            return refused, got, acks
        finally:
            channel.close()

    refused, got, acks = asyncio.run(asyncio.wait_for(session(), DEADLINE))
    assert "disk full" in refused and str(small_disk) in refused, refused
    assert "retry shortly" not in refused
    assert got == task["id"]
    assert [a.accepted for a in acks] == [False, True]
    assert "disk full" in acks[0].error
    assert get(f"{node.http_url}/api/v1/tasks/{task['id']}")[1]["state"] == "succeeded"


def test_a_local_attempt_that_ends_on_a_full_disk_is_reported_once_space_returns(
    node_factory: NodeFactory, small_disk: Path
) -> None:
    # Given a local command running when the disk fills
    node = node_factory("--exec", "loc=sleep 1.5", data_dir=small_disk)
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "loc"})
    assert status == 201, task
    wait_for_task(node.http_url, task["id"], {"running"}, DEADLINE)
    filler = fill(small_disk)
    eventually(lambda: refuses_writes(node, "disk full", small_disk), "writes refused")
    # When it ends while the report cannot be written, and the disk gets space again later
    time.sleep(2.5)
    assert get(f"{node.http_url}/api/v1/tasks/{task['id']}")[1]["state"] == "running"
    filler.unlink()
    # Expect its outcome recorded without a restart (its lease lasts days: dropping the
    # report would leave it running until then), and run once only
    done = wait_for_task(node.http_url, task["id"], {"succeeded"}, DEADLINE)
    assert done["attempt"] == 1, done
