import os from "node:os";
import type { Job } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { HistoryStore } from "../src/jobs/history/index.ts";
import { type JobState, viewFromBull } from "../src/jobs/job-view.ts";
import { type Ledger, recordOf } from "./ledger.ts";
import type { WorkerMetrics } from "./worker-metrics.ts";

/** The id this process writes into audit rows: host and pid. */
export const workerId = `${os.hostname()}:${process.pid}`;

/** How often one job's progress may be written to history. */
const PROGRESS_WRITE_INTERVAL_MS = 250;

/**
 * A job's ACTIVE row is written once it has run this long: most jobs of a busy queue finish sooner,
 * and their terminal write (which carries startedAt too) is the only one they need. Halves the
 * history writes of short jobs.
 */
export const ACTIVE_WRITE_DELAY_MS = 200;

/**
 * Turns a worker's job events into history rows and failed-job audit rows. Every write is
 * idempotent (upserts; audit rows unique on queue + job id + failure time), so a re-delivered event
 * adds nothing. Terminal writes (COMPLETED, FAILED, CANCELLED and the audit row) go through the
 * Ledger, which keeps them in Redis until PostgreSQL has them; ACTIVE / progress / RETRYING writes
 * are best effort, since the terminal write overwrites them.
 */
export class Lifecycle {
  private readonly progressTimers = new Map<string, NodeJS.Timeout>();
  private readonly chains = new Map<string, Promise<unknown>>();
  /**
   * Jobs started and not yet finished whose ACTIVE row is not written yet, by queue then job id, in
   * the order they started (by BullMQ's `processedOn`, the start the row records; the job itself is
   * the entry, no wrapper). Keyed by the job's own strings: no key is built per job.
   */
  private readonly started = new Map<string, Map<string, Job>>();
  private activeSweep: NodeJS.Timeout | undefined;

  private readonly history: HistoryStore;
  private readonly ledger: Ledger;
  private readonly log: Logger;
  private readonly metrics: WorkerMetrics | undefined;

  constructor(history: HistoryStore, ledger: Ledger, log: Logger, metrics?: WorkerMetrics) {
    this.history = history;
    this.ledger = ledger;
    this.log = log;
    this.metrics = metrics;
  }

  /**
   * Runs a write after the job's previous one (a job that fails at once would otherwise race its
   * ACTIVE write against its FAILED one, and ACTIVE could land last), logging (not throwing) a
   * failure, and remembers it until it settles so `drain` can wait for it. `chains` holds each
   * job's latest write, which settles after all of that job's earlier ones.
   */
  private track(what: string, job: Job, write: () => Promise<unknown>, key = `${job.queueName}:${job.id}`): void {
    const queue = job.queueName;
    const jobId = job.id;
    const previous = this.chains.get(key);
    // One promise per write in the common case (nothing of this job's in flight).
    const p: Promise<unknown> = (previous ? previous.then(write) : write()).then(
      () => this.settled(key, p),
      (err) => {
        this.settled(key, p);
        this.log.error(`history write failed: ${what}`, { queue, jobId, err });
      },
    );
    this.chains.set(key, p);
  }

  private settled(key: string, p: Promise<unknown>): void {
    if (this.chains.get(key) === p) this.chains.delete(key);
  }

  /** Schedules the ACTIVE write (see ACTIVE_WRITE_DELAY_MS); one timer sweeps every started job. */
  active(job: Job): void {
    this.metrics?.onActive(job);
    let started = this.started.get(job.queueName);
    if (!started) {
      started = new Map();
      this.started.set(job.queueName, started);
    }
    const id = String(job.id);
    started.delete(id);
    started.set(id, job);
    this.activeSweep ??= setInterval(() => this.writeLongRunning(), ACTIVE_WRITE_DELAY_MS / 2).unref();
  }

  private writeLongRunning(): void {
    const due = Date.now() - ACTIVE_WRITE_DELAY_MS;
    for (const started of this.started.values()) {
      for (const [id, job] of started) {
        if ((job.processedOn ?? 0) > due) break;
        started.delete(id);
        this.track("active", job, () => this.history.upsert(viewFromBull(job, "ACTIVE")));
      }
    }
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

  /** The job's attempt ended: its pending ACTIVE and progress writes are superseded. */
  private cancelProgress(job: Job): void {
    if (this.progressTimers.size > 0) {
      const key = `${job.queueName}:${job.id}`;
      clearTimeout(this.progressTimers.get(key));
      this.progressTimers.delete(key);
    }
    this.started.get(job.queueName)?.delete(String(job.id));
  }

  completed(job: Job): void {
    this.cancelProgress(job);
    this.metrics?.onCompleted(job);
    const record = recordOf(job, "completed", workerId);
    if (!record) return;
    // The common case, nothing of this job's in flight (no key built): the ledger follows the write by its batch.
    const key = this.chains.size > 0 ? `${job.queueName}:${job.id}` : undefined;
    if (key !== undefined && this.chains.has(key)) this.track("completed", job, () => this.ledger.write(record), key);
    else this.ledger.submit(record);
  }

  /** A failed attempt: RETRYING (back to WAITING / DELAYED) or, when no attempt is left, final. */
  failed(job: Job): void {
    this.cancelProgress(job);
    const key = `${job.queueName}:${job.id}`;
    const final = job.finishedOn != null;
    this.metrics?.onFailed(job, final);
    if (!final) {
      const state: JobState = job.delay > 0 ? "DELAYED" : "WAITING";
      this.track("retrying", job, () => this.history.upsert(viewFromBull(job, state)), key);
      return;
    }
    // Whether it was cancelled takes a Redis read; if that fails nothing is written and the
    // reconciler's comparison of the failed set with the tables writes the job later.
    this.track(
      "failed",
      job,
      async () => {
        const record = await this.ledger.recordOfFailed(job, workerId);
        if (record) await this.ledger.write(record);
      },
      key,
    );
  }

  /** Waits for every write started so far (used at shutdown). */
  async drain(): Promise<void> {
    for (const timer of this.progressTimers.values()) clearTimeout(timer);
    this.progressTimers.clear();
    clearInterval(this.activeSweep);
    this.activeSweep = undefined;
    // Jobs still running when the worker gave up waiting: history says they started.
    for (const started of this.started.values()) {
      for (const job of started.values()) this.track("active", job, () => this.history.upsert(viewFromBull(job, "ACTIVE")));
    }
    this.started.clear();
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
    await this.ledger.settled();
  }
}
