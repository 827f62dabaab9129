// A taskd client in Node.js: @grpc/grpc-js with tasks.proto loaded at run time by
// @grpc/proto-loader (no generated code, no taskd code).
//
// Run by tests/interop/test_node_interop.py: `node client.js HOST:PORT path/to/tasks.proto`.
// It drives TaskService, then runs a worker loop over one WorkerService.Work stream that
// completes five tasks (one of them reported as failed, results sent in the batched
// TaskResults form), and prints what it saw as one JSON object on stdout; the test checks it
// with tests/interop/expect.py, the same check the grpcio client passes.
"use strict";

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const TIMEOUT_MS = 15000;
const CAPACITY = 2;
const WORKER = "grpcjs-interop";
const BY = "grpc-js";

function load(protoPath) {
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true, // field names as in the .proto (created_at_ms, not createdAtMs)
    longs: String, // int64/uint64 as decimal strings: no precision lost
    enums: String, // TASK_STATE_QUEUED, not 3
    defaults: true,
    oneofs: true, // message.kind names the member of a oneof that is set
  });
  return grpc.loadPackageDefinition(definition).taskd.v1;
}

function deadline() {
  return { deadline: Date.now() + TIMEOUT_MS };
}

// One unary call as a promise.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(), (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);
}

async function errorOf(call) {
  try {
    await call();
  } catch (error) {
    if (error.code === undefined) throw error; // not a gRPC status: a bug here
    return { code: statusName(error.code), details: error.details };
  }
  return null;
}

function view(task) {
  return {
    id: task.id,
    queue: task.queue,
    priority: task.priority,
    payload: task.payload.toString("utf8"),
    labels: { ...task.labels },
    state: task.state,
    created_at_ms: task.created_at_ms,
  };
}

// The worker's "handler": double n; refuse the task that asks for a failure.
function handle(item) {
  const job = JSON.parse(item.payload.toString("utf8"));
  if (job.fail) return { success: false, result: Buffer.alloc(0), error: `n=${job.n} refused on purpose` };
  return { success: true, result: Buffer.from(JSON.stringify({ doubled: job.n * 2, by: BY })), error: "" };
}

// Run a worker over one Work stream until the node acked a result for each expected id.
function workLoop(workers, queue, expected) {
  return new Promise((resolve, reject) => {
    const seen = { assigned: [], largest_assignment: 0, acked: [], rejected: [] };
    const call = workers.Work(deadline());
    let finished = false;
    const finish = (error) => {
      if (finished) return;
      finished = true;
      call.end();
      call.cancel(); // the node's side ends with CANCELLED, which is ours
      if (error) reject(error);
      else resolve(seen);
    };
    call.on("data", (message) => {
      if (message.kind === "assignment") {
        const items = message.assignment.items;
        seen.largest_assignment = Math.max(seen.largest_assignment, items.length);
        const batch = { ids: [], leases: [], success: [], results: [], errors: [] };
        for (const item of items) {
          seen.assigned.push({
            id: item.id,
            payload: item.payload.toString("utf8"),
            attempt: item.attempt,
            lease: item.lease,
          });
          const outcome = handle(item);
          batch.ids.push(item.id);
          batch.leases.push(item.lease);
          batch.success.push(outcome.success);
          batch.results.push(outcome.result);
          batch.errors.push(outcome.error);
        }
        call.write({ results: batch });
      } else if (message.kind === "ack") {
        (message.ack.accepted ? seen.acked : seen.rejected).push(message.ack.id);
      } else if (message.kind === "acks") {
        seen.acked.push(...message.acks.ids);
        seen.rejected.push(...message.acks.rejected.map((r) => r.id));
      }
      if (expected.every((id) => seen.acked.includes(id))) finish();
    });
    call.on("error", (error) => finish(finished ? null : error));
    call.on("end", () => finish(new Error(`the node ended the stream early: ${JSON.stringify(seen)}`)));
    call.write({ hello: { worker: WORKER, queues: [queue], capacity: CAPACITY } });
  });
}

async function main(target, protoPath) {
  const v1 = load(protoPath);
  const credentials = grpc.credentials.createInsecure();
  const tasks = new v1.TaskService(target, credentials);
  const workers = new v1.WorkerService(target, credentials);
  const out = {};

  const submitted = await unary(tasks, "Submit", {
    task: {
      queue: "interop",
      priority: 7,
      payload: Buffer.from(`{"hello": "${BY}"}`),
      labels: { client: BY },
      timeout_seconds: 60,
    },
  });
  out.submit = { ...view(submitted.task), duplicate: submitted.duplicate };

  const batch = await unary(tasks, "SubmitBatch", {
    tasks: [1, 5, 9].map((priority) => ({ queue: "interop", priority, payload: Buffer.from('"batch"') })),
  });
  out.batch = { ids: batch.ids, duplicate: batch.duplicate };

  out.get = view(await unary(tasks, "Get", { id: submitted.task.id }));
  const page = await unary(tasks, "List", { queue: "interop", limit: 10 });
  out.list = { ids: page.tasks.map((t) => t.id), next: page.next };
  out.cancel = view(await unary(tasks, "Cancel", { id: batch.ids[0] }));

  out.bad_priority = await errorOf(() => unary(tasks, "Submit", { task: { queue: "interop", priority: 42 } }));
  out.unknown_id = await errorOf(() => unary(tasks, "Get", { id: "no-such-task" }));

  const jobs = [1, 2, 3, 4].map((n) => ({ n })).concat([{ n: 5, fail: true }]);
  const worked = await unary(tasks, "SubmitBatch", {
    tasks: jobs.map((job) => ({
      queue: "interop-work",
      payload: Buffer.from(JSON.stringify(job)),
      max_retries: job.fail ? 0 : 3,
    })),
  });
  const ids = worked.ids;
  out.work = { submitted: ids, ...(await workLoop(workers, "interop-work", ids)) };
  out.worked = [];
  for (const id of ids) {
    const task = await unary(tasks, "Get", { id });
    out.worked.push({ ...view(task), result: task.result.toString("utf8"), error: task.error, worker: task.worker });
  }

  tasks.close();
  workers.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

if (process.argv.length !== 4) {
  process.stderr.write("usage: node client.js HOST:PORT path/to/tasks.proto\n");
  process.exit(2);
}
main(process.argv[2], process.argv[3]).catch((error) => {
  process.stderr.write(`node interop client failed: ${error.stack || error}\n`);
  process.exit(1);
});
