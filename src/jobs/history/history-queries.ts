import { Prisma } from "../../generated/prisma/client.ts";
import type { Db } from "../../infra/prisma.ts";
import { ValidationError, type ValidationIssue } from "../errors.ts";
import { JOB_STATES, type JobState, type JobView } from "../job-view.ts";
import { decodeJobCursor, decodeTimeIdCursor, encodeJobCursor, encodeTimeIdCursor, type JobCursor } from "./page-cursor.ts";

/** A bulk action's selection id (bulk-selections.ts checks the same for its own arguments). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What `jobs(filter:)` narrows the history by; every field optional, all of them ANDed. */
export interface JobListFilter {
  queue?: string | null;
  name?: string | null;
  states?: readonly JobState[] | null;
  /** Exclusive lower bound on createdAt. */
  createdAfter?: Date | null;
  /** Exclusive upper bound on createdAt. */
  createdBefore?: Date | null;
  /** Case-insensitive substring of the job id or its failedReason (at least 3 characters: trigram index). */
  search?: string | null;
  /** A JSON object the payload must contain (jsonb `@>`). */
  dataContains?: unknown;
  tenant?: string | null;
  /** Only these queues (a queue-limited key); set by the access layer, not by clients. */
  queues?: readonly string[] | null;
  /** Only the children of this job (`Job.children`); not a client filter. */
  parent?: { queue: string; id: string } | null;
}

/** Who may see audit rows and operator actions: a tenant's own, of some queues only. Set by the access layer. */
export interface AccessFilter {
  tenant?: string | null;
  queues?: readonly string[] | null;
}

/** Relay forward pagination: at most `first` rows after the row the `after` cursor names. */
export interface PageArgs {
  first?: number | null;
  after?: string | null;
}

export interface Edge<T> {
  cursor: string;
  node: T;
}

export interface Page<T> {
  edges: Edge<T>[];
  hasNextPage: boolean;
  endCursor: string | null;
}

/** One final failure of a job, as the worker recorded it. */
export interface FailedJobAuditView {
  id: string;
  queue: string;
  jobId: string;
  jobName: string;
  data: unknown;
  failedReason: string;
  stacktrace: string[];
  attemptsMade: number;
  failedAt: Date;
  workerId: string;
  /** When and by whom it left the inbox, and how; null while unresolved. */
  resolvedAt: Date | null;
  resolvedBy: string | null;
  resolution: "RETRIED" | "REPLAYED" | "DISMISSED" | null;
}

/** One control action taken through the API. */
export interface OperatorActionView {
  id: string;
  actor: string;
  action: string;
  queue: string;
  jobId: string | null;
  at: Date;
  details: unknown;
  /** A bulk action's selection (its rows, one per queue, share it); null for other actions. */
  selectionId: string | null;
}

export interface HistoryQueriesOptions {
  /** Largest `first` accepted (MAX_PAGE_SIZE). */
  maxPageSize: number;
}

export const DEFAULT_PAGE_SIZE = 20;
/** Trigram indexes only help from 3 characters on; shorter searches would scan the whole table. */
export const MIN_SEARCH_LENGTH = 3;
const MAX_SEARCH_LENGTH = 200;
/**
 * Rows a search first reads newest first (~1 ms per 2,000) before it turns to the trigram indexes:
 * SEARCH_WINDOW_PER_ROW per row of the page, from SEARCH_WINDOW to MAX_SEARCH_WINDOW. A term in one
 * recent row in 100 or more fills a page from there; rarer ones cost what their matches cost.
 */
export const SEARCH_WINDOW = 2_000;
const SEARCH_WINDOW_PER_ROW = 100;
const MAX_SEARCH_WINDOW = 20_000;
const MAX_NAME_LENGTH = 256;
const MAX_DATA_CONTAINS_BYTES = 16 * 1024;

