// Actions that change something on the node: asked for in a confirmation dialog, their
// outcome shown as a toast (and by the caller in place), an error with the node's own words.

import * as api from "./api.js";
import { h } from "./dom.js";
import { TERMINAL } from "./model.js";
import { shortId } from "./format.js";

const dialog = () => document.getElementById("confirm");

export function confirmAction({ title, body, confirmLabel = "OK", danger = false }) {
  const d = dialog();
  d.querySelector("#confirm-title").textContent = title;
  d.querySelector("#confirm-body").textContent = body;
  const yes = d.querySelector("#confirm-yes");
  yes.textContent = confirmLabel;
  yes.className = danger ? "button primary danger" : "button primary";
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    yes.focus();
  });
}

export function toast(kind, text, { timeoutMs } = {}) {
  const box = document.getElementById("toasts");
  const close = h("button", { type: "button", "aria-label": "dismiss", text: "×" });
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, h("div", { class: "msg", text }), close);
  close.addEventListener("click", () => el.remove());
  box.append(el);
  while (box.children.length > 5) box.firstElementChild.remove();
  setTimeout(() => el.remove(), timeoutMs ?? (kind === "error" ? 12000 : 6000));
  return el;
}

function describe(err) {
  if (!(err instanceof api.ApiError)) return String(err?.message ?? err);
  const where = err.field && err.code === "invalid" ? ` (field ${err.field})` : "";
  return `${err.message}${where}`;
}

// Confirm, run, report. Resolves to the node's answer, or null when declined or failed.
export async function runAction({ title, body, confirmLabel, danger, run, done }) {
  if (!(await confirmAction({ title, body, confirmLabel, danger }))) return null;
  try {
    const result = await run();
    toast("ok", done(result));
    return result;
  } catch (err) {
    toast("error", `${title.replace(/\?$/, "")} failed: ${describe(err)}`);
    return null;
  }
}

export const canCancel = (task) => !TERMINAL.has(task.state);
export const canRetry = (task) => task.state === "failed" || task.state === "canceled";

export function cancelTask(task) {
  return runAction({
    title: `Cancel task ${shortId(task.id)}?`,
    body: `Task ${task.id} (${task.state}, queue ${task.queue}) will be canceled; tasks that depend on it are canceled too. A running attempt is told to stop.`,
    confirmLabel: "Cancel task",
    danger: true,
    run: () => api.cancelTask(task.id),
    done: (t) => `Task ${shortId(t.id)} is now ${t.state}.`,
  });
}

export function retryTask(task) {
  return runAction({
    title: `Retry task ${shortId(task.id)}?`,
    body: `Task ${task.id} (${task.state}, queue ${task.queue}) goes back to its queue for another attempt.`,
    confirmLabel: "Retry task",
    run: () => api.retryTask(task.id),
    done: (t) => `Task ${shortId(t.id)} is now ${t.state}.`,
  });
}

export function pauseQueue(name) {
  return runAction({
    title: `Pause queue ${name}?`,
    body: `No new task of queue ${name} is handed out until it is resumed; running tasks finish, and submits are still accepted.`,
    confirmLabel: "Pause queue",
    danger: true,
    run: () => api.pauseQueue(name),
    done: (q) => `Queue ${q.name} is paused.`,
  });
}

export function resumeQueue(name) {
  return runAction({
    title: `Resume queue ${name}?`,
    body: `Workers and executors get tasks of queue ${name} again.`,
    confirmLabel: "Resume queue",
    run: () => api.resumeQueue(name),
    done: (q) => `Queue ${q.name} is running again.`,
  });
}
