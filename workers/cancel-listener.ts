import type { Logger } from "../src/infra/logger.ts";
import type { RedisClient } from "../src/infra/redis.ts";
import { cancellation, cancelMessageSchema, type KeySpace } from "../src/jobs/bullmq/index.ts";
import type { RunningJobs } from "./run-job.ts";

/** How many cancel requests for jobs not (yet) running here a process remembers. */
const REMEMBERED = 10_000;

export interface CancelListener {
  /** The reason of a request for a job this process was not running when it arrived (see run-job.ts). */
  requested(queue: string, jobId: string): string | undefined;
  stop(): Promise<void>;
}

/**
 * Listens for cancelJob requests on the control channels of the queues served here (one per queue in
 * the per-queue key layout, one for all in the single one) and stops the job if this process is running
 * it (`RunningJobs.cancel`: its processor's AbortSignal fires, see run-job.ts). A request
 * for a job not running here is remembered (the newest REMEMBERED of them): the job may be on its
 * way to this worker, taken before the API marked it and not yet tracked by BullMQ. Uses its own
 * connection (subscriber mode).
 */
export async function listenForCancellations(
  subscriber: RedisClient,
  space: KeySpace,
  queues: readonly string[],
  running: RunningJobs,
  log: Logger,
): Promise<CancelListener> {
  const notRunning = new Map<string, string>();
  const keyOf = (queue: string, jobId: string) => `${queue}\u0000${jobId}`;
  const subscribed = [...new Set(queues.map((queue) => cancellation.channel(space, queue)))];
  const ours = new Set(subscribed);
  subscriber.on("message", (from: string, message: string) => {
    if (!ours.has(from)) return;
    let parsed: ReturnType<typeof cancelMessageSchema.parse>;
    try {
      parsed = cancelMessageSchema.parse(JSON.parse(message));
    } catch (err) {
      log.warn("ignoring a malformed cancel request", { message, err: err instanceof Error ? err.message : String(err) });
      return;
    }
    const cancelled = running.cancel(parsed.queue, parsed.jobId, parsed.reason);
    if (cancelled) {
      log.info("cancelling active job", { queue: parsed.queue, jobId: parsed.jobId, reason: parsed.reason });
      return;
    }
    notRunning.set(keyOf(parsed.queue, parsed.jobId), parsed.reason);
    if (notRunning.size > REMEMBERED) notRunning.delete(notRunning.keys().next().value as string);
  });
  if (subscribed.length > 0) await subscriber.subscribe(...subscribed);
  return {
    // Asked once per job: no key is built while nothing is remembered (the usual case).
    requested: (queue, jobId) => (notRunning.size === 0 ? undefined : notRunning.get(keyOf(queue, jobId))),
    stop: async () => {
      if (subscribed.length > 0) await subscriber.unsubscribe(...subscribed);
    },
  };
}
