"""bench/peers: the harness's flags, its table and README block, its process hygiene, and one
real quick run (RQ and taskd).

The pure tests always run. The real runs need the peers' venv (.venv-peers, which the harness
makes on first use, a download CI should not make): they are skipped when it is absent, unless
TASKD_PEERS_REQUIRED=1, which makes them install it and run. They use the local Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from bench.peers import jobs, procs, run, table
from bench.peers.table import Measure, Meta

ROOT = Path(__file__).resolve().parents[2]
PEERS_VENV = ROOT / ".venv-peers"
REQUIRED = os.environ.get("TASKD_PEERS_REQUIRED") == "1"
needs_peers = pytest.mark.skipif(
    not PEERS_VENV.exists() and not REQUIRED,
    reason="no .venv-peers: `python -m bench.peers` makes it on first use (a download); "
    "set TASKD_PEERS_REQUIRED=1 to make it and run these",
)
SETTINGS = {
    "tasks": 20_000,
    "clients": 8,
    "producers": "processes",
    "rate": 200.0,
    "duration": 10.0,
    "concurrency": 2,
    "rq_worker": "simple",
}


def given(system: str, workload: str, rate: float, p50: float | None, **more: Any) -> Measure:
    body = {"system": system, "workload": workload, "tasks": 1000, "tasks_per_second": rate}
    body |= {"p50_ms": p50, "p95_ms": p50 and p50 * 2, "p99_ms": p50 and p50 * 4, **more}
    return Measure.from_json(body)


MEASURES = [
    given("taskd", "w1a", 3000.0, 2.0),
    given("celery-redis", "w1a", 2000.0, 4.0),
    given("celery-rabbitmq", "w1a", 1000.0, 1.0),
    given("rq", "w1a", 1500.0, 5.0),
    given("taskd", "w2", 5000.0, None, rss_mb=50.0),
    given("celery-redis", "w2", 1000.0, None, rss_mb=150.0, lost=3),
    given("celery-redis", "w3", 200.0, 3.0),
    given("taskd", "w3", 200.0, 1.5),
    given("celery-rabbitmq", "w3", 200.0, 1.0),
]
META = Meta(
    when="2026-12-03 12:00 UTC",
    machine="x86_64",
    cores=2,
    cpu="Test CPU",
    python="CPython 3.11.7",
    command="python -m bench.peers --tasks 20000",
    runs=1,
    settings=SETTINGS,
    versions={"celery": "5.7.0", "rq": "2.12.0"},
)


# -- flags


def test_defaults_are_the_issues_workloads() -> None:
    # Given no flags / When parsed
    args = run.parse([])
    # Expect every system (taskd last), every workload, and the issue's sizes
    assert args.systems == [*table.SYSTEMS]
    assert args.systems[-1] == "taskd"
    assert args.workloads == ["w1a", "w2", "w3"]
    assert (args.tasks, args.rate, args.duration, args.runs) == (20_000, 200.0, 10.0, 1)
    assert (args.clients, args.json, args.markdown, args.update_readme) == (8, None, None, False)


def test_lists_are_run_in_the_fixed_order_whatever_order_given() -> None:
    # Given systems and workloads out of order / When parsed
    args = run.parse(["--systems", "taskd,rq", "--workloads", "w3,w1a", "--runs", "3"])
    # Expect the fixed order: peers first, taskd last
    assert args.systems == ["rq", "taskd"]
    assert args.workloads == ["w1a", "w3"]
    assert args.runs == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--systems", "celery"],
        ["--workloads", "w9"],
        ["--tasks", "0"],
        ["--rate", "0"],
        ["--redis-url", "redis://127.0.0.1:6379/0"],
        ["--redis-url", "redis://127.0.0.1:6379"],
    ],
)
def test_bad_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Given a bad flag / When parsed / Expect argparse's exit 2 with a message
    with pytest.raises(SystemExit) as exit_:
        run.parse(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_json_alone_means_stdout() -> None:
    assert run.parse(["--json"]).json == "-"
    assert run.parse(["--json", "out.json"]).json == "out.json"


def test_the_quoted_command_reproduces_the_measurement() -> None:
    # Given a run's flags, output flags among them
    argv = ["--systems", "rq,taskd", "--tasks", "500", "--rate", "50", "--duration", "2"]
    args = run.parse([*argv, "--update-readme", "--json", "x.json", "--producers", "threads"])
    # When the block's command line is made
    command = run.measured_command(args)
    # Expect it to parse back to the same measurement, without the output flags
    again = run.parse(command.split()[3:])
    assert command.startswith("python -m bench.peers ")
    assert "--update-readme" not in command and "--json" not in command
    for name in ("systems", "workloads", "tasks", "rate", "duration", "runs", "producers"):
        assert getattr(again, name) == getattr(args, name), name


def test_the_recording_db_is_never_db_0() -> None:
    # Given URLs naming a DB or none / Expect the index they name, and DB 0 refused
    assert jobs.redis_db("redis://127.0.0.1:6379/9") == 9
    assert jobs.redis_db("redis://127.0.0.1:6379/?db=7") == 7
    assert jobs.redis_db("redis://127.0.0.1:6379") == 0
    with pytest.raises(ValueError, match="never DB 0"):
        jobs.Settings(redis_url="redis://127.0.0.1:6379/0").validate()
    jobs.Settings(redis_url="redis://127.0.0.1:6379/9").validate()


# -- the table (pure)


def test_rows_put_each_peer_above_taskd_with_ratios_that_favour_taskd_above_one() -> None:
    # Given measures of several systems, in no order
    rows = table.rows(MEASURES)
    # Expect rows by workload, peers in their order, taskd last of each workload
    order = [(r.measure.workload, r.measure.system) for r in rows]
    assert order == [
        ("w1a", "celery-redis"),
        ("w1a", "celery-rabbitmq"),
        ("w1a", "rq"),
        ("w1a", "taskd"),
        ("w2", "celery-redis"),
        ("w2", "taskd"),
        ("w3", "celery-redis"),
        ("w3", "celery-rabbitmq"),
        ("w3", "taskd"),
    ]
    by = {(r.measure.system, r.measure.workload): r for r in rows}
    # tasks/s: taskd ÷ peer; latency and RSS: peer ÷ taskd
    assert by["celery-redis", "w1a"].rate == pytest.approx(1.5)
    assert by["celery-redis", "w1a"].p50 == pytest.approx(2.0)
    assert by["celery-rabbitmq", "w1a"].rate == pytest.approx(3.0)
    assert by["celery-rabbitmq", "w1a"].p50 == pytest.approx(0.5)
    assert by["celery-redis", "w2"].rate == pytest.approx(5.0)
    assert by["celery-redis", "w2"].rss == pytest.approx(3.0)
    assert by["celery-redis", "w2"].p50 is None  # no latency in W2
    assert by["taskd", "w1a"].rate is None  # taskd's own row has no ratio


def test_cells_format_every_column() -> None:
    # Given celery-redis's W1a row / When rendered
    row = next(r for r in table.rows(MEASURES) if r.measure.system == "celery-redis")
    # Expect (system, workload, tasks/s, p50, p95, p99, RSS, 4 ratios)
    assert table.cells(row) == [
        "celery-redis", "W1a enqueue", "2,000", "4.00", "8.00", "16.0", "-",
        "1.50", "2.00", "2.00", "-",
    ]  # fmt: skip


def test_targets_are_checked_against_each_celery() -> None:
    # Given taskd 3,000/s vs Celery 2,000 and 1,000/s, W3 p50 1.5 ms vs 3.0 and 1.0 ms
    found = {t.name: t for t in table.targets(MEASURES)}
    # Expect W1a met against both (1.5x, 3x), W3 met against Redis, missed against RabbitMQ
    assert found["W1a enqueue tasks/s ≥ 1.5x celery-redis's"].met is True
    assert found["W1a enqueue tasks/s ≥ 1.5x celery-rabbitmq's"].met is True
    assert found["W3 pickup p50 ≤ celery-redis's"].met is True
    assert found["W3 pickup p50 ≤ celery-rabbitmq's"].met is False
    assert "1.50 ms vs 1.00 ms" in found["W3 pickup p50 ≤ celery-rabbitmq's"].detail
    # and without taskd's W1a, not measured (never met)
    rest = [m for m in MEASURES if (m.system, m.workload) != ("taskd", "w1a")]
    assert [t.met for t in table.targets(rest)][:2] == [None, None]


def test_markdown_block_has_the_machine_the_command_the_table_and_the_targets() -> None:
    # When the block is rendered
    block = table.markdown(MEASURES, META)
    lines = block.splitlines()
    # Expect a provenance line, a Markdown table of every row, the legend and the verdicts
    assert lines[0].startswith("Generated 2026-12-03 12:00 UTC by `python -m bench.peers")
    assert "x86_64, 2 cores (Test CPU), CPython 3.11.7; celery 5.7.0, rq 2.12.0." in lines[0]
    assert lines[2] == "| " + " | ".join(table.HEADERS) + " |"
    assert lines[3].startswith("|---|---|---:|")
    assert lines[4] == (
        "| celery-redis | W1a enqueue | 2,000 | 4.00 | 8.00 | 16.0 | - | 1.50 | 2.00 | 2.00 | - |"
    )
    assert "| taskd | W2 end to end | 5,000 | - | - | - | 50.0 | - | - | - | - |" in lines
    w2 = "| celery-redis | W2 end to end | 1,000 | - | - | - | 150.0 | 5.00 | - | - | 3.00 |"
    assert w2 in lines
    assert len([line for line in lines if line.startswith("| ")]) == 1 + len(MEASURES)
    assert "W3: 200 tasks/s offered for 10 s" in block
    assert "- W3 pickup p50 ≤ celery-rabbitmq's: missed (taskd 1.50 ms vs 1.00 ms)" in lines
    assert "- celery-redis w2: 3 enqueued tasks never completed" in lines


def test_the_text_table_aligns_its_columns() -> None:
    # When the plain table is rendered
    out = table.text(MEASURES, SETTINGS).splitlines()
    header, rule, first = out[0], out[1], out[2]
    # Expect each column to start where its header does, numbers right-aligned
    assert header.split()[:3] == ["system", "workload", "tasks/s"]
    assert set(rule) <= {"-", " "}
    assert first.startswith("celery-redis ")
    assert first.index("W1a enqueue") == header.index("workload")
    assert first.index("2,000") + len("2,000") == header.index("tasks/s") + len("tasks/s")
    assert any(line.startswith("Ratios: > 1 means taskd is better") for line in out)


def test_a_failed_measure_says_so_and_has_no_ratio() -> None:
    # Given a peer whose agent failed
    failed = Measure("rq", "w2", failed="the agent exited 1")
    rows = table.rows([*MEASURES, failed])
    [row] = [r for r in rows if r.measure.failed]
    # Expect "failed" in its row, and a remark naming why
    assert table.cells(row)[2:4] == ["failed", "-"]
    assert (row.rate, row.rss) == (None, None)
    assert "rq w2: failed: the agent exited 1" in table.remarks([failed])


def test_medians_take_each_figure_over_the_runs_that_produced_one() -> None:
    # Given three runs, one of which failed for rq
    runs = [
        [given("rq", "w1a", 100.0, 1.0), given("taskd", "w1a", 10.0, 9.0)],
        [given("rq", "w1a", 300.0, 3.0), given("taskd", "w1a", 30.0, 7.0)],
        [Measure("rq", "w1a", failed="boom"), given("taskd", "w1a", 20.0, 8.0)],
    ]
    # When the medians are taken
    found = {m.system: m for m in table.medians(runs)}
    # Expect the median of each figure, failures left out
    assert found["rq"].tasks_per_second == 200.0
    assert found["rq"].p50_ms == 2.0
    assert not found["rq"].failed
    assert (found["taskd"].tasks_per_second, found["taskd"].p50_ms) == (20.0, 8.0)
    # and a system that failed every run stays failed
    assert table.medians([[Measure("rq", "w2", failed="x")]])[0].failed == "x"


def test_the_readme_block_is_replaced_between_the_markers_only() -> None:
    # Given a document with the markers
    doc = f"before\n{table.START}\nold table\n{table.END}\nafter\n"
    # When the block is replaced
    out = table.replace_block(doc, "new table\n")
    # Expect only what lies between the markers to change
    assert out == f"before\n{table.START}\nnew table\n{table.END}\nafter\n"
    with pytest.raises(ValueError, match="peers-table"):
        table.replace_block("no markers here", "x")


def test_both_readmes_have_the_block_markers() -> None:
    # Given the READMEs that --update-readme rewrites / Expect the markers in each, in order
    for readme in run.READMES:
        text = readme.read_text()
        assert 0 <= text.find(table.START) < text.find(table.END), readme


# -- processes


@pytest.mark.slow
def test_kill_tree_kills_a_process_and_its_children() -> None:
    # Given a process with a child of its own
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert procs.tree(proc.pid) == [proc.pid, child]
    assert procs.tree_rss_mb([proc.pid]) > 0
    # When its tree is killed
    procs.kill_tree(proc.pid)
    proc.wait(timeout=10)
    # Expect the child gone too (or a zombie awaiting its reaper)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _processes_naming(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if word.encode() in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _workers(queue: str) -> list[int]:
    """The RQ worker processes serving ``queue``."""
    return [p for p in _processes_naming(queue) if p in _processes_naming("rq.cli")]


# -- real runs


def _harness(*argv: str) -> list[str]:
    return [sys.executable, "-m", "bench.peers", *argv]


@pytest.mark.slow
@needs_peers
def test_a_quick_real_run_of_rq_and_taskd_gives_numbers_and_leaves_no_worker() -> None:
    # Given a queue name of this test's own
    queue = f"taskd_peers_test_{uuid.uuid4().hex[:8]}"
    argv = ["--systems", "rq,taskd", "--workloads", "w1a,w3", "--tasks", "200"]
    argv += ["--duration", "2", "--rate", "50", "--queue", queue, "--json"]
    # When the harness runs RQ and taskd, W1a and W3
    done = subprocess.run(_harness(*argv), cwd=ROOT, capture_output=True, timeout=600)
    # Expect exit 0 and, for each system and workload, numbers above zero
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    body = orjson.loads(done.stdout)
    found = {(m["system"], m["workload"]): m for m in body["medians"]}
    assert set(found) == {("rq", "w1a"), ("rq", "w3"), ("taskd", "w1a"), ("taskd", "w3")}
    for key, m in found.items():
        assert not m["failed"], key
        assert m["tasks"] > 0 and m["tasks_per_second"] > 0, key
        assert m["p50_ms"] > 0 and m["p99_ms"] >= m["p50_ms"], key
    assert found["rq", "w1a"]["tasks"] == 200
    assert found["rq", "w3"]["tasks"] == 100  # 50/s for 2 s, every one picked up
    assert body["meta"]["versions"]["rq"] == "2.12.0"
    assert "ratio tasks/s" in done.stderr.decode()  # the table, on stderr beside --json
    # and no worker of this run is left
    assert _processes_naming(queue) == []


@pytest.mark.slow
@needs_peers
def test_an_interrupted_run_stops_its_workers() -> None:
    # Given a run whose RQ workers are up (a long W3)
    queue = f"taskd_peers_test_{uuid.uuid4().hex[:8]}"
    argv = ["--systems", "rq", "--workloads", "w3", "--duration", "60", "--queue", queue]
    argv += ["--concurrency", "2"]
    proc = subprocess.Popen(
        _harness(*argv), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while len(_workers(queue)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        # When it gets Ctrl-C
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # Expect exit 130, saying so, and every process of its run gone
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"interrupted" in err
    deadline = time.monotonic() + 10
    while _processes_naming(queue) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_naming(queue) == []
    # and its queue emptied: no key of RQ's names it
    assert redis.Redis.from_url(jobs.DEFAULT_REDIS).keys(f"*{queue}*") == []