/**
 * Planner settings for step 2 of a search, for its own transaction only (`set_config(..., true)` is
 * `SET LOCAL`: nothing outlives the transaction, so a transaction-mode pooler is fine). The planner
 * estimates `id ILIKE '%term%'` from the column's histogram: 0.01% of the rows when no histogram
 * entry matches the term, 1% per matching entry (1 of ~100), whatever the term really matches. At
 * 10M rows one matching entry made 304 real matches of "12345" an estimate of 101,016, and the plan
 * a Gather of two parallel workers plus JIT compilation: 837 ms p95, where the index and heap scans
 * took ~45 ms of it (bench/README.md, history queries). Without workers, JIT alone still doubled it.
 * Step 2 runs for terms rare among the newest rows; its plan is a bitmap heap scan of their matches,
 * which neither workers nor compiled expressions make faster at any size measured.
 */
const PIN_SEARCH_PLAN = Prisma.sql`SELECT set_config('max_parallel_workers_per_gather', '0', true), set_config('jit', 'off', true)`;
const SEARCH_TIMEOUT_MS = 60_000;

/** Columns of job_history under the JobView's names. */
const JOB_COLUMNS = Prisma.sql`queue, id, name, data, state::text AS state, progress,
  attempts_made AS "attemptsMade", max_attempts AS "maxAttempts", priority,
  created_at AS "createdAt", started_at AS "startedAt", finished_at AS "finishedAt", result,
  failed_reason AS "failedReason", replay_of_id AS "replayOfId", tenant,
  parent_queue AS "parentQueue", parent_id AS "parentId"`;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkText(issues: ValidationIssue[], path: string[], value: string | null | undefined, max = MAX_NAME_LENGTH): void {
  if (value === undefined || value === null) return;
  if (value.length === 0) issues.push({ path, message: "must not be empty (omit it to match every value)" });
  else if (value.length > max) issues.push({ path, message: `must be at most ${max} characters (got ${value.length})` });
}

/** `%`, `_` and `\` mean something to ILIKE; a search for them means the characters themselves. */
function likePattern(search: string): string {
  return `%${search.replace(/[\\%_]/g, "\\$&")}%`;
}

/**
 * Read side of the history tables: `jobs`, `failedJobAudits`, `operatorActions` and the batched
 * lookups behind the DataLoaders. Every list is newest first and paginated by keyset (the cursor is
 * the last row's sort key, compared as a row value so PostgreSQL walks the matching index), never by
 * OFFSET: a deep page costs what the first one does, and rows inserted meanwhile shift nothing.
 */
export class HistoryQueries {
  private readonly db: Db;
  private readonly options: HistoryQueriesOptions;

  constructor(db: Db, options: HistoryQueriesOptions) {
    this.db = db;
    this.options = options;
  }

