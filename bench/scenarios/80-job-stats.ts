// jobStats at 100,000 and 1,000,000 rows of history spread over 30 days: p95 of sequential GraphQL
// requests against the API (auth on, production mode) for one queue over the 30 days, per day and per
// hour, with a job-name filter and with a name and tenant; the baselines are the brute-force SQL over
// job_history (count(*) FILTER and percentile_cont per day, same range, straight on PostgreSQL) and
// `{ __typename }` on the same API, alternating with every jobStats request (what HTTP, auth and
// GraphQL cost alone on this machine at that moment). The rows are
// written in chunks through the job_history triggers, as the workers' writes are, then folded into the
// rollups (job_stats_fold, as the workers do in the background).
import pg from "pg";
import { post } from "../lib/graphql-client.ts";
import type { BenchContext, Row, Scenario } from "../lib/scenario.ts";
import { nowMs, summarize } from "../lib/stats.ts";

const QUEUES = ["emails", "reports", "webhooks", "billing", "imports"];
const DAYS = 30;
const H = 3_600_000;
const TARGET_P95_MS = 50;
const TARGET_RATIO = 2;

/**
 * Appends rows [from, to) spread evenly over `DAYS` days from `start`: ~8% FAILED, ~1% CANCELLED,
 * durations from 1 ms to about a minute (a skewed spread), 5 queues and 3 job names.
 */
async function seed(client: pg.Client, from: number, to: number, start: number, total: number): Promise<void> {
  const step = (DAYS * 24 * H) / total;
  for (let chunk = from; chunk < to; chunk += 100_000) {
    await client.query(
      `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at, started_at, finished_at, tenant)
       SELECT ($4::text[])[1 + n % 5], 'job-' || n, (ARRAY['send','digest','sync'])[1 + (n / 5) % 3], '{}',
              (CASE WHEN n % 13 = 0 THEN 'FAILED' WHEN n % 101 = 0 THEN 'CANCELLED' ELSE 'COMPLETED' END)::"JobState",
              1, 3, ts, ts, ts - ((((n::bigint * 7919) % 100000) ^ 1.4) / 100.0 + 1) * interval '1 millisecond', ts,
              CASE WHEN n % 4 = 0 THEN 'tenant-' || n % 20 END
       FROM generate_series($1::int, $2::int - 1) AS n,
            LATERAL (SELECT to_timestamp(($3::float8 + n::float8 * $5::float8) / 1000.0) AS ts) t`,
      [chunk, Math.min(to, chunk + 100_000), start, QUEUES, step],
    );
  }
  // What the workers' background fold would have done by now (jobStats folds the rest itself), and
  // autovacuum after it (the fold leaves the pending table's rows dead).
  while ((await client.query<{ taken: number }>("SELECT job_stats_fold(200000) AS taken")).rows[0]?.taken === 200_000);
  await client.query("VACUUM ANALYZE job_stats_pending, job_stats_hourly, job_stats_daily");
  await client.query("ANALYZE job_history");
}

interface Case {
  name: string;
  variables: Record<string, unknown>;
}

const QUERY = `query ($queue: String!, $name: String, $tenant: String, $from: DateTime!, $to: DateTime!, $bucket: StatsBucket) {
  jobStats(queue: $queue, name: $name, tenant: $tenant, from: $from, to: $to, bucket: $bucket) {
    buckets { start completed failed cancelled failureRatio durationP50Ms durationP95Ms durationP99Ms }
    totals { completed failed cancelled failureRatio durationP50Ms durationP95Ms durationP99Ms }
  }
}`;

const BRUTE = `SELECT date_trunc('day', finished_at, 'UTC') AS t,
    count(*) FILTER (WHERE state = 'COMPLETED') AS completed, count(*) FILTER (WHERE state = 'FAILED') AS failed,
    count(*) FILTER (WHERE state = 'CANCELLED') AS cancelled,
    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000)
  FROM job_history
  WHERE queue = $1 AND finished_at >= $2 AND finished_at < $3 AND state IN ('COMPLETED', 'FAILED', 'CANCELLED')
  GROUP BY 1`;

/** p50 / p95 of `run`, and of `floor` run after each `run` when given. */
async function measure(ctx: BenchContext, run: () => Promise<unknown>, samples: number, floor?: () => Promise<unknown>) {
  const warmup = ctx.quick ? 5 : 20;
  const times: number[] = [];
  const floors: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    let t0 = nowMs();
    await run();
    if (i >= warmup) times.push(nowMs() - t0);
    if (!floor) continue;
    t0 = nowMs();
    await floor();
    if (i >= warmup) floors.push(nowMs() - t0);
  }
  return { ...summarize(times), floor: floors.length ? summarize(floors) : null };
}

