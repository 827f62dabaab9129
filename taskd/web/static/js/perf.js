// How long the page works per update, measured with performance.now(): "message" is one
// stream message (JSON parse and model update), "render" one animation frame's redraw,
// "update" a frame's whole work (the messages it gathered plus its redraw). Kept in bounded
// rings; window.taskdMonitor.perf.summary() reads them (the browser tests report them).

class Ring {
  constructor(size) {
    this.size = size;
    this.values = [];
    this.next = 0;
    this.count = 0;
    this.max = 0;
  }

  push(v) {
    if (this.values.length < this.size) this.values.push(v);
    else this.values[this.next] = v;
    this.next = (this.next + 1) % this.size;
    this.count += 1;
    if (v > this.max) this.max = v;
  }

  summary() {
    const sorted = [...this.values].sort((a, b) => a - b);
    const at = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
    return { count: this.count, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: this.count ? this.max : null };
  }
}

export class PerfLog {
  constructor(size = 4000) {
    this.message = new Ring(size);
    this.render = new Ring(size);
    this.update = new Ring(size);
    this.pendingMessageMs = 0;
  }

  onMessage(ms) {
    this.message.push(ms);
    this.pendingMessageMs += ms;
  }

  onRender(ms) {
    this.render.push(ms);
    this.update.push(this.pendingMessageMs + ms);
    this.pendingMessageMs = 0;
  }

  summary() {
    return { message: this.message.summary(), render: this.render.summary(), update: this.update.summary() };
  }
}
