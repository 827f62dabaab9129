// How numbers, times and durations read on the page. Missing values read as an em dash.

export const NONE = "—";

// One formatter for every number: Number.toLocaleString builds a new one per call, which
// costs ~40 µs; a queue table of 50 rows redrawn every second made that 40 ms a frame.
const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function count(n) {
  return n === null || n === undefined ? NONE : whole.format(n);
}

// Per-second rates: one decimal below 100, whole numbers above.
export function rate(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return NONE;
  if (x === 0) return "0";
  if (x < 100) return x.toFixed(1);
  return whole.format(Math.round(x));
}

export function millis(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return NONE;
  if (ms === 0) return "0 ms";
  if (ms < 1) return "<1 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return seconds(ms / 1000);
}

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return NONE;
  if (s < 0) s = 0;
  if (s < 10) return `${s.toFixed(2).replace(/\.?0+$/, "") || "0"} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const two = (big, bigUnit, small, smallUnit) => (small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`);
  if (s < 3600) return two(Math.floor(s / 60), "m", Math.round(s % 60), "s");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.round((s % 3600) / 60), "m");
  return two(Math.floor(s / 86400), "d", Math.round((s % 86400) / 3600), "h");
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t / 1000;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const stamp = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

export function timeOfDay(iso) {
  const t = parseTime(iso);
  return t === null ? NONE : clock.format(new Date(t * 1000));
}

export function dateTime(iso) {
  const t = parseTime(iso);
  return t === null ? NONE : stamp.format(new Date(t * 1000));
}

// Seconds between two RFC 3339 times (null when either is missing).
export function between(startIso, endIso) {
  const a = parseTime(startIso);
  const b = parseTime(endIso);
  return a === null || b === null ? null : b - a;
}

export function ago(iso, now = Date.now() / 1000) {
  const t = parseTime(iso);
  if (t === null) return NONE;
  const d = now - t;
  return d < 1 ? "just now" : `${seconds(d)} ago`;
}

export function json(value) {
  if (value === undefined) return "";
  return JSON.stringify(value, null, 2);
}

// The tail of a ULID: the random part differs between tasks submitted in the same millisecond.
export function shortId(id) {
  return id && id.length > 10 ? `…${id.slice(-8)}` : id ?? NONE;
}
