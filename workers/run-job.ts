import { type Job, UnrecoverableError } from "bullmq";
import { childrenValuesOf } from "../src/jobs/bullmq/index.ts";
import { CANCELLED_PREFIX, splitData } from "../src/jobs/job-view.ts";
import { JobTimeoutError } from "./job-timeout.ts";
import type { Processor, ProcessorContext } from "./processor.ts";

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * How a job whose attempt was stopped ends: a timed-out attempt fails with its JobTimeoutError
 * (retried while attempts remain); a cancelled one ends CANCELLED (an UnrecoverableError with the
 * "Cancelled" prefix).
 */
function stoppedError(reason: unknown): Error {
  if (reason instanceof JobTimeoutError) return reason;
  return new UnrecoverableError(`${CANCELLED_PREFIX}: ${describe(reason)}`);
}

const nothing = () => {};

export interface RunJobOptions {
  /**
   * The reason of a cancel request this process received for the job before it was running here, if
   * any. A job cancelled before it was taken never gets here: BullMQ fails it from its
   * `deferredFailure` mark (src/jobs/bullmq/cancellation.ts).
   */
  cancelRequested: (queue: string, jobId: string) => string | undefined;
  /** After a cancel, how long a processor that ignores its AbortSignal may keep the job. */
  cancelGraceMs: number;
  /** What processors get besides the job: configuration and the PostgreSQL client. */
  services: Pick<ProcessorContext, "config" | "db">;
  /** What `ctx.log` does (see job-logs.ts); unset: BullMQ's `job.log` alone. */
  log?: (job: Job, line: string) => Promise<void>;
  /** Per-queue timeouts (WORKER_TIMEOUT_MS_<QUEUE>), beating the definitions' `timeoutMs`. */
  queueTimeoutMs?: Record<string, number>;
  /** Where running attempts are registered, so `RunningJobs.cancel` reaches them (the cancel listener). */
  running?: RunningJobs;
  /**
   * A flow child's end, told its parent before BullMQ records it (CHILD_COMPLETED / CHILD_FAILED on
   * the parent's stream, src/jobs/bullmq/flows.ts): a completion, or a failure no attempt follows.
   * Never throws (it logs).
   */
  tellParent?: (job: Job, outcome: "completed" | "failed") => Promise<void>;
}

/** Whether this failure ends the job: unrecoverable, or its last attempt. */
function isFinal(job: Job, err: unknown): boolean {
  return err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

/**
 * The attempts this process is running, by queue and job id: what a cancel request stops
 * (`cancel`, called by the cancel listener). Replaces BullMQ's `Worker.cancelJob`, which needs an
 * AbortController made for every job up front; here a job's AbortSignal only exists once its
 * processor reads `ctx.signal`.
 */
export class RunningJobs {
  private readonly byQueue = new Map<string, Map<string, Attempt>>();

  /** The queue's attempts (one lookup per worker, not per job). */
  of(queue: string): Map<string, Attempt> {
    let jobs = this.byQueue.get(queue);
    if (!jobs) {
      jobs = new Map();
      this.byQueue.set(queue, jobs);
    }
    return jobs;
  }

  /** Stops the job's attempt if it runs here (its signal fires; see `runJob`); false when it does not. */
  cancel(queue: string, jobId: string, reason: string): boolean {
    const attempt = this.byQueue.get(queue)?.get(jobId);
    if (!attempt) return false;
    attempt.stop(reason);
    return true;
  }
}

/**
 * One attempt of one job, and the context its processor gets. Per job it costs this object and one
 * promise; the AbortSignal, the `progress` and `log` functions are made only when the processor asks
 * for them (getters, so destructuring `{ signal, progress }` works as before). Its settlement is
 * `settle`'s promise: the processor's outcome, or a stop's error once the grace period is over.
 */
export class Attempt implements ProcessorContext {
  readonly job: Job;
  readonly config: ProcessorContext["config"];
  readonly db: ProcessorContext["db"];
  readonly idempotencyKey: string;
  readonly attempt: number;
  private readonly options: RunJobOptions;
  private controller: AbortController | undefined;
  /** Why the attempt was stopped (a cancel's reason, or a JobTimeoutError); `stopped` says whether. */
  private reason: unknown;
  private stopped = false;
  private graceTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private reject: (err: unknown) => void = nothing;
  /** The registry this attempt is in (its queue's map in RunningJobs), and what to undo at its end. */
  private readonly running: Map<string, Attempt> | undefined;
  private readonly jobId: string;
  private readonly signalIn: AbortSignal | undefined;
  private readonly onSignal: (() => void) | undefined;

  constructor(job: Job, jobId: string, options: RunJobOptions, running: Map<string, Attempt> | undefined, signal: AbortSignal | undefined) {
    this.job = job;
    this.jobId = jobId;
    this.options = options;
    this.running = running;
    running?.set(jobId, this);
    this.signalIn = signal;
    this.onSignal = signal ? () => this.stop(signal.reason) : undefined;
    if (signal && this.onSignal) {
      if (signal.aborted) this.onSignal();
      else signal.addEventListener("abort", this.onSignal, { once: true });
    }
    this.config = options.services.config;
    this.db = options.services.db;
    this.idempotencyKey = `${job.queueName}:${job.id}`;
    this.attempt = job.attemptsMade + 1;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.stopped) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** A flow parent's completed children's results, keyed `<queue>:<id>` (ProcessorContext.childrenValues). */
  get childrenValues(): ProcessorContext["childrenValues"] {
    return () => childrenValuesOf(this.job);
  }

  get progress(): ProcessorContext["progress"] {
    return (value) => this.job.updateProgress(value);
  }

  get log(): ProcessorContext["log"] {
    const log = this.options.log;
    return log ? (line) => log(this.job, line) : (line) => this.job.log(line).then(nothing);
  }

  /**
   * Fires the signal with `reason` (first stop wins) and gives the processor `cancelGraceMs` to end
   * before the attempt ends without it.
   */
  stop(reason: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.graceTimer = setTimeout(() => {
      this.end();
      this.reject(stoppedError(reason));
    }, this.options.cancelGraceMs);
  }

  /** Ends the attempt once `stop` fired after `ms` (a JobTimeoutError). */
  timeout(ms: number): void {
    this.timeoutTimer = setTimeout(() => this.stop(new JobTimeoutError(ms)), ms);
  }

  /**
   * Settles with the processor (a processor that ignored a stop and finished anyway still ends
   * stopped), unless a stop's grace period runs out first.
   */
  settle(run: Promise<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.reject = reject;
      run.then(
        (result) => {
          this.end();
          if (this.stopped) reject(stoppedError(this.reason));
          else resolve(result);
        },
        (err: unknown) => {
          this.end();
          reject(this.stopped ? stoppedError(this.reason) : err);
        },
      );
    });
  }

  /** The attempt is over (idempotent): no timer of its own fires any more, and no cancel reaches it. */
  private end(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.timeoutTimer) clearTimeout(this.timeoutTimer);
    if (this.running?.get(this.jobId) === this) this.running.delete(this.jobId);
    if (this.signalIn && this.onSignal) this.signalIn.removeEventListener("abort", this.onSignal);
  }
}

