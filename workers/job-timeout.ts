/**
 * Per-queue job timeouts: a definition's `defaults.timeoutMs`, or `WORKER_TIMEOUT_MS_<QUEUE>` for every
 * job type of a queue. Past it the processor's AbortSignal fires with a JobTimeoutError as its reason,
 * and the attempt fails "timed out after N ms": an ordinary failure, retried while attempts remain.
 * A processor that ignores the signal is ended like a cancelled one (after CANCEL_GRACE_MS).
 */

/** The longest timeout a Node timer can hold (about 24.8 days); a larger one would fire at once. */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** The reason a timed-out attempt's signal carries, and the error it fails with (retried). */
export class JobTimeoutError extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
    this.name = "JobTimeoutError";
  }
}
