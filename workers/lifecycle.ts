import os from "node:os";
import type { Job } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { HistoryStore } from "../src/jobs/history.ts";
import { type JobState, viewFromBull } from "../src/jobs/job-view.ts";
import { type Ledger, recordOf } from "./ledger.ts";
import type { WorkerMetrics } from "./worker-metrics.ts";

/** The id this process writes into audit rows: host and pid. */
export const workerId = `${os.hostname()}:${process.pid}`;

/** How often one job's progress may be written to history. */
const PROGRESS_WRITE_INTERVAL_MS = 250;

/**
 * Turns a worker's job events into history rows and failed-job audit rows. Every write is
 * idempotent (upserts; audit rows unique on queue + job id + failure time), so a re-delivered event
 * adds nothing. Terminal writes (COMPLETED, FAILED, CANCELLED and the audit row) go through the
 * Ledger, which keeps them in Redis until PostgreSQL has them; ACTIVE / progress / RETRYING writes
 * are best effort, since the terminal write overwrites them.
 */
export class Lifecycle {
  private readonly progressTimers = new Map<string, NodeJS.Timeout>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(
    private readonly history: HistoryStore,
    private readonly ledger: Ledger,
    private readonly log: Logger,
    private readonly metrics?: WorkerMetrics,
  ) {}

  /**
   * Runs a write after the job's previous one (a job that fails at once would otherwise race its
   * ACTIVE write against its FAILED one, and ACTIVE could land last), logging (not throwing) a
   * failure, and remembers it so `drain` can wait for it.
   */
  private track(what: string, job: Job, write: () => Promise<unknown>): void {
    const key = `${job.queueName}:${job.id}`;
    const previous = this.chains.get(key) ?? Promise.resolve();
    const p: Promise<unknown> = previous
      .then(write)
      .catch((err) => this.log.error(`history write failed: ${what}`, { queue: job.queueName, jobId: job.id, err }))
      .finally(() => {
        this.pending.delete(p);
        if (this.chains.get(key) === p) this.chains.delete(key);
      });
    this.chains.set(key, p);
    this.pending.add(p);
  }

  active(job: Job): void {
    this.metrics?.onActive(job);
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
    this.metrics?.onCompleted(job);
    const record = recordOf(job, "completed", workerId);
    if (record) this.track("completed", job, () => this.ledger.write(record));
  }

  /** A failed attempt: RETRYING (back to WAITING / DELAYED) or, when no attempt is left, final. */
  failed(job: Job): void {
    this.cancelProgress(job);
    const final = job.finishedOn != null;
    this.metrics?.onFailed(job, final);
    if (!final) {
      const state: JobState = job.delay > 0 ? "DELAYED" : "WAITING";
      this.track("retrying", job, () => this.history.upsert(viewFromBull(job, state)));
      return;
    }
    const record = recordOf(job, "failed", workerId);
    if (record) this.track("failed", job, () => this.ledger.write(record));
  }

  /** Waits for every write started so far (used at shutdown). */
  async drain(): Promise<void> {
    for (const timer of this.progressTimers.values()) clearTimeout(timer);
    this.progressTimers.clear();
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
