import { type Db, poolOf } from "../../infra/prisma.ts";
import type { ChildrenCounts } from "../bullmq/flows.ts";
import type { JobState, JobView } from "../job-view.ts";
import { GroupCommit, type GroupCommitOptions } from "./group-commit.ts";
import { type HistoryQuarantine, isDataError } from "./quarantine.ts";

type HistoryRow = Awaited<ReturnType<Db["jobHistory"]["findFirstOrThrow"]>>;

export function viewFromRow(row: HistoryRow): JobView {
  return {
    id: row.id,
    queue: row.queue,
    name: row.name,
    data: row.data,
    state: row.state as JobState,
    progress: row.progress,
    attemptsMade: row.attemptsMade,
    maxAttempts: row.maxAttempts,
    priority: row.priority,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    result: row.result,
    failedReason: row.failedReason,
    replayOfId: row.replayOfId,
    tenant: row.tenant,
    parentQueue: row.parentQueue,
    parentId: row.parentId,
  };
}

/** `parentPolicy`: a flow child's ParentPolicy, an enqueue option like delay and backoff. */
/** One job of a flow under a parent, as `descendants` reads it. */
export interface FlowRow {
  queue: string;
  id: string;
  name: string;
  data: unknown;
  state: JobState;
  tenant: string | null;
  parentQueue: string;
  parentId: string;
  parentPolicy: string | null;
  attempts: number;
  backoff: unknown;
  priority: number;
  /** 1 for a child, 2 for a grandchild, ... */
  level: number;
}

export type Write = { view: JobView; delayMs: number; backoff: unknown; parentPolicy?: string | null };

/** One job per (queue, id) in a batch, the last write winning: Postgres won't update a row twice in a statement. */
function lastPerJob<T>(items: T[], viewOf: (item: T) => JobView): T[] {
  if (items.length === 1) return items;
  // The usual batch: one queue, no job twice. Checked on the ids themselves, no key built per row.
  const queue = viewOf(items[0] as T).queue;
  const ids = new Set<string>();
  for (const item of items) {
    const v = viewOf(item);
    if (v.queue !== queue) break;
    ids.add(v.id);
  }
  if (ids.size === items.length) return items;
  const latest = new Map<string, T>();
  for (const item of items) {
    const v = viewOf(item);
    latest.set(`${v.queue}\u0000${v.id}`, item);
  }
  return latest.size === items.length ? items : [...latest.values()];
}

/**
 * A row as it travels to PostgreSQL (the `job_history_write` type of migration
 * history_write_functions): dates as epoch milliseconds (Date#toJSON cost 2.5 µs a row), and empty
 * fields left out (`undefined` is not serialised; a missing key arrives as NULL, and delay_ms is
 * COALESCEd to 0): parsing six null keys cost PostgreSQL ~3 µs of CPU a row.
 */
function rowOf(v: JobView, delayMs?: number, backoff?: unknown, parentPolicy?: string | null) {
  return {
    queue: v.queue,
    id: v.id,
    name: v.name,
    data: v.data ?? undefined,
    state: v.state,
    progress: v.progress ?? undefined,
    attemptsMade: v.attemptsMade,
    maxAttempts: v.maxAttempts,
    priority: v.priority,
    delayMs: delayMs || undefined,
    backoff: backoff ?? undefined,
    createdAt: v.createdAt.getTime(),
    startedAt: v.startedAt?.getTime(),
    finishedAt: v.finishedAt?.getTime(),
    result: v.result ?? undefined,
    failedReason: v.failedReason ?? undefined,
    replayOfId: v.replayOfId ?? undefined,
    tenant: v.tenant ?? undefined,
    parentQueue: v.parentQueue ?? undefined,
    parentId: v.parentId ?? undefined,
    parentPolicy: parentPolicy ?? undefined,
  };
}

type Row = ReturnType<typeof rowOf>;

/**
 * Rows of newly enqueued jobs, as one JSON array parameter: one JSON.stringify per batch, parsed by
 * PostgreSQL, instead of the driver encoding every value of every row (a VALUES list of 1,000 rows
 * has 18,000 parameters). `job_history_insert` (migration history_write_functions) keeps an
 * existing row's state and sets the enqueue options only the API knows (delay, backoff).
 */
export function insertRows(writes: Write[]): Row[] {
  return lastPerJob(writes, (w) => w.view).map((w) => rowOf(w.view, w.delayMs, w.backoff, w.parentPolicy));
}

/**
 * The job's life so far; `job_history_upsert` creates a missing row and otherwise leaves name, data,
 * creation time, delay and backoff alone (later writes describe the job's life, not its definition).
 */
function upsertRows(views: JobView[]): Row[] {
  return lastPerJob(views, (v) => v).map((v) => rowOf(v));
}

/**
 * Reads and writes of the job history table. Every write is an upsert (a missing row is created),
 * and writes are group-committed: concurrent ones share a statement and a commit.
 */
export class HistoryStore {
  private readonly inserts: GroupCommit<Write>;
  private readonly upserts: GroupCommit<JobView>;

  private readonly db: Db;

