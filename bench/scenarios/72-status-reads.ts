// Status and stats reads (the design documents: status query < 50 ms, queue stats < 200 ms) with
// 100,000 jobs waiting in Redis and 100k, then 1M rows of history: `job(queue, id)` for a job in Redis
// (the middle of the wait list), for a job only in history, and `queue { counts workers }`, p95 of
// sequential GraphQL requests against the API (auth on, production mode). Each request alternates
// with its baseline, the same reads done raw from this process: `Queue.getJob` + `Job.getState`,
// `Queue.getJob` (a miss) + a SELECT by primary key, and `getJobCounts` + `isPaused` +
// `getWorkersCount`; and with `{ __typename }` on the same API (what HTTP, auth and GraphQL cost alone).
import { Queue } from "bullmq";
import pg from "pg";
import { bullPrefix } from "../../src/testing/redis.ts";
import { post } from "../lib/graphql-client.ts";
import type { BenchContext, Row, Scenario } from "../lib/scenario.ts";
import { nowMs, type Summary, summarize } from "../lib/stats.ts";

const TARGET_P95_MS = 5;
const TARGET_RATIO = 2;
const QUEUES = ["demo", "emails", "reports", "webhooks", "billing"];

/** History rows [from, to): ids `h-<n>`, every fifth in queue demo, finished, spread over the last days. */
async function seedHistory(client: pg.Client, from: number, to: number): Promise<void> {
  await client.query(
    `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at, started_at, finished_at, failed_reason, tenant)
     SELECT ($3::text[])[1 + n % 5], 'h-' || n, 'noop', jsonb_build_object('n', n),
            (CASE WHEN n % 13 = 0 THEN 'FAILED' ELSE 'COMPLETED' END)::"JobState", 1, 3, ts, ts, ts, ts,
            CASE WHEN n % 13 = 0 THEN 'upstream 503' END, CASE WHEN n % 4 = 0 THEN 'tenant-' || n % 20 END
     FROM generate_series($1::int, $2::int - 1) AS n,
          LATERAL (SELECT now() - (n::float8 * interval '200 millisecond') AS ts) t`,
    [from, to, QUEUES],
  );
  await client.query("ANALYZE job_history");
}

interface Read {
  name: string;
  query: string;
  variables: Record<string, unknown>;
  /** The same work without HTTP, GraphQL or the API: the baseline. */
  raw: () => Promise<unknown>;
  rawName: string;
  /** Throws when the API's answer is not the expected one (a read that misses measures nothing). */
  check: (data: Record<string, unknown>) => void;
}

async function measure(ctx: BenchContext, url: string, read: Read, trivial: string) {
  const warmup = ctx.quick ? 10 : 30;
  const samples = ctx.quick ? 60 : 300;
  const api: number[] = [];
  const raw: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    let t0 = nowMs();
    const data = await post(url, ctx.apiKey, read.query, read.variables);
    const a = nowMs() - t0;
    if (i === 0) read.check(data);
    t0 = nowMs();
    await read.raw();
    const r = nowMs() - t0;
    t0 = nowMs();
    await post(url, ctx.apiKey, trivial);
    const f = nowMs() - t0;
    if (i >= warmup) {
      api.push(a);
      raw.push(r);
      floor.push(f);
    }
  }
  return { api: summarize(api), raw: summarize(raw), trivial: summarize(floor) };
}

