// Workers and executors connected to this node (snapshot and `workers` messages): who, what
// kind, which queues, capacity, the tasks they run, and when they were last heard from
// (last_heartbeat; local executors run inside the node).

import { h, setText, syncRows } from "../dom.js";
import * as fmt from "../format.js";

const SHOWN_TASKS = 4;

export function mountWorkers(root, { model }) {
  const body = h("tbody", { id: "worker-rows" });
  const summary = h("span", { class: "sub", id: "workers-summary" });
  const empty = h("div", {
    class: "empty",
    text: "No worker or executor is connected to this node. Start a node with --exec QUEUE=COMMAND, or run an SDK worker (taskd.client.Worker) against it.",
  });
  root.append(
    h("div", { class: "view-head" }, h("h1", { text: "Workers and executors" }), summary),
    h(
      "div",
      { class: "panel" },
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "workers" },
          h("thead", {}, h("tr", {}, ["Worker", "Kind", "Queues", "Busy", "Running tasks", "Last heartbeat"].map((t) => h("th", { text: t })))),
          body,
        ),
      ),
      empty,
    ),
  );

  function row() {
    const c = { name: h("td", { class: "mono" }), kind: h("td"), queues: h("td", { class: "wrap" }), busy: h("td"), tasks: h("td", { class: "wrap" }), beat: h("td") };
    const tr = h("tr", {}, c.name, c.kind, c.queues, c.busy, c.tasks, c.beat);
    tr.cells_ = c;
    return tr;
  }

  function update(tr, w) {
    const c = tr.cells_;
    setText(c.name, w.worker);
    setText(c.kind, w.kind);
    const queues = (w.queues ?? []).join("\n");
    if (c.queues.dataset.key !== queues) {
      c.queues.dataset.key = queues;
      c.queues.replaceChildren(h("span", { class: "chips" }, (w.queues ?? []).map((q) => h("a", { class: "chip mono", href: `#/tasks?queue=${encodeURIComponent(q)}`, text: q }))));
    }
    const running = w.running ?? [];
    const cap = w.capacity ?? 0;
    const busyKey = `${running.length}/${cap}`;
    if (c.busy.dataset.key !== busyKey) {
      c.busy.dataset.key = busyKey;
      const fill = h("span");
      fill.style.width = `${cap ? Math.min(100, (100 * running.length) / cap) : 0}%`;
      c.busy.replaceChildren(h("span", { class: "bar" }, fill), `${running.length} of ${cap}`);
    }
    const ids = running.join("\n");
    if (c.tasks.dataset.key !== ids) {
      c.tasks.dataset.key = ids;
      const links = running.slice(0, SHOWN_TASKS).map((id) => h("a", { class: "chip mono", href: `#/tasks/${encodeURIComponent(id)}`, title: id, text: fmt.shortId(id) }));
      if (running.length > SHOWN_TASKS) links.push(h("span", { class: "note", text: `+${running.length - SHOWN_TASKS} more` }));
      c.tasks.replaceChildren(running.length ? h("span", { class: "chips" }, links) : h("span", { class: "note", text: "idle" }));
    }
    const beat = w.last_heartbeat ?? null;
    const inProcess = w.kind === "local";
    setText(c.beat, beat ? fmt.ago(beat) : inProcess ? "in process" : fmt.NONE);
    c.beat.title = beat ? fmt.dateTime(beat) : inProcess ? "a local executor runs inside the node: it needs no heartbeat" : "the node reports no heartbeat time for this worker";
  }

  return {
    render(dirty) {
      if (!dirty.has("workers") && !dirty.has("queues")) return; // "queues" ticks every second: heartbeat ages
      const list = [...model.workers].sort((a, b) => (a.worker < b.worker ? -1 : 1));
      syncRows(body, list, (w) => w.worker, row, update);
      empty.hidden = list.length > 0;
      const cap = list.reduce((n, w) => n + (w.capacity ?? 0), 0);
      const busy = list.reduce((n, w) => n + (w.running?.length ?? 0), 0);
      setText(summary, `${list.length} connected · ${busy} of ${cap} slots busy`);
    },
  };
}
