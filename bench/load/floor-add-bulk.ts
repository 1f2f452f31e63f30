// Baselines for enqueueJobs, steered over IPC one batch at a time so the scenario can alternate them
// with the API's mutation: {kind: "raw"} is a bare `Queue.addBulk` of `size` jobs; {kind: "floor"} is
// the least code that does the mutation's durable work: the same `addBulk`, then one multi-row
// insert of the jobs' history rows through the same PostgreSQL function as the API's history writes
// (`job_history_insert`, one statement, one commit). Each answers {ms}.
import { Queue } from "bullmq";
import pg from "pg";
import { scriptInput } from "../lib/child.ts";
import { nowMs } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; databaseUrl: string; size: number }>();
// Its own queue name ("floor"), so its ids never meet the API's in the shared history table.
const queue = new Queue("floor", { connection: { url: input.redisUrl }, prefix: input.prefix });
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 1 });
await queue.waitUntilReady();
await pool.query("SELECT 1");

async function batch(kind: "raw" | "floor"): Promise<number> {
  const jobs = Array.from({ length: input.size }, () => ({
    name: "noop",
    data: {},
    opts: { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } },
  }));
  const t = nowMs();
  const added = await queue.addBulk(jobs);
  if (kind === "floor") {
    const rows = added.map((job) => ({
      queue: "floor",
      id: job.id,
      name: job.name,
      data: job.data,
      state: "WAITING",
      attemptsMade: 0,
      maxAttempts: 1,
      priority: 0,
      createdAt: job.timestamp,
    }));
    await pool.query("SELECT job_history_insert($1::jsonb)", [JSON.stringify(rows)]);
  }
  return nowMs() - t;
}

process.on("message", (m: { kind: "raw" | "floor" } | { kind: "stop" }) => {
  if (m.kind === "stop") {
    void Promise.all([queue.close(), pool.end()]).then(() => process.exit(0));
    return;
  }
  batch(m.kind).then(
    (ms) => process.send?.({ type: "ms", ms }),
    (err: unknown) => process.send?.({ type: "error", message: String(err) }),
  );
});
process.send?.({ type: "ready" });
process.on("disconnect", () => process.exit(0));
