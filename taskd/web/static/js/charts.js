// Time-series charts (uPlot, vendored): x is the node's clock in seconds, each series one
// line whose colour is a CSS custom property, so the charts follow the theme (restyle()
// rebuilds them with the new colours). Sized to their container, whose width they follow.

import uPlot from "../vendor/uPlot.esm.js";

const HEIGHT = 220;
const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
const hms = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

// x ticks as times of day: to the minute when ticks are a minute apart or more
function timeTicks(u, splits, axisIdx, space, incr) {
  const f = incr >= 60 ? hm : hms;
  return splits.map((t) => f.format(new Date(t * 1000)));
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export class TimeChart {
  // series: [{label, color: "--c-1", dash: [4, 4]?}], format: value -> text (axis and legend),
  // yFloor: the least top of the y axis (an idle chart still has a readable scale)
  // window: seconds of x shown, ending at the newest point
  constructor(container, { series, format, yMin = 0, yFloor = 1, window = 300 }) {
    this.window = window;
    this.yFloor = yFloor;
    this.container = container;
    this.series = series;
    this.format = format;
    this.yMin = yMin;
    this.data = [[], ...series.map(() => [])];
    this.plot = null;
    this.width = 0;
    this.observer = new ResizeObserver(() => this.#resize());
    this.observer.observe(container);
  }

  setData(data) {
    this.data = data;
    if (!this.plot) this.#build();
    else this.plot.setData(data);
  }

  restyle() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.#build();
  }

  #width() {
    return Math.max(240, Math.floor(this.container.clientWidth));
  }

  #resize() {
    const width = this.#width();
    if (!this.plot || this.container.clientWidth === 0 || width === this.width) return;
    this.width = width;
    this.plot.setSize({ width, height: HEIGHT });
  }

  // The window ends at the newest point (now, without one): uPlot's own min and max are
  // degenerate for a single point.
  #xRange(span) {
    const xs = this.data[0];
    const end = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
    return [end - span, end];
  }

  #build() {
    const text = cssVar("--muted");
    const grid = cssVar("--chart-grid");
    const fmt = this.format;
    const axis = {
      stroke: text,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: "11px system-ui, sans-serif",
    };
    this.width = this.#width();
    const yMin = this.yMin;
    const yFloor = this.yFloor;
    const span = this.window;
    this.plot = new uPlot(
      {
        width: this.width,
        height: HEIGHT,
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: true },
        scales: { x: { time: true, range: () => this.#xRange(span) }, y: { range: (u, min, max) => [yMin, Math.max((max ?? 0) * 1.15, yFloor)] } },
        axes: [{ ...axis, space: 64, values: timeTicks }, { ...axis, size: 56, values: (u, values) => values.map((v) => fmt(v)) }],
        series: [
          { label: "time" },
          ...this.series.map((s) => ({
            label: s.label,
            stroke: cssVar(s.color),
            width: 1.75,
            dash: s.dash,
            spanGaps: false,
            value: (u, v) => (v === null || v === undefined ? "—" : fmt(v)),
          })),
        ],
      },
      this.data,
      this.container,
    );
  }
}