export default {
  name: "status-reads",
  async run(ctx) {
    const stack = await ctx.startStack();
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    const queue = new Queue("demo", { connection: { url: ctx.redisUrl }, prefix: bullPrefix(stack.prefix, "demo") });
    const waiting = ctx.quick ? 10_000 : 100_000;
    const [smallSize, largeSize] = ctx.quick ? [10_000, 100_000] : [100_000, 1_000_000];
    const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`);
    const results: Record<string, Record<number, { api: Summary; raw: Summary; trivial: Summary }>> = {};
    const rawNames = new Map<string, string>();
    try {
      // The waiting jobs, added raw (no worker runs in this stack, so they stay waiting).
      const ids: string[] = [];
      for (let i = 0; i < waiting; i += 1_000) {
        const jobs = await queue.addBulk(Array.from({ length: 1_000 }, (_, k) => ({ name: "noop", data: { i: i + k } })));
        ids.push(...jobs.map((j) => j.id as string));
      }
      const redisId = ids[Math.floor(ids.length / 2)] as string;
      ctx.log(`status-reads: ${waiting} jobs waiting in Redis`);
      // A job only in history: queue demo holds every fifth row (n % 5 = 0).
      const historyId = `h-${Math.floor(smallSize / 2 / 5) * 5}`;
      const reads: Read[] = [
        {
          name: `job(queue, id), in Redis (middle of ${waiting / 1_000}k waiting)`,
          query: `query ($id: ID!) { job(queue: "demo", id: $id) { id state createdAt attemptsMade } }`,
          variables: { id: redisId },
          raw: async () => (await queue.getJob(redisId))?.getState(),
          rawName: "raw Queue.getJob + getState",
          check: (d) => {
            if ((d.job as { state?: string } | null)?.state !== "WAITING") throw new Error(`job ${redisId}: ${JSON.stringify(d)}`);
          },
        },
        {
          name: "job(queue, id), only in history",
          query: `query ($id: ID!) { job(queue: "demo", id: $id) { id state createdAt attemptsMade } }`,
          variables: { id: historyId },
          raw: async () => {
            await queue.getJob(historyId);
            return client.query("SELECT * FROM job_history WHERE queue = $1 AND id = $2", ["demo", historyId]);
          },
          rawName: "raw Queue.getJob (miss) + SELECT by key",
          check: (d) => {
            if ((d.job as { id?: string } | null)?.id !== historyId) throw new Error(`job ${historyId}: ${JSON.stringify(d)}`);
          },
        },
        {
          name: "queue { counts workers }",
          query: `{ queue(name: "demo") { paused workers counts { waiting prioritized delayed active completed failed } } }`,
          variables: {},
          raw: () =>
            Promise.all([
              queue.getJobCounts("waiting", "prioritized", "delayed", "active", "completed", "failed"),
              queue.isPaused(),
              queue.getWorkersCount(),
            ]),
          rawName: "raw getJobCounts + isPaused + getWorkersCount",
          check: (d) => {
            const counts = (d.queue as { counts?: { waiting?: number } } | null)?.counts;
            if (counts?.waiting !== waiting) throw new Error(`queue demo: ${JSON.stringify(d)}`);
          },
        },
      ];
      let seeded = 0;
      for (const size of [smallSize, largeSize]) {
        const t0 = Date.now();
        await seedHistory(client, seeded, size);
        seeded = size;
        ctx.log(`status-reads: ${size} history rows seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        for (const read of reads) {
          const m = await measure(ctx, stack.url, read, "{ __typename }");
          rawNames.set(read.name, read.rawName);
          const byRead = results[read.name] ?? {};
          byRead[size] = m;
          results[read.name] = byRead;
          ctx.log(
            `status-reads @${label(size)} ${read.name}: p50 ${m.api.p50.toFixed(2)} / p95 ${m.api.p95.toFixed(2)} ms; ` +
              `raw p95 ${m.raw.p95.toFixed(2)} ms; trivial query p95 ${m.trivial.p95.toFixed(2)} ms`,
          );
        }
      }
    } finally {
      await queue.close();
      await client.end();
      await stack.stop();
    }

    const rows: Row[] = [];
    for (const [name, bySize] of Object.entries(results)) {
      const small = bySize[smallSize];
      const large = bySize[largeSize];
      if (!small || !large) continue;
      const rawName = rawNames.get(name) ?? "raw";
      rows.push({
        scenario: name,
        metric: `p95 ms @${label(largeSize)} history`,
        project: large.api.p95,
        baseline: large.raw.p95,
        baselineName: rawName,
        ratio: large.api.p95 / large.raw.p95,
        target: `<= ${TARGET_P95_MS} ms`,
        pass: large.api.p95 <= TARGET_P95_MS,
      });
      rows.push({
        scenario: name,
        metric: `p95 ms @${label(largeSize)} history`,
        project: large.api.p95,
        baseline: large.trivial.p95,
        baselineName: "{ __typename }, same API, same run",
        ratio: large.api.p95 / large.trivial.p95,
        target: "-",
        pass: null,
      });
      rows.push({
        scenario: name,
        metric: `p95 ${label(largeSize)} / ${label(smallSize)} history`,
        project: large.api.p95,
        baseline: small.api.p95,
        baselineName: `same read @${label(smallSize)}`,
        ratio: large.api.p95 / small.api.p95,
        target: `<= ${TARGET_RATIO}x`,
        pass: large.api.p95 / small.api.p95 <= TARGET_RATIO,
      });
    }
    return { rows, details: { results, waiting } };
  },
} satisfies Scenario;
