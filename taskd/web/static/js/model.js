// What the page knows, built from the event stream's messages (monitor protocol:
// snapshot, stats, transitions, workers, cluster, bye). No DOM here.
//
// apply(message) changes the state and returns the set of parts that changed ("node",
// "queues", "totals", "history", "feed", "transitions", "workers", "cluster"), which the
// renderer passes to the views, so that a view redraws only what moved.
//
// Bounded whatever the rate: history keeps the last `historySeconds` of stats (one point per
// stats message, the window measured in the node's own clock), the feed keeps the newest
// `feedSize` transitions, and the transitions not yet seen by the views are capped at
// `pendingCap` (past it `overflow` says "too many to follow one by one: refetch").

export const STATES = ["pending", "blocked", "queued", "running", "succeeded", "failed", "canceled"];
export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

const LATENCY_KEYS = ["pickup50", "pickup95", "run50", "run95"];

export class Model {
  constructor({ historySeconds = 300, feedSize = 40, pendingCap = 1000 } = {}) {
    this.historySeconds = historySeconds;
    this.feedSize = feedSize;
    this.pendingCap = pendingCap;
    this.node = null; // {id, role, version}
    this.cluster = null;
    this.workers = [];
    this.queues = new Map(); // name -> QUEUE, sorted by name
    this.queuesOmitted = 0; // queues the node left out of its messages (it lists at most so many)
    this.totals = { by_state: {} };
    this.rates = null; // {submitted_per_s, finished_per_s, transitions_per_s}
    this.intervalMs = 1000;
    this.at = null; // the node's time of the last message that carried one
    this.snapshots = 0;
    // columns aligned with history.t: rates, and per queue the latency percentiles
    this.history = { t: [], submitted: [], finished: [], transitions: [], latency: new Map() };
    this.feed = []; // newest first
    this.dropped = 0; // transitions the node sampled out since the page connected
    this.pending = []; // transitions the views have not seen yet
    this.overflow = false;
  }

  // answer: a snapshot that answers a change of subscription (the page never went away)
  apply(msg, { answer = false } = {}) {
    switch (msg?.type) {
      case "snapshot":
        return this.#snapshot(msg, answer);
      case "stats":
        return this.#stats(msg);
      case "transitions":
        return this.#transitions(msg);
      case "workers":
        this.workers = msg.workers ?? [];
        return new Set(["workers"]);
      case "cluster":
        this.#setCluster(msg.cluster);
        return new Set(["cluster", "node"]);
      default:
        return new Set(); // bye is the stream's business; unknown types are ignored
    }
  }

  // The views saw every pending transition.
  takePending() {
    const events = this.pending;
    const overflow = this.overflow;
    this.pending = [];
    this.overflow = false;
    return { events, overflow };
  }

  // A queue as a REST action answered it (pause, resume), until the next stats say otherwise.
  updateQueue(queue) {
    const old = this.queues.get(queue.name);
    this.queues.set(queue.name, { ...old, ...queue, latency: queue.latency ?? old?.latency });
    return new Set(["queues"]);
  }

  latencySeries(queue) {
    if (queue) {
      const cols = this.history.latency.get(queue);
      return cols ? LATENCY_KEYS.map((k) => cols[k]) : LATENCY_KEYS.map(() => this.history.t.map(() => null));
    }
    // every queue: the worst of each percentile at each point
    const all = [...this.history.latency.values()];
    return LATENCY_KEYS.map((k) =>
      this.history.t.map((_, i) => {
        let worst = null;
        for (const cols of all) {
          const v = cols[k][i];
          if (v !== null && v !== undefined && (worst === null || v > worst)) worst = v;
        }
        return worst;
      }),
    );
  }