export default {
  name: "job-stats",
  async run(ctx) {
    const stack = await ctx.startStack();
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    const [smallSize, largeSize] = ctx.quick ? [10_000, 100_000] : [100_000, 1_000_000];
    const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`);
    // Whole UTC days (what bucket DAY takes): the 30 days up to today's midnight.
    const to = Math.floor(Date.now() / (24 * H)) * 24 * H;
    const from = to - DAYS * 24 * H;
    const range = { queue: "billing", from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    const cases: Case[] = [
      { name: "30 days by day", variables: { ...range, bucket: "DAY" } },
      { name: "30 days by hour (720 buckets)", variables: { ...range, bucket: "HOUR" } },
      { name: "30 days by day, one job name", variables: { ...range, bucket: "DAY", name: "digest" } },
      { name: "30 days by hour, one job name and tenant", variables: { ...range, bucket: "HOUR", name: "digest", tenant: "tenant-8" } },
    ];
    const results: Record<string, Record<number, { p50: number; p95: number; p99: number; trivialP95: number | null }>> = {};
    const brute: Record<number, { p50: number; p95: number }> = {};
    const seedSeconds: Record<number, number> = {};
    try {
      // Each size is seeded from scratch (rows spread over the same 30 days).
      for (const size of [smallSize, largeSize]) {
        await client.query("TRUNCATE job_history, job_stats_hourly, job_stats_daily, job_stats_pending");
        const t0 = Date.now();
        await seed(client, 0, size, from, size);
        seedSeconds[size] = (Date.now() - t0) / 1000;
        ctx.log(`job-stats: ${size} rows seeded (through the rollup triggers) in ${seedSeconds[size].toFixed(1)} s`);
        for (const c of cases) {
          const m = await measure(
            ctx,
            () => post(stack.url, ctx.apiKey, QUERY, c.variables),
            ctx.quick ? 30 : 200,
            () => post(stack.url, ctx.apiKey, "{ __typename }"),
          );
          const byCase = results[c.name] ?? {};
          byCase[size] = { p50: m.p50, p95: m.p95, p99: m.p99, trivialP95: m.floor?.p95 ?? null };
          results[c.name] = byCase;
          ctx.log(
            `job-stats @${label(size)} ${c.name}: p50 ${m.p50.toFixed(2)} ms, p95 ${m.p95.toFixed(2)} ms; trivial query p95 ${m.floor?.p95.toFixed(2)} ms`,
          );
        }
        const b = await measure(ctx, () => client.query(BRUTE, ["billing", new Date(from), new Date(to)]), ctx.quick ? 5 : 10);
        brute[size] = { p50: b.p50, p95: b.p95 };
        ctx.log(`job-stats @${label(size)} brute-force SQL: p50 ${b.p50.toFixed(2)} ms`);
      }
    } finally {
      await client.end();
      await stack.stop();
    }

    const rows: Row[] = [];
    for (const c of cases) {
      const small = results[c.name]?.[smallSize];
      const large = results[c.name]?.[largeSize];
      if (!small || !large) continue;
      rows.push({
        scenario: `jobStats: ${c.name}`,
        metric: `p95 ms @${label(largeSize)}`,
        project: large.p95,
        baseline: brute[largeSize]?.p95 ?? null,
        baselineName: "brute-force SQL, by day (p95)",
        ratio: brute[largeSize] ? large.p95 / brute[largeSize].p95 : null,
        target: `<= ${TARGET_P95_MS} ms`,
        pass: large.p95 <= TARGET_P95_MS,
      });
      rows.push({
        scenario: `jobStats: ${c.name}`,
        metric: `p95 ms @${label(largeSize)}`,
        project: large.p95,
        baseline: large.trivialP95,
        baselineName: "{ __typename }, same API, alternating",
        ratio: large.trivialP95 ? large.p95 / large.trivialP95 : null,
        target: "-",
        pass: null,
      });
      rows.push({
        scenario: `jobStats: ${c.name}`,
        metric: `p95 ${label(largeSize)} / ${label(smallSize)}`,
        project: large.p95,
        baseline: small.p95,
        baselineName: `same query @${label(smallSize)}`,
        ratio: large.p95 / small.p95,
        target: `<= ${TARGET_RATIO}x`,
        pass: large.p95 / small.p95 <= TARGET_RATIO,
      });
    }
    return { rows, details: { results, bruteForce: brute, seedSeconds } };
  },
} satisfies Scenario;
