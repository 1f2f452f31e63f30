import os from "node:os";
import type { Job } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { Db } from "../src/infra/prisma.ts";
import type { HistoryStore } from "../src/jobs/history.ts";
import { CANCELLED_PREFIX, type JobState, viewFromBull } from "../src/jobs/job-view.ts";

/** The id this process writes into audit rows: host and pid. */
export const workerId = `${os.hostname()}:${process.pid}`;

/** How often one job's progress may be written to history. */
const PROGRESS_WRITE_INTERVAL_MS = 250;

/**
 * Turns a worker's job events into history rows and failed-job audit rows. Every write is
 * idempotent (upserts; audit rows unique on queue + job id + failure time), so a re-delivered event
 * adds nothing.
 */
export class Lifecycle {
  private readonly progressTimers = new Map<string, NodeJS.Timeout>();
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly history: HistoryStore,
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  /** Runs a write, logging (not throwing) a failure, and remembers it so `drain` can wait for it. */
  private track(what: string, job: Job, write: () => Promise<unknown>): void {
    const p = write()
      .catch((err) => this.log.error(`history write failed: ${what}`, { queue: job.queueName, jobId: job.id, err }))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  active(job: Job): void {
    this.track("active", job, () => this.history.upsert(viewFromBull(job, "ACTIVE")));
  }

  /** Progress is throttled per job: at most one write per interval, the latest value wins. */
  progress(job: Job): void {
    const key = `${job.queueName}:${job.id}`;
    if (this.progressTimers.has(key)) return;
    const timer = setTimeout(() => {
      this.progressTimers.delete(key);
      this.track("progress", job, () => this.history.upsert(viewFromBull(job, "ACTIVE")));
    }, PROGRESS_WRITE_INTERVAL_MS);
    this.progressTimers.set(key, timer);
  }

  private cancelProgress(job: Job): void {
    const key = `${job.queueName}:${job.id}`;
    clearTimeout(this.progressTimers.get(key));
    this.progressTimers.delete(key);
  }

  completed(job: Job): void {
    this.cancelProgress(job);
    this.track("completed", job, () => this.history.upsert(viewFromBull(job, "COMPLETED")));
  }

  /** A failed attempt: RETRYING (back to WAITING / DELAYED) or, when no attempt is left, final. */
  failed(job: Job): void {
    this.cancelProgress(job);
    const final = job.finishedOn != null;
    if (!final) {
      const state: JobState = job.delay > 0 ? "DELAYED" : "WAITING";
      this.track("retrying", job, () => this.history.upsert(viewFromBull(job, state)));
      return;
    }
    const cancelled = job.failedReason?.startsWith(CANCELLED_PREFIX) ?? false;
    this.track("failed", job, async () => {
      await this.history.upsert(viewFromBull(job, cancelled ? "CANCELLED" : "FAILED"));
      if (!cancelled) await this.writeAudit(job);
    });
  }

  private async writeAudit(job: Job): Promise<void> {
    const view = viewFromBull(job, "FAILED");
    await this.db.failedJobAudit.createMany({
      data: [
        {
          queue: job.queueName,
          jobId: String(job.id),
          jobName: job.name,
          data: view.data as object,
          failedReason: job.failedReason || "(no reason given)",
          stacktrace: job.stacktrace ?? [],
          attemptsMade: job.attemptsMade,
          failedAt: new Date(job.finishedOn ?? Date.now()),
          workerId,
        },
      ],
      skipDuplicates: true,
    });
  }

  /** Waits for every write started so far (used at shutdown). */
  async drain(): Promise<void> {
    for (const timer of this.progressTimers.values()) clearTimeout(timer);
    this.progressTimers.clear();
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
