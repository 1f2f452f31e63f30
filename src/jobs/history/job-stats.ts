import { Prisma } from "../../generated/prisma/client.ts";
import { type Db, poolOf } from "../../infra/prisma.ts";
import { ValidationError, type ValidationIssue } from "../errors.ts";

export type StatsBucket = "HOUR" | "DAY";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const BUCKET_MS: Record<StatsBucket, number> = { HOUR: HOUR_MS, DAY: DAY_MS };
/** Most buckets one jobStats answer holds. */
export const MAX_STATS_BUCKETS = 1_000;
const MAX_TEXT = 256;
/**
 * How far a duration percentile may be from `percentile_cont` over the same rows: the histogram's
 * buckets are 5% wide (job_stats_quantiles in migration job_stats_histograms), bucket 0 is [0, 1) ms.
 */
export const PERCENTILE_ERROR = { relative: 0.05, absoluteMs: 1 } as const;

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

/** Most pending contributions one `job_stats_fold()` call takes. */
const FOLD_BATCH = 100_000;

/**
 * Moves the contributions the job_history triggers appended (job_stats_pending) into the rollups, all
 * of them: jobStats runs it before reading, workers every few seconds. Returns how many it folded.
 * Straight on the pool (poolOf): in a worker this is the only statement of a no-op job's life that went
 * through Prisma, and its first call loaded Prisma's query compiler (~100 ms of CPU) in the middle of
 * the jobs.
 */
export async function foldJobStats(db: Db): Promise<number> {
  const pool = poolOf(db);
  let total = 0;
  for (;;) {
    const { rows } = await pool.query<{ taken: number }>("SELECT job_stats_fold($1::int) AS taken", [FOLD_BATCH]);
    const taken = rows[0]?.taken ?? 0;
    total += taken;
    if (taken < FOLD_BATCH) return total;
  }
}

/**
 * `Query.jobStats`: finished jobs of a queue (optionally one job name and one tenant) per hour or
 * day (UTC), from the rollups the job_history triggers keep (migrations job_stats_rollup and
 * job_stats_histograms): one row per hour and per day of each filter, holding the counts by final
 * state (exact), a duration histogram with 5%-wide buckets and the percentiles read from it (within
 * PERCENTILE_ERROR of `percentile_cont` over the rows). A bucket is one row read, whatever the number
 * of jobs in it; the totals merge the histograms of the range's whole days and its edge hours (at most
 * ~1,000 + 46 arrays, usually ~30 + a few). The history writes only append their contributions; each
 * query first folds what is pending.
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
    if (!Number.isFinite(from) || from % HOUR_MS !== 0) issues.push({ path: ["from"], message: "must be a whole hour (UTC)" });
    if (!Number.isFinite(to) || to % HOUR_MS !== 0) issues.push({ path: ["to"], message: "must be a whole hour (UTC)" });
    if (issues.length === 0 && args.bucket === "DAY") {
      if (from % step !== 0) issues.push({ path: ["from"], message: "must be a whole day (UTC midnight) with bucket DAY" });
      if (to % step !== 0) issues.push({ path: ["to"], message: "must be a whole day (UTC midnight) with bucket DAY" });
    }
    if (issues.length === 0 && to <= from) issues.push({ path: ["to"], message: "must be after from" });
    if (issues.length === 0 && Math.ceil((to - from) / step) > MAX_STATS_BUCKETS) {
      issues.push({ path: ["to"], message: `at most ${MAX_STATS_BUCKETS} ${args.bucket === "HOUR" ? "hours" : "days"} from from` });
    }
    if (issues.length > 0) throw ValidationError.of(issues);

    await foldJobStats(this.db);
    // The rollup rows that add up exactly this filter (see JobStatsHourly in schema.prisma).
    const level = args.name != null ? (args.tenant != null ? 0 : 1) : args.tenant != null ? 2 : 3;
    const key = Prisma.sql`queue = ${args.queue} AND level = ${level}::smallint AND name = ${args.name ?? ""} AND tenant = ${args.tenant ?? ""}`;
    const rows =
      args.bucket === "HOUR"
        ? Prisma.sql`SELECT hour AS t, completed, failed, cancelled, duration_p50 AS p50, duration_p95 AS p95, duration_p99 AS p99
            FROM job_stats_hourly WHERE ${key} AND hour >= ${args.from}::timestamptz AND hour < ${args.to}::timestamptz`
        : Prisma.sql`SELECT day AS t, completed, failed, cancelled, duration_p50 AS p50, duration_p95 AS p95, duration_p99 AS p99
            FROM job_stats_daily WHERE ${key} AND day >= ${args.from}::timestamptz AND day < ${args.to}::timestamptz`;
    // The totals' histogram: the whole UTC days inside [from, to) from the daily rows, the hours
    // outside them from the hourly ones, summed element-wise.
    const dayFrom = Math.ceil(from / DAY_MS) * DAY_MS;
    const dayTo = Math.max(dayFrom, Math.floor(to / DAY_MS) * DAY_MS);
    const totalsSql = Prisma.sql`
      WITH parts AS (
        SELECT durations FROM job_stats_daily WHERE ${key} AND day >= ${new Date(dayFrom)}::timestamptz AND day < ${new Date(dayTo)}::timestamptz
        UNION ALL
        SELECT durations FROM job_stats_hourly WHERE ${key} AND hour >= ${args.from}::timestamptz AND hour < ${args.to}::timestamptz
          AND NOT (hour >= ${new Date(dayFrom)}::timestamptz AND hour < ${new Date(dayTo)}::timestamptz)
      )
      SELECT job_stats_quantiles(ARRAY(
        SELECT sum(u.n)::bigint FROM parts, unnest(parts.durations) WITH ORDINALITY AS u(n, i) GROUP BY u.i ORDER BY u.i
      )) AS q`;
    const [found, [whole]] = await Promise.all([
      this.db.$queryRaw<
        { t: Date; completed: number; failed: number; cancelled: number; p50: number | null; p95: number | null; p99: number | null }[]
      >(rows),
      this.db.$queryRaw<{ q: number[] | null }[]>(totalsSql),
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
    const totals = empty(from, to);
    for (const row of found) {
      const b = buckets[Math.round((row.t.getTime() - from) / step)];
      if (!b || b.start.getTime() !== row.t.getTime()) continue;
      b.completed = row.completed;
      b.failed = row.failed;
      b.cancelled = row.cancelled;
      b.durationP50Ms = row.p50;
      b.durationP95Ms = row.p95;
      b.durationP99Ms = row.p99;
      totals.completed += row.completed;
      totals.failed += row.failed;
      totals.cancelled += row.cancelled;
    }
    const q = whole?.q ?? null;
    totals.durationP50Ms = q?.[0] ?? null;
    totals.durationP95Ms = q?.[1] ?? null;
    totals.durationP99Ms = q?.[2] ?? null;
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
}
