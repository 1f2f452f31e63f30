import { Prisma } from "../../generated/prisma/client.ts";
import type { Db } from "../../infra/prisma.ts";
import { ValidationError, type ValidationIssue } from "../errors.ts";

export type StatsBucket = "HOUR" | "DAY";

const BUCKET_MS: Record<StatsBucket, number> = { HOUR: 3_600_000, DAY: 86_400_000 };
/** Most buckets one jobStats answer holds. */
export const MAX_STATS_BUCKETS = 1_000;
const MAX_TEXT = 256;
/** Width of the duration histogram's buckets (see job_stats_bucket in migration job_stats_rollup). */
const GROWTH = 1.05;
const PERCENTILES = [0.5, 0.95, 0.99] as const;

export interface JobStatsArgs {
  queue: string;
  name?: string | null;
  tenant?: string | null;
  from: Date;
  to: Date;
  bucket: StatsBucket;
}

/** Jobs that finished in one time bucket (or the whole range), by final state, with durations. */
export interface JobStatsBucketView {
  start: Date;
  end: Date;
  completed: number;
  failed: number;
  cancelled: number;
  /** failed / (completed + failed): cancellations are an operator's choice, not failures. Null with neither. */
  failureRatio: number | null;
  /** Duration (finishedAt - startedAt) percentiles in ms over the jobs that started; null when none did. */
  durationP50Ms: number | null;
  durationP95Ms: number | null;
  durationP99Ms: number | null;
}

export interface JobStatsView {
  queue: string;
  name: string | null;
  tenant: string | null;
  from: Date;
  to: Date;
  bucket: StatsBucket;
  buckets: JobStatsBucketView[];
  totals: JobStatsBucketView;
}

/** The k-th smallest duration (0-based) estimated from the histogram bucket holding it: spread evenly inside. */
function elementValue(k: number, bucket: number, count: number, before: number): number {
  const low = bucket === 0 ? 0 : GROWTH ** (bucket - 1);
  const high = bucket === 0 ? 1 : GROWTH ** bucket;
  return low + (high - low) * Math.min(1, Math.max(0, (k - before + 0.5) / count));
}

/**
 * `Query.jobStats`: finished jobs of a queue (optionally one job name and one tenant) per hour or
 * day (UTC), from the rollups the job_history triggers keep (migration job_stats_rollup): counts by
 * final state and failure ratio exactly as the history rows say, duration percentiles from a
 * histogram whose buckets are 5% wide (within 5% of `percentile_cont` over the rows). Reads at most
 * one row per hour (counts) and per hour or day and histogram bucket (durations), however many jobs ran.
 */
export class JobStatsQueries {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Throws ValidationError naming each bad argument. */
  async stats(args: JobStatsArgs): Promise<JobStatsView> {
    const issues: ValidationIssue[] = [];
    for (const key of ["queue", "name", "tenant"] as const) {
      const v = args[key];
      if (v != null && (v.length === 0 || v.length > MAX_TEXT))
        issues.push({ path: [key], message: `must be 1 to ${MAX_TEXT} characters` });
    }
    const step = BUCKET_MS[args.bucket];
    if (step === undefined) issues.push({ path: ["bucket"], message: "must be HOUR or DAY" });
    const from = args.from.getTime();
    const to = args.to.getTime();
    if (!Number.isFinite(from) || from % 3_600_000 !== 0) issues.push({ path: ["from"], message: "must be a whole hour (UTC)" });
    if (!Number.isFinite(to) || to % 3_600_000 !== 0) issues.push({ path: ["to"], message: "must be a whole hour (UTC)" });
    if (issues.length === 0 && args.bucket === "DAY") {
      if (from % step !== 0) issues.push({ path: ["from"], message: "must be a whole day (UTC midnight) with bucket DAY" });
      if (to % step !== 0) issues.push({ path: ["to"], message: "must be a whole day (UTC midnight) with bucket DAY" });
    }
    if (issues.length === 0 && to <= from) issues.push({ path: ["to"], message: "must be after from" });
    if (issues.length === 0 && Math.ceil((to - from) / step) > MAX_STATS_BUCKETS) {
      issues.push({ path: ["to"], message: `at most ${MAX_STATS_BUCKETS} ${args.bucket === "HOUR" ? "hours" : "days"} from from` });
    }
    if (issues.length > 0) throw ValidationError.of(issues);

    const where = (time: string) =>
      Prisma.join(
        [
          Prisma.sql`queue = ${args.queue}`,
          Prisma.sql`${Prisma.raw(time)} >= ${args.from}::timestamptz`,
          Prisma.sql`${Prisma.raw(time)} < ${args.to}::timestamptz`,
          ...(args.name != null ? [Prisma.sql`name = ${args.name}`] : []),
          ...(args.tenant != null ? [Prisma.sql`tenant = ${args.tenant}`] : []),
        ],
        " AND ",
      );
    // Day buckets: UTC days from the epoch (arithmetic, no time-zone lookup per row).
    const hourTo = args.bucket === "HOUR" ? Prisma.sql`hour` : Prisma.sql`to_timestamp(floor(extract(epoch FROM hour) / 86400) * 86400)`;
    const [counts, durations] = await Promise.all([
      this.db.$queryRaw<{ t: Date; completed: number; failed: number; cancelled: number }[]>(Prisma.sql`
        SELECT ${hourTo} AS t, sum(completed)::int AS completed, sum(failed)::int AS failed, sum(cancelled)::int AS cancelled
        FROM job_stats_hourly WHERE ${where("hour")} GROUP BY 1`),
      args.bucket === "HOUR"
        ? this.percentiles(Prisma.sql`SELECT hour AS t, bucket, count FROM job_stats_duration WHERE ${where("hour")}`)
        : this.percentiles(Prisma.sql`SELECT day AS t, bucket, count FROM job_stats_duration_daily WHERE ${where("day")}`),
    ]);

    const empty = (start: number, end: number): JobStatsBucketView => ({
      start: new Date(start),
      end: new Date(end),
      completed: 0,
      failed: 0,
      cancelled: 0,
      failureRatio: null,
      durationP50Ms: null,
      durationP95Ms: null,
      durationP99Ms: null,
    });
    // Dense: every bucket of the range, those without jobs at zero.
    const buckets: JobStatsBucketView[] = [];
    for (let start = from; start < to; start += step) buckets.push(empty(start, start + step));
    const byStart = new Map(buckets.map((b) => [b.start.getTime(), b]));
    const totals = empty(from, to);
    for (const row of counts) {
      const b = byStart.get(row.t.getTime());
      if (!b) continue;
      b.completed = row.completed;
      b.failed = row.failed;
      b.cancelled = row.cancelled;
      totals.completed += row.completed;
      totals.failed += row.failed;
      totals.cancelled += row.cancelled;
    }
    for (const [t, p] of durations) {
      const b = t === null ? totals : byStart.get(t);
      if (b) Object.assign(b, p);
    }
    for (const b of [...buckets, totals]) {
      b.failureRatio = b.completed + b.failed > 0 ? b.failed / (b.completed + b.failed) : null;
    }
    return {
      queue: args.queue,
      name: args.name ?? null,
      tenant: args.tenant ?? null,
      from: args.from,
      to: args.to,
      bucket: args.bucket,
      buckets,
      totals,
    };
  }

