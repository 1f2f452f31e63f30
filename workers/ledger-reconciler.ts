import type { Queue } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import { Periodic } from "../src/infra/periodic.ts";
import { type Db, poolOf } from "../src/infra/prisma.ts";
import type { RedisClient } from "../src/infra/redis.ts";
import { finishedPage, isCancelled, keys, Lease } from "../src/jobs/bullmq/index.ts";
import { type Ledger, type LedgerRecord, recordOf } from "./ledger.ts";

export interface ReconcilerOptions {
  /** Time between passes. */
  intervalMs: number;
  /**
   * Each pass re-checks jobs that finished up to this long before the last successful pass (worker
   * clocks differ, and a worker may still have been writing); the first pass looks back this far.
   */
  lookbackMs: number;
  workerId: string;
}

const PAGE = 500;

/**
 * Of a page of finished jobs ($1 ids, $2 finish times) of queue $3, those whose rows disagree: no
 * history row in a terminal state ($4) with that finish time, or (for the failed set, $5) a final
 * failure without its audit row.
 */
const COMPARE_SQL = `
  SELECT f.id, h.state::text AS state, h.finished_at AS "finishedAt", a.job_id IS NOT NULL AS audited
  FROM unnest($1::text[], $2::bigint[]) AS f(id, fin)
  LEFT JOIN job_history h ON h.queue = $3 AND h.id = f.id
  LEFT JOIN failed_job_audit a ON a.queue = $3 AND a.job_id = f.id
    AND (extract(epoch FROM a.failed_at) * 1000)::bigint = f.fin
  WHERE h.id IS NULL OR NOT (h.state::text = ANY($4::text[]))
    OR h.finished_at IS NULL OR (extract(epoch FROM h.finished_at) * 1000)::bigint <> f.fin
    OR ($5::boolean AND h.state::text = 'FAILED' AND a.job_id IS NULL)`;

/**
 * Makes PostgreSQL agree with what BullMQ finished, for the queues this worker serves. Every
 * `intervalMs`, for each queue, one worker (a Redis lock per queue) writes the ledger's pending
 * records, then compares the queue's failed and completed sets (by finish time, from the last
 * successful pass minus `lookbackMs` to this pass' start) with job_history and failed_job_audit and writes what is
 * missing: this catches jobs whose worker died between BullMQ's acknowledgement and the ledger.
 * A pass that fails (PostgreSQL down) is logged and retried at the next interval; nothing is lost,
 * because the watermark only moves after a pass succeeded.
 */
export class LedgerReconciler {
  private readonly loop: Periodic;

  private readonly ledger: Ledger;
  private readonly redis: RedisClient;
  private readonly queues: Queue[];
  private readonly db: Db;
  private readonly log: Logger;
  private readonly options: ReconcilerOptions;

  constructor(ledger: Ledger, redis: RedisClient, queues: Queue[], db: Db, log: Logger, options: ReconcilerOptions) {
    this.ledger = ledger;
    this.redis = redis;
    this.queues = queues;
    this.db = db;
    this.log = log;
    this.options = options;
    // The first pass at once: the worker starts it before taking jobs, so it compares what finished
    // before this process ran (what a worker that died may have left), not the jobs it is running.
    this.loop = new Periodic(() => this.runOnce(), { intervalMs: options.intervalMs, firstDelayMs: 0 });
  }

  start(): void {
    this.loop.start();
  }

  /** Stops the timer and waits for a pass in progress. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass over every queue; never throws (a failed queue is logged and retried next time). */
  async runOnce(): Promise<void> {
    for (const queue of this.queues) {
      try {
        await this.reconcileQueue(queue);
      } catch (err) {
        this.log.warn("ledger reconcile pass failed; retrying at the next interval", {
          queue: queue.name,
          err: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  private async reconcileQueue(queue: Queue): Promise<void> {
    const { space } = this.ledger;
    // The pass' end of range: jobs finishing while it runs are the next pass' (see `compare`).
    const startedAt = Date.now();
    const lease = new Lease(this.redis, keys.ledgerLease(space, queue.name), Math.max(10_000, this.options.intervalMs * 2));
    if (!(await lease.acquire())) return;
    try {
      const isCurrent = async (record: LedgerRecord) => {
        const live = await queue.getJob(record.view.id);
        return !live || live.finishedOn === record.view.finishedAt?.getTime();
      };
      const flushed = await this.ledger.flushPending(queue.name, isCurrent);
      const watermarkKey = keys.ledgerWatermark(space, queue.name);
      const last = Number((await this.redis.get(watermarkKey)) ?? startedAt);
      const from = last - this.options.lookbackMs;
      // Up to this pass' start only: on a busy queue jobs finish faster than a pass pages through
      // them, and a pass chasing the newest ones never ended (it re-checked every job as it finished).
      const repaired = (await this.compare(queue, "failed", from, startedAt)) + (await this.compare(queue, "completed", from, startedAt));
      await this.redis.set(watermarkKey, String(startedAt));
      if (flushed + repaired > 0) this.log.info("ledger reconciled", { queue: queue.name, pendingWritten: flushed, repaired });
    } finally {
      await lease.release();
    }
  }

  /**
   * Compares the jobs of one finished set (finished from `from` to `to`) with PostgreSQL; returns how
   * many it wrote. The set's scores are the finish times, so PostgreSQL checks a whole page at once
   * and answers only the jobs whose rows disagree (no terminal row with that finish time, or for a
   * final failure no audit row); only those are read from Redis.
   */
  private async compare(queue: Queue, set: "failed" | "completed", from: number, to: number): Promise<number> {
    const terminal = set === "completed" ? ["COMPLETED"] : ["FAILED", "CANCELLED"];
    let offset = 0;
    let repaired = 0;
    for (;;) {
      const page = await finishedPage(this.redis, queue, set, { from, to, offset, count: PAGE });
      if (page.length === 0) return repaired;
      const ids = page.map((p) => p.id);
      const finishedOn = page.map((p) => p.finishedOn);
      offset += ids.length;
      // Straight on the pool (poolOf): Prisma's raw-query path cost the worker more CPU than the query
      // itself on a busy queue (every job is compared here once per pass while in the lookback window).
      const { rows: suspects } = await poolOf(this.db).query<{
        id: string;
        state: string | null;
        finishedAt: Date | null;
        audited: boolean;
      }>(COMPARE_SQL, [ids, finishedOn, queue.name, terminal, set === "failed"]);
      for (const suspect of suspects) {
        // A job whose rows PostgreSQL refused is in the quarantine: skipped, not retried every pass.
        if (await this.ledger.isQuarantined(queue.name, suspect.id)) continue;
        const job = await queue.getJob(suspect.id);
        if (!job || job.finishedOn == null) continue;
        const cancelled = set === "failed" && (await isCancelled(this.redis, this.ledger.space, job));
        const record = recordOf(job, set, this.options.workerId, cancelled);
        if (!record) continue;
        const historyOk = suspect.state === record.view.state && suspect.finishedAt?.getTime() === job.finishedOn;
        const auditOk = !record.audit || (suspect.audited && record.audit.failedAt.getTime() === job.finishedOn);
        if (historyOk && auditOk) continue;
        await this.ledger.apply(record, { history: !historyOk });
        repaired++;
      }
    }
  }
}
