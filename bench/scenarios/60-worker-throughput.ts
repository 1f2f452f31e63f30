// Worker throughput on no-op jobs, history and failed-job ledger on, vs a raw BullMQ Worker with the
// same concurrency. Both drain the same number of pre-filled jobs; the first tenth is warm-up.
import { Queue } from "bullmq";
import pg from "pg";
import { deletePrefix } from "../../src/testing/redis.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { cpuMs } from "../lib/stack.ts";

const CONCURRENCY = 20;

async function fill(redisUrl: string, prefix: string, count: number): Promise<Queue> {
  const queue = new Queue("demo", { connection: { url: redisUrl }, prefix });
  for (let i = 0; i < count; i += 1_000) {
    // The options the API's QueueSet gives every job, so both workers trim the same way.
    const batch = Array.from({ length: Math.min(1_000, count - i) }, () => ({
      name: "noop",
      data: {},
      opts: { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } },
    }));
    await queue.addBulk(batch);
  }
  return queue;
}

interface Drain {
  /** Jobs/s between 10% and 100% done. */
  rate: number;
  /** CPU time of the worker process over that span, per job, in microseconds. */
  cpuUsPerJob: number;
}

/**
 * Polls until `done()` reaches `count` (every `everyMs`); jobs/s between 10% and 100% done, and the
 * worker process' (`pid`) CPU time per job over the same span. The poll is part of the load: a count(*) over the history table every 20 ms took half a core of the
 * PostgreSQL the worker writes to, so that clock polls less often (its error: one interval).
 */
async function drain(count: number, done: () => Promise<number>, pid: number, timeoutMs: number, everyMs = 20): Promise<Drain> {
  const deadline = Date.now() + timeoutMs;
  let t1 = 0;
  let cpu1 = 0;
  for (;;) {
    const n = await done();
    const now = performance.now();
    if (!t1 && n >= count / 10) {
      t1 = now;
      cpu1 = cpuMs(pid);
    }
    if (n >= count) {
      const jobs = count - count / 10;
      return { rate: (jobs / (now - t1)) * 1000, cpuUsPerJob: ((cpuMs(pid) - cpu1) * 1000) / jobs };
    }
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} jobs done after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const remaining = async (q: Queue) => {
  const c = await q.getJobCounts("wait", "active", "prioritized", "delayed");
  return Object.values(c).reduce((a, b) => a + b, 0);
};

export default {
  name: "worker-throughput",
  async run(ctx) {
    // Enough jobs that the run lasts seconds, not a few polls.
    const count = ctx.quick ? 1_000 : 50_000;
    const timeoutMs = ctx.quick ? 60_000 : 240_000;

    // Baseline: raw Worker, no-op processor, in its own process.
    const rawPrefix = `{bench-raw-worker-${process.pid}}`;
    const rawQueue = await fill(ctx.redisUrl, rawPrefix, count);
    const raw = steer<{ ready: boolean }>("load/raw-worker.ts", { redisUrl: ctx.redisUrl, prefix: rawPrefix, concurrency: CONCURRENCY });
    const rawPid = raw.child.pid as number;
    const { rate: baseline, cpuUsPerJob: rawCpu } = await drain(count, async () => count - (await remaining(rawQueue)), rawPid, timeoutMs);
    raw.kill();
    await rawQueue.close();
    await deletePrefix(rawPrefix, ctx.redisUrl);

    // Ours: workers/main.ts with the same concurrency, writing history rows; done = COMPLETED rows.
    const stack = await ctx.startStack({ noApi: true });
    const queue = await fill(ctx.redisUrl, stack.prefix, count);
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    try {
      const worker = await stack.startWorker({ WORKER_CONCURRENCY: String(CONCURRENCY) });
      const pid = worker.proc.pid as number;
      const completedRows = async () =>
        Number((await db.query("SELECT count(*)::int AS n FROM job_history WHERE state = 'COMPLETED'")).rows[0]?.n ?? 0);
      // Two clocks on the same run: Redis drained (what BullMQ alone would report), and every
      // history row written (the figure the target is about: history and ledger on).
      const [{ rate: redisDrained }, { rate: project, cpuUsPerJob: ourCpu }] = await Promise.all([
        drain(count, async () => count - (await remaining(queue)), pid, timeoutMs),
        drain(count, completedRows, pid, timeoutMs, 100),
      ]);
      const scenario = `worker no-op x${count}, c=${CONCURRENCY}`;
      return {
        rows: [
          ratioRow(
            { scenario, metric: "jobs/s, history written", project, baseline, baselineName: "raw BullMQ Worker", target: ">= 0.7x" },
            0.7,
          ),
          ratioRow(
            { scenario, metric: "jobs/s, Redis drained", project: redisDrained, baseline, baselineName: "raw BullMQ Worker", target: "-" },
            null,
          ),
          // Where the difference comes from: the worker process' own CPU per job (Redis and
          // PostgreSQL are other processes on the same cores).
          ratioRow(
            { scenario, metric: "worker CPU µs / job", project: ourCpu, baseline: rawCpu, baselineName: "raw BullMQ Worker", target: "-" },
            null,
          ),
        ],
        details: {
          count,
          concurrency: CONCURRENCY,
          project,
          redisDrained,
          baseline,
          workerCpuUsPerJob: ourCpu,
          rawWorkerCpuUsPerJob: rawCpu,
        },
      };
    } finally {
      await db.end();
      await queue.close();
      await stack.stop();
    }
  },
} satisfies Scenario;
