// Baselines for enqueueJobs, steered over IPC one batch at a time so the scenario can alternate them
// with the API's mutation: {kind: "raw"} is a bare `Queue.addBulk` of `size` jobs; {kind: "floor"} is
// the least code that does the mutation's work: the same `addBulk`, then one multi-row insert of the
// jobs' history rows through the same PostgreSQL function as the API's history writes
// (`job_history_insert`, one statement, one commit), and (as the API's event relay does for every
// job it enqueues; see bench/README.md) the jobs' events read back from the queue's events stream and
// published on Redis pub/sub, each on its job's channel and its queue's, in batches that also record
// the last event relayed; {kind: "unrelayed"} is the floor without the relay (the floor issue #19
// first named: addBulk + the insert). Each answers {ms}.
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { scriptInput } from "../lib/child.ts";
import { nowMs } from "../lib/stats.ts";
import { startFloorRelay } from "./floor-relay.ts";

type Kind = "raw" | "floor" | "unrelayed";
const input = scriptInput<{ redisUrl: string; prefix: string; databaseUrl: string; size: number }>();
// Queues of its own ("floor", whose events are relayed; "unrelayed" and "raw", whose events nobody
// reads), so its ids never meet the API's in the shared history table.
const queues: Record<Kind, Queue> = {
  floor: new Queue("floor", { connection: { url: input.redisUrl }, prefix: input.prefix }),
  unrelayed: new Queue("unrelayed", { connection: { url: input.redisUrl }, prefix: input.prefix }),
  raw: new Queue("raw", { connection: { url: input.redisUrl }, prefix: input.prefix }),
};
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 1 });
await Promise.all(Object.values(queues).map((q) => q.waitUntilReady()));
await pool.query("SELECT 1");

const publisher = new Redis(input.redisUrl);
const events = await startFloorRelay({
  redisUrl: input.redisUrl,
  publisher,
  queue: "floor",
  prefix: input.prefix,
  channelBase: `${input.prefix}:floor:ev:floor`,
  positionKey: `${input.prefix}:floor:relay-position`,
});

async function batch(kind: Kind): Promise<number> {
  const jobs = Array.from({ length: input.size }, () => ({
    name: "noop",
    data: {},
    opts: { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } },
  }));
  const t = nowMs();
  const added = await queues[kind].addBulk(jobs);
  if (kind !== "raw") {
    const rows = added.map((job) => ({
      queue: kind,
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

process.on("message", (m: { kind: Kind } | { kind: "stop" }) => {
  if (m.kind === "stop") {
    void Promise.all([...Object.values(queues).map((q) => q.close()), events.close(), publisher.quit(), pool.end()]).then(() =>
      process.exit(0),
    );
    return;
  }
  batch(m.kind).then(
    (ms) => process.send?.({ type: "ms", ms }),
    (err: unknown) => process.send?.({ type: "error", message: String(err) }),
  );
});
process.send?.({ type: "ready" });
process.on("disconnect", () => process.exit(0));
