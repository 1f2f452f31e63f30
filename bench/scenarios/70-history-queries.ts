// History queries at 100,000 and 1,000,000 rows: `jobs` over HTTP against the API (auth on,
// production mode), p95 of sequential requests, and the 1M / 100k ratio of each (keyset pagination
// and the indexes should make row count nearly irrelevant). Prints each query's EXPLAIN ANALYZE plan.
// `npm run bench -- --only history-queries --seed-rows 10000000` adds a 10M level (opt-in, never in
// --quick): every query's p95 there, and its ratio to 1M. The rows above 1M are bulk-loaded: the
// secondary indexes dropped, the rows inserted by generate_series in 1M-row statements, the indexes
// built again (what a restore does; inserting 9M rows through ten indexes row by row takes far longer).
import pg from "pg";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { createPrisma, type Db } from "../../src/infra/prisma.ts";
import { encodeJobCursor, HistoryQueries, type JobListFilter } from "../../src/jobs/history/index.ts";
import { post } from "../lib/graphql-client.ts";
import type { BenchContext, Row, Scenario } from "../lib/scenario.ts";
import { nowMs, summarize } from "../lib/stats.ts";

export const QUEUES = ["emails", "reports", "webhooks", "billing", "imports"];
/** Time between seeded rows: 1M rows span about 11.5 days. */
export const STEP_MS = 1_000;
const TARGET_P95_MS = 15;
const TARGET_RATIO = 2;

/**
 * Appends rows [from, to) in one INSERT ... SELECT generate_series: ~8% FAILED (reasons naming one of
 * 1000 hosts), customerId from 50,000, newest row last. Ids are `job-<n>`, unique per queue.
 */
export async function seed(client: pg.Client, from: number, to: number, start: number, analyze = true): Promise<void> {
  await client.query(
    `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at, finished_at, failed_reason, tenant)
     SELECT ($4::text[])[1 + n % 5], 'job-' || n, 'run',
            jsonb_build_object('customerId', n % 50000, 'region', (ARRAY['eu','us','ap'])[1 + n % 3], 'size', n % 97),
            (CASE WHEN n % 13 = 0 THEN 'FAILED' WHEN n % 101 = 0 THEN 'CANCELLED' WHEN n % 211 = 0 THEN 'WAITING' ELSE 'COMPLETED' END)::"JobState",
            1, 3, ts, ts, ts,
            CASE WHEN n % 13 = 0 THEN 'upstream 503 from host-' || (n / 13) % 1000 || ' after 30000 ms' END,
            CASE WHEN n % 4 = 0 THEN 'tenant-' || n % 20 END
     FROM generate_series($1::int, $2::int - 1) AS n,
          LATERAL (SELECT to_timestamp(($3::bigint + n::bigint * ${STEP_MS}) / 1000.0) AS ts) t`,
    [from, to, start, QUEUES],
  );
  if (analyze) await client.query("ANALYZE job_history");
}

