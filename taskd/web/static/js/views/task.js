// One task (GET /api/v1/tasks/{id}): its fields, payload, result and error, timing, attempt
// history, cancel / retry, and its dependencies drawn as a graph. It follows the stream: a
// transition of this task reads it again (at most twice a second); one of a task in the
// graph recolours that task.

import * as actions from "../actions.js";
import * as api from "../api.js";
import { h, setText } from "../dom.js";
import * as fmt from "../format.js";
import { drawDependencies, loadDependencies } from "../graph.js";

const REFRESH_MS = 500;

export function mountTask(root, { navigate, resubscribe }) {
  const head = h("div", { class: "view-head" });
  const actionsBox = h("div", { class: "chips" });
  const facts = h("dl", { class: "facts", id: "task-facts" });
  const timing = h("div", { id: "task-timing" });
  const data = h("div", { class: "grid2", id: "task-data" });
  const attempts = h("div", { id: "task-attempts" });
  const graphBox = h("div", { class: "graph", id: "task-graph" });
  const graphNote = h("span", { class: "sub", id: "graph-note" });
  const message = h("div", { class: "panel empty", hidden: true, id: "task-message" });
  const body = h(
    "div",
    { class: "view", id: "task-body" },
    h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Details" }), h("div", { class: "spacer" }), actionsBox), facts, timing),
    data,
    h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Dependencies" }), graphNote), graphBox),
    h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Attempts" })), attempts),
  );
  root.append(h("div", {}, h("a", { href: "#/tasks", text: "← Tasks" })), head, message, body);

  let id = null;
  let task = null;
  let graph = null; // what drawDependencies returned
  let graphIds = "";
  let timer = 0;
  let lastFetch = 0;
  let generation = 0;

  async function fetchTask() {
    const gen = ++generation;
    lastFetch = performance.now();
    try {
      const answer = await api.getTask(id);
      if (gen !== generation) return;
      show(answer);
    } catch (err) {
      if (gen !== generation) return;
      task = null;
      body.hidden = true;
      message.hidden = false;
      head.replaceChildren(h("h1", { class: "mono", text: id }));
      setText(
        message,
        err.status === 404 ? `No task ${id} on this node: check the id (the retention period may have removed it).` : `Could not read task ${id}: ${err.message}`,
      );
    }
  }

  function refreshSoon() {
    if (timer) return;
    const wait = Math.max(0, REFRESH_MS - (performance.now() - lastFetch));
    timer = setTimeout(() => {
      timer = 0;
      fetchTask();
    }, wait);
  }

  function show(t) {
    task = t;
    body.hidden = false;
    message.hidden = true;
    head.replaceChildren(
      h("h1", { class: "mono", text: t.id }),
      h("span", { class: `pill state-${t.state}`, id: "task-state", text: t.state }),
      h("span", { class: "sub" }, "queue ", h("a", { class: "mono", href: `#/tasks?queue=${encodeURIComponent(t.queue)}`, text: t.queue })),
    );
    const cancel = h("button", { type: "button", class: "button danger", id: "task-cancel", text: "Cancel", disabled: !actions.canCancel(t), title: actions.canCancel(t) ? "" : `a ${t.state} task cannot be canceled` });
    const retry = h("button", { type: "button", class: "button", id: "task-retry", text: "Retry", disabled: !actions.canRetry(t), title: actions.canRetry(t) ? "" : "only failed or canceled tasks can be retried" });
    cancel.addEventListener("click", async () => (await actions.cancelTask(task)) && show(await api.getTask(task.id).catch(() => task)));
    retry.addEventListener("click", async () => (await actions.retryTask(task)) && show(await api.getTask(task.id).catch(() => task)));
    actionsBox.replaceChildren(cancel, retry);

    const fact = (term, value, cls) => h("div", {}, h("dt", { text: term }), h("dd", { class: cls }, value ?? fmt.NONE));
    facts.replaceChildren(
      fact("Name", t.name),
      fact("Priority", String(t.priority)),
      fact("Attempt", `${t.attempt} of at most ${t.max_retries + 1}`),
      fact("Timeout", fmt.seconds(t.timeout)),
      fact("Worker", t.worker, "mono"),
      fact("Lease", t.lease === null ? null : String(t.lease)),
      fact("Idempotency key", t.idempotency_key, "mono"),
      fact("Labels", Object.keys(t.labels ?? {}).length ? h("span", { class: "chips" }, Object.entries(t.labels).map(([k, v]) => h("span", { class: "chip", text: `${k}=${v}` }))) : null),
      fact("Created", fmt.dateTime(t.created_at)),
      fact("Runnable from", fmt.dateTime(t.run_at)),
      fact("Started", fmt.dateTime(t.started_at)),
      fact("Finished", fmt.dateTime(t.finished_at)),
    );
    drawTiming(t);
    drawData(t);
    drawAttempts(t);
    drawGraph(t);
  }

  function drawTiming(t) {
    const wait = fmt.between(t.created_at, t.started_at);
    const run = fmt.between(t.started_at, t.finished_at);
    if (wait === null && run === null) {
      timing.replaceChildren();
      return;
    }
    const total = (wait ?? 0) + (run ?? 0) || 1;
    const bar = h("div", { class: "timeline", title: "waiting, then running (the last attempt)" });
    if (wait !== null) {
      const w = h("span", { class: "wait" });
      w.style.width = `${(100 * wait) / total}%`;
      bar.append(w);
    }
    if (run !== null) {
      const r = h("span", { class: "run" });
      r.style.width = `${(100 * run) / total}%`;
      bar.append(r);
    }
    timing.replaceChildren(
      bar,
      h("div", { class: "note" }, `created → started ${fmt.seconds(wait)}`, run !== null ? ` · started → finished ${fmt.seconds(run)}` : "", " (the last attempt; every attempt is listed below)"),
    );
  }

  function block(title, value, encoding, cls = "json") {
    const shown = value === null || value === undefined ? fmt.NONE : typeof value === "string" ? value : fmt.json(value);
    return h(
      "div",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", { text: title }), encoding ? h("span", { class: "sub", text: `${encoding}-encoded bytes` }) : null),
      h("pre", { class: `json ${cls}`, dataset: { field: title.toLowerCase() }, text: shown }),
    );
  }

  function drawData(t) {
    const parts = [block("Payload", t.payload, t.payload_encoding), block("Result", t.result, t.result_encoding)];
    if (t.error) parts.push(block("Error", t.error, null, "json error"));
    data.replaceChildren(...parts);
  }

  function drawAttempts(t) {
    const list = [...(t.attempts ?? [])];
    if (t.state === "running") {
      list.push({ attempt: t.attempt, started_at: t.started_at, finished_at: null, outcome: "running", worker: t.worker, error: null });
    }
    if (!list.length) {
      attempts.replaceChildren(h("div", { class: "empty", text: "No attempt yet." }));
      return;
    }
    attempts.replaceChildren(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "attempts" },
          h("thead", {}, h("tr", {}, ["#", "Started", "Finished", "Took", "Outcome", "Worker", "Error"].map((x) => h("th", { text: x })))),
          h(
            "tbody",
            {},
            list.map((a) =>
              h(
                "tr",
                {},
                h("td", { text: String(a.attempt) }),
                h("td", { text: fmt.dateTime(a.started_at) }),
                h("td", { text: fmt.dateTime(a.finished_at) }),
                h("td", { text: fmt.seconds(fmt.between(a.started_at, a.finished_at)) }),
                h("td", {}, a.outcome ? h("span", { class: `pill ${a.outcome === "succeeded" ? "good" : a.outcome === "running" ? "state-running" : "bad"}`, text: a.outcome }) : fmt.NONE),
                h("td", { class: "mono", text: a.worker ?? fmt.NONE }),
                h("td", { class: "wrap error-text", text: a.error ?? "" }),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function drawGraph(t) {
    const deps = t.depends_on ?? [];
    if (!deps.length) {
      graph = null;
      graphIds = "";
      graphBox.replaceChildren(h("div", { class: "empty", text: "This task depends on no other task." }));
      setText(graphNote, "");
      return;
    }
    const key = `${t.id}:${deps.join(",")}`;
    if (key === graphIds && graph) {
      graph.setState(t.id, t.state);
      return;
    }
    graphIds = key;
    const gen = generation;
    setText(graphNote, "reading dependencies…");
    try {
      const loaded = await loadDependencies(t, api.getTask);
      if (gen !== generation && graphIds !== key) return;
      graph = drawDependencies(graphBox, loaded, { currentId: t.id, onSelect: (to) => navigate(`#/tasks/${encodeURIComponent(to)}`) });
      graph.ids = [...loaded.nodes.keys()];
      resubscribe(); // follow the graph's tasks too
      const n = loaded.nodes.size - 1;
      setText(graphNote, `${n} upstream ${n === 1 ? "task" : "tasks"}; arrows point from a dependency to what waits for it${loaded.truncated ? " (the first 60 shown)" : ""}`);
    } catch (err) {
      graphIds = "";
      setText(graphNote, `could not read the dependencies: ${err.message}`);
    }
  }

  return {
    // this task's transitions and its graph's, every one (none sampled away under load)
    subscription: () => (id ? { ids: graph?.ids ?? [id] } : null),
    show(params, taskId) {
      if (taskId !== id) {
        id = taskId;
        task = null;
        graph = null;
        graphIds = "";
        head.replaceChildren(h("h1", { class: "mono", text: id }));
        body.hidden = true;
        message.hidden = true;
      }
      fetchTask();
    },
    render(dirty, pending) {
      if (!pending || !id) return;
      if (pending.overflow) {
        refreshSoon();
        return;
      }
      for (const e of pending.events) {
        if (e.id === id) refreshSoon();
        else if (graph?.has(e.id)) graph.setState(e.id, e.to);
      }
    },
  };
}