  /**
   * Duration percentiles per time bucket and for all of them together (key null), from `source`
   * (histogram rows `t, bucket, count`): for each percentile, the histogram buckets holding the two
   * elements around its rank, found in SQL with running sums (at most six rows per time bucket).
   */
  private async percentiles(
    source: Prisma.Sql,
  ): Promise<Map<number | null, Pick<JobStatsBucketView, "durationP50Ms" | "durationP95Ms" | "durationP99Ms">>> {
    // percentile_cont: rank r = p * (n - 1) between the elements floor(r) and floor(r) + 1, each
    // estimated inside its histogram bucket, then interpolated as percentile_cont does.
    const rows = await this.db.$queryRaw<
      { t: Date | null; p: number; k: number; bucket: number; n: number; before: number; total: number }[]
    >(
      Prisma.sql`
      WITH h AS (
        SELECT CASE WHEN GROUPING(x.t) = 0 THEN x.t END AS t, x.bucket, sum(x.count)::float8 AS n
        FROM (${source}) AS x GROUP BY GROUPING SETS ((x.t, x.bucket), (x.bucket)) HAVING sum(x.count) > 0
      ), c AS (
        SELECT t, bucket, n, sum(n) OVER (PARTITION BY t ORDER BY bucket) AS cum, sum(n) OVER (PARTITION BY t) AS total FROM h
      )
      SELECT c.t, p.p, k.k, c.bucket, c.n, c.cum - c.n AS before, c.total
      FROM c CROSS JOIN unnest(${[...PERCENTILES]}::float8[]) AS p(p)
      CROSS JOIN LATERAL (VALUES (floor(p.p * (c.total - 1))), (LEAST(c.total - 1, floor(p.p * (c.total - 1)) + 1))) AS k(k)
      WHERE c.cum - c.n <= k.k AND k.k < c.cum`,
    );
    const values = new Map<string, { t: number | null; p: number; total: number; at: Map<number, number> }>();
    for (const r of rows) {
      const t = r.t === null ? null : r.t.getTime();
      const key = `${t} ${r.p}`;
      let entry = values.get(key);
      if (!entry) {
        entry = { t, p: r.p, total: r.total, at: new Map() };
        values.set(key, entry);
      }
      entry.at.set(r.k, elementValue(r.k, r.bucket, r.n, r.before));
    }
    const result = new Map<number | null, Pick<JobStatsBucketView, "durationP50Ms" | "durationP95Ms" | "durationP99Ms">>();
    for (const { t, p, total, at } of values.values()) {
      const rank = p * (total - 1);
      const lo = Math.floor(rank);
      const low = at.get(lo) as number;
      const value = low + (rank - lo) * ((at.get(Math.min(total - 1, lo + 1)) ?? low) - low);
      const entry = result.get(t) ?? { durationP50Ms: null, durationP95Ms: null, durationP99Ms: null };
      if (p === 0.5) entry.durationP50Ms = value;
      else if (p === 0.95) entry.durationP95Ms = value;
      else entry.durationP99Ms = value;
      result.set(t, entry);
    }
    return result;
  }
}
