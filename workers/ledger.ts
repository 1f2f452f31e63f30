import type { Job } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { Db } from "../src/infra/prisma.ts";
import type { RedisClient } from "../src/infra/redis.ts";
import { isCancelled, type KeySpace, keys } from "../src/jobs/bullmq/index.ts";
import type { FailedJobAuditView, HistoryQuarantine, HistoryStore } from "../src/jobs/history/index.ts";
import { GroupCommit, type GroupCommitOptions, isDataError } from "../src/jobs/history/index.ts";
import { type JobView, viewFromBull } from "../src/jobs/job-view.ts";

/** The audit row of one final failure (failed_job_audit), before PostgreSQL gives it an id. */
export type AuditRow = Omit<FailedJobAuditView, "id" | "resolvedAt" | "resolvedBy" | "resolution">;

/** Everything PostgreSQL must learn about one finished job: its terminal history row, and for a final failure its audit row. */
export interface LedgerRecord {
  view: JobView;
  audit: AuditRow | null;
}

const DATE_FIELDS = new Set(["createdAt", "startedAt", "finishedAt", "failedAt"]);

function revive(key: string, value: unknown): unknown {
  return DATE_FIELDS.has(key) && typeof value === "string" ? new Date(value) : value;
}

/**
 * The record of a job BullMQ has finished (completed, failed for good, or cancelled: `cancelled`, as
 * `isCancelled` in src/jobs/bullmq says), or null while it is not finished (a failed attempt to be retried).
 */
export function recordOf(job: Job, outcome: "completed" | "failed", workerId: string, cancelled = false): LedgerRecord | null {
  if (job.finishedOn == null) return null;
  if (outcome === "completed") return { view: viewFromBull(job, "COMPLETED"), audit: null };
  const view = viewFromBull(job, cancelled ? "CANCELLED" : "FAILED");
  if (cancelled) return { view, audit: null };
  return {
    view,
    audit: {
      queue: job.queueName,
      jobId: String(job.id),
      jobName: job.name,
      data: view.data,
      failedReason: job.failedReason || "(no reason given)",
      stacktrace: (job.stacktrace ?? []).filter((line): line is string => typeof line === "string"),
      attemptsMade: job.attemptsMade,
      failedAt: new Date(job.finishedOn),
      workerId,
    },
  };
}

/**
 * The durable path from "BullMQ finished a job" to PostgreSQL. A record is written to PostgreSQL
 * (group-committed with other writes); only when that fails is it kept in a Redis hash under the
 * queue's prefix (`<prefix>:<queue>:ledger:pending`), which `flushPending` (run by the reconciler)
 * writes once PostgreSQL is back. A worker that dies before either write leaves the job to the
 * reconciler's comparison of the queue's finished sets with the tables. Every write is idempotent:
 * history is an upsert, audit rows are unique on queue + job id + failure time.
 */
export class Ledger {
  private readonly redis: RedisClient;
  /** Where the queues' keys live (QUEUE_PREFIX and REDIS_KEY_LAYOUT). */
  readonly space: KeySpace;
  private readonly history: HistoryStore;
  private readonly db: Db;
  private readonly log: Logger;

  private readonly quarantine: HistoryQuarantine | null;

  constructor(
    redis: RedisClient,
    space: KeySpace,
    history: HistoryStore,
    db: Db,
    log: Logger,
    batching: Partial<GroupCommitOptions> = {},
    quarantine: HistoryQuarantine | null = null,
  ) {
    this.redis = redis;
    this.space = space;
    this.history = history;
    this.db = db;
    this.log = log;
    this.quarantine = quarantine;
    // Audit rows are group-committed like history rows: a queue failing for good (a downstream
    // outage) writes one statement per batch, not one per job. A batch PostgreSQL refuses for its
    // data is written row by row, and a row refused on its own is quarantined (as history rows are).
    this.audits = new GroupCommit(async (rows) => {
      try {
        await this.db.failedJobAudit.createMany({ data: rows, skipDuplicates: true });
      } catch (err) {
        if (!isDataError(err) || !this.quarantine) throw err;
        for (const row of rows) {
          try {
            await this.db.failedJobAudit.createMany({ data: [row], skipDuplicates: true });
          } catch (rowErr) {
            if (!isDataError(rowErr)) throw rowErr;
            this.log.error("PostgreSQL refused a failure audit row; quarantined", {
              queue: row.queue,
              jobId: row.jobId,
              err: String(rowErr),
            });
            await this.quarantine.put("audit", row.queue, row.jobId, row, rowErr);
          }
        }
      }
    }, batching);
  }

  private readonly audits: GroupCommit<AuditRow & { data: object }>;

  /** The Redis hash holding one queue's records not yet confirmed in PostgreSQL. */
  pendingKey(queue: string): string {
    return keys.ledgerPending(this.space, queue);
  }

  private field(record: LedgerRecord): string {
    return `${record.view.id}:${record.view.finishedAt?.getTime() ?? 0}`;
  }

  /**
   * Writes the record to PostgreSQL; when that fails, keeps it in Redis for the reconciler. Never
   * rejects: when Redis fails too, the reconciler's comparison of the finished sets still finds the job.
   * (Writing to Redis first on every job cost two Redis commands and a serialised copy per job, for
   * a crash window the finished-set comparison already covers.)
   */
  write(record: LedgerRecord): Promise<void> {
    return this.apply(record).then(undefined, (err: unknown) => this.keep(record, err));
  }

