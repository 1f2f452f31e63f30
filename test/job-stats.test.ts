import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, type Db } from "../src/infra/prisma.ts";
import { HistoryStore, JobStatsQueries, type JobStatsView, PERCENTILE_ERROR } from "../src/jobs/history/index.ts";
import type { JobView } from "../src/jobs/job-view.ts";
import { gql } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// Query.jobStats from the rollups the job_history triggers keep: after inserts, the real batched
// upserts, retries (terminal -> WAITING -> terminal again), repeated writes and retention deletes, its
// counts and failure ratios equal a brute-force SQL over the same rows exactly, and its percentiles are
// within the histogram's documented bound (PERCENTILE_ERROR: 5% + 1 ms) of percentile_cont.

let stack: TestStack;
let sql: pg.Client;
let db: Db;
let stats: JobStatsQueries;

const H = 3_600_000;
/** Three days of history, starting at a whole UTC day. */
const START = Date.UTC(2026, 10, 2);

beforeAll(async () => {
  stack = await startTestStack({ worker: false });
  sql = new pg.Client({ connectionString: stack.databaseUrl });
  await sql.connect();
  db = createPrisma(stack.databaseUrl);
  stats = new JobStatsQueries(db);
  // 6,000 rows over 72 hours: three queues, two names, some tenants, every state, durations from
  // under 1 ms to minutes (some jobs never started), a few still running.
  await sql.query(
    `INSERT INTO job_history (queue, id, name, data, state, created_at, updated_at, started_at, finished_at, tenant)
     SELECT (ARRAY['mail','report','hooks'])[1 + n % 3], 'j' || n, (ARRAY['send','digest'])[1 + (n / 3) % 2], '{}',
       s::"JobState", f - interval '1 minute', f,
       CASE WHEN n % 17 = 0 THEN NULL ELSE f - (((n * 7919) % 100000) ^ 1.3 / 50.0) * interval '1 millisecond' END,
       CASE WHEN s IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN f END,
       CASE WHEN n % 5 = 0 THEN 'acme' WHEN n % 5 = 1 THEN 'globex' END
     FROM generate_series(1, 6000) AS n,
       LATERAL (SELECT to_timestamp(($1::bigint + (n::bigint * 43200)) / 1000.0) AS f,
         CASE WHEN n % 11 = 0 THEN 'FAILED' WHEN n % 29 = 0 THEN 'CANCELLED' WHEN n % 97 = 0 THEN 'ACTIVE' ELSE 'COMPLETED' END AS s) x`,
    [START],
  );
});

afterAll(async () => {
  await db?.$disconnect();
  await sql?.end();
  await stack?.stop();
});

