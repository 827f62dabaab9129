// The node's REST API (design.md §3), from the page: same origin, JSON both ways. Every
// failure is an ApiError whose message says what happened and, where the node said so, what
// to do; `field` names the part of the request at fault.

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json"; // the node refuses writes without it
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "unreachable", "the node did not answer; try again once the page shows it is connected");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const e = data?.error;
    throw new ApiError(response.status, e?.code ?? `http_${response.status}`, e?.message ?? `the node answered HTTP ${response.status}`, e?.field || null);
  }
  return data;
}

const enc = encodeURIComponent;

export function listTasks({ queue, state, limit = 100, after } = {}) {
  const params = new URLSearchParams();
  if (queue) params.set("queue", queue);
  if (state) params.set("state", state);
  if (limit) params.set("limit", String(limit));
  if (after) params.set("after", after);
  return request("GET", `/api/v1/tasks?${params}`);
}

export const getTask = (id) => request("GET", `/api/v1/tasks/${enc(id)}`);
export const cancelTask = (id) => request("POST", `/api/v1/tasks/${enc(id)}/cancel`);
export const retryTask = (id) => request("POST", `/api/v1/tasks/${enc(id)}/retry`);
export const pauseQueue = (name) => request("POST", `/api/v1/queues/${enc(name)}/pause`);
export const resumeQueue = (name) => request("POST", `/api/v1/queues/${enc(name)}/resume`);
