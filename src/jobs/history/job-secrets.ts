import { type Db, poolOf } from "../../infra/prisma.ts";

/** A job's secret payload values, sealed (src/jobs/payload-cipher.ts). */
export interface SealedSecret {
  queue: string;
  jobId: string;
  keyId: string;
  sealed: string;
}

/**
 * Table job_secret: the encrypted real values of jobs' secret payload fields, beside their masked
 * history rows, for replays and recoveries. Nothing that shows a job reads it.
 */
export class JobSecretStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Writes (or replaces) the rows in one statement. */
  async put(rows: readonly SealedSecret[]): Promise<void> {
    if (rows.length === 0) return;
    await poolOf(this.db).query(
      `INSERT INTO job_secret (queue, job_id, key_id, sealed)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
       ON CONFLICT (queue, job_id) DO UPDATE SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, created_at = now()`,
      [rows.map((r) => r.queue), rows.map((r) => r.jobId), rows.map((r) => r.keyId), rows.map((r) => r.sealed)],
    );
  }

  /** The sealed values of those of `ids` that have any, by job id. */
  async get(queue: string, ids: readonly string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const { rows } = await poolOf(this.db).query<{ job_id: string; sealed: string }>(
      "SELECT job_id, sealed FROM job_secret WHERE queue = $1 AND job_id = ANY($2::text[])",
      [queue, ids],
    );
    return new Map(rows.map((r) => [r.job_id, r.sealed]));
  }

  /** Drops the rows of jobs whose enqueue did not happen after all. */
  async delete(queue: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await poolOf(this.db).query("DELETE FROM job_secret WHERE queue = $1 AND job_id = ANY($2::text[])", [queue, ids]);
  }
}