  /** The page size from `first`, or the issue that makes it unusable. */
  private pageSize(first: number | null | undefined, issues: ValidationIssue[]): number {
    const n = first ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(n) || n < 1 || n > this.options.maxPageSize) {
      issues.push({ path: ["first"], message: `must be an integer from 1 to ${this.options.maxPageSize} (got ${n})` });
    }
    return n;
  }

  /** History rows matching `filter`, newest first (createdAt desc, id desc, queue desc). */
  async listJobs(filter: JobListFilter | null | undefined, page: PageArgs): Promise<Page<JobView>> {
    const issues: ValidationIssue[] = [];
    const first = this.pageSize(page.first, issues);
    const where = jobFilterSql(filter ?? {}, issues);
    let after: JobCursor | null = null;
    if (page.after !== undefined && page.after !== null) {
      try {
        after = decodeJobCursor(page.after);
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        issues.push(...err.issues);
      }
    }
    if (issues.length > 0) throw ValidationError.of(issues);
    const { range, rest, search } = where;
    if (after) range.push(jobKeyset(after, filter?.queue ?? null));

    if (search) return this.searchJobs(range, rest, search, first);
    const rows = await this.db.$queryRaw<JobView[]>(Prisma.sql`
      SELECT ${JOB_COLUMNS} FROM job_history ${whereAll([...range, ...rest])}
      ORDER BY created_at DESC, id DESC, queue DESC
      LIMIT ${first + 1}`);
    return toPage(rows, first, (j) => encodeJobCursor(j));
  }

  /**
   * `listJobs` with a search, in at most two queries whose work is bounded either way. The planner
   * cannot tell how many rows a `%term%` matches (a term in most failure messages, or one job id),
   * and the two plans it picks between are each hopeless for the other kind of term: walking the
   * time index with the ILIKEs as a filter reads the whole table for a rare term, and the trigram
   * bitmap reads and sorts every match of a common one. So:
   *
   * 1. The newest SEARCH_WINDOW rows of the range, walked in index order, filtered afterwards: when
   *    that finds a full page, no later row can belong on it, so it is the answer (common terms).
   * 2. Otherwise the term is rare, among recent rows at least: every match from the trigram indexes
   *    (a BitmapOr of the id and failed_reason ones), sorted. The MATERIALIZED CTE keeps the planner
   *    from turning the ORDER BY ... LIMIT back into the index walk of step 1, unbounded. It runs in
   *    a transaction of its own with parallel workers and JIT off (PIN_SEARCH_PLAN).
   *
   * Either way the rows are those of the single query with every filter: step 1 answers only when
   * the window holds a whole page, and no row past the window sorts before one inside it.
   */
  private async searchJobs(range: Prisma.Sql[], rest: Prisma.Sql[], pattern: string, first: number): Promise<Page<JobView>> {
    // Two ILIKEs ORed (not one over a concatenation) so each uses its own trigram index (BitmapOr).
    const search = Prisma.sql`(id ILIKE ${pattern} OR failed_reason ILIKE ${pattern})`;
    const window = Math.min(Math.max(SEARCH_WINDOW, SEARCH_WINDOW_PER_ROW * (first + 1)), MAX_SEARCH_WINDOW);
    const recent = await this.db.$queryRaw<JobView[]>(Prisma.sql`
      SELECT ${JOB_COLUMNS} FROM (
        SELECT * FROM job_history ${whereAll(range)}
        ORDER BY created_at DESC, id DESC, queue DESC
        LIMIT ${window}
      ) newest
      WHERE ${Prisma.join([...rest, search], " AND ")}
      ORDER BY created_at DESC, id DESC, queue DESC
      LIMIT ${first + 1}`);
    if (recent.length > first) return toPage(recent, first, (j) => encodeJobCursor(j));
    const [, rows] = await this.db.$transaction(
      [
        this.db.$queryRaw(PIN_SEARCH_PLAN),
        this.db.$queryRaw<JobView[]>(Prisma.sql`
        WITH matches AS MATERIALIZED (
          SELECT ${JOB_COLUMNS} FROM job_history WHERE ${Prisma.join([...range, ...rest, search], " AND ")}
        )
        SELECT * FROM matches
        ORDER BY "createdAt" DESC, id DESC, queue DESC
        LIMIT ${first + 1}`),
      ],
      // Prisma's default (5 s) would turn a slow search (a term only many old rows hold) into an error.
      { timeout: SEARCH_TIMEOUT_MS },
    );
    return toPage(rows, first, (j) => encodeJobCursor(j));
  }

  /**
   * Final failures, newest first (failedAt desc, id desc); optionally of one queue and/or one job, and
   * only the unresolved ones (not retried, replayed or dismissed: the inbox) or only the resolved ones.
   */
  async listFailedJobAudits(
    filter: { queue?: string | null; jobId?: string | null; unresolved?: boolean | null } & AccessFilter,
    page: PageArgs,
  ): Promise<Page<FailedJobAuditView>> {
    const issues: ValidationIssue[] = [];
    const first = this.pageSize(page.first, issues);
    checkText(issues, ["queue"], filter.queue);
    checkText(issues, ["jobId"], filter.jobId);
    const after = this.timeIdAfter("failedJobAudit", page.after, issues);
    if (issues.length > 0) throw ValidationError.of(issues);

    const where: Prisma.Sql[] = [];
    if (filter.queue) where.push(Prisma.sql`queue = ${filter.queue}`);
    if (filter.jobId) where.push(Prisma.sql`job_id = ${filter.jobId}`);
    if (filter.queues) where.push(Prisma.sql`queue = ANY(${[...filter.queues]}::text[])`);
    // Audit rows have no tenant of their own: the job's history row has it (its primary key).
    if (filter.tenant) {
      where.push(
        Prisma.sql`EXISTS (SELECT 1 FROM job_history h WHERE h.queue = failed_job_audit.queue AND h.id = failed_job_audit.job_id AND h.tenant = ${filter.tenant})`,
      );
    }
    if (filter.unresolved === true) where.push(Prisma.sql`resolved_at IS NULL`);
    if (filter.unresolved === false) where.push(Prisma.sql`resolved_at IS NOT NULL`);
    if (after) where.push(Prisma.sql`(failed_at, id) < (${after.at}::timestamptz, ${after.id}::uuid)`);
    const rows = await this.db.$queryRaw<FailedJobAuditView[]>(Prisma.sql`
      SELECT id::text AS id, queue, job_id AS "jobId", job_name AS "jobName", data, failed_reason AS "failedReason",
        COALESCE(stacktrace, '{}') AS stacktrace, attempts_made AS "attemptsMade", failed_at AS "failedAt", worker_id AS "workerId",
        resolved_at AS "resolvedAt", resolved_by AS "resolvedBy", resolution::text AS resolution
      FROM failed_job_audit
      ${where.length > 0 ? Prisma.sql`WHERE ${Prisma.join(where, " AND ")}` : Prisma.empty}
      ORDER BY failed_at DESC, id DESC
      LIMIT ${first + 1}`);
    return toPage(rows, first, (a) => encodeTimeIdCursor("failedJobAudit", { at: a.failedAt, id: a.id }));
  }

  /** Operator actions, newest first (at desc, id desc); optionally of one queue. */
  async listOperatorActions(
    filter: { queue?: string | null; selectionId?: string | null } & AccessFilter,
    page: PageArgs,
  ): Promise<Page<OperatorActionView>> {
    const issues: ValidationIssue[] = [];
    const first = this.pageSize(page.first, issues);
    checkText(issues, ["queue"], filter.queue);
    const selectionId = filter.selectionId ? filter.selectionId.toLowerCase() : null;
    if (selectionId && !UUID.test(selectionId)) issues.push({ path: ["selectionId"], message: "not a selection id (a UUID)" });
    const after = this.timeIdAfter("operatorAction", page.after, issues);
    if (issues.length > 0) throw ValidationError.of(issues);

    const where: Prisma.Sql[] = [];
    if (filter.queue) where.push(Prisma.sql`queue = ${filter.queue}`);
    if (selectionId) where.push(Prisma.sql`selection_id = ${selectionId}::uuid`);
    if (filter.queues) where.push(Prisma.sql`queue = ANY(${[...filter.queues]}::text[])`);
    if (filter.tenant) where.push(Prisma.sql`tenant = ${filter.tenant}`);
    if (after) where.push(Prisma.sql`(at, id) < (${after.at}::timestamptz, ${after.id}::uuid)`);
    const rows = await this.db.$queryRaw<OperatorActionView[]>(Prisma.sql`
      SELECT id::text AS id, actor, action, queue, job_id AS "jobId", at, details, selection_id::text AS "selectionId"
      FROM operator_action
      ${where.length > 0 ? Prisma.sql`WHERE ${Prisma.join(where, " AND ")}` : Prisma.empty}
      ORDER BY at DESC, id DESC
      LIMIT ${first + 1}`);
    return toPage(rows, first, (a) => encodeTimeIdCursor("operatorAction", { at: a.at, id: a.id }));
  }

  /**
   * How many of a tenant's jobs of `queue` are in each state, from history (the partial
   * (tenant, queue, state) index: an index-only count). History follows Redis closely, not exactly:
   * a job's ACTIVE row is written once it has run 200 ms. Keyed by lower-case state name.
   */
  async tenantCounts(queue: string, tenant: string): Promise<Record<string, number>> {
    const rows = await this.db.$queryRaw<{ state: string; n: number }[]>(Prisma.sql`
      SELECT lower(state::text) AS state, count(*)::int AS n FROM job_history WHERE tenant = ${tenant} AND queue = ${queue} GROUP BY state`);
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  private timeIdAfter(kind: "failedJobAudit" | "operatorAction", after: string | null | undefined, issues: ValidationIssue[]) {
    if (after === undefined || after === null) return null;
    try {
      return decodeTimeIdCursor(kind, after);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      issues.push(...err.issues);
      return null;
    }
  }

  /** History rows of many jobs in one query; the result is keyed `${queue}\u0000${id}`. */
  async getMany(keys: readonly { queue: string; id: string }[]): Promise<Map<string, JobView>> {
    const found = new Map<string, JobView>();
    if (keys.length === 0) return found;
    const rows = await this.db.$queryRaw<JobView[]>(Prisma.sql`
      SELECT ${JOB_COLUMNS} FROM job_history
      WHERE (queue, id) IN (${Prisma.join(keys.map((k) => Prisma.sql`(${k.queue}, ${k.id})`))})`);
    for (const row of rows) found.set(jobKey(row.queue, row.id), row);
    return found;
  }

  /**
   * Jobs that replay each of many jobs, newest first, at most `limit` each, in one query; keyed like
   * getMany. Uses the (queue, replay_of_id) index.
   */
  async replaysOfMany(keys: readonly { queue: string; id: string }[], limit = 100): Promise<Map<string, JobView[]>> {
    const found = new Map<string, JobView[]>();
    if (keys.length === 0) return found;
    const rows = await this.db.$queryRaw<JobView[]>(Prisma.sql`
      SELECT ${JOB_COLUMNS} FROM (
        SELECT *, row_number() OVER (PARTITION BY queue, replay_of_id ORDER BY created_at DESC, id DESC) AS rank
        FROM job_history
        WHERE (queue, replay_of_id) IN (${Prisma.join(keys.map((k) => Prisma.sql`(${k.queue}, ${k.id})`))})
      ) ranked
      WHERE rank <= ${limit}
      ORDER BY created_at DESC, id DESC`);
    for (const row of rows) {
      const key = jobKey(row.queue, row.replayOfId ?? "");
      const list = found.get(key) ?? [];
      list.push(row);
      found.set(key, list);
    }
    return found;
  }
}

