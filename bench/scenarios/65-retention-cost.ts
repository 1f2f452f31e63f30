// What DELETE-based history retention (src/jobs/history/retention.ts) costs the workers (issue 19:
// partition history by month only if retention costs more than 10% of worker throughput at 1M
// rows/day). Same run, alternating rounds: a worker drains pre-filled no-op jobs while history holds
// `expired` finished rows past the retention period, (a) with nothing else running, (b) while a
// retention sweep deletes all of them (HistoryRetention.sweep, the workers' own code: batches of
// 5,000). (b) is the worst case: a whole day's worth of expired rows (1M at 1M rows/day) deleted at
// the moment the worker is busiest; the hourly sweep deletes a 24th of that. Then one sweep alone,
// for PostgreSQL's CPU per deleted row.
import { Queue } from "bullmq";
import pg from "pg";
import { createLogger } from "../../src/infra/logger.ts";
import { createPrisma } from "../../src/infra/prisma.ts";
import { createRedis } from "../../src/infra/redis.ts";
import { HistoryRetention } from "../../src/jobs/history/index.ts";
import { bullPrefix, deletePrefix } from "../../src/testing/redis.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { programCpuMs } from "../lib/stack.ts";
import { median } from "../lib/stats.ts";

const CONCURRENCY = 20;
const DAY = 86_400_000;

/** `n` finished rows of queue `archive`, created and finished 60 days ago (retention: 30 days). */
async function seedExpired(db: pg.Client, n: number): Promise<void> {
  const start = Date.now() - 60 * DAY;
  for (let from = 0; from < n; from += 250_000) {
    await db.query(
      `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at, finished_at)
       SELECT 'archive', (n + 1)::text, 'noop', jsonb_build_object('ticks', n % 3), 'COMPLETED'::"JobState", 1, 1, ts, ts, ts
       FROM generate_series($1::int, $2::int - 1) AS n,
            LATERAL (SELECT to_timestamp(($3::bigint + n::bigint * 10) / 1000.0) AS ts) t`,
      [from, Math.min(n, from + 250_000), start],
    );
  }
  await db.query("VACUUM ANALYZE job_history");
}

async function fill(redisUrl: string, prefix: string, count: number): Promise<Queue> {
  const queue = new Queue("demo", { connection: { url: redisUrl }, prefix });
  for (let i = 0; i < count; i += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, count - i) }, () => ({
      name: "noop",
      data: {},
      opts: { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } },
    }));
    await queue.addBulk(batch);
  }
  return queue;
}

/** Jobs/s at which the worker's COMPLETED rows were committed, between the 10% and the 100% row (the rows' own times). */
async function historyRate(db: pg.Client, count: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM job_history WHERE queue = 'demo' AND state = 'COMPLETED'",
    );
    if ((rows[0]?.n ?? 0) >= count) break;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]?.n} of ${count} history rows after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const { rows } = await db.query<{ span: number }>(
    `SELECT extract(epoch FROM max(updated_at) - (SELECT updated_at FROM job_history WHERE queue = 'demo' AND state = 'COMPLETED'
       ORDER BY updated_at OFFSET $1 LIMIT 1)) * 1000 AS span FROM job_history WHERE queue = 'demo' AND state = 'COMPLETED'`,
    [count / 10 - 1],
  );
  return ((count - count / 10) / Number(rows[0]?.span)) * 1000;
}

export default {
  name: "retention-cost",
  async run(ctx) {
    const count = ctx.quick ? 2_000 : 20_000;
    const expired = ctx.quick ? 100_000 : 1_000_000;
    const rounds = ctx.quick ? 1 : 3;
    const timeoutMs = ctx.quick ? 120_000 : 300_000;
    const stack = await ctx.startStack({ noApi: true });
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    const prisma = createPrisma(stack.databaseUrl, { max: 2 });
    const redis = createRedis({ redisUrl: ctx.redisUrl, redisClusterNodes: undefined, redisClusterAuth: {} }, "request");
    const retention = new HistoryRetention(prisma, redis, createLogger("silent"), {
      days: 30,
      intervalMs: 3_600_000,
      lockKey: `${stack.prefix}:bench-retention`,
    });

    /** One drain of `count` jobs by workers/main.ts, with `expired` old rows in history; `sweep`: deleting them meanwhile. */
    const round = async (sweep: boolean) => {
      await seedExpired(db, expired);
      const queue = await fill(ctx.redisUrl, bullPrefix(stack.prefix, "demo"), count);
      const worker = await stack.startWorker({ WORKER_CONCURRENCY: String(CONCURRENCY) });
      const t0 = performance.now();
      const swept = sweep ? retention.sweep().then((n) => ({ n, ms: performance.now() - t0 })) : null;
      try {
        const rate = await historyRate(db, count, timeoutMs);
        const done = await swept;
        return { rate, sweptRows: done?.n ?? 0, sweepMs: done?.ms ?? 0 };
      } finally {
        await worker.stop("SIGKILL");
        await queue.close();
        await deletePrefix(stack.prefix, ctx.redisUrl);
        await db.query("TRUNCATE job_history");
        await db.query("VACUUM ANALYZE job_history");
      }
    };

    try {
      const results: { quiet: number; sweeping: number; sweptRows: number; sweepMs: number }[] = [];
      for (let r = 0; r < rounds; r++) {
        // Alternating order, so drift within a round does not always favour the same side.
        const first = await round(r % 2 === 1);
        const second = await round(r % 2 === 0);
        const [sweeping, quiet] = r % 2 === 0 ? [second, first] : [first, second];
        results.push({ quiet: quiet.rate, sweeping: sweeping.rate, sweptRows: sweeping.sweptRows, sweepMs: sweeping.sweepMs });
      }
      // A sweep alone: PostgreSQL's CPU per deleted row (the other processes idle).
      await seedExpired(db, expired);
      const pg0 = programCpuMs("postgres");
      const t0 = performance.now();
      const alone = await retention.sweep();
      const aloneMs = performance.now() - t0;
      const pgUsPerRow = ((programCpuMs("postgres") - pg0) * 1000) / Math.max(1, alone);
      const ratios = results.map((r) => r.sweeping / r.quiet);
      const mid = results.find((r) => r.sweeping / r.quiet === median(ratios)) ?? (results[0] as (typeof results)[number]);
      const scenario = `worker no-op x${count}, c=${CONCURRENCY}, ${expired} expired rows, median of ${rounds}`;
      const info = (metric: string, project: number, note?: string) => ({
        ...ratioRow({ scenario, metric, project, baseline: null, baselineName: "-", target: "-" }, null),
        ...(note ? { note } : {}),
      });
      return {
        rows: [
          ratioRow(
            {
              scenario,
              metric: "jobs/s, history written, while a sweep deletes them all",
              project: mid.sweeping,
              baseline: mid.quiet,
              baselineName: "same, no sweep",
              target: ">= 0.9x (else: partition by month)",
            },
            0.9,
          ),
          info("sweep rows/s (beside the worker)", (mid.sweptRows / mid.sweepMs) * 1000),
          info("sweep rows/s (alone)", (alone / aloneMs) * 1000),
          info("PostgreSQL CPU µs / deleted row (alone)", pgUsPerRow, "x 1M rows/day = the sweeps' PostgreSQL CPU per day"),
        ],
        details: { count, expired, rounds, ratios, results, alone: { rows: alone, ms: aloneMs, pgUsPerRow } },
      };
    } finally {
      await retention.stop();
      redis.disconnect();
      await prisma.$disconnect();
      await db.end();
      await stack.stop();
    }
  },
} satisfies Scenario;
