import { randomUUID } from "node:crypto";
import type { Queue } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { Db } from "../src/infra/prisma.ts";
import type { RedisClient } from "../src/infra/redis.ts";
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

/** Deletes the lock only if it is still ours (it may have expired and been taken by another worker). */
const RELEASE_LOCK = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`;

/**
 * Makes PostgreSQL agree with what BullMQ finished, for the queues this worker serves. Every
 * `intervalMs`, for each queue, one worker (a Redis lock per queue) writes the ledger's pending
 * records, then compares the queue's failed and completed sets (by finish time, since the last
 * successful pass minus `lookbackMs`) with job_history and failed_job_audit and writes what is
 * missing: this catches jobs whose worker died between BullMQ's acknowledgement and the ledger.
 * A pass that fails (PostgreSQL down) is logged and retried at the next interval; nothing is lost,
 * because the watermark only moves after a pass succeeded.
 */
export class LedgerReconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly ledger: Ledger,
    private readonly redis: RedisClient,
    private readonly queues: Queue[],
    private readonly db: Db,
    private readonly log: Logger,
    private readonly options: ReconcilerOptions,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.runOnce().finally(() => {
        this.running = undefined;
        if (!this.stopped) this.timer = setTimeout(tick, this.options.intervalMs);
      });
    };
    this.timer = setTimeout(tick, Math.min(1_000, this.options.intervalMs));
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
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
    const lockKey = `${queue.qualifiedName}:ledger:lock`;
    const token = randomUUID();
    const ttl = Math.max(10_000, this.options.intervalMs * 2);
    if ((await this.redis.set(lockKey, token, "PX", ttl, "NX")) !== "OK") return;
    try {
      const isCurrent = async (record: LedgerRecord) => {
        const live = await queue.getJob(record.view.id);
        return !live || live.finishedOn === record.view.finishedAt?.getTime();
      };
      const flushed = await this.ledger.flushPending(queue.name, isCurrent);
      const startedAt = Date.now();
      const watermarkKey = `${queue.qualifiedName}:ledger:reconciled-at`;
      const last = Number((await this.redis.get(watermarkKey)) ?? startedAt);
      const from = last - this.options.lookbackMs;
      const repaired = (await this.compare(queue, "failed", from)) + (await this.compare(queue, "completed", from));
      await this.redis.set(watermarkKey, String(startedAt));
      if (flushed + repaired > 0) this.log.info("ledger reconciled", { queue: queue.name, pendingWritten: flushed, repaired });
    } finally {
      await this.redis.eval(RELEASE_LOCK, 1, lockKey, token);
    }
  }

  /**
   * Compares the jobs of one finished set (finished at or after `from`) with PostgreSQL; returns how
   * many it wrote. The set's scores are the finish times, so a page is checked against the tables
   * first and only the jobs whose rows disagree are read from Redis.
   */
  private async compare(queue: Queue, set: "failed" | "completed", from: number): Promise<number> {
    const key = `${queue.qualifiedName}:${set}`;
    let offset = 0;
    let repaired = 0;
    for (;;) {
      const page = await this.redis.zrangebyscore(key, from, "+inf", "WITHSCORES", "LIMIT", offset, PAGE);
      if (page.length === 0) return repaired;
      const finishedOn = new Map<string, number>();
      for (let i = 0; i + 1 < page.length; i += 2) finishedOn.set(page[i] as string, Number(page[i + 1]));
      const ids = [...finishedOn.keys()];
      offset += ids.length;
      const [rows, audits] = await Promise.all([
        this.db.jobHistory.findMany({ where: { queue: queue.name, id: { in: ids } }, select: { id: true, state: true, finishedAt: true } }),
        set === "failed"
          ? this.db.failedJobAudit.findMany({ where: { queue: queue.name, jobId: { in: ids } }, select: { jobId: true, failedAt: true } })
          : Promise.resolve([]),
      ]);
      const terminal = set === "completed" ? ["COMPLETED"] : ["FAILED", "CANCELLED"];
      const rowOk = new Set(
        rows.filter((r) => terminal.includes(r.state) && r.finishedAt?.getTime() === finishedOn.get(r.id)).map((r) => r.id),
      );
      const audited = new Set(audits.map((a) => `${a.jobId}:${a.failedAt.getTime()}`));
      // A cancelled job needs no audit row; which failures are cancellations is read from the job below.
      const suspects = ids.filter((id) => !rowOk.has(id) || (set === "failed" && !audited.has(`${id}:${finishedOn.get(id)}`)));
      const jobs = await Promise.all(suspects.map((id) => queue.getJob(id)));
      const rowById = new Map(rows.map((r) => [r.id, r]));
      for (const job of jobs) {
        if (!job || job.finishedOn == null) continue;
        const record = recordOf(job, set, this.options.workerId);
        if (!record) continue;
        const row = rowById.get(record.view.id);
        const historyOk = row?.state === record.view.state && row.finishedAt?.getTime() === job.finishedOn;
        const auditOk = !record.audit || audited.has(`${record.audit.jobId}:${record.audit.failedAt.getTime()}`);
        if (historyOk && auditOk) continue;
        await this.ledger.apply(record, { history: !historyOk });
        repaired++;
      }
    }
  }
}
