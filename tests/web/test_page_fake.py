"""The page against a fake event stream the test controls exactly (tests/web/fakestream.py):
a flood at 10,000 transitions/s (the page's work per update, measured and recorded), a bye
and a refused reconnect, a silent connection, snapshots replacing the picture, the theme.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.web import fakestream as fs
from tests.web.conftest import ARTIFACTS, BROKEN_CONNECTION, Console, perf, shoot, wait_live

pytestmark = pytest.mark.slow


@pytest.fixture
def fake() -> Iterator[fs.FakeStreamServer]:
    with fs.running_fake() as server:
        yield server


LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push(e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def test_a_flood_is_drawn_and_the_work_per_update_is_measured(
    page: Page, fake: fs.FakeStreamServer
) -> None:
    # Given the overview, live, with the browser's long tasks (> 50 ms of main thread) counted
    page.add_init_script(LONG_TASKS)
    page.goto(f"{fake.url}/")
    wait_live(page)

    # When the node sends what 10,000 transitions/s over 50 queues make, for 6 seconds
    sent = fake.flood(6.0, queues=50, per_second=10_000)

    # Expect every queue in the table, the exact rate from the stats, the sampling said
    expect(page.locator("#queue-rows tr")).to_have_count(50)
    expect(page.locator('[data-rate="transitions_per_s"] .value')).to_have_text("10,000")
    expect(page.locator("#feed li").first).to_be_visible()
    expect(page.get_by_text("the node sampled")).to_be_visible()
    summary = perf(page)
    page.evaluate("window.__longTasks.length = 0")  # loading the page is not the flood's
    fake.flood(4.0, queues=50, per_second=10_000)
    long_tasks = page.evaluate("window.__longTasks")
    summary = perf(page)
    assert summary["message"]["count"] >= sent["transitions"] + sent["stats"]
    assert summary["update"]["count"] > 0
    # The figure of the issue (the page's work per update stays under 16 ms) is recorded and
    # reported, not asserted: it depends on the machine the test runs on.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    record = {"sent": sent, "perf": summary, "long_tasks_ms": long_tasks}
    (ARTIFACTS / "flood-perf.json").write_text(json.dumps(record, indent=2))
    update, message = summary["update"], summary["message"]
    print(
        f"\npage work per update under a 10,000 transitions/s flood ({sent['transitions']} "
        f"transitions + {sent['stats']} stats messages, {update['count']} frames): "
        f"p50 {update['p50']:.2f} ms, p95 {update['p95']:.2f} ms, p99 {update['p99']:.2f} ms, "
        f"max {update['max']:.2f} ms; per message p95 {message['p95']:.2f} ms, "
        f"max {message['max']:.2f} ms; long tasks (> 50 ms) in 4 more seconds of flood: "
        f"{len(long_tasks)} {[round(t) for t in long_tasks]}"
    )
    shoot(page, "flood-overview")


def test_a_bye_shows_reconnecting_with_its_reason_until_the_node_is_back(
    page: Page, fake: fs.FakeStreamServer, console: Console
) -> None:
    for pattern in [*BROKEN_CONNECTION, r"Unexpected response code: 403"]:
        console.allow(pattern)
    # Given a live page showing queue "old"
    fake.picture.queues = [fs.queue("old", by_state={"queued": 3})]
    page.goto(f"{fake.url}/")
    wait_live(page)
    expect(page.locator('#queue-rows tr[data-queue="old"]')).to_be_visible()

    # When the node says goodbye and turns the page's reconnects away
    fake.refuse(True)
    fake.drop("node shutting down")

    # Expect the page to say it is reconnecting, and why, with the old data dimmed
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#banner")).to_be_visible()
    expect(page.locator("#banner-text")).to_contain_text("Reconnecting to the node")
    expect(page.locator("#banner-text")).to_contain_text("node shutting down")
    expect(page.locator("body")).to_have_class("stale")
    fake.wait_for(lambda: fake.refused >= 1, what="refused reconnect")
    shoot(page, "reconnecting")

    # When the node is back with another picture
    fake.picture.queues = [fs.queue("new", by_state={"queued": 1})]
    fake.refuse(False)
    page.locator("#banner-retry").click()  # or wait for the next try: both lead here

    # Expect live again, the fresh snapshot replacing the old picture, and a word about it
    wait_live(page)
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator('#queue-rows tr[data-queue="new"]')).to_be_visible()
    expect(page.locator('#queue-rows tr[data-queue="old"]')).to_have_count(0)
    expect(page.locator(".toast.ok")).to_contain_text("Reconnected")


def test_a_silent_connection_is_replaced(page: Page, fake: fs.FakeStreamServer) -> None:
    # Given a node that promises stats every 200 ms, then says nothing more
    fake.picture.interval_ms = 200
    page.goto(f"{fake.url}/")
    wait_live(page)

    # Expect the page to give up on the silent connection (3 intervals) and open another
    fake.wait_for(lambda: fake.accepted >= 2, timeout=10, what="second connection")


def test_depth_and_paused_follow_stats_without_reload(
    page: Page, fake: fs.FakeStreamServer
) -> None:
    # Given a live overview with no queue
    page.goto(f"{fake.url}/")
    wait_live(page)
    page.evaluate("window.__sameDocument = true")
    expect(page.get_by_text("No queues yet")).to_be_visible()

    # When stats bring a new queue, then its depth grows, by priority, and it is paused
    fake.push(fs.stats([fs.queue("q1", by_state={"queued": 2}, by_priority={5: 2})]))
    row = page.locator('#queue-rows tr[data-queue="q1"]')
    expect(row.locator("td").nth(2)).to_have_text("2")
    fake.push(
        fs.stats(
            [
                fs.queue(
                    "q1",
                    paused=True,
                    by_state={"queued": 7, "running": 1},
                    by_priority={9: 3, 5: 4},
                )
            ]
        )
    )

    # Expect the row to say so, in the same document
    expect(row.locator("td").nth(2)).to_have_text("8")
    expect(row.locator("td.prio-text")).to_have_text("p9 3 · p5 4")
    expect(row.locator(".pill")).to_have_text("paused")
    expect(row.locator("button")).to_have_text("Resume")
    expect(page.locator('[data-state="queued"] .value')).to_have_text("7")
    assert page.evaluate("window.__sameDocument") is True


def test_light_dark_and_the_toggle(page: Page, fake: fs.FakeStreamServer) -> None:
    fake.picture.queues = [
        fs.queue("default", by_state={"queued": 4, "running": 2}, by_priority={5: 4})
    ]
    # Given a browser that prefers dark
    page.emulate_media(color_scheme="dark")
    page.goto(f"{fake.url}/")
    wait_live(page)
    for i in range(30):
        fake.push(
            fs.stats(
                fake.picture.queues,
                submitted=5 + i % 3,
                finished=4 + i % 2,
                at=time.time() - 30 + i,
            )
        )
    background = "getComputedStyle(document.body).backgroundColor"
    dark = page.evaluate(background)
    shoot(page, "overview-dark")

    # When the toggle picks light (auto -> light)
    page.locator("#theme").click()

    # Expect a light page, remembered across a reload
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    light = page.evaluate(background)
    assert dark != light
    page.reload()
    wait_live(page)
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    shoot(page, "overview-light")


def test_the_view_on_screen_picks_the_transitions_it_follows(
    page: Page, fake: fs.FakeStreamServer, console: Console
) -> None:
    console.allow(r"status of 404")  # the fake knows no task: the detail says so
    # Given a live overview, which takes every transition
    page.goto(f"{fake.url}/")
    wait_live(page)
    assert fake.queries == [""]

    # When a task's detail is opened
    task_id = "01J0000000000000000000TASK"
    page.goto(f"{fake.url}/#/tasks/{task_id}")
    expect(page.locator("#task-message")).to_contain_text(f"No task {task_id}")

    # Expect the page to ask for that task's transitions only
    wanted = {"type": "subscribe", "queues": [], "states": [], "ids": [task_id]}
    fake.wait_for(lambda: wanted in fake.received, what="subscribe message")

    # When the connection is replaced, expect the new one to ask for the same in its URL
    fake.drop("restarting")
    fake.wait_for(lambda: fake.accepted >= 2, what="reconnection")
    assert fake.queries[-1] == f"id={task_id}"

    # When the task list of one queue is shown, then the overview again
    page.goto(f"{fake.url}/#/tasks?queue=emails")
    fake.wait_for(lambda: fake.received[-1]["queues"] == ["emails"], what="queue subscribe")
    page.goto(f"{fake.url}/#/overview")
    everything = {"type": "subscribe", "queues": [], "states": [], "ids": []}
    fake.wait_for(lambda: fake.received[-1] == everything, what="subscribe to everything")
