// Overview: totals by state and rates, throughput and latency over the last minutes, the
// queue table (depth by priority, paused, consumers, rates, latency; pause and resume), and
// the latest transitions.

import { pauseQueue, resumeQueue } from "../actions.js";
import { TimeChart } from "../charts.js";
import { h, setClass, setText, syncRows } from "../dom.js";
import * as fmt from "../format.js";
import { STATES } from "../model.js";

const PRIORITIES = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

export function mountOverview(root, { model, onChange }) {
  const cards = new Map();
  const cardBox = h("div", { class: "cards", id: "state-cards" });
  for (const state of STATES) {
    const value = h("div", { class: "value", text: "—" });
    cards.set(state, value);
    cardBox.append(h("div", { class: `card state-${state}`, dataset: { state } }, h("div", { class: "label", text: state }), value));
  }
  const rateCards = {};
  for (const [key, text] of [["submitted_per_s", "submitted / s"], ["finished_per_s", "finished / s"], ["transitions_per_s", "transitions / s"]]) {
    rateCards[key] = h("div", { class: "value", text: "—" });
    cardBox.append(h("div", { class: "card", dataset: { rate: key } }, h("div", { class: "label", text }), rateCards[key]));
  }

  const throughputBox = h("div", { class: "chart", id: "chart-throughput" });
  const latencyBox = h("div", { class: "chart", id: "chart-latency" });
  const latencyQueue = h("select", { id: "latency-queue", "aria-label": "queue of the latency chart" }, h("option", { value: "", text: "all queues (worst)" }));
  const throughput = new TimeChart(throughputBox, {
    series: [
      { label: "submitted/s", color: "--c-1" },
      { label: "finished/s", color: "--c-2" },
    ],
    format: fmt.rate,
  });
  const latency = new TimeChart(latencyBox, {
    series: [
      { label: "pickup p50", color: "--c-1", dash: [4, 3] },
      { label: "pickup p95", color: "--c-1" },
      { label: "run p50", color: "--c-3", dash: [4, 3] },
      { label: "run p95", color: "--c-3" },
    ],
    format: fmt.millis,
    yFloor: 10,
  });
  latencyQueue.addEventListener("change", () => drawLatency());

  const queueBody = h("tbody", { id: "queue-rows" });
  const queueEmpty = h("div", { class: "empty", text: "No queues yet: a queue appears with its first task, or when a worker serves it." });
  const queueCount = h("span", { class: "sub" });
  const feedList = h("ul", { class: "feed", id: "feed" });
  const feedNote = h("span", { class: "sub" });
  const feedEmpty = h("div", { class: "empty", text: "No transitions since the page connected." });

  root.append(
    h("div", { class: "view-head" }, h("h1", { text: "Overview" }), h("span", { class: "sub", id: "overview-at" })),
    cardBox,
    h(
      "div",
      { class: "grid2" },
      h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Throughput" }), h("span", { class: "sub", text: "tasks per second, last 5 minutes" })), throughputBox),
      h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Latency" }), h("span", { class: "sub", text: "pickup: queued → running; run: running → done" }), h("div", { class: "spacer" }), latencyQueue), latencyBox),
    ),
    h(
      "div",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", { text: "Queues" }), queueCount),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "queues" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Queue", "Status"].map((t) => h("th", { text: t })),
              ["Depth", "Queued", "Running", "Waiting", "Failed"].map((t) => h("th", { class: "num", text: t })),
              h("th", { text: "Queued by priority", title: "queued tasks at each priority, 9 (runs first) to 0" }),
              ["Consumers", "In / s", "Out / s", "Pickup p95", "Run p95"].map((t) => h("th", { class: "num", text: t })),
              h("th", { text: "" }),
            ),
          ),
          queueBody,
        ),
      ),
      queueEmpty,
    ),
    h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Live transitions" }), feedNote), feedList, feedEmpty),
  );

  function queueRow(q) {
    const cells = {
      name: h("a", { class: "mono", href: `#/tasks?queue=${encodeURIComponent(q.name)}` }),
      status: h("span"),
      depth: h("td", { class: "num" }),
      queued: h("td", { class: "num" }),
      running: h("td", { class: "num" }),
      waiting: h("td", { class: "num", title: "pending (delayed or backing off) + blocked (waiting for dependencies)" }),
      failed: h("td", { class: "num" }),
      prio: h("td"),
      consumers: h("td", { class: "num" }),
      rin: h("td", { class: "num" }),
      rout: h("td", { class: "num" }),
      pickup: h("td", { class: "num" }),
      run: h("td", { class: "num" }),
      action: h("button", { type: "button", class: "button small" }),
    };
    const row = h(
      "tr",
      { dataset: { queue: q.name } },
      h("td", {}, cells.name),
      h("td", {}, cells.status),
      cells.depth, cells.queued, cells.running, cells.waiting, cells.failed, cells.prio, cells.consumers, cells.rin, cells.rout, cells.pickup, cells.run,
      h("td", {}, cells.action),
    );
    row.cells_ = cells;
    cells.action.addEventListener("click", async () => {
      const name = row.dataset.queue;
      const paused = model.queues.get(name)?.paused;
      cells.action.disabled = true;
      const answer = await (paused ? resumeQueue(name) : pauseQueue(name));
      cells.action.disabled = false;
      if (answer) onChange(model.updateQueue(answer));
    });
    return row;
  }

  function updateQueueRow(row, q) {
    const c = row.cells_;
    const s = q.by_state ?? {};
    setText(c.name, q.name);
    setText(c.status, q.paused ? "paused" : "active");
    setClass(c.status, q.paused ? "pill paused" : "pill active");
    setText(c.depth, fmt.count(q.depth));
    setText(c.queued, fmt.count(s.queued ?? 0));
    setText(c.running, fmt.count(s.running ?? 0));
    setText(c.waiting, fmt.count((s.pending ?? 0) + (s.blocked ?? 0)));
    setText(c.failed, fmt.count(s.failed ?? 0));
    updatePriorities(c.prio, q.by_priority ?? {});
    setText(c.consumers, fmt.count(q.consumers ?? 0));
    const starving = (q.consumers ?? 0) === 0 && (s.queued ?? 0) > 0;
    if (setClass(c.consumers, starving ? "num error-text" : "num")) {
      c.consumers.title = starving ? "tasks are queued but nothing on this node serves the queue" : "";
    }
    setText(c.rin, fmt.rate(q.rates?.submitted_per_second));
    setText(c.rout, fmt.rate(q.rates?.finished_per_second));
    setText(c.pickup, fmt.millis(q.latency?.pickup_ms?.p95));
    setText(c.run, fmt.millis(q.latency?.run_ms?.p95));
    setText(c.action, q.paused ? "Resume" : "Pause");
  }

  // One text per row ("p9 3 · p5 10", highest first): chips for each priority cost the
  // browser 40 ms of layout a second with 50 busy queues.
  function updatePriorities(cell, byPriority) {
    const entries = PRIORITIES.filter((p) => byPriority[p]).map((p) => `p${p} ${fmt.count(byPriority[p])}`);
    const text = entries.length ? entries.join(" · ") : "none queued";
    if (cell.textContent === text) return;
    setText(cell, text);
    setClass(cell, entries.length ? "prio-text" : "prio-text note");
    cell.title = entries.length ? `queued tasks by priority (9 runs first): ${entries.join(", ")}` : "";
  }

  function drawThroughput() {
    const hist = model.history;
    throughput.setData([hist.t, hist.submitted, hist.finished]);
  }

  function drawLatency() {
    latency.setData([model.history.t, ...model.latencySeries(latencyQueue.value || null)]);
  }

  function syncLatencyOptions() {
    const names = [...model.queues.keys()];
    const have = [...latencyQueue.options].slice(1).map((o) => o.value);
    if (have.join("\n") === names.join("\n")) return;
    const selected = latencyQueue.value;
    latencyQueue.replaceChildren(latencyQueue.options[0], ...names.map((n) => h("option", { value: n, text: n })));
    latencyQueue.value = names.includes(selected) ? selected : "";
  }

  function drawFeed() {
    syncRows(
      feedList,
      model.feed,
      (e) => `${e.id}/${e.to}/${e.at}`,
      (e) =>
        h(
          "li",
          {},
          h("span", { class: "when", text: fmt.timeOfDay(e.at) }),
          h("a", { class: "mono", href: `#/tasks/${encodeURIComponent(e.id)}`, text: fmt.shortId(e.id), title: e.id }),
          h("span", { class: "mono", text: e.queue }),
          e.name ? h("span", { text: e.name }) : null,
          h("span", { class: "spacer" }),
          e.from ? h("span", { class: `pill state-${e.from}`, text: e.from }) : h("span", { class: "note", text: "new" }),
          h("span", { class: "arrow", text: "→" }),
          h("span", { class: `pill state-${e.to}`, text: e.to }),
        ),
      () => {},
    );
    feedEmpty.hidden = model.feed.length > 0;
    setText(feedNote, model.dropped ? `newest first · the node sampled ${fmt.count(model.dropped)} more out (rates above stay exact)` : "newest first");
  }

  return {
    render(dirty) {
      if (dirty.has("totals")) {
        for (const [state, el] of cards) setText(el, fmt.count(model.totals.by_state?.[state] ?? 0));
      }
      if (dirty.has("history") || dirty.has("totals")) {
        for (const [key, el] of Object.entries(rateCards)) setText(el, fmt.rate(model.rates?.[key]));
        setText(root.querySelector("#overview-at"), model.at ? `as of ${fmt.timeOfDay(model.at)} on the node` : "");
      }
      if (dirty.has("history")) {
        drawThroughput();
        drawLatency();
      }
      if (dirty.has("queues")) {
        const list = [...model.queues.values()];
        syncRows(queueBody, list, (q) => q.name, queueRow, updateQueueRow);
        queueEmpty.hidden = list.length > 0;
        const omitted = model.queuesOmitted ? ` (and ${fmt.count(model.queuesOmitted)} more the node does not list)` : "";
        setText(queueCount, `${list.length} ${list.length === 1 ? "queue" : "queues"}${omitted}`);
        syncLatencyOptions();
      }
      if (dirty.has("feed")) drawFeed();
    },
    restyle() {
      throughput.restyle();
      latency.restyle();
      drawThroughput();
      drawLatency();
    },
  };
}
