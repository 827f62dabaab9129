// The taskd monitor page: one WebSocket to the node's event stream feeds the model; each
// animation frame redraws what the messages of that frame changed, in the view on screen.
// Views: #/overview, #/tasks[?queue=&state=&label=], #/tasks/ID, #/workers, #/cluster.

import { h, setText } from "./js/dom.js";
import * as fmt from "./js/format.js";
import { Model } from "./js/model.js";
import { PerfLog } from "./js/perf.js";
import { Stream, streamUrl } from "./js/stream.js";
import { initTheme } from "./js/theme.js";
import { mountCluster } from "./js/views/cluster.js";
import { mountOverview } from "./js/views/overview.js";
import { mountTask } from "./js/views/task.js";
import { mountTasks } from "./js/views/tasks.js";
import { mountWorkers } from "./js/views/workers.js";
import { toast } from "./js/actions.js";

const ALL = new Set(["node", "queues", "totals", "history", "feed", "transitions", "workers", "cluster"]);

const model = new Model();
const perf = new PerfLog();
const dirty = new Set();
let frame = 0;

const $ = (id) => document.getElementById(id);

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function changed(parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(flush);
}

// The transitions the view on screen needs (the stream sends every one otherwise).
function resubscribe() {
  stream.subscribe(views[current]?.subscription?.() ?? null);
}

const ctx = { model, navigate, onChange: changed, resubscribe };
const views = {
  overview: mountOverview($("view-overview"), ctx),
  tasks: mountTasks($("view-tasks"), ctx),
  task: mountTask($("view-task"), ctx),
  workers: mountWorkers($("view-workers"), ctx),
  cluster: mountCluster($("view-cluster"), ctx),
};
let current = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  let name = parts[0] || "overview";
  let taskId = null;
  if (name === "tasks" && parts[1]) {
    name = "task";
    taskId = parts.slice(1).join("/");
  }
  if (!views[name]) name = "overview";
  for (const [key] of Object.entries(views)) $(`view-${key}`).hidden = key !== name;
  const tab = name === "task" ? "tasks" : name;
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.dataset.view === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  current = name;
  document.title = `taskd · ${tab}${taskId ? ` ${taskId}` : ""}`;
  views[name].show?.(params, taskId);
  resubscribe();
  changed(ALL);
}

function flush() {
  frame = 0;
  const t0 = performance.now();
  const pending = dirty.has("transitions") || dirty.has("feed") ? model.takePending() : null;
  if (dirty.has("node") || dirty.has("cluster")) drawNode();
  views[current]?.render(dirty, pending);
  dirty.clear();
  perf.onRender(performance.now() - t0);
}

function drawNode() {
  const node = model.node;
  const badge = $("node-badge");
  if (!node) return;
  badge.replaceChildren(h("b", { text: node.id }), ` · ${node.role ?? "?"}`, node.version ? ` · v${node.version}` : "");
  badge.title = `connected to node ${node.id} (${node.role}); taskd ${node.version ?? ""}`;
}

// ---- connection state ------------------------------------------------------------------

let countdown = 0;

function drawStatus(status) {
  const conn = $("conn");
  conn.dataset.state = status.state;
  setText(conn, status.state === "live" ? "live" : status.state === "reconnecting" ? "reconnecting…" : "connecting…");
  document.body.classList.toggle("stale", status.state === "reconnecting");
  const banner = $("banner");
  banner.hidden = status.state === "live";
  clearInterval(countdown);
  if (status.state === "live") return;
  const text = () => {
    const wait = status.retryAt ? Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000)) : 0;
    const next = status.retryAt ? (wait ? `next try in ${wait} s` : "trying now") : "trying now";
    if (status.state === "connecting") {
      return status.reason ? `Connecting to the node… ${status.reason} (${next}).` : "Connecting to the node…";
    }
    const since = status.lastLive ? ` Data shown is from ${fmt.timeOfDay(new Date(status.lastLive).toISOString())}.` : "";
    return `Reconnecting to the node… ${status.reason ?? ""} (attempt ${status.attempt}, ${next}).${since}`;
  };
  setText($("banner-text"), text());
  if (status.retryAt) countdown = setInterval(() => setText($("banner-text"), text()), 1000);
}

let wasLive = false;
const stream = new Stream({
  url: streamUrl(),
  onMessage(msg, parseMs, answer) {
    const t0 = performance.now();
    const parts = model.apply(msg, { answer });
    perf.onMessage(parseMs + performance.now() - t0);
    if (parts.size) changed(parts);
  },
  onStatus(status) {
    drawStatus(status);
    if (status.state === "live" && wasLive === "lost") toast("ok", "Reconnected to the node: showing live data again.");
    if (status.state === "live") wasLive = true;
    else if (wasLive) wasLive = "lost";
  },
});

$("banner-retry").addEventListener("click", () => stream.retryNow());
initTheme($("theme"), () => {
  views.overview.restyle();
  changed(ALL);
});
window.addEventListener("hashchange", route);
window.taskdMonitor = { model, perf, stream }; // for the browser tests and for curious operators
route();
stream.start();