interface Brute {
  t: Date;
  completed: number;
  failed: number;
  cancelled: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/** The same numbers straight from job_history, with percentile_cont. */
async function bruteForce(args: {
  queue: string;
  name?: string;
  tenant?: string;
  from: number;
  to: number;
  unit: "hour" | "day" | null;
}): Promise<Brute[]> {
  const { rows } = await sql.query<Brute>(
    `SELECT ${args.unit ? "date_trunc($5::text, finished_at, 'UTC')" : "$2::timestamptz + interval '0' * length($5::text)"} AS t,
       count(*) FILTER (WHERE state = 'COMPLETED')::int AS completed,
       count(*) FILTER (WHERE state = 'FAILED')::int AS failed,
       count(*) FILTER (WHERE state = 'CANCELLED')::int AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000) FILTER (WHERE started_at IS NOT NULL) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000) FILTER (WHERE started_at IS NOT NULL) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000) FILTER (WHERE started_at IS NOT NULL) AS p99
     FROM job_history
     WHERE queue = $1 AND finished_at >= $2 AND finished_at < $3 AND state IN ('COMPLETED', 'FAILED', 'CANCELLED')
       AND ($4::text IS NULL OR name = $4) AND ($6::text IS NULL OR tenant = $6)
     GROUP BY 1 ORDER BY 1`,
    [args.queue, new Date(args.from), new Date(args.to), args.name ?? null, args.unit ?? "hour", args.tenant ?? null],
  );
  return rows;
}

/** Within the documented bound (and a hair of floating-point slack). */
function close(actual: number | null, exact: number | null): boolean {
  if (exact === null) return actual === null;
  return actual !== null && Math.abs(actual - exact) <= PERCENTILE_ERROR.relative * exact + PERCENTILE_ERROR.absoluteMs + 1e-9 * exact;
}

/** Every non-empty bucket and the totals match the brute force; empty buckets are zeros. */
function expectEqual(view: JobStatsView, perBucket: Brute[], total: Brute | undefined): void {
  const byStart = new Map(perBucket.map((b) => [b.t.getTime(), b]));
  let matched = 0;
  for (const b of view.buckets) {
    const exact = byStart.get(b.start.getTime());
    if (!exact) {
      expect(b).toMatchObject({ completed: 0, failed: 0, cancelled: 0, failureRatio: null, durationP50Ms: null });
      continue;
    }
    matched++;
    expect({ completed: b.completed, failed: b.failed, cancelled: b.cancelled }).toEqual({
      completed: exact.completed,
      failed: exact.failed,
      cancelled: exact.cancelled,
    });
    expect(b.failureRatio).toBe(exact.completed + exact.failed > 0 ? exact.failed / (exact.completed + exact.failed) : null);
    for (const [got, want] of [
      [b.durationP50Ms, exact.p50],
      [b.durationP95Ms, exact.p95],
      [b.durationP99Ms, exact.p99],
    ] as const) {
      if (!close(got, want)) throw new Error(`bucket ${b.start.toISOString()}: percentile ${got} vs percentile_cont ${want}`);
    }
  }
  expect(matched).toBe(perBucket.length);
  const t = total ?? { completed: 0, failed: 0, cancelled: 0, p50: null, p95: null, p99: null };
  expect([view.totals.completed, view.totals.failed, view.totals.cancelled]).toEqual([t.completed, t.failed, t.cancelled]);
  for (const [got, want] of [
    [view.totals.durationP50Ms, t.p50],
    [view.totals.durationP95Ms, t.p95],
    [view.totals.durationP99Ms, t.p99],
  ] as const) {
    if (!close(got, want)) throw new Error(`totals: percentile ${got} vs percentile_cont ${want}`);
  }
}

async function compare(args: { queue: string; name?: string; tenant?: string; from: number; to: number; bucket: "HOUR" | "DAY" }) {
  const view = await stats.stats({ ...args, from: new Date(args.from), to: new Date(args.to) });
  const unit = args.bucket === "HOUR" ? "hour" : "day";
  expectEqual(view, await bruteForce({ ...args, unit }), (await bruteForce({ ...args, unit: null }))[0]);
  return view;
}

describe("jobStats", () => {
  it("equals a brute-force SQL over the rows, per hour and per day, with name and tenant filters", async () => {
    const hourly = await compare({ queue: "mail", from: START, to: START + 72 * H, bucket: "HOUR" });
    expect(hourly.buckets).toHaveLength(72);
    expect(hourly.totals.completed).toBeGreaterThan(1000);
    expect(hourly.totals.failed).toBeGreaterThan(100);
    expect(hourly.totals.cancelled).toBeGreaterThan(10);
    const daily = await compare({ queue: "report", from: START, to: START + 72 * H, bucket: "DAY" });
    expect(daily.buckets.map((b) => b.start.getTime())).toEqual([START, START + 24 * H, START + 48 * H]);
    await compare({ queue: "mail", name: "digest", from: START + 5 * H, to: START + 40 * H, bucket: "HOUR" });
    await compare({ queue: "hooks", tenant: "acme", from: START, to: START + 72 * H, bucket: "DAY" });
    await compare({ queue: "hooks", name: "send", tenant: "acme", from: START, to: START + 72 * H, bucket: "HOUR" });
    // A range of hours across days.
    const partial = await compare({ queue: "mail", from: START + 30 * H, to: START + 60 * H, bucket: "HOUR" });
    expect(partial.buckets[0]?.start.getTime()).toBe(START + 30 * H);
    expect(partial.buckets.at(-1)?.end.getTime()).toBe(START + 60 * H);
    // Nothing there.
    const none = await compare({ queue: "nobody", from: START, to: START + 3 * H, bucket: "HOUR" });
    expect(none.totals).toMatchObject({ completed: 0, failureRatio: null, durationP99Ms: null });
  });

  it("checks the percentiles tightly enough to catch a wrong histogram", async () => {
    // The whole of queue mail's histogram, and the same shifted three buckets up (about 15% too slow):
    // the check passes the first and refuses the second, for each percentile.
    const exact = (await bruteForce({ queue: "mail", from: START, to: START + 72 * H, unit: null }))[0];
    const { rows } = await sql.query<{ right: number[]; shifted: number[] }>(
      `WITH h AS (
         SELECT ARRAY(SELECT sum(u.n)::bigint FROM job_stats_daily d, unnest(d.durations) WITH ORDINALITY u(n, i)
                      WHERE d.queue = 'mail' AND d.level = 3 GROUP BY u.i ORDER BY u.i) AS a)
       SELECT job_stats_quantiles(a) AS right, job_stats_quantiles('{0,0,0}'::bigint[] || a) AS shifted FROM h`,
    );
    const [row] = rows;
    expect(exact?.p50).toBeGreaterThan(100);
    for (const [i, want] of [exact?.p50, exact?.p95, exact?.p99].entries()) {
      expect(close(row?.right[i] ?? null, want ?? null)).toBe(true);
      expect(close(row?.shifted[i] ?? null, want ?? null)).toBe(false);
    }
  });

  it("stays equal after the real batched writes: retries, repeated writes, re-finishes and retention deletes", async () => {
    const store = new HistoryStore(db, { lingerMs: 5, minBatch: 50 });
    const rows = await sql.query<{ id: string; name: string; tenant: string | null; created_at: Date }>(
      `SELECT id, name, tenant, created_at FROM job_history WHERE queue = 'mail' AND state = 'FAILED' ORDER BY id LIMIT 40`,
    );
    const view = (r: (typeof rows.rows)[number], patch: Partial<JobView>): JobView => ({
      id: r.id,
      queue: "mail",
      name: r.name,
      data: {},
      state: "WAITING",
      progress: null,
      attemptsMade: 0,
      maxAttempts: 1,
      priority: 0,
      createdAt: r.created_at,
      startedAt: null,
      finishedAt: null,
      result: null,
      failedReason: null,
      replayOfId: null,
      tenant: r.tenant,
      parentQueue: null,
      parentId: null,
      ...patch,
    });
    // Retried: back to WAITING (out of the stats)...
    await Promise.all(rows.rows.map((r) => store.upsert(view(r, {}))));
    await compare({ queue: "mail", from: START, to: START + 72 * H, bucket: "HOUR" });
    // ...and finished again, half of them in another hour, each written twice (a repeated write).
    const again = rows.rows.map((r, i) =>
      view(r, {
        state: i % 2 ? "COMPLETED" : "FAILED",
        startedAt: new Date(START + 10 * H + i * 1000),
        finishedAt: new Date(START + 10 * H + i * 1000 + 250 + i * 40),
      }),
    );
    await Promise.all(again.map((v) => store.upsert(v)));
    await Promise.all(again.map((v) => store.upsert(v)));
    await compare({ queue: "mail", from: START, to: START + 72 * H, bucket: "HOUR" });
    // A retention sweep deletes the oldest day.
    await sql.query(`DELETE FROM job_history WHERE finished_at < $1`, [new Date(START + 24 * H)]);
    const afterDelete = await compare({ queue: "mail", from: START, to: START + 72 * H, bucket: "DAY" });
    expect(afterDelete.buckets[0]).toMatchObject({ completed: 0, failed: 0, cancelled: 0 });
    // No rollup row was left with a negative count.
    const { rows: negative } = await sql.query(
      `SELECT 1 FROM job_stats_hourly WHERE completed < 0 OR failed < 0 OR cancelled < 0 OR 0 > ANY (durations)
       UNION ALL SELECT 1 FROM job_stats_daily WHERE completed < 0 OR failed < 0 OR cancelled < 0 OR 0 > ANY (durations)`,
    );
    expect(negative).toEqual([]);
  });

  it("over GraphQL: answers the query and refuses bad ranges, huge or empty names and malformed dates", async () => {
    const Q = `query ($queue: String!, $name: String, $from: DateTime!, $to: DateTime!, $bucket: StatsBucket) {
      jobStats(queue: $queue, name: $name, from: $from, to: $to, bucket: $bucket) {
        queue bucket buckets { start completed failed failureRatio durationP95Ms } totals { completed failed cancelled failureRatio durationP50Ms durationP99Ms } } }`;
    const from = new Date(START + 24 * H).toISOString();
    const to = new Date(START + 48 * H).toISOString();
    const ok = await gql<{ jobStats: { buckets: unknown[]; totals: { completed: number } } }>(stack.api.url, Q, {
      queue: "report",
      from,
      to,
      bucket: "DAY",
    });
    expect(ok.body.errors).toBeUndefined();
    expect(ok.body.data?.jobStats.buckets).toHaveLength(1);
    const direct = await stats.stats({ queue: "report", from: new Date(from), to: new Date(to), bucket: "DAY" });
    expect(ok.body.data?.jobStats.totals.completed).toBe(direct.totals.completed);

    const refused = async (vars: Record<string, unknown>) => {
      const { body } = await gql(stack.api.url, Q, { queue: "report", from, to, ...vars });
      expect(body.data ?? null).toBeNull();
      return body.errors?.[0];
    };
    expect((await refused({ from: "2026-11-02T00:30:00Z" }))?.extensions).toMatchObject({ code: "VALIDATION" });
    expect((await refused({ to: from }))?.message).toMatch(/after from/);
    expect((await refused({ from: new Date(START + 25 * H).toISOString(), bucket: "DAY" }))?.message).toMatch(/whole day/);
    expect((await refused({ to: new Date(START + 1001 * H).toISOString(), from: new Date(START).toISOString() }))?.message).toMatch(
      /at most 1000 hours/,
    );
    expect((await refused({ queue: "x".repeat(100_000) }))?.extensions).toMatchObject({ code: "VALIDATION" });
    expect((await refused({ name: "" }))?.extensions).toMatchObject({ code: "VALIDATION" });
    expect((await refused({ from: "yesterday" }))?.message).toBeTruthy();
    expect((await refused({ bucket: "WEEK" }))?.message).toMatch(/StatsBucket/);
    // A year of days is fine; 1001 days is not.
    expect(
      (await refused({ from: new Date(START).toISOString(), to: new Date(START + 1001 * 24 * H).toISOString(), bucket: "DAY" }))?.message,
    ).toMatch(/at most 1000 days/);
  });
});
