import { type Job, UnrecoverableError } from "bullmq";
import { CANCELLED_PREFIX, splitData } from "../src/jobs/job-view.ts";
import { JobTimeoutError, withTimeout } from "./job-timeout.ts";
import type { Processor, ProcessorContext } from "./processor.ts";

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * How a job whose signal fired ends: a timed-out attempt fails with its JobTimeoutError (retried while
 * attempts remain); a cancelled one ends CANCELLED (an UnrecoverableError with the "Cancelled" prefix).
 */
function cancelled(signal: AbortSignal): Error {
  if (signal.reason instanceof JobTimeoutError) return signal.reason;
  return new UnrecoverableError(`${CANCELLED_PREFIX}: ${describe(signal.reason)}`);
}

const ONCE = { once: true };
const nothing = () => {};

export interface RunJobOptions {
  /**
   * The reason of a cancel request this process received for the job before BullMQ tracked it (so
   * `Worker.cancelJob` could not abort it yet), if any. A job cancelled before it was taken never
   * gets here: BullMQ fails it from its `deferredFailure` mark (src/jobs/bullmq/cancellation.ts).
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
}

/**
 * Runs one job: parses its payload with the definition's schema (a mismatch fails at once, no
 * retries), runs the processor with an AbortSignal, and makes every cancelled job end as CANCELLED
 * (an UnrecoverableError with the "Cancelled" prefix), whether the processor honours the signal,
 * ignores it and returns, or ignores it for longer than `cancelGraceMs`. With a timeout (the queue's
 * WORKER_TIMEOUT_MS_<QUEUE>, else the definition's `timeoutMs`) the signal also fires when it is
 * exceeded, and the attempt ends the same ways but failing "timed out after N ms" (retried).
 */
export function runJob(
  job: Job,
  signal: AbortSignal | undefined,
  processor: Processor | undefined,
  options: RunJobOptions,
): Promise<unknown> {
  const queue = job.queueName;
  if (!processor) return Promise.reject(new UnrecoverableError(`No processor for job type ${queue}.${job.name} in this worker`));
  // Cancelled while BullMQ was handing the job to this worker: don't run it at all.
  const requested = options.cancelRequested(queue, String(job.id));
  if (requested !== undefined) return Promise.reject(new UnrecoverableError(`${CANCELLED_PREFIX}: ${requested}`));

  const parsed = processor.definition.schema.safeParse(splitData(job.data).data);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    return Promise.reject(new UnrecoverableError(`Invalid payload: ${issues}`));
  }
  const timeoutMs = options.queueTimeoutMs?.[queue] ?? processor.definition.defaults.timeoutMs;
  const timed = timeoutMs ? withTimeout(signal, timeoutMs) : undefined;
  const abort = timed?.signal ?? signal ?? new AbortController().signal;
  let run: Promise<unknown>;
  try {
    run = processor.run(parsed.data, {
      config: options.services.config,
      db: options.services.db,
      job,
      signal: abort,
      progress: (value) => job.updateProgress(value),
      log: options.log ? (line) => (options.log as NonNullable<RunJobOptions["log"]>)(job, line) : (line) => job.log(line).then(nothing),
      idempotencyKey: `${queue}:${job.id}`,
      attempt: job.attemptsMade + 1,
    });
  } catch (err) {
    timed?.clear();
    return Promise.reject(err); // a processor that threw before returning its promise
  }
  // Settles with the processor, unless a cancel's grace period runs out first (the timer only
  // exists once the signal has fired). A processor that ignored the signal and finished anyway
  // still ends the job CANCELLED. (Written without helper closures: this runs for every job.)
  return new Promise((resolve, reject) => {
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      graceTimer = setTimeout(() => reject(cancelled(abort)), options.cancelGraceMs);
    };
    if (abort.aborted) onAbort();
    else abort.addEventListener("abort", onAbort, ONCE);
    run.then(
      (result) => {
        clearTimeout(graceTimer);
        timed?.clear();
        abort.removeEventListener("abort", onAbort);
        if (abort.aborted) reject(cancelled(abort));
        else resolve(result);
      },
      (err) => {
        clearTimeout(graceTimer);
        timed?.clear();
        abort.removeEventListener("abort", onAbort);
        reject(abort.aborted ? cancelled(abort) : err);
      },
    );
  });
}