  #snapshot(msg, answer) {
    this.snapshots += 1;
    this.node = msg.node ?? null;
    this.intervalMs = msg.interval_ms ?? 1000;
    this.workers = msg.workers ?? [];
    this.#setQueues(msg.queues ?? [], msg.queues_omitted);
    this.totals = msg.totals ?? { by_state: {} };
    this.#setCluster(msg.cluster);
    this.at = msg.at ?? this.at;
    // After a reconnect the charts show a gap for the time the page was away, and whatever
    // a view shows may be out of date.
    const reconnect = this.snapshots > 1 && !answer;
    if (reconnect && this.history.t.length) this.#pushPoint(msg.at, null);
    this.pending = [];
    this.overflow = reconnect;
    return new Set(["node", "queues", "totals", "history", "workers", "cluster", "transitions", "feed"]);
  }

  #stats(msg) {
    this.#setQueues(msg.queues ?? [], msg.queues_omitted);
    this.totals = msg.totals ?? this.totals;
    this.rates = msg.rates ?? null;
    this.at = msg.at ?? this.at;
    this.#pushPoint(msg.at, msg);
    return new Set(["queues", "totals", "history"]);
  }

  #transitions(msg) {
    const events = msg.events ?? [];
    this.dropped += msg.dropped ?? 0;
    const newest = events.slice(-this.feedSize).reverse();
    this.feed = newest.concat(this.feed).slice(0, this.feedSize);
    if (this.pending.length + events.length > this.pendingCap) {
      this.pending = [];
      this.overflow = true;
    } else if (!this.overflow) {
      for (const e of events) this.pending.push(e);
    }
    return new Set(["feed", "transitions"]);
  }

  #setQueues(list, omitted) {
    this.queuesOmitted = omitted ?? 0;
    const sorted = [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.queues = new Map(sorted.map((q) => [q.name, q]));
  }

  #setCluster(cluster) {
    if (!cluster) return;
    this.cluster = cluster;
    if (this.node && cluster.id === this.node.id && cluster.role) this.node = { ...this.node, role: cluster.role };
  }

  // One point per stats message (or a gap: stats null); drop what fell out of the window.
  #pushPoint(at, stats) {
    const h = this.history;
    let t = Date.parse(at) / 1000;
    if (Number.isNaN(t)) t = Date.now() / 1000;
    const last = h.t.length ? h.t[h.t.length - 1] : null;
    if (last !== null && t <= last) t = last + 0.001; // uPlot wants x to increase
    h.t.push(t);
    h.submitted.push(stats?.rates?.submitted_per_s ?? null);
    h.finished.push(stats?.rates?.finished_per_s ?? null);
    h.transitions.push(stats?.rates?.transitions_per_s ?? null);
    const seen = new Set();
    for (const q of stats?.queues ?? []) {
      let cols = h.latency.get(q.name);
      if (!cols) {
        cols = Object.fromEntries(LATENCY_KEYS.map((k) => [k, h.t.slice(0, -1).map(() => null)]));
        h.latency.set(q.name, cols);
      }
      const lat = q.latency ?? {};
      cols.pickup50.push(lat.pickup_ms?.p50 ?? null);
      cols.pickup95.push(lat.pickup_ms?.p95 ?? null);
      cols.run50.push(lat.run_ms?.p50 ?? null);
      cols.run95.push(lat.run_ms?.p95 ?? null);
      seen.add(q.name);
    }
    for (const [name, cols] of h.latency) {
      if (!seen.has(name)) for (const k of LATENCY_KEYS) cols[k].push(null);
    }
    // the window, in the node's clock
    let drop = 0;
    while (drop < h.t.length && h.t[drop] < t - this.historySeconds) drop += 1;
    if (drop) {
      for (const col of [h.t, h.submitted, h.finished, h.transitions]) col.splice(0, drop);
      for (const [name, cols] of h.latency) {
        for (const k of LATENCY_KEYS) cols[k].splice(0, drop);
        if (!seen.has(name) && cols.pickup95.every((v) => v === null) && cols.run95.every((v) => v === null)) {
          h.latency.delete(name); // a queue gone for the whole window
        }
      }
    }
  }
}
