"""The page against real node processes: what it shows comes from the node's event stream
(GET /api/v1/events) and REST API, and what it does goes to the node and back.

A new queue and its depth show up live, without a reload; a task's detail draws its
dependencies; cancel, retry, pause and resume round-trip through their confirmation dialog
(and a refused action shows the node's error); the page recovers by itself after the node
is SIGKILLed and restarted; in none of this does the page log an error.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get, post
from tests.web.conftest import BROKEN_CONNECTION, Console, shoot, wait_live

pytestmark = pytest.mark.slow


# Every test names its node fixture before ``page``: fixtures end in the reverse order, so the
# page is checked and photographed while its node still runs.
@pytest.fixture
def node(node_factory: NodeFactory) -> NodeProcess:
    return node_factory()


def submit(node: NodeProcess, **spec: object) -> dict[str, object]:
    status, task = post(f"{node.http_url}/api/v1/tasks", spec)
    assert status == 201, task
    return task  # type: ignore[no-any-return]


def confirm(page: Page, expected_title: str) -> None:
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_contain_text(expected_title)
    dialog.locator("#confirm-yes").click()
    expect(dialog).to_be_hidden()


def test_a_new_queue_and_its_depth_show_up_live(node: NodeProcess, page: Page) -> None:
    # Given the overview of a node, live, in a document the test marks
    page.goto(f"{node.http_url}/")
    wait_live(page)
    page.evaluate("window.__sameDocument = true")
    row = page.locator('#queue-rows tr[data-queue="live-q"]')
    expect(row).to_have_count(0)

    # When a task is submitted to a queue nobody has seen
    submit(node, queue="live-q", priority="high")

    # Expect the queue in the table with depth 1, queued at priority 7
    expect(row.locator("td").nth(2)).to_have_text("1")
    expect(row.locator("td.prio-text")).to_have_text("p7 1")

    # When two more arrive
    submit(node, queue="live-q")
    submit(node, queue="live-q", priority=9)

    # Expect the depth to follow, in the same document (no reload)
    expect(row.locator("td").nth(2)).to_have_text("3")
    expect(row.locator("td.prio-text")).to_have_text("p9 1 · p7 1 · p5 1")
    expect(page.locator('[data-state="queued"] .value')).to_have_text("3")
    expect(page.locator("#feed li").first).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "live-queue")


def test_a_tasks_detail_draws_its_dependency_graph(node: NodeProcess, page: Page) -> None:
    # Given extract -> (transform, clean) -> load
    status, batch = post(
        f"{node.http_url}/api/v1/tasks/batch",
        {
            "tasks": [
                {
                    "ref": "e",
                    "queue": "etl",
                    "name": "extract",
                    "payload": {"src": "s3://bucket/day"},
                },
                {"ref": "t", "queue": "etl", "name": "transform", "depends_on": ["e"]},
                {"ref": "c", "queue": "etl", "name": "clean", "depends_on": ["e"]},
                {
                    "ref": "l",
                    "queue": "etl",
                    "name": "load",
                    "depends_on": ["t", "c"],
                    "labels": {"team": "data"},
                },
            ]
        },
    )
    assert status == 201, batch
    extract, transform, clean, load = (t["id"] for t in batch["tasks"])

    # When the page opens the last task
    page.goto(f"{node.http_url}/#/tasks/{load}")

    # Expect its fields, and the four tasks drawn with an arrow per dependency
    expect(page.locator("#task-state")).to_have_text("blocked")
    expect(page.locator("#task-facts")).to_contain_text("team=data")
    graph = page.locator("#task-graph svg")
    expect(graph.locator(".gnode")).to_have_count(4)
    expect(graph.locator("path.edge")).to_have_count(4)
    expect(graph.locator(f'.gnode.current[data-id="{load}"]')).to_contain_text("load")
    expect(graph.locator(f'.gnode[data-id="{extract}"]')).to_contain_text("queued")
    for dep, dependent in (
        (extract, transform),
        (extract, clean),
        (transform, load),
        (clean, load),
    ):
        expect(graph.locator(f'path.edge[data-from="{dep}"][data-to="{dependent}"]')).to_have_count(
            1
        )
    # every arrow runs left to right: a dependency is drawn before what waits for it
    xs = {
        i: graph.locator(f'.gnode[data-id="{i}"]').bounding_box()["x"]
        for i in (extract, transform, load)
    }  # type: ignore[index]
    assert xs[extract] < xs[transform] < xs[load]
    shoot(page, "dependency-graph")

    # When a node of the graph is clicked
    graph.locator(f'.gnode[data-id="{extract}"]').click()

    # Expect that task's detail, with its payload
    expect(page).to_have_url(f"{node.http_url}/#/tasks/{extract}")
    expect(page.locator('pre[data-field="payload"]')).to_contain_text("s3://bucket/day")
    expect(page.locator("#task-graph")).to_contain_text("depends on no other task")


def test_actions_round_trip_with_confirmation_and_outcome(
    node: NodeProcess, page: Page, console: Console
) -> None:
    console.allow(r"^Failed to load resource: the server responded with a status of 409")
    base = node.http_url
    task = submit(node, queue="acts", name="resize")
    page.goto(f"{base}/")
    wait_live(page)
    row = page.locator('#queue-rows tr[data-queue="acts"]')

    # When the queue is paused from its row and the dialog confirmed
    row.locator("button").click()
    confirm(page, "Pause queue acts?")

    # Expect the outcome on the page and on the node
    expect(page.locator(".toast.ok").last).to_contain_text("Queue acts is paused")
    expect(row.locator(".pill")).to_have_text("paused")
    assert [
        q["paused"] for q in get(f"{base}/api/v1/queues")[1]["queues"] if q["name"] == "acts"
    ] == [True]

    # When it is resumed, but the dialog is declined first
    row.locator("button").click()
    page.locator("#confirm-no").click()
    expect(row.locator(".pill")).to_have_text("paused")
    row.locator("button").click()
    confirm(page, "Resume queue acts?")
    expect(row.locator(".pill")).to_have_text("active")
    assert [
        q["paused"] for q in get(f"{base}/api/v1/queues")[1]["queues"] if q["name"] == "acts"
    ] == [False]

    # When the task is canceled from its detail
    page.goto(f"{base}/#/tasks/{task['id']}")
    expect(page.locator("#task-state")).to_have_text("queued")
    page.locator("#task-cancel").click()
    confirm(page, "Cancel task")
    expect(page.locator("#task-state")).to_have_text("canceled")
    assert get(f"{base}/api/v1/tasks/{task['id']}")[1]["state"] == "canceled"

    # When it is retried
    page.locator("#task-retry").click()
    confirm(page, "Retry task")
    expect(page.locator("#task-state")).to_have_text("queued")
    assert get(f"{base}/api/v1/tasks/{task['id']}")[1]["state"] == "queued"

    # When another client cancels it while the page shows a stale "queued" for a moment,
    # the page's cancel is refused: the node's own words are shown
    other = submit(node, queue="acts")
    page.goto(f"{base}/#/tasks?queue=acts")
    tr = page.locator(f'#task-rows tr[data-id="{other["id"]}"]')
    expect(tr.locator(".pill")).to_have_text("queued")
    page.evaluate("window.taskdMonitor.stream.ws.close()")  # stop following, to stay stale
    assert post(f"{base}/api/v1/tasks/{other['id']}/cancel")[0] == 200
    tr.locator("button").click()
    confirm(page, "Cancel task")
    expect(page.locator(".toast.error").last).to_contain_text("already canceled")
    shoot(page, "action-refused")


def test_the_task_list_follows_the_stream(node: NodeProcess, page: Page) -> None:
    # Given the task list of a queue with one task
    first = submit(node, queue="follow")
    page.goto(f"{node.http_url}/#/tasks?queue=follow")
    wait_live(page)
    tr = page.locator(f'#task-rows tr[data-id="{first["id"]}"]')
    expect(tr.locator(".pill")).to_have_text("queued")

    # When another client cancels it and submits two more
    assert post(f"{node.http_url}/api/v1/tasks/{first['id']}/cancel")[0] == 200
    submit(node, queue="follow")
    submit(node, queue="follow")

    # Expect the row to change in place, and the new tasks offered, not pushed in
    expect(tr.locator(".pill")).to_have_text("canceled")
    expect(page.locator("#tasks-fresh")).to_have_text("2 new — show")
    page.locator("#tasks-fresh").click()
    expect(page.locator("#task-rows tr")).to_have_count(3)


def test_the_page_recovers_after_the_node_restarts(
    node: NodeProcess, page: Page, console: Console
) -> None:
    for pattern in BROKEN_CONNECTION:
        console.allow(pattern)
    submit(node, queue="before")
    page.goto(f"{node.http_url}/")
    wait_live(page)
    expect(page.locator('#queue-rows tr[data-queue="before"]')).to_be_visible()

    # When the node is SIGKILLed
    node.kill()

    # Expect the page to say it is reconnecting, keeping what it showed
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#banner-text")).to_contain_text("Reconnecting to the node")
    expect(page.locator('#queue-rows tr[data-queue="before"]')).to_be_visible()
    shoot(page, "node-down")

    # When it comes back (same ports, same data)
    node.restart()

    # Expect live again by itself, and following the node: a new queue shows up
    wait_live(page)
    expect(page.locator("#banner")).to_be_hidden()
    submit(node, queue="after")
    expect(page.locator('#queue-rows tr[data-queue="after"]')).to_be_visible()
    expect(page.locator('#queue-rows tr[data-queue="before"]')).to_be_visible()


def test_workers_and_a_finished_tasks_attempts(node_factory: NodeFactory, page: Page) -> None:
    # Given a node that runs queue "echo" itself, two at a time
    node = node_factory("--exec", """echo=echo '{"answer": 42}'""", "--concurrency", "2")
    page.goto(f"{node.http_url}/#/workers")
    wait_live(page)

    # Expect its executor listed with the queue it serves and its capacity
    rows = page.locator("#worker-rows tr")
    expect(rows).not_to_have_count(0)
    expect(rows.first).to_contain_text("echo")
    expect(page.locator("#workers-summary")).to_contain_text("connected")
    shoot(page, "workers")

    # When a task of that queue runs, and its detail is opened
    task = submit(node, queue="echo", payload={"n": 1})
    page.goto(f"{node.http_url}/#/tasks/{task['id']}")

    # Expect the outcome the page follows to: succeeded, its result, one attempt that took time
    expect(page.locator("#task-state")).to_have_text("succeeded")
    expect(page.locator('pre[data-field="result"]')).to_contain_text('"answer": 42')
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts tbody tr")).to_contain_text("succeeded")
    expect(page.locator("#task-timing .timeline")).to_be_visible()
    shoot(page, "task-succeeded")


def test_the_cluster_view_of_three_members(node_factory: NodeFactory, page: Page) -> None:
    # Given three members, and the page of one that does not lead
    nodes = node_factory.cluster(3)
    status = get(f"{nodes[0].http_url}/api/v1/cluster")[1]
    follower = next(n for n in nodes if n.grpc_address != status["leader"])
    page.goto(f"{follower.http_url}/#/cluster")
    wait_live(page)

    # Expect every member, the leader named, this node a follower
    expect(page.locator("#member-rows tr")).to_have_count(3)
    expect(page.locator('[data-fact="role"] .value')).to_have_text("follower")
    expect(page.locator('[data-fact="leader"] .value')).to_have_text(status["leader"])
    expect(page.locator("#member-rows")).to_contain_text("(this node)")
    expect(page.locator("#member-rows .pill.role-leader")).to_have_count(1)

    # When a task is submitted through the leader, the follower's page shows it
    leader = next(n for n in nodes if n.grpc_address == status["leader"])
    submit(leader, queue="replicated")
    page.locator('.tabs a[data-view="overview"]').click()
    expect(page.locator('#queue-rows tr[data-queue="replicated"] td').nth(2)).to_have_text("1")
    shoot(page, "follower-overview")


def test_filters_by_queue_state_and_label_and_find_by_id(node: NodeProcess, page: Page) -> None:
    # Given tasks of two teams in two queues, one of them canceled
    data = [submit(node, queue="jobs", labels={"team": "data"}) for _ in range(3)]
    ops = submit(node, queue="jobs", labels={"team": "ops"})
    other = submit(node, queue="other", labels={"team": "data"})
    assert post(f"{node.http_url}/api/v1/tasks/{data[0]['id']}/cancel")[0] == 200
    page.goto(f"{node.http_url}/#/tasks")
    expect(page.locator("#task-rows tr")).to_have_count(5)

    # When filtered by queue and label, through the form
    page.locator("#filter-queue").fill("jobs")
    page.locator("#filter-label").fill("team=data")
    page.locator("#task-filters button[type=submit]").click()

    # Expect the three tasks of team data in queue jobs, and the filter in the address
    expect(page.locator("#task-rows tr")).to_have_count(3)
    expect(page.locator(f'#task-rows tr[data-id="{ops["id"]}"]')).to_have_count(0)
    expect(page.locator(f'#task-rows tr[data-id="{other["id"]}"]')).to_have_count(0)
    expect(page.locator("#tasks-status")).to_contain_text("label team=data matched in 4 tasks read")
    assert "queue=jobs" in page.url and "label=team%3Ddata" in page.url

    # When the state filter is added
    page.locator("#filter-state").select_option("canceled")
    page.locator("#task-filters button[type=submit]").click()
    expect(page.locator("#task-rows tr")).to_have_count(1)
    expect(page.locator(f'#task-rows tr[data-id="{data[0]["id"]}"]')).to_be_visible()

    # When a task is looked up by id
    page.locator("#find-id").fill(other["id"])
    page.locator("#find-task button[type=submit]").click()
    expect(page.locator("#task-state")).to_have_text("queued")
    expect(page.locator("#view-task h1")).to_have_text(other["id"])
