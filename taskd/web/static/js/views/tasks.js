// Tasks: a page of tasks, newest first (GET /api/v1/tasks), filtered by queue and state on
// the node and by label here (the API has no label filter: the page reads further pages
// until it has a screenful of matches, and says how many it looked at); find a task by id.
// Rows follow the stream: a shown task's state changes in place, and new tasks that match
// are counted in a "show" button rather than pushing the rows around.

import * as actions from "../actions.js";
import * as api from "../api.js";
import { h, setClass, setText, syncRows } from "../dom.js";
import * as fmt from "../format.js";
import { STATES } from "../model.js";

const PAGE = 100;
const LABEL_PAGE = 500;
const LABEL_SCAN = 5000; // tasks read per label search before asking to read on

export function parseLabel(text) {
  const t = (text ?? "").trim();
  if (!t) return null;
  const i = t.indexOf("=");
  return i < 0 ? { key: t, value: null } : { key: t.slice(0, i).trim(), value: t.slice(i + 1).trim() };
}

function labelMatches(task, label) {
  if (!label) return true;
  const labels = task.labels ?? {};
  if (!(label.key in labels)) return false;
  return label.value === null || labels[label.key] === label.value;
}

export function mountTasks(root, { model, navigate }) {
  const queue = h("input", { id: "filter-queue", list: "known-queues", placeholder: "any queue", autocomplete: "off" });
  const known = h("datalist", { id: "known-queues" });
  const state = h("select", { id: "filter-state" }, h("option", { value: "", text: "any state" }), STATES.map((s) => h("option", { value: s, text: s })));
  const label = h("input", { id: "filter-label", placeholder: "key or key=value", autocomplete: "off" });
  const findId = h("input", { id: "find-id", placeholder: "task id", class: "mono", autocomplete: "off", spellcheck: "false" });
  const filters = h(
    "form",
    { class: "filters", id: "task-filters" },
    h("label", { class: "field" }, "Queue", queue, known),
    h("label", { class: "field" }, "State", state),
    h("label", { class: "field" }, "Label", label),
    h("button", { type: "submit", class: "button primary", text: "Apply" }),
    h("button", { type: "button", class: "button", id: "filter-clear", text: "Clear", onclick: () => navigate("#/tasks") }),
    h("div", { class: "grow" }),
  );
  const find = h("form", { class: "filters", id: "find-task" }, h("label", { class: "field" }, "Find by id", findId), h("button", { type: "submit", class: "button", text: "Open" }));
  const body = h("tbody", { id: "task-rows" });
  const status = h("span", { class: "sub", id: "tasks-status" });
  const fresh = h("button", { type: "button", class: "button small", id: "tasks-fresh", hidden: true, onclick: () => reload() });
  const more = h("button", { type: "button", class: "button", id: "tasks-more", hidden: true, text: "Load more", onclick: () => loadMore() });
  const empty = h("div", { class: "empty", hidden: true });
  const error = h("div", { class: "empty error-text", hidden: true });

  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (queue.value.trim()) p.set("queue", queue.value.trim());
    if (state.value) p.set("state", state.value);
    if (label.value.trim()) p.set("label", label.value.trim());
    const qs = p.toString();
    navigate(qs ? `#/tasks?${qs}` : "#/tasks");
  });
  find.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = findId.value.trim();
    if (id) navigate(`#/tasks/${encodeURIComponent(id)}`);
  });

  root.append(
    h("div", { class: "view-head" }, h("h1", { text: "Tasks" }), status),
    h("div", { class: "panel" }, h("div", { class: "filters" }, filters, h("div", { class: "grow" }), find)),
    h(
      "div",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", { text: "Newest first" }), h("div", { class: "spacer" }), fresh),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "tasks" },
          h("thead", {}, h("tr", {}, ["Id", "Queue", "Name", "State", "Priority", "Attempt", "Created", "Labels", ""].map((t) => h("th", { text: t, class: t === "Priority" || t === "Attempt" ? "num" : null })))),
          body,
        ),
      ),
      empty,
      error,
      h("div", { class: "panel-head" }, more),
    ),
  );

  let filter = { queue: null, state: null, label: null };
  let tasks = []; // shown, in order
  let byId = new Map();
  let cursor = null;
  let scanned = 0;
  let newIds = new Set(); // submitted since the list was read, matching its filters
  let stale = false; // more changed than the stream could tell row by row
  let generation = 0; // a newer load makes older answers moot

  function row(task) {
    const cells = {
      id: h("a", { class: "mono", href: `#/tasks/${encodeURIComponent(task.id)}`, text: task.id }),
      state: h("span"),
      attempt: h("td", { class: "num" }),
      action: h("button", { type: "button", class: "button small" }),
    };
    const tr = h(
      "tr",
      { dataset: { id: task.id } },
      h("td", {}, cells.id),
      h("td", { class: "mono", text: task.queue }),
      h("td", { text: task.name ?? fmt.NONE }),
      h("td", {}, cells.state),
      h("td", { class: "num", text: String(task.priority) }),
      cells.attempt,
      h("td", { text: fmt.dateTime(task.created_at), title: task.created_at ?? "" }),
      h("td", { class: "wrap" }, h("span", { class: "chips" }, Object.entries(task.labels ?? {}).map(([k, v]) => h("span", { class: "chip", text: `${k}=${v}` })))),
      h("td", {}, cells.action),
    );
    tr.cells_ = cells;
    cells.action.addEventListener("click", async () => {
      const t = byId.get(tr.dataset.id);
      cells.action.disabled = true;
      const answer = await (actions.canCancel(t) ? actions.cancelTask(t) : actions.retryTask(t));
      cells.action.disabled = false;
      if (answer) update(answer);
    });
    return tr;
  }

  function updateRow(tr, task) {
    const c = tr.cells_;
    setText(c.state, task.state);
    setClass(c.state, `pill state-${task.state}`);
    setText(c.attempt, String(task.attempt ?? 0));
    const cancel = actions.canCancel(task);
    const retry = actions.canRetry(task);
    setText(c.action, cancel ? "Cancel" : "Retry");
    setClass(c.action, cancel ? "button small danger" : "button small");
    c.action.hidden = !cancel && !retry;
  }

  function update(task) {
    if (!byId.has(task.id)) return;
    byId.set(task.id, { ...byId.get(task.id), ...task });
    tasks = tasks.map((t) => (t.id === task.id ? byId.get(task.id) : t));
    draw();
    body.querySelector(`tr[data-id="${CSS.escape(task.id)}"]`)?.classList.add("flash");
  }

  function draw() {
    syncRows(body, tasks, (t) => t.id, row, updateRow);
    empty.hidden = tasks.length > 0 || !error.hidden;
    setText(empty, filter.label || filter.queue || filter.state ? "No task matches these filters." : "No tasks yet.");
    more.hidden = !cursor;
    let text = `${fmt.count(tasks.length)} shown`;
    if (filter.label) text += ` · label ${filter.label.key}${filter.label.value === null ? "" : `=${filter.label.value}`} matched in ${fmt.count(scanned)} tasks read`;
    setText(status, text);
    const newCount = [...newIds].filter((id) => !byId.has(id)).length; // the list may have them
    fresh.hidden = newCount === 0 && !stale;
    setText(fresh, stale ? "changed — refresh" : `${newCount} new — show`);
  }

  async function fetchPage(after, gen) {
    if (!filter.label) {
      const page = await api.listTasks({ queue: filter.queue, state: filter.state, limit: PAGE, after });
      scanned += page.tasks.length;
      return { found: page.tasks, next: page.next };
    }
    const found = [];
    let next = after;
    let read = 0;
    do {
      const page = await api.listTasks({ queue: filter.queue, state: filter.state, limit: LABEL_PAGE, after: next });
      if (gen !== generation) return { found, next: null };
      read += page.tasks.length;
      for (const t of page.tasks) if (labelMatches(t, filter.label)) found.push(t);
      next = page.next;
    } while (next && found.length < PAGE && read < LABEL_SCAN);
    scanned += read;
    return { found, next };
  }

  async function load(after) {
    const gen = ++generation;
    error.hidden = true;
    more.disabled = true;
    try {
      const { found, next } = await fetchPage(after, gen);
      if (gen !== generation) return;
      for (const t of found) {
        if (byId.has(t.id)) continue;
        byId.set(t.id, t);
        tasks.push(t);
      }
      cursor = next;
    } catch (err) {
      if (gen !== generation) return;
      error.hidden = false;
      setText(error, `Could not list tasks: ${err.message}${err.field ? ` (field ${err.field})` : ""}`);
    } finally {
      more.disabled = false;
    }
    draw();
  }

  function reload() {
    tasks = [];
    byId = new Map();
    cursor = null;
    scanned = 0;
    newIds = new Set();
    stale = false;
    body.replaceChildren();
    return load(null);
  }

  function loadMore() {
    return load(cursor);
  }

  function matchesNew(e) {
    return e.from === null && (!filter.queue || e.queue === filter.queue) && (!filter.state || e.to === filter.state);
  }

  return {
    // the shown queue's transitions only (states: the rows must see every move)
    subscription: () => (filter.queue ? { queues: [filter.queue] } : null),
    show(params) {
      filter = {
        queue: params.get("queue") || null,
        state: params.get("state") || null,
        label: parseLabel(params.get("label")),
      };
      queue.value = filter.queue ?? "";
      state.value = filter.state ?? "";
      label.value = params.get("label") ?? "";
      reload();
    },
    render(dirty, pending) {
      if (dirty.has("queues")) {
        const names = [...model.queues.keys()];
        if (known.children.length !== names.length || names.some((n, i) => known.children[i].value !== n)) {
          known.replaceChildren(...names.map((n) => h("option", { value: n })));
        }
      }
      if (!pending) return;
      if (pending.overflow) {
        // too much at once to follow row by row: offer to read the list again
        stale = true;
        draw();
        return;
      }
      let changed = false;
      for (const e of pending.events) {
        const shown = byId.get(e.id);
        if (shown) {
          if (shown.state !== e.to || shown.attempt !== e.attempt) {
            byId.set(e.id, { ...shown, state: e.to, attempt: e.attempt ?? shown.attempt });
            changed = true;
          }
        } else if (matchesNew(e) && !filter.label && newIds.size < 10000) {
          newIds.add(e.id);
          changed = true;
        }
      }
      if (changed) {
        tasks = tasks.map((t) => byId.get(t.id));
        draw();
      }
    },
  };
}
