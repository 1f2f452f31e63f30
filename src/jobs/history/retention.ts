import { Prisma } from "../../generated/prisma/client.ts";
import type { Logger } from "../../infra/logger.ts";
import { Periodic } from "../../infra/periodic.ts";
import type { Db } from "../../infra/prisma.ts";
import type { RedisClient } from "../../infra/redis.ts";
import { keySpace, keys } from "../bullmq/keys.ts";
import { Lease } from "../bullmq/lease.ts";

export interface HistoryRetentionOptions {
  /** Finished jobs whose rows are older than this many days are deleted. */
  days: number;
  /** At most one sweep per interval across every worker (the Redis lock lives this long). */
  intervalMs: number;
  /** The Redis key of the lock, e.g. `${QUEUE_PREFIX}:maintenance:history-retention`. */
  lockKey: string;
  /** Rows deleted per statement: small enough that no statement holds locks for long. */
  batchSize?: number;
}

/** The lock key for a queue prefix: inside the prefix's hash tag, next to the queues it belongs with. */
export function retentionLockKey(queuePrefix: string): string {
  return keys.retentionLease(keySpace(queuePrefix));
}

/**
 * Deletes old history of finished jobs (HISTORY_RETENTION_DAYS), run by the workers.
 *
 * Why a timer with a Redis lock and not a BullMQ job scheduler: every worker runs the same timer,
 * and a sweep starts only for the worker whose `SET NX PX interval` succeeds, so however many workers
 * run there is at most one sweep per interval, and the next interval's winner picks up after a worker
 * that died mid-sweep (each batch commits on its own, so nothing is left half done). A scheduler would
 * need an internal queue that shows up in `queues`, a processor, and its own cleanup when retention is
 * turned off again; the lock needs one key that expires by itself.
 *
 * Only finished jobs (COMPLETED, FAILED, CANCELLED) that were created AND finished before the cutoff
 * go: a job delayed for longer than the retention period keeps its row. Failed-job audit rows and
 * operator actions are an audit trail and are kept.
 */
export class HistoryRetention {
  private readonly lease: Lease;
  private readonly loop: Periodic;

  private readonly db: Db;
  private readonly log: Logger;
  private readonly options: HistoryRetentionOptions;

  constructor(db: Db, redis: RedisClient, log: Logger, options: HistoryRetentionOptions) {
    this.db = db;
    this.log = log;
    this.options = options;
    // Never released: it expires after one interval, which is what spaces the sweeps.
    this.lease = new Lease(redis, options.lockKey, options.intervalMs);
    this.loop = new Periodic(() => this.runIfDue(), {
      intervalMs: options.intervalMs,
      unref: true,
      onError: (err) => this.log.warn("history retention sweep failed; will try again", { err }),
    });
  }

  /** Deletes every eligible row now, in batches, without the lock; returns how many went. */
  async sweep(now: Date = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.options.days * 24 * 3600 * 1000);
    const batch = this.options.batchSize ?? 5_000;
    let total = 0;
    for (;;) {
      // created_at bounds the scan (index on created_at); finished/updated time keeps long-delayed jobs.
      // A deleted row's encrypted secret payload fields (job_secret) go with it, in the same statement.
      const [counted] = await this.db.$queryRaw<{ n: number }[]>(Prisma.sql`
        WITH gone AS (
          DELETE FROM job_history WHERE (queue, id) IN (
            SELECT queue, id FROM job_history
            WHERE created_at < ${cutoff}::timestamptz
              AND state IN ('COMPLETED', 'FAILED', 'CANCELLED')
              AND COALESCE(finished_at, updated_at) < ${cutoff}::timestamptz
            LIMIT ${batch})
          RETURNING queue, id
        ), secrets AS (
          DELETE FROM job_secret s USING gone WHERE s.queue = gone.queue AND s.job_id = gone.id
        )
        SELECT count(*)::int AS n FROM gone`);
      const deleted = counted?.n ?? 0;
      total += deleted;
      if (deleted < batch) return total;
    }
  }

  /**
   * Sweeps if no worker has in the last interval: returns the rows deleted, or null when another
   * worker holds the lock.
   */
  async runIfDue(now: Date = new Date()): Promise<number | null> {
    if (!(await this.lease.acquire())) return null;
    const deleted = await this.sweep(now);
    this.log.info("history retention sweep done", { deleted, days: this.options.days });
    return deleted;
  }

  /** Tries at once, then every interval; a failed sweep is logged and tried again next time. */
  start(): void {
    this.loop.start();
  }

  /** Stops the timer and waits for a sweep under way. */
  stop(): Promise<void> {
    return this.loop.stop();
  }
}
