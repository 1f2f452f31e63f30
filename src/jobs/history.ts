import { Prisma } from "../generated/prisma/client.ts";
import type { Db } from "../infra/prisma.ts";
import { GroupCommit, type GroupCommitOptions } from "./group-commit.ts";
import type { JobState, JobView } from "./job-view.ts";

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
  };
}

type Write = { view: JobView; delayMs: number; backoff: unknown };

/** One job per (queue, id) in a batch, the last write winning: Postgres won't update a row twice in a statement. */
function lastPerJob<T>(items: T[], viewOf: (item: T) => JobView): T[] {
  if (items.length === 1) return items;
  const latest = new Map<string, T>();
  for (const item of items) {
    const v = viewOf(item);
    latest.set(`${v.queue}\u0000${v.id}`, item);
  }
  return latest.size === items.length ? items : [...latest.values()];
}

/** A row as it travels to PostgreSQL: dates as epoch milliseconds (Date#toJSON cost 2.5 µs a row). */
function rowOf(v: JobView, delayMs?: number, backoff?: unknown) {
  return {
    queue: v.queue,
    id: v.id,
    name: v.name,
    data: v.data ?? null,
    state: v.state,
    progress: v.progress ?? null,
    attemptsMade: v.attemptsMade,
    maxAttempts: v.maxAttempts,
    priority: v.priority,
    delayMs: delayMs ?? 0,
    backoff: backoff ?? null,
    createdAt: v.createdAt.getTime(),
    startedAt: v.startedAt?.getTime() ?? null,
    finishedAt: v.finishedAt?.getTime() ?? null,
    result: v.result ?? null,
    failedReason: v.failedReason,
    replayOfId: v.replayOfId,
    tenant: v.tenant,
  };
}

/**
 * The rows as one JSON array parameter, read back with jsonb_to_recordset: one JSON.stringify per
 * batch, and PostgreSQL parses it, instead of the driver encoding every value of every row (a
 * VALUES list of 1,000 rows has 18,000 parameters). JSON null becomes SQL NULL.
 */
function rowsOf(rows: ReturnType<typeof rowOf>[]): Prisma.Sql {
  return Prisma.sql`SELECT "queue", "id", "name", COALESCE("data", 'null'::jsonb), "state"::"JobState", "progress", "attemptsMade",
      "maxAttempts", "priority", "delayMs", "backoff", to_timestamp("createdAt" / 1000.0), to_timestamp("startedAt" / 1000.0),
      to_timestamp("finishedAt" / 1000.0), now(), "result", "failedReason", "replayOfId", "tenant"
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r("queue" text, "id" text, "name" text, "data" jsonb,
      "state" text, "progress" jsonb, "attemptsMade" int, "maxAttempts" int, "priority" int, "delayMs" int, "backoff" jsonb,
      "createdAt" float8, "startedAt" float8, "finishedAt" float8, "result" jsonb, "failedReason" text, "replayOfId" text,
      "tenant" text)`;
}

const COLUMNS = Prisma.raw(`(queue, id, name, data, state, progress, attempts_made, max_attempts, priority, delay_ms, backoff,
  created_at, started_at, finished_at, updated_at, result, failed_reason, replay_of_id, tenant)`);

/**
 * Rows of newly enqueued jobs. A row the worker created first (it can start the job before the API
 * writes) keeps its state and gets the enqueue options only the API knows (delay, backoff).
 */
function insertStatement(writes: Write[]): Prisma.Sql {
  const rows = lastPerJob(writes, (w) => w.view).map((w) => rowOf(w.view, w.delayMs, w.backoff));
  return Prisma.sql`INSERT INTO job_history ${COLUMNS} ${rowsOf(rows)}
    ON CONFLICT (queue, id) DO UPDATE SET delay_ms = EXCLUDED.delay_ms, backoff = EXCLUDED.backoff`;
}

/**
 * The job's life so far. Name, data, creation time, delay and backoff are only set when this
 * creates the row: later writes describe the job's life, not its definition.
 */
function upsertStatement(views: JobView[]): Prisma.Sql {
  return Prisma.sql`INSERT INTO job_history ${COLUMNS} ${rowsOf(lastPerJob(views, (v) => v).map((v) => rowOf(v)))}
    ON CONFLICT (queue, id) DO UPDATE SET state = EXCLUDED.state, progress = EXCLUDED.progress,
      attempts_made = EXCLUDED.attempts_made, max_attempts = EXCLUDED.max_attempts, priority = EXCLUDED.priority,
      started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, updated_at = now(), result = EXCLUDED.result,
      failed_reason = EXCLUDED.failed_reason, replay_of_id = EXCLUDED.replay_of_id, tenant = EXCLUDED.tenant`;
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
  constructor(db: Db, batching: Partial<GroupCommitOptions> = {}) {
    this.db = db;
    this.inserts = new GroupCommit((writes) => this.db.$executeRaw(insertStatement(writes)), batching);
    this.upserts = new GroupCommit((rows) => this.db.$executeRaw(upsertStatement(rows)), batching);
  }

  /** The row of a newly enqueued job; an existing row (an idempotent re-enqueue) is left alone. */
  async recordEnqueued(views: { view: JobView; delayMs: number; backoff: unknown }[]): Promise<void> {
    await Promise.all(views.map((write) => this.inserts.add(write)));
  }

  /** Writes the job's current state; creates the row when the enqueue-time write was lost. */
  upsert(view: JobView): Promise<void> {
    return this.upserts.add(view);
  }

  async get(queue: string, id: string): Promise<JobView | null> {
    const row = await this.db.jobHistory.findUnique({ where: { queue_id: { queue, id } } });
    return row ? viewFromRow(row) : null;
  }

  /** The enqueue options a replay copies, as the row recorded them. */
  async options(queue: string, id: string): Promise<{ attempts: number; backoff: unknown; priority: number } | null> {
    const row = await this.db.jobHistory.findUnique({
      where: { queue_id: { queue, id } },
      select: { maxAttempts: true, backoff: true, priority: true },
    });
    return row ? { attempts: row.maxAttempts, backoff: row.backoff, priority: row.priority } : null;
  }

  async exists(queue: string, id: string): Promise<boolean> {
    const row = await this.db.jobHistory.findUnique({ where: { queue_id: { queue, id } }, select: { id: true } });
    return row !== null;
  }

  async replaysOf(queue: string, id: string): Promise<JobView[]> {
    const rows = await this.db.jobHistory.findMany({
      where: { queue, replayOfId: id },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: 100,
    });
    return rows.map(viewFromRow);
  }
}