/**
 * The SQL conditions of a `jobs` filter (`JobFilter`), checked: each problem is pushed to `issues`
 * under `["filter", field]`. `range`: the conditions one index in (created_at, id, queue) order
 * serves as a contiguous run (a queue and/or one state, else a tenant; the createdAt bounds);
 * `rest`: the other filters, checked row by row within that run; `search`: the ILIKE pattern of
 * `filter.search`, when given (the caller decides how to apply it). `jobs` and bulk selections
 * (bulkJobAction) both read history through it, so a filter selects the same rows in both.
 */
export function jobFilterSql(
  f: JobListFilter,
  issues: ValidationIssue[],
): { range: Prisma.Sql[]; rest: Prisma.Sql[]; search: string | null } {
  checkText(issues, ["filter", "queue"], f.queue);
  checkText(issues, ["filter", "name"], f.name);
  checkText(issues, ["filter", "tenant"], f.tenant);
  if (f.states) {
    if (f.states.length === 0) issues.push({ path: ["filter", "states"], message: "must list at least one state (omit it for all)" });
    const unknown = f.states.filter((s) => !JOB_STATES.includes(s));
    if (unknown.length > 0) issues.push({ path: ["filter", "states"], message: `unknown states: ${unknown.join(", ")}` });
  }
  if (f.createdAfter && f.createdBefore && f.createdAfter.getTime() >= f.createdBefore.getTime()) {
    issues.push({
      path: ["filter", "createdAfter"],
      message: `must be earlier than filter.createdBefore (${f.createdAfter.toISOString()} is not before ${f.createdBefore.toISOString()})`,
    });
  }
  if (f.search !== undefined && f.search !== null) {
    if (f.search.length < MIN_SEARCH_LENGTH || f.search.length > MAX_SEARCH_LENGTH) {
      issues.push({
        path: ["filter", "search"],
        message: `must be ${MIN_SEARCH_LENGTH} to ${MAX_SEARCH_LENGTH} characters (got ${f.search.length})`,
      });
    }
  }
  let dataContains: string | null = null;
  if (f.dataContains !== undefined && f.dataContains !== null) {
    if (!isPlainObject(f.dataContains)) {
      issues.push({ path: ["filter", "dataContains"], message: 'must be a JSON object, e.g. {"customerId": 42}' });
    } else {
      dataContains = JSON.stringify(f.dataContains);
      if (Buffer.byteLength(dataContains) > MAX_DATA_CONTAINS_BYTES) {
        issues.push({ path: ["filter", "dataContains"], message: `must be at most ${MAX_DATA_CONTAINS_BYTES} bytes of JSON` });
      }
    }
  }
  const range: Prisma.Sql[] = [];
  const rest: Prisma.Sql[] = [];
  const states = f.states ? [...new Set(f.states)] : null;
  // The partial (parent_queue, parent_id, created_at, id, queue) index: a flow's children in order.
  if (f.parent) range.push(Prisma.sql`parent_queue = ${f.parent.queue} AND parent_id = ${f.parent.id}`);
  if (f.queue) range.push(Prisma.sql`queue = ${f.queue}`);
  // One state as `=`, not `= ANY(...)`: only then does the planner walk (queue, state, created_at,
  // id) or (state, created_at, id, queue) in order and stop after one page, instead of filtering
  // the (created_at, id, queue) index.
  if (states?.length === 1) range.push(Prisma.sql`state = ${states[0]}::"JobState"`);
  else if (states) rest.push(Prisma.sql`state = ANY(${states}::"JobState"[])`);
  if (f.tenant) (range.length === 0 ? range : rest).push(Prisma.sql`tenant = ${f.tenant}`);
  if (f.name) rest.push(Prisma.sql`name = ${f.name}`);
  if (f.queues) rest.push(Prisma.sql`queue = ANY(${[...f.queues]}::text[])`);
  if (f.createdAfter) range.push(Prisma.sql`created_at > ${f.createdAfter}::timestamptz`);
  if (f.createdBefore) range.push(Prisma.sql`created_at < ${f.createdBefore}::timestamptz`);
  if (dataContains) rest.push(Prisma.sql`data @> ${dataContains}::jsonb`);
  return { range, rest, search: f.search ? likePattern(f.search) : null };
}

