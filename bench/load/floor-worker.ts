// A floor, not the product: a raw BullMQ Worker that also writes one history row per job, with the
// least work any such worker can do (one JSON string per job, rows group-committed through the same
// job_history_upsert function, straight on `pg`; no validation, cancellation, metrics or ledger).
// How close the project can get to the raw Worker is bounded by how close this gets.
//
// The same durable work as ours includes the jobStats rollups: the job_history triggers append each
// statement's contributions to job_stats_pending, and someone must fold them (a table that only
// grows is not a floor, it is a debt), so this folds every 5 s as workers/stats-folder.ts does. And
// the same start-up as ours: the PostgreSQL connection is opened (and the first fold run) before
// the Worker takes a job, as our worker does its start-up work before its first job.
import { Worker } from "bullmq";
import pg from "pg";
import { answer, scriptInput } from "../lib/child.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; concurrency: number; databaseUrl: string }>();
// Two connections: a fold never holds up a batch of rows (ours has a pool of five).
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 2 });
let rows: string[] = [];
let writing = false;

// Same batching as the worker's history writes: gather for 10 ms unless 200 rows are waiting.
async function writeRows(): Promise<void> {
  while (rows.length > 0) {
    if (rows.length < 200) await new Promise((r) => setTimeout(r, 10));
    const batch = rows;
    rows = [];
    await pool.query("SELECT job_history_upsert($1::jsonb)", [`[${batch.join(",")}]`]);
  }
  writing = false;
}

// Same folding as workers/stats-folder.ts: at start, then every 5 s, one fold at a time.
let folding: Promise<unknown> = Promise.resolve();
const fold = () => {
  folding = folding.then(() => pool.query("SELECT job_stats_fold(100000)").catch(() => {}));
};
await pool.query("SELECT 1");
fold();
const folder = setInterval(fold, 5_000);

const worker = new Worker("demo", async () => ({}), {
  connection: { url: input.redisUrl, maxRetriesPerRequest: null },
  prefix: input.prefix,
  concurrency: input.concurrency,
});
worker.on("completed", (job) => {
  rows.push(
    JSON.stringify({
      queue: job.queueName,
      id: job.id,
      name: job.name,
      data: job.data,
      state: "COMPLETED",
      attemptsMade: job.attemptsMade,
      maxAttempts: job.opts.attempts ?? 1,
      priority: job.priority ?? 0,
      createdAt: job.timestamp,
      startedAt: job.processedOn,
      finishedAt: job.finishedOn,
      result: job.returnvalue ?? null,
    }),
  );
  if (!writing) {
    writing = true;
    void writeRows();
  }
});
await worker.waitUntilReady();
process.send?.({ ready: true });
process.on("message", async () => {
  await worker.close();
  clearInterval(folder);
  await folding;
  await pool.end();
  answer({});
});
