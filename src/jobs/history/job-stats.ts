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
 * percentile_cont over a histogram (`buckets` ascending, `counts` > 0): for each percentile, rank
 * r = p * (n - 1) lies between the elements floor(r) and floor(r) + 1; each is estimated inside its
 * bucket and the two are interpolated as percentile_cont does.
 */
function fromHistogram(buckets: number[], counts: number[]): Pick<JobStatsBucketView, "durationP50Ms" | "durationP95Ms" | "durationP99Ms"> {
  const total = counts.reduce((a, b) => a + b, 0);
  const element = (k: number): number => {
    let before = 0;
    for (let i = 0; i < buckets.length; i++) {
      const n = counts[i] as number;
      if (k < before + n) return elementValue(k, buckets[i] as number, n, before);
      before += n;
    }
    return elementValue(k, buckets.at(-1) as number, counts.at(-1) as number, total - (counts.at(-1) as number));
  };
  const at = (p: number): number => {
    const rank = p * (total - 1);
    const lo = Math.floor(rank);
    const low = element(lo);
    return lo + 1 < total ? low + (rank - lo) * (element(lo + 1) - low) : low;
  };
  return { durationP50Ms: at(0.5), durationP95Ms: at(0.95), durationP99Ms: at(0.99) };
}

/** Most pending contributions one `job_stats_fold()` call takes. */
const FOLD_BATCH = 100_000;

/**
 * Moves the contributions the job_history triggers appended (job_stats_pending) into the rollups, all
 * of them: jobStats runs it before reading, workers every few seconds. Returns how many it folded.
 */
export async function foldJobStats(db: Db): Promise<number> {
  let total = 0;
  for (;;) {
    const [row] = await db.$queryRaw<{ taken: number }[]>`SELECT job_stats_fold(${FOLD_BATCH}::int) AS taken`;
    total += row?.taken ?? 0;
    if ((row?.taken ?? 0) < FOLD_BATCH) return total;
  }
}

/**
 * `Query.jobStats`: finished jobs of a queue (optionally one job name and one tenant) per hour or
 * day (UTC), from the rollups the job_history triggers keep (migration job_stats_rollup): counts by
 * final state and failure ratio exactly as the history rows say, duration percentiles from a
 * histogram whose buckets are 5% wide (within 5% of `percentile_cont` over the rows). Reads at most
 * one row per hour (counts) and per hour or day and histogram bucket (durations), however many jobs ran.
 * The history writes only append their contributions; each query first folds what is pending.
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

    await foldJobStats(this.db);
    // The rollup rows that add up exactly this filter (see JobStatsHourly in schema.prisma).
    const level = args.name != null ? (args.tenant != null ? 0 : 1) : args.tenant != null ? 2 : 3;
    const where = (time: string) =>
      Prisma.join(
        [
          Prisma.sql`queue = ${args.queue}`,
          Prisma.sql`level = ${level}::smallint`,
          Prisma.sql`${Prisma.raw(time)} >= ${args.from}::timestamptz`,
          Prisma.sql`${Prisma.raw(time)} < ${args.to}::timestamptz`,
          Prisma.sql`name = ${args.name ?? ""}`,
          Prisma.sql`tenant = ${args.tenant ?? ""}`,
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
   * (histogram rows `t, bucket, count`): PostgreSQL sums each time bucket's histogram into two arrays
   * (one row per time bucket comes back), the percentiles are read from them here.
   */
  private async percentiles(
    source: Prisma.Sql,
  ): Promise<Map<number | null, Pick<JobStatsBucketView, "durationP50Ms" | "durationP95Ms" | "durationP99Ms">>> {
    const rows = await this.db.$queryRaw<{ t: Date; buckets: number[]; counts: number[] }[]>(Prisma.sql`
      SELECT t, array_agg(bucket ORDER BY bucket) AS buckets, array_agg(n ORDER BY bucket) AS counts
      FROM (SELECT x.t, x.bucket, sum(x.count)::int AS n FROM (${source}) AS x GROUP BY 1, 2 HAVING sum(x.count) > 0) AS h
      GROUP BY t`);
    const result = new Map<number | null, Pick<JobStatsBucketView, "durationP50Ms" | "durationP95Ms" | "durationP99Ms">>();
    const whole = new Map<number, number>();
    for (const r of rows) {
      result.set(r.t.getTime(), fromHistogram(r.buckets, r.counts));
      r.buckets.forEach((b, i) => {
        whole.set(b, (whole.get(b) ?? 0) + (r.counts[i] as number));
      });
    }
    if (whole.size > 0) {
      const buckets = [...whole.keys()].sort((a, b) => a - b);
      result.set(
        null,
        fromHistogram(
          buckets,
          buckets.map((b) => whole.get(b) as number),
        ),
      );
    }
    return result;
  }
}
