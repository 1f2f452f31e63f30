import { type Db, poolOf } from "../../infra/prisma.ts";
import type { JobState } from "../job-view.ts";

/** The states of a job BullMQ should still hold: a row in one of them and no job in Redis is a lost job. */
export const PENDING_STATES = ["WAITING", "PRIORITIZED", "DELAYED", "ACTIVE"] as const satisfies readonly JobState[];

/** What a recovery needs of a row to put its job back: everything the enqueue gave BullMQ, and how far it got. */
export interface PendingRow {
  queue: string;
  id: string;
  name: string;
  data: unknown;
  state: JobState;
  attemptsMade: number;
  maxAttempts: number;
  priority: number;
  delayMs: number;
  backoff: unknown;
  createdAt: Date;
  replayOfId: string | null;
  tenant: string | null;
}

/** One re-added job, as `job_recovery` and the operator audit record it. */
export interface Recovery {
  queue: string;
  jobId: string;
  /** The row's state when its job was found missing. */
  state: JobState;
  attemptsMade: number;
  /** The delay the job was re-added with (what remained of its own). */
  delayMs: number;
  /** Redis' `run_id` the job was re-added to. */
  redisRunId: string;
  passId: string;
}

/** Where a page of PENDING rows ends: the next page starts after it (newest first). */
export interface PendingCursor {
  createdAt: Date;
  id: string;
}

/**
 * PostgreSQL's side of durable enqueue (issue #18): the statements that let history be the record
 * Redis is rebuilt from. The enqueue path seeds job ids from it and takes back rows whose job never
 * reached Redis; the recovery reconciler pages through rows of pending jobs and records what it re-added.
 */
export class DurableRecords {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** The largest numeric job id history holds for `queue` (0 when none). */
  async maxNumericId(queue: string): Promise<number> {
    const { rows } = await poolOf(this.db).query<{ max: string | null }>(
      `SELECT max(id::numeric)::text AS max FROM job_history WHERE queue = $1 AND id ~ '^[0-9]{1,15}$'`,
      [queue],
    );
    return Number(rows[0]?.max ?? 0);
  }

  /**
   * Deletes the rows an enqueue wrote before its add to Redis failed. Only a row this enqueue created
   * goes (same creation time, still pending): a concurrent enqueue of the same `jobId` keeps its own.
   */
  async forget(jobs: { queue: string; id: string; createdAt: Date }[]): Promise<void> {
    if (jobs.length === 0) return;
    await poolOf(this.db).query(
      `DELETE FROM job_history h USING unnest($1::text[], $2::text[], $3::float8[]) AS f(queue, id, created)
       WHERE h.queue = f.queue AND h.id = f.id AND h.created_at = to_timestamp(f.created / 1000.0)
         AND h.state::text = ANY($4::text[])`,
      [jobs.map((j) => j.queue), jobs.map((j) => j.id), jobs.map((j) => j.createdAt.getTime()), PENDING_STATES],
    );
  }

  /**
   * Up to `limit` ids of `queue`'s rows in `state` created before `before`, newest first, after
   * `cursor`: one walk of the (queue, state, created_at, id) index per page.
   */
  async pendingIds(queue: string, state: JobState, before: Date, cursor: PendingCursor | null, limit: number): Promise<PendingCursor[]> {
    const after = cursor ?? { createdAt: before, id: "" };
    const { rows } = await poolOf(this.db).query<{ id: string; created: string }>(
      `SELECT id, (extract(epoch FROM created_at) * 1000)::bigint::text AS created FROM job_history
       WHERE queue = $1 AND state = $2::"JobState" AND (created_at, id) < (to_timestamp($3 / 1000.0), $4)
       ORDER BY created_at DESC, id DESC LIMIT $5`,
      [queue, state, after.createdAt.getTime(), cursor ? after.id : "", limit],
    );
    return rows.map((r) => ({ id: r.id, createdAt: new Date(Number(r.created)) }));
  }

  /** The rows of `ids` that are still pending (a row may have moved on since it was paged). */
  async pendingRows(queue: string, ids: string[]): Promise<PendingRow[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.jobHistory.findMany({
      where: { queue, id: { in: ids }, state: { in: [...PENDING_STATES] } },
      select: {
        queue: true,
        id: true,
        name: true,
        data: true,
        state: true,
        attemptsMade: true,
        maxAttempts: true,
        priority: true,
        delayMs: true,
        backoff: true,
        createdAt: true,
        replayOfId: true,
        tenant: true,
      },
    });
    return rows.map((r) => ({ ...r, state: r.state as JobState }));
  }

  /**
   * Records re-added jobs: a `job_recovery` row each (the job's history) and an operator action
   * `RECOVERED` each (the audit trail, actor `system:recovery`), in one transaction.
   */
  async recordRecoveries(recoveries: Recovery[]): Promise<void> {
    if (recoveries.length === 0) return;
    await this.db.$transaction([
      this.db.jobRecovery.createMany({
        data: recoveries.map((r) => ({
          queue: r.queue,
          jobId: r.jobId,
          state: r.state,
          attemptsMade: r.attemptsMade,
          delayMs: r.delayMs,
          redisRunId: r.redisRunId,
          passId: r.passId,
        })),
      }),
      this.db.operatorAction.createMany({
        data: recoveries.map((r) => ({
          actor: "system:recovery",
          action: "RECOVERED",
          queue: r.queue,
          jobId: r.jobId,
          details: { state: r.state, attemptsMade: r.attemptsMade, delayMs: r.delayMs, redisRunId: r.redisRunId, passId: r.passId },
        })),
      }),
    ]);
  }
}