/** `seed` for many rows: without the secondary indexes, built again afterwards. */
export async function bulkSeed(ctx: Pick<BenchContext, "log">, client: pg.Client, from: number, to: number, start: number): Promise<void> {
  const { rows: indexes } = await client.query<{ name: string; def: string }>(
    `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
     WHERE i.schemaname = current_schema() AND i.tablename = 'job_history'
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
  );
  for (const i of indexes) await client.query(`DROP INDEX "${i.name}"`);
  for (let chunk = from; chunk < to; chunk += 1_000_000) {
    await seed(client, chunk, Math.min(to, chunk + 1_000_000), start, false);
    ctx.log(`history-queries: ${Math.min(to, chunk + 1_000_000).toLocaleString("en")} rows`);
  }
  await client.query("SET maintenance_work_mem = '256MB'");
  for (const i of indexes) await client.query(i.def);
  // As the other levels: statistics, no VACUUM (autovacuum may run during the measurement at every level).
  await client.query("ANALYZE job_history");
}

export interface Case {
  name: string;
  filter: JobListFilter;
  /** A cursor into the middle of the list (the deep page), computed at each size. */
  deep?: boolean;
  /** The search term is chosen at each size: the last digits of an id in `id`'s histogram. */
  histogramTerm?: boolean;
}

export const CASES: Case[] = [
  { name: "queue + FAILED, first 20", filter: { queue: "billing", states: ["FAILED"] } },
  { name: "deep page (row n/2), first 20", filter: {}, deep: true },
  { name: "search (failedReason)", filter: { search: "host-417 " } },
  // A word in every failure message (~77,000 rows at 1M): the page is the newest matches.
  { name: "search (common word)", filter: { search: "upstream" } },
  // Digits of a job id (BullMQ's own ids are numbers): 1 row at 100k, 20 at 1M.
  { name: "search (id fragment)", filter: { search: "12345" } },
  // The same kind of term (20 rows at 1M, 300 at 10M), but one the planner overestimates: a term in
  // one of the ~100 ids of the column's histogram is estimated at 1% of the table (100,000 rows at
  // 10M). Which terms those are depends on ANALYZE's sample, so "12345" above hits it by chance only
  // (it did in one 10M run: a Gather of two workers and JIT, 837 ms p95); this case always does.
  { name: "search (id fragment in the histogram)", filter: {}, histogramTerm: true },
  { name: "dataContains", filter: { dataContains: { customerId: 4242 } } },
];

const QUERY = `query ($filter: JobFilter, $after: String) {
  jobs(filter: $filter, first: 20, after: $after) { edges { cursor node { id queue state createdAt failedReason } } pageInfo { hasNextPage endCursor } }
}`;

/**
 * The last 5 digits (at least 3: fewer rows have fewer) of an id near the middle of `id`'s histogram
 * (ids are `job-<n>`), preferring ids of 5 digits or more.
 */
async function histogramTerm(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ term: string }>(
    `SELECT right(b, least(5, length(b) - 4)) AS term
     FROM pg_stats, unnest(histogram_bounds::text::text[]) WITH ORDINALITY AS h(b, i)
     WHERE schemaname = current_schema() AND tablename = 'job_history' AND attname = 'id' AND length(b) >= 7
     ORDER BY length(b) >= 9 DESC, abs(i - 50) LIMIT 1`,
  );
  const term = rows[0]?.term;
  if (!term) throw new Error("history-queries: job_history.id has no histogram");
  return term;
}

/**
 * The SQL the API runs for a case, under EXPLAIN ANALYZE: a Db whose $queryRaw explains instead, and
 * whose $transaction explains its statements in one transaction (as the API runs them: the trigram
 * query's planner settings apply to it there).
 */
async function explain(db: Db, filter: JobListFilter, after: string | null): Promise<string> {
  const lines: string[] = [];
  const run = (query: Prisma.Sql) => db.$queryRaw<{ "QUERY PLAN": string }[]>(Prisma.sql`EXPLAIN (ANALYZE, BUFFERS) ${query}`);
  const push = (plan: { "QUERY PLAN": string }[]) => lines.push(...plan.map((r) => r["QUERY PLAN"]));
  const explaining = {
    // Lazy like Prisma's own: run when awaited (then again for its rows, so the code takes the
    // API's path: step 2 of a search only when step 1 found too few), or by $transaction.
    $queryRaw: (query: Prisma.Sql) => ({
      query,
      // biome-ignore lint/suspicious/noThenProperty: a lazy thenable, as Prisma's own query promises are
      then: (resolve: (v: unknown) => void, reject: (e: unknown) => void) =>
        run(query)
          .then((plan) => {
            push(plan);
            return db.$queryRaw(query);
          })
          .then(resolve, reject),
    }),
    $transaction: async (queries: { query: Prisma.Sql }[]) => {
      const plans = await db.$transaction(
        queries.map((q) => run(q.query)),
        { timeout: 60_000 },
      );
      for (const plan of plans) push(plan);
      return queries.map(() => []);
    },
  } as unknown as Db;
  await new HistoryQueries(explaining, { maxPageSize: 100 }).listJobs(filter, { first: 20, after });
  return lines.join("\n");
}

async function measure(ctx: BenchContext, url: string, c: Case, after: string | null) {
  const warmup = ctx.quick ? 10 : 30;
  const samples = ctx.quick ? 60 : 300;
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < warmup + samples; i++) {
    const t0 = nowMs();
    const data = await post<{ jobs: { edges: unknown[] } }>(url, ctx.apiKey, QUERY, { filter: c.filter, after });
    if (i >= warmup) times.push(nowMs() - t0);
    rows = data.jobs.edges.length;
  }
  return { ...summarize(times), rows };
}

export default {
  name: "history-queries",
  async run(ctx) {
    const stack = await ctx.startStack();
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    const db = createPrisma(stack.databaseUrl, { max: 2 });
    // --quick checks the harness, not the figures: a tenth of the rows.
    const [smallSize, largeSize] = ctx.quick ? [10_000, 100_000] : [100_000, 1_000_000];
    const hugeSize = ctx.quick ? null : ctx.seedRows;
    const sizes = hugeSize ? [smallSize, largeSize, hugeSize] : [smallSize, largeSize];
    const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`);
    const start = Date.now() - (sizes.at(-1) as number) * STEP_MS;
    const results: Record<string, Record<number, { p50: number; p95: number; p99: number; rows: number; plan: string }>> = {};
    const seedSeconds: Record<number, number> = {};
    try {
      let seeded = 0;
      for (const size of sizes) {
        const t0 = Date.now();
        if (size === hugeSize) await bulkSeed(ctx, client, seeded, size, start);
        else await seed(client, seeded, size, start);
        seeded = size;
        seedSeconds[size] = (Date.now() - t0) / 1000;
        ctx.log(`history-queries: ${size} rows seeded in ${seedSeconds[size].toFixed(1)} s`);
        for (const listed of CASES) {
          const c = listed.histogramTerm ? { ...listed, filter: { search: await histogramTerm(client) } } : listed;
          let after: string | null = null;
          if (c.deep) {
            const { rows } = await client.query<{ created_at: Date; queue: string; id: string }>(
              "SELECT created_at, queue, id FROM job_history ORDER BY created_at DESC, id DESC, queue DESC OFFSET $1 LIMIT 1",
              [Math.floor(size / 2)],
            );
            const r = rows[0];
            if (r) after = encodeJobCursor({ createdAt: r.created_at, queue: r.queue, id: r.id });
          }
          const m = await measure(ctx, stack.url, c, after);
          const plan = await explain(db, c.filter, after);
          process.stderr.write(
            `\n--- ${c.name} @ ${size.toLocaleString("en")} rows: p50 ${m.p50.toFixed(2)} ms, p95 ${m.p95.toFixed(2)} ms, ${m.rows} rows\n${plan}\n`,
          );
          const byCase = results[c.name] ?? {};
          byCase[size] = { p50: m.p50, p95: m.p95, p99: m.p99, rows: m.rows, plan };
          results[c.name] = byCase;
        }
      }
    } finally {
      await db.$disconnect();
      await client.end();
      await stack.stop();
    }

    const rows: Row[] = [];
    for (const c of CASES) {
      const small = results[c.name]?.[smallSize];
      const large = results[c.name]?.[largeSize];
      if (!small || !large) continue;
      const huge = hugeSize ? results[c.name]?.[hugeSize] : undefined;
      if (hugeSize && huge) {
        rows.push({
          scenario: `jobs: ${c.name}`,
          metric: `p95 ms @${label(hugeSize)}`,
          project: huge.p95,
          baseline: null,
          baselineName: "-",
          ratio: null,
          target: `<= ${TARGET_P95_MS} ms`,
          pass: huge.p95 <= TARGET_P95_MS,
        });
        rows.push({
          scenario: `jobs: ${c.name}`,
          metric: `p95 ${label(hugeSize)} / ${label(largeSize)}`,
          project: huge.p95,
          baseline: large.p95,
          baselineName: `same query @${label(largeSize)}`,
          ratio: huge.p95 / large.p95,
          target: `<= ${TARGET_RATIO}x`,
          pass: huge.p95 / large.p95 <= TARGET_RATIO,
        });
      }
      rows.push({
        scenario: `jobs: ${c.name}`,
        metric: `p95 ms @${label(largeSize)}`,
        project: large.p95,
        baseline: null,
        baselineName: "-",
        ratio: null,
        target: `<= ${TARGET_P95_MS} ms`,
        pass: large.p95 <= TARGET_P95_MS,
      });
      rows.push({
        scenario: `jobs: ${c.name}`,
        metric: `p95 ${label(largeSize)} / ${label(smallSize)}`,
        project: large.p95,
        baseline: small.p95,
        baselineName: `same query @${label(smallSize)}`,
        ratio: large.p95 / small.p95,
        target: `<= ${TARGET_RATIO}x`,
        pass: large.p95 / small.p95 <= TARGET_RATIO,
      });
    }
    return { rows, details: { results, seedSeconds } };
  },
} satisfies Scenario;
