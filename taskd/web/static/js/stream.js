// The connection to the node's event stream (GET /api/v1/events, a WebSocket), kept up by
// itself: when it drops (node restart, network, a `bye`), the page says "reconnecting…" and
// tries again with a growing delay (0.5 s doubling to 5 s, ±20%), at once after a "client
// too slow" close (1013, the node asks for a fresh start). The connection counts as live
// from its first message, the snapshot. A connection that stays silent for three stats
// intervals is taken for dead (a stopped node holds TCP open) and replaced.
//
// onMessage(message, parseMs, answer) gets every message in order (parseMs: its JSON.parse
// time; answer: this snapshot answers a subscribe on the same connection, no reconnect).
// onStatus receives {state: "connecting" | "live" | "reconnecting", attempt, retryAt (ms
// epoch or null), reason (why the last connection ended, or null), lastLive (ms epoch)}.

const MAX_DELAY_MS = 5000;
const FIRST_DELAY_MS = 500;
const TOO_SLOW = 1013;

export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export function streamUrl(loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/api/v1/events`;
}

// {queues, states, ids} with sorted unique lists; missing or empty = no filter on that field
export function normalizeSubscription(sub) {
  const list = (values) => [...new Set(values ?? [])].sort();
  return { queues: list(sub?.queues), states: list(sub?.states), ids: list(sub?.ids) };
}

function subscriptionQuery(sub) {
  const params = new URLSearchParams();
  for (const q of sub.queues) params.append("queue", q);
  for (const s of sub.states) params.append("state", s);
  for (const id of sub.ids) params.append("id", id);
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Stream {
  constructor({ url, onMessage, onStatus }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.ws = null;
    this.attempt = 0; // failed tries since the last live connection
    this.everLive = false;
    this.lastLive = null;
    this.reason = null;
    this.retryTimer = 0;
    this.watchdog = 0;
    this.silenceMs = 3000;
    this.subscription = normalizeSubscription(null);
    this.answerPending = false; // a subscribe was sent on this connection; its snapshot is due
    this.status = { state: "connecting", attempt: 0, retryAt: null, reason: null, lastLive: null };
  }

  start() {
    this.#connect();
  }

  // Skip the wait before the next try (the banner's "Retry now").
  retryNow() {
    if (this.ws) return;
    clearTimeout(this.retryTimer);
    this.#connect();
  }

  // Which transitions to receive (the stats cover every queue whatever this says). Sent at
  // once on an open connection, whose answer is a fresh snapshot; a new connection asks for
  // it in its URL.
  subscribe(sub) {
    const next = normalizeSubscription(sub);
    if (JSON.stringify(next) === JSON.stringify(this.subscription)) return;
    this.subscription = next;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.status.state === "live") {
      this.answerPending = true;
      this.ws.send(JSON.stringify({ type: "subscribe", ...next }));
    }
  }

  #setStatus(patch) {
    this.status = { ...this.status, ...patch };
    this.onStatus(this.status);
  }

  #connect() {
    this.retryTimer = 0;
    this.#setStatus({ state: this.everLive ? "reconnecting" : "connecting", retryAt: null });
    let ws;
    try {
      ws = new WebSocket(this.url + subscriptionQuery(this.subscription));
    } catch (err) {
      this.#lost(`cannot open the event stream: ${err.message}`, 0);
      return;
    }
    this.ws = ws;
    this.answerPending = false;
    let bye = null;
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.#armWatchdog(ws);
      let msg;
      const t0 = performance.now();
      try {
        msg = JSON.parse(event.data);
      } catch {
        console.warn("taskd monitor: ignored a frame that is not JSON", String(event.data).slice(0, 80));
        return;
      }
      const parseMs = performance.now() - t0;
      if (msg.type === "bye") bye = msg.reason || "the node closed the stream";
      let answer = false;
      if (msg.type === "snapshot") {
        answer = this.answerPending;
        this.answerPending = false;
        if (msg.interval_ms) this.silenceMs = 3 * msg.interval_ms;
        this.attempt = 0;
        this.everLive = true;
        this.lastLive = Date.now();
        this.reason = null;
        this.#setStatus({ state: "live", attempt: 0, reason: null, lastLive: this.lastLive });
      } else if (this.status.state === "live") {
        this.lastLive = Date.now();
        this.status.lastLive = this.lastLive; // no need to tell anyone: still live
      }
      this.onMessage(msg, parseMs, answer);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.watchdog);
      const why = bye || event.reason || (this.everLive ? "the connection to the node was lost" : "the node's event stream did not answer");
      this.#lost(why, event.code);
    };
    ws.onerror = () => {}; // a close event follows, which says what to do
  }

  #armWatchdog(ws) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.ws !== ws) return;
      this.ws = null;
      ws.onclose = null;
      ws.close();
      this.#lost(`no word from the node for ${Math.round(this.silenceMs / 1000)} s`, 0);
    }, this.silenceMs);
  }

  #lost(reason, code) {
    this.reason = reason;
    this.attempt += 1;
    const delay = code === TOO_SLOW && this.attempt === 1 ? 0 : backoffDelay(this.attempt);
    const state = this.everLive ? "reconnecting" : "connecting";
    this.#setStatus({ state, attempt: this.attempt, retryAt: Date.now() + delay, reason });
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }
}
