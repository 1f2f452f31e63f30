// Worker throughput on no-op jobs, history and failed-job ledger on, vs a raw BullMQ Worker with the
// same concurrency. Both drain the same number of pre-filled jobs; the first tenth is warm-up.
import { Queue } from "bullmq";
import pg from "pg";
import { deletePrefix } from "../../src/testing/redis.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { cpuMs, machineBusyMs, programCpuMs } from "../lib/stack.ts";

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
  /** CPU time of the whole machine (worker, Redis, PostgreSQL, the harness) over that span, per job. */
  machineUsPerJob: number;
  /** CPU time of Redis (every redis-server process on the machine) over that span, per job. */
  redisUsPerJob: number;
  /** CPU time of PostgreSQL (every postgres process on the machine) over that span, per job. */
  postgresUsPerJob: number;
}

/**
 * Polls until `done()` reaches `count` (every `everyMs`); jobs/s between 10% and 100% done, and the
 * CPU time per job over the same span of the worker process (`pid`), Redis, PostgreSQL and the machine.
 */
async function drain(count: number, done: () => Promise<number>, pid: number, timeoutMs: number, everyMs = 20): Promise<Drain> {
  const deadline = Date.now() + timeoutMs;
  let t1 = 0;
  let cpu1 = 0;
  let machine1 = 0;
  let redis1 = 0;
  let postgres1 = 0;
  for (;;) {
    const n = await done();
    const now = performance.now();
    if (!t1 && n >= count / 10) {
      t1 = now;
      cpu1 = cpuMs(pid);
      machine1 = machineBusyMs();
      redis1 = programCpuMs("redis-server");
      postgres1 = programCpuMs("postgres");
    }
    if (n >= count) {
      const jobs = count - count / 10;
      return {
        rate: (jobs / (now - t1)) * 1000,
        cpuUsPerJob: ((cpuMs(pid) - cpu1) * 1000) / jobs,
        machineUsPerJob: ((machineBusyMs() - machine1) * 1000) / jobs,
        redisUsPerJob: ((programCpuMs("redis-server") - redis1) * 1000) / jobs,
        postgresUsPerJob: ((programCpuMs("postgres") - postgres1) * 1000) / jobs,
      };
    }
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} jobs done after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Jobs/s at which COMPLETED history rows were committed, between the 10% and the 100% row, by the
 * rows' updated_at (now() of the statement that wrote them: a batch's rows share it).
 */