/**
 * Runs one job: parses its payload with the definition's schema (a mismatch fails at once, no
 * retries), runs the processor with an AbortSignal, and makes every cancelled job end as CANCELLED
 * (an UnrecoverableError with the "Cancelled" prefix), whether the processor honours the signal,
 * ignores it and returns, or ignores it for longer than `cancelGraceMs`. With a timeout (the queue's
 * WORKER_TIMEOUT_MS_<QUEUE>, else the definition's `timeoutMs`) the signal also fires when it is
 * exceeded, and the attempt ends the same ways but failing "timed out after N ms" (retried).
 * `signal` (optional: BullMQ's, for a processor function taking three arguments) stops the attempt
 * like a cancel; the worker passes none and cancels through `options.running`.
 */
export function runJob(
  job: Job,
  signal: AbortSignal | undefined,
  processor: Processor | undefined,
  options: RunJobOptions,
): Promise<unknown> {
  const run = runOnce(job, signal, processor, options);
  const tell = options.tellParent;
  // Only flow children pay for this (one Redis script when they end).
  if (!job.parent || !tell) return run;
  return run.then(
    async (result) => {
      await tell(job, "completed");
      return result;
    },
    async (err) => {
      if (isFinal(job, err)) await tell(job, "failed");
      throw err;
    },
  );
}

function runOnce(job: Job, signal: AbortSignal | undefined, processor: Processor | undefined, options: RunJobOptions): Promise<unknown> {
  const queue = job.queueName;
  if (!processor) return Promise.reject(new UnrecoverableError(`No processor for job type ${queue}.${job.name} in this worker`));
  const jobId = String(job.id);
  // Cancelled while BullMQ was handing the job to this worker: don't run it at all.
  const requested = options.cancelRequested(queue, jobId);
  if (requested !== undefined) return Promise.reject(new UnrecoverableError(`${CANCELLED_PREFIX}: ${requested}`));

  const parsed = processor.definition.schema.safeParse(splitData(job.data).data);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    return Promise.reject(new UnrecoverableError(`Invalid payload: ${issues}`));
  }
  const attempt = new Attempt(job, jobId, options, options.running?.of(queue), signal);
  const timeoutMs = options.queueTimeoutMs?.[queue] ?? processor.definition.defaults.timeoutMs;
  if (timeoutMs) attempt.timeout(timeoutMs);
  let run: Promise<unknown>;
  try {
    run = processor.run(parsed.data, attempt);
  } catch (err) {
    run = Promise.reject(err); // a processor that threw before returning its promise
  }
  return attempt.settle(run);
}
