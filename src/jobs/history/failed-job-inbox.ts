import { Prisma } from "../../generated/prisma/client.ts";
import type { Db } from "../../infra/prisma.ts";
import { ValidationError, type ValidationIssue } from "../errors.ts";

export type FailedJobResolution = "RETRIED" | "REPLAYED" | "DISMISSED";

/** Most audit ids one `dismissFailedJobAudits` call takes. */
export const MAX_DISMISS_IDS = 1_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Resolves the unresolved audit rows of these jobs in `db` (a client or the caller's transaction);
 * returns, per job that had some, how many. See FailedJobInbox.resolveJobs.
 */
export async function resolveJobRows(
  db: Db | Prisma.TransactionClient,
  jobs: readonly { queue: string; id: string; upTo?: Date | null }[],
  resolution: FailedJobResolution,
  actor: string,
): Promise<{ queue: string; jobId: string; n: number }[]> {
  if (jobs.length === 0) return [];
  return db.$queryRaw<{ queue: string; jobId: string; n: number }[]>(Prisma.sql`
    WITH resolved AS (
      UPDATE failed_job_audit a
      SET resolved_at = now(), resolved_by = ${actor}, resolution = ${resolution}::"FailedJobResolution"
      FROM unnest(${jobs.map((j) => j.queue)}::text[], ${jobs.map((j) => j.id)}::text[], ${jobs.map((j) => j.upTo?.toISOString() ?? null)}::timestamptz[])
        AS j(queue, job_id, up_to)
      WHERE a.queue = j.queue AND a.job_id = j.job_id AND a.resolved_at IS NULL AND (j.up_to IS NULL OR a.failed_at <= j.up_to)
      RETURNING a.queue, a.job_id
    )
    SELECT queue, job_id AS "jobId", count(*)::int AS n FROM resolved GROUP BY queue, job_id`);
}

/**
 * The failed-job inbox: final-failure audit rows that nobody has acted on yet (`resolved_at IS NULL`).
 * A row leaves it once, with when, who and how: retrying the job (RETRIED), replaying it (REPLAYED) or
 * dismissing the row (DISMISSED). A resolved row is never resolved again (the first resolution stays),
 * and a job that fails again after a retry gets a new, unresolved row.
 */
export class FailedJobInbox {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /**
   * Resolves the unresolved audit rows of these jobs; returns how many rows it resolved. `upTo`: only
   * rows of failures at or before it (the failure being retried), so a retried job that fails again
   * before this runs keeps its new row in the inbox.
   */
  async resolveJobs(
    jobs: { queue: string; id: string; upTo?: Date | null }[],
    resolution: FailedJobResolution,
    actor: string,
  ): Promise<number> {
    const resolved = await resolveJobRows(this.db, jobs, resolution, actor);
    return resolved.reduce((n, r) => n + r.n, 0);
  }

  /**
   * Dismisses audit rows by id (DISMISSED); rows already resolved, and ids that match no row, are left
   * as they are. Returns the rows it dismissed (id and queue). Throws ValidationError for an empty list, more than
   * MAX_DISMISS_IDS ids, or an id that is not a UUID (naming each by its index).
   */
  async dismiss(
    ids: readonly string[],
    actor: string,
    access: { tenant?: string; queues?: readonly string[] } = {},
  ): Promise<{ id: string; queue: string }[]> {
    const issues: ValidationIssue[] = [];
    if (ids.length === 0) issues.push({ path: ["ids"], message: "give at least one id" });
    if (ids.length > MAX_DISMISS_IDS) issues.push({ path: ["ids"], message: `at most ${MAX_DISMISS_IDS} ids per call` });
    else {
      for (const [i, id] of ids.entries()) {
        if (!UUID.test(id)) issues.push({ path: ["ids", String(i)], message: "not an audit id (a UUID)" });
      }
    }
    if (issues.length > 0) throw ValidationError.of(issues.slice(0, 20));
    return this.db.$queryRaw<{ id: string; queue: string }[]>(Prisma.sql`
      UPDATE failed_job_audit
      SET resolved_at = now(), resolved_by = ${actor}, resolution = 'DISMISSED'
      WHERE id = ANY(${[...new Set(ids.map((id) => id.toLowerCase()))]}::uuid[]) AND resolved_at IS NULL
        ${access.queues ? Prisma.sql`AND queue = ANY(${[...access.queues]}::text[])` : Prisma.empty}
        ${
          // Audit rows have no tenant of their own: the job's history row has it. Another tenant's row is as an unknown id.
          access.tenant
            ? Prisma.sql`AND EXISTS (SELECT 1 FROM job_history h WHERE h.queue = failed_job_audit.queue AND h.id = failed_job_audit.job_id AND h.tenant = ${access.tenant})`
            : Prisma.empty
        }
      RETURNING id::text AS id, queue`);
  }
}