  /**
   * `batching`: how writes are grouped (see GroupCommit). The API answers enqueues after their row
   * is committed, so it never lingers; workers write after the fact and linger for bigger batches.
   */
  constructor(db: Db, batching: Partial<GroupCommitOptions> = {}, quarantine: HistoryQuarantine | null = null) {
    this.db = db;
    // Straight on the pool (see poolOf): a statement per batch of enqueued or finished jobs, the
    // busiest path to PostgreSQL.
    const pool = poolOf(db);
    /**
     * One statement per batch. When PostgreSQL refuses the batch's data (a NUL character in one
     * row's jsonb fails the whole statement), each row is written on its own, so one unwritable row
     * never costs the others theirs; a row refused on its own goes to the quarantine and its caller
     * is answered as written (nothing better will come of retrying it). Any other failure
     * (PostgreSQL unreachable) rejects the batch as before, for the ledger to keep.
     */
    const writer = (fn: string) => async (rows: Row[]) => {
      try {
        await pool.query(`SELECT ${fn}($1::jsonb)`, [JSON.stringify(rows)]);
      } catch (err) {
        if (!isDataError(err)) throw err;
        let unwritable: unknown;
        for (const row of rows) {
          try {
            await pool.query(`SELECT ${fn}($1::jsonb)`, [JSON.stringify([row])]);
          } catch (rowErr) {
            if (!isDataError(rowErr)) throw rowErr;
            if (quarantine) await quarantine.put("history", row.queue, row.id, row, rowErr);
            else unwritable ??= rowErr;
          }
        }
        if (unwritable) throw unwritable;
      }
    };
    const insert = writer("job_history_insert");
    const upsert = writer("job_history_upsert");
    this.inserts = new GroupCommit((writes) => insert(insertRows(writes)), batching);
    this.upserts = new GroupCommit((views) => upsert(upsertRows(views)), batching);
  }

  /**
   * The rows of newly enqueued jobs; an existing row (an idempotent re-enqueue) is left alone. One
   * call's rows are one statement and one commit (`addAll`), however many there are.
   */
  recordEnqueued(views: Write[]): Promise<void> {
    return this.inserts.addAll(views);
  }

  /** True when `upsert`s are written one batch at a time, in order (`concurrency: 1`): a later write of a job never overtakes an earlier one. */
  get upsertsInOrder(): boolean {
    return this.upserts.inOrder;
  }

  /** Writes the job's current state; creates the row when the enqueue-time write was lost. */
  upsert(view: JobView): Promise<void> {
    return this.upserts.add(view);
  }

  async get(queue: string, id: string): Promise<JobView | null> {
    const row = await this.db.jobHistory.findUnique({ where: { queue_id: { queue, id } } });
    return row ? viewFromRow(row) : null;
  }

  /**
   * A parent's children counts from history (once Redis no longer holds the parent): completed,
   * unfinished, failed or cancelled (ignored when the child's policy let the parent go on without it).
   */
  async childrenCounts(queue: string, id: string): Promise<ChildrenCounts> {
    const rows = await poolOf(this.db).query<{ kind: keyof ChildrenCounts; n: number }>(
      `SELECT CASE WHEN state = 'COMPLETED' THEN 'processed'
                   WHEN state NOT IN ('FAILED', 'CANCELLED') THEN 'pending'
                   WHEN parent_policy = 'ignoreDependencyOnFailure' THEN 'ignored'
                   ELSE 'failed' END AS kind, count(*)::int AS n
       FROM job_history WHERE parent_queue = $1 AND parent_id = $2 GROUP BY 1`,
      [queue, id],
    );
    const counts: ChildrenCounts = { processed: 0, pending: 0, failed: 0, ignored: 0 };
    for (const r of rows.rows) counts[r.kind] = r.n;
    return counts;
  }

  /** A parent's completed children's results from history, keyed `<queue>:<id>`. */
  async childrenResults(queue: string, id: string): Promise<Record<string, unknown>> {
    const rows = await poolOf(this.db).query<{ queue: string; id: string; result: unknown }>(
      `SELECT queue, id, result FROM job_history WHERE parent_queue = $1 AND parent_id = $2 AND state = 'COMPLETED'`,
      [queue, id],
    );
    return Object.fromEntries(rows.rows.map((r) => [`${r.queue}:${r.id}`, r.result ?? null]));
  }

  /**
   * The flow under a job, from history: every descendant (children, theirs, ...), each parent before
   * its children, at most `limit` (the tree walks of cancel and replay), with what a replay copies.
   */
  async descendants(queue: string, id: string, limit: number): Promise<FlowRow[]> {
    const { rows } = await poolOf(this.db).query<FlowRow & { createdAt: Date }>(
      `WITH RECURSIVE tree AS (
         SELECT queue, id, 1 AS level FROM job_history WHERE parent_queue = $1 AND parent_id = $2
         UNION ALL
         SELECT h.queue, h.id, t.level + 1 FROM tree t JOIN job_history h ON h.parent_queue = t.queue AND h.parent_id = t.id
         WHERE t.level < 64
       )
       SELECT h.queue, h.id, h.name, h.data, h.state::text AS state, h.tenant, h.parent_queue AS "parentQueue", h.parent_id AS "parentId",
              h.parent_policy AS "parentPolicy", h.max_attempts AS attempts, h.backoff, h.priority, t.level
       FROM tree t JOIN job_history h ON h.queue = t.queue AND h.id = t.id
       ORDER BY t.level, h.created_at, h.id LIMIT $3`,
      [queue, id, limit],
    );
    return rows;
  }

  /** The enqueue options a replay copies, as the row recorded them. */
  async options(queue: string, id: string): Promise<{ attempts: number; backoff: unknown; priority: number } | null> {
    const row = await this.db.jobHistory.findUnique({
      where: { queue_id: { queue, id } },
      select: { maxAttempts: true, backoff: true, priority: true },
    });
    return row ? { attempts: row.maxAttempts, backoff: row.backoff, priority: row.priority } : null;
  }
}
