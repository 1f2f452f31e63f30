// A floor, not the product: a raw BullMQ Worker that also writes one history row per job, with the
// least work any such worker can do (one JSON string per job, rows group-committed through the same
// job_history_upsert function, straight on `pg`; no validation, cancellation, metrics or ledger).
// How close the project can get to the raw Worker is bounded by how close this gets.
import { Worker } from "bullmq";
import pg from "pg";
import { answer, scriptInput } from "../lib/child.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; concurrency: number; databaseUrl: string }>();
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 1 });
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
  await pool.end();
  answer({});
});