async function historyRate(db: pg.Client, count: number, timeoutMs: number, drained: Promise<unknown>): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  // Rows trail Redis by a batch (tens of ms): PostgreSQL is not polled while the worker runs.
  await drained;
  for (;;) {
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM job_history WHERE state = 'COMPLETED'");
    const n = rows[0]?.n ?? 0;
    if (n >= count) break;
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} history rows after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const { rows } = await db.query<{ span: number }>(
    `SELECT extract(epoch FROM max(updated_at) - (SELECT updated_at FROM job_history WHERE state = 'COMPLETED'
       ORDER BY updated_at OFFSET $1 LIMIT 1)) * 1000 AS span FROM job_history WHERE state = 'COMPLETED'`,
    [count / 10 - 1],
  );
  const spanMs = Number(rows[0]?.span);
  return ((count - count / 10) / spanMs) * 1000;
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

    // Baseline: raw Worker, no-op processor, in its own process; run before and after the others
    // (this machine's speed drifts by a third within a minute), the baseline being their mean.
    const rawRun = async (): Promise<Drain> => {
      const rawPrefix = `{bench-raw-worker-${process.pid}}`;
      const rawQueue = await fill(ctx.redisUrl, rawPrefix, count);
      const raw = steer<{ ready: boolean }>("load/raw-worker.ts", { redisUrl: ctx.redisUrl, prefix: rawPrefix, concurrency: CONCURRENCY });
      try {
        return await drain(count, async () => count - (await remaining(rawQueue)), raw.child.pid as number, timeoutMs);
      } finally {
        raw.kill();
        await rawQueue.close();
        await deletePrefix(rawPrefix, ctx.redisUrl);
      }
    };
    const rawBefore = await rawRun();

    // Ours: workers/main.ts with the same concurrency, writing history rows; done = COMPLETED rows.
    const stack = await ctx.startStack({ noApi: true });
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    let queue: Queue | undefined;
    try {
      // The floor (bench/load/floor-worker.ts): the same queue and table, emptied afterwards.
      const floorPrefix = `{bench-floor-worker-${process.pid}}`;
      const floorQueue = await fill(ctx.redisUrl, floorPrefix, count);
      const floorWorker = steer<{ ready: boolean }>("load/floor-worker.ts", {
        redisUrl: ctx.redisUrl,
        prefix: floorPrefix,
        concurrency: CONCURRENCY,
        databaseUrl: stack.databaseUrl,
      });
      const floorPid = floorWorker.child.pid as number;
      const floorDrained = drain(count, async () => count - (await remaining(floorQueue)), floorPid, timeoutMs);
      const [floorRun, floor] = await Promise.all([floorDrained, historyRate(db, count, timeoutMs, floorDrained)]);
      floorWorker.kill();
      await floorQueue.close();
      await deletePrefix(floorPrefix, ctx.redisUrl);
      await db.query("TRUNCATE job_history");
      await db.query("VACUUM ANALYZE job_history");

      queue = await fill(ctx.redisUrl, stack.prefix, count);
      const worker = await stack.startWorker({ WORKER_CONCURRENCY: String(CONCURRENCY) });
      const pid = worker.proc.pid as number;
      // Two clocks on the same run: Redis drained (what BullMQ alone would report; also the span
      // the worker's CPU per job is measured over), and every history row committed (the figure the
      // target is about: history and ledger on). The second is read from the rows' own commit
      // transaction times once all are in, so the harness does not poll PostgreSQL during the run
      // (a count(*) every 20 ms had taken half a core of the PostgreSQL the worker writes to).
      const ourDrained = drain(count, async () => count - (await remaining(queue as Queue)), pid, timeoutMs);
      const [ours, project] = await Promise.all([ourDrained, historyRate(db, count, timeoutMs, ourDrained)]);
      const rawAfter = await rawRun();
      const mean = (f: (d: Drain) => number) => (f(rawBefore) + f(rawAfter)) / 2;
      const baseline = mean((d) => d.rate);
      const raw: Drain = {
        rate: baseline,
        cpuUsPerJob: mean((d) => d.cpuUsPerJob),
        machineUsPerJob: mean((d) => d.machineUsPerJob),
        redisUsPerJob: mean((d) => d.redisUsPerJob),
        postgresUsPerJob: mean((d) => d.postgresUsPerJob),
      };
      const scenario = `worker no-op x${count}, c=${CONCURRENCY}`;
      const floorScenario = `floor: raw Worker + 1 row/job, x${count}`;
      const info = (on: string, metric: string, project: number, base: number | null, baselineName = "raw BullMQ Worker") =>
        ratioRow({ scenario: on, metric, project, baseline: base, baselineName: base === null ? "-" : baselineName, target: "-" }, null);
      // Where the CPU goes, for ours and for the floor: the worker process itself, then Redis and
      // PostgreSQL (other processes on the same two cores), then everything on the machine.
      const split = (on: string, d: Drain) => [
        info(on, "worker CPU µs / job", d.cpuUsPerJob, raw.cpuUsPerJob),
        info(on, "Redis CPU µs / job", d.redisUsPerJob, raw.redisUsPerJob),
        info(on, "PostgreSQL CPU µs / job", d.postgresUsPerJob, null),
        info(on, "machine CPU µs / job", d.machineUsPerJob, raw.machineUsPerJob),
      ];
      return {
        rows: [
          ratioRow(
            { scenario, metric: "jobs/s, history written", project, baseline, baselineName: "raw BullMQ Worker", target: ">= 0.7x" },
            0.7,
          ),
          info(scenario, "jobs/s, Redis drained", ours.rate, baseline),
          ...split(scenario, ours),
          // The floor: a raw Worker plus one history row per job and nothing else. Its ratio bounds
          // what any worker that writes history can reach on these cores.
          info(floorScenario, "jobs/s, history written", floor, baseline),
          ...split(floorScenario, floorRun),
        ],
        details: { count, concurrency: CONCURRENCY, project, baseline, rawBefore, rawAfter, raw, ours, floor, floorRun },
      };
    } finally {
      await db.end();
      await queue?.close();
      await stack.stop();
    }
  },
} satisfies Scenario;
