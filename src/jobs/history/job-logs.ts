import { type Db, poolOf } from "../../infra/prisma.ts";
import { GroupCommit, type GroupCommitOptions } from "./group-commit.ts";

/** At most this many lines and bytes of log per job are kept in PostgreSQL (see job_log_append). */
export const JOB_LOG_MAX_LINES = 1_000;
export const JOB_LOG_MAX_BYTES = 65_536;

/** One `job.log` line as the worker saw it: `seq` is its number in the job's Redis log (1-based). */
export interface JobLogLine {
  queue: string;
  jobId: string;
  seq: number;
  /** Epoch ms. */
  at: number;
  line: string;
}

/**
 * Job log lines in PostgreSQL (table job_log), so `Job.logs` still answers once Redis has dropped the
 * job. Workers append (group-committed, one `job_log_append` call per batch; the function keeps the
 * first 1,000 lines and 64 KiB of each job); the API reads them back.
 */
export class JobLogStore {
  private readonly db: Db;
  private readonly appends: GroupCommit<JobLogLine>;

  constructor(db: Db, batching: Partial<GroupCommitOptions> = {}) {
    this.db = db;
    const pool = poolOf(db);
    this.appends = new GroupCommit((lines) => pool.query("SELECT job_log_append($1::jsonb)", [JSON.stringify(lines)]), batching);
  }

  /** Resolves once the line is committed (or dropped by the bounds); lines past the line bound are not sent. */
  async append(line: JobLogLine): Promise<void> {
    if (line.seq > JOB_LOG_MAX_LINES) return;
    await this.appends.add(line);
  }

  /** The job's kept lines, oldest first, at most `limit`. */
  async list(queue: string, jobId: string, limit = JOB_LOG_MAX_LINES): Promise<string[]> {
    const rows = await this.db.jobLog.findMany({
      where: { queue, jobId },
      orderBy: { seq: "asc" },
      take: limit,
      select: { line: true },
    });
    return rows.map((r) => r.line);
  }
}