  /** Records of `submit` whose history row is in a batch not committed yet, by that batch's promise. */
  private readonly inBatch = new Map<Promise<void>, LedgerRecord[]>();
  /** `keep`s under way for records of failed batches. */
  private readonly keeping = new Set<Promise<void>>();

  /**
   * `write` for the worker's stream of finished jobs, without a promise per record: the record's
   * history row joins the current batch, and one handler per batch keeps every record of a batch
   * PostgreSQL refused. Only for records without an audit row (those need the audit written first:
   * `write`), and only when no earlier write of the same job is in flight (history batches are
   * written in order, one at a time, in the worker). `settled` waits for these.
   */
  submit(record: LedgerRecord): void {
    // Relies on batches written in order: a store that may write two at once could commit a job's
    // terminal row before an earlier write of the same job (see GroupCommit's contract).
    if (!this.history.upsertsInOrder) throw new Error("Ledger.submit needs a HistoryStore that writes upserts in order (concurrency: 1)");
    const done = this.history.upsert(record.view);
    const records = this.inBatch.get(done);
    if (records) {
      records.push(record);
      return;
    }
    const batch = [record];
    this.inBatch.set(done, batch);
    done.then(
      () => this.inBatch.delete(done),
      (err: unknown) => {
        this.inBatch.delete(done);
        for (const r of batch) {
          const kept = this.keep(r, err).finally(() => this.keeping.delete(kept));
          this.keeping.add(kept);
        }
      },
    );
  }

  /** Resolves once every record `submit` took is in PostgreSQL or kept in Redis. */
  async settled(): Promise<void> {
    while (this.inBatch.size > 0 || this.keeping.size > 0) await Promise.allSettled([...this.inBatch.keys(), ...this.keeping]);
  }

  private async keep(record: LedgerRecord, err: unknown): Promise<void> {
    this.log.warn("ledger write to PostgreSQL failed; keeping it in Redis for the reconciler", {
      queue: record.view.queue,
      jobId: record.view.id,
      err: err instanceof Error ? err.message : String(err),
    });
    const key = this.pendingKey(record.view.queue);
    const field = this.field(record);
    try {
      await this.redis.hset(key, field, JSON.stringify(record));
    } catch (err) {
      this.log.warn("could not keep a ledger record in Redis; the reconciler will find the job", {
        queue: record.view.queue,
        jobId: record.view.id,
        key,
        field,
        err,
      });
    }
  }

  /** Writes a record to PostgreSQL (idempotent); rejects with what PostgreSQL threw. */
  apply(record: LedgerRecord, options: { history: boolean } = { history: true }): Promise<void> {
    if (!record.audit) return options.history ? this.history.upsert(record.view) : Promise.resolve();
    // Audit first: if the history write fails after it, re-applying adds no second audit row.
    const audited = this.audits.add({ ...record.audit, data: (record.audit.data ?? {}) as object });
    return options.history ? audited.then(() => this.history.upsert(record.view)) : audited;
  }

  /**
   * Writes every pending record of `queue` whose write is still owed. `isCurrent` says whether the
   * job in Redis still has that finish (a job retried since must not get its old terminal state
   * back in history; its audit row is still written). Returns how many were written; throws when
   * PostgreSQL fails (the records stay).
   */
  async flushPending(queue: string, isCurrent: (record: LedgerRecord) => Promise<boolean>): Promise<number> {
    const key = this.pendingKey(queue);
    let cursor = "0";
    let written = 0;
    do {
      const [next, entries] = await this.redis.hscan(key, cursor, "COUNT", 200);
      cursor = next;
      for (let i = 0; i + 1 < entries.length; i += 2) {
        const field = entries[i] as string;
        const text = entries[i + 1] as string;
        // A record that cannot be read or written (PostgreSQL refuses its data) moves to the
        // quarantine instead of failing every pass: the queue's other records keep flowing.
        try {
          const record = JSON.parse(text, revive) as LedgerRecord;
          await this.apply(record, { history: await isCurrent(record) });
        } catch (err) {
          if (!(err instanceof SyntaxError) && !isDataError(err)) throw err;
          this.log.error("a pending ledger record cannot be written; quarantined", { queue, field, err: String(err) });
          await this.quarantine?.put("ledger", queue, field.slice(0, field.lastIndexOf(":")), text, err);
        }
        await this.redis.hdel(key, field);
        written++;
      }
    } while (cursor !== "0");
    return written;
  }

  /** The record of a job that failed for good: CANCELLED or FAILED as its cancel mark says (one Redis read). */
  async recordOfFailed(job: Job, workerId: string): Promise<LedgerRecord | null> {
    return recordOf(job, "failed", workerId, await isCancelled(this.redis, this.space, job));
  }

  /** Whether the job has rows in the quarantine (the reconciler skips it). */
  isQuarantined(queue: string, jobId: string): Promise<boolean> {
    return this.quarantine ? this.quarantine.has(queue, jobId) : Promise.resolve(false);
  }

  /** Quarantined rows of `queue` (the `history_quarantined` metric). */
  quarantined(queue: string): Promise<number> {
    return this.quarantine ? this.quarantine.count(queue) : Promise.resolve(0);
  }

  /** Records of `queue` waiting in Redis for PostgreSQL (the `ledger_backlog` metric). */
  backlog(queue: string): Promise<number> {
    return this.redis.hlen(this.pendingKey(queue));
  }
}
