// Enqueues a demo.sleep job and follows its progress over graphql-ws, typed end to end by the
// generated client (src/client/generated): no hand-written types, no `any`.
//
//   node examples/client/follow-job.ts [steps] [stepMs]
//   API_URL=http://127.0.0.1:4000/graphql API_KEY=... node examples/client/follow-job.ts 10 200
//
// Runs on Node 22.18+ (its WebSocket and fetch), and unchanged in a browser bundle.
import { createClient } from "graphql-ws/client";
import { EnqueueJobDocument, JobEventsDocument } from "../../src/client/generated/graphql.ts";
import { applyJobEvent, UNKNOWN_JOB } from "../../src/client/job-status.ts";
import { request, watch } from "../../src/client/request.ts";

const endpoint = process.env.API_URL ?? "http://127.0.0.1:4000/graphql";
const authorization = process.env.API_KEY ? `Bearer ${process.env.API_KEY}` : undefined;
const [steps = 10, stepMs = 200] = process.argv.slice(2).map(Number);

const { enqueueJob } = await request(
  endpoint,
  EnqueueJobDocument,
  { input: { queue: "demo", name: "sleep", data: { steps, stepMs } } },
  { authorization },
);
if (enqueueJob.__typename !== "EnqueueJobSuccess") {
  // The other members of the union: ValidationError (with issues), NotFoundError, ForbiddenError.
  const issues = enqueueJob.__typename === "ValidationError" ? enqueueJob.issues.map((i) => ` ${i.path.join(".")}: ${i.message}`) : [];
  console.error(`enqueue refused: ${enqueueJob.message}${issues.join("")}`);
  process.exit(1);
}
const { id, queue } = enqueueJob.job;
console.log(`enqueued ${queue} job ${id}`);

const client = createClient({ url: endpoint.replace(/^http/, "ws"), connectionParams: authorization ? { authorization } : {} });
let status = UNKNOWN_JOB;
try {
  // The subscription starts with a SNAPSHOT and completes after the job's terminal event.
  for await (const { jobEvents } of watch(client, JobEventsDocument, { queue, id })) {
    status = applyJobEvent(status, jobEvents);
    console.log(`${jobEvents.type.padEnd(9)} ${status.state ?? ""} ${status.percent ?? "-"} %`);
  }
} finally {
  await client.dispose();
}
console.log(
  status.state === "COMPLETED" ? `done: ${JSON.stringify(status.result)}` : `ended ${status.state}: ${status.failedReason ?? ""}`,
);
process.exit(status.state === "COMPLETED" ? 0 : 1);