/** The key getMany / replaysOfMany results are stored under. */
export function jobKey(queue: string, id: string): string {
  return `${queue}\u0000${id}`;
}

/**
 * Rows strictly after the cursor in (created_at desc, id desc, queue desc). With one queue fixed by
 * the filter, the (queue, created_at, id) indexes can only take a row comparison on (created_at, id):
 * that `<=` bounds the index range, and the full three-column comparison settles the one tie left
 * (same time and id, other queue) as a filter, in the database's collation like the ORDER BY.
 */
function jobKeyset(after: JobCursor, queue: string | null): Prisma.Sql {
  const full = Prisma.sql`(created_at, id, queue) < (${after.createdAt}::timestamptz, ${after.id}, ${after.queue})`;
  if (queue === null) return full;
  return Prisma.sql`(created_at, id) <= (${after.createdAt}::timestamptz, ${after.id}) AND ${full}`;
}

function whereAll(conditions: Prisma.Sql[]): Prisma.Sql {
  return conditions.length > 0 ? Prisma.sql`WHERE ${Prisma.join(conditions, " AND ")}` : Prisma.empty;
}

function toPage<T>(rows: T[], first: number, cursorOf: (row: T) => string): Page<T> {
  const edges = rows.slice(0, first).map((node) => ({ cursor: cursorOf(node), node }));
  return { edges, hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null };
}
