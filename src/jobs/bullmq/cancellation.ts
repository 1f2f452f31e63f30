import { z } from "zod";
import type { RedisClient } from "../../infra/redis.ts";
import { channels, keys } from "./keys.ts";

/** BullMQ's job-hash field its Worker fails a job with before running it (`Job.deferredFailure`). */
const DEFERRED_FAILURE = "defa";

/** Sets the field only on a job that still exists (KEYS[1] the job hash, ARGV[1] the failure). */
const MARK = `if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("HSET", KEYS[1], "${DEFERRED_FAILURE}", ARGV[1]) return 1 end return 0`;

/**
 * How the API tells workers to cancel an active job. The API first marks the job itself: the
 * `defa` field of its hash (`Job.deferredFailure`), which BullMQ's Worker checks when it takes a job and turns
 * into an UnrecoverableError without running the processor. So a worker that picks the job up later
 * (after a stall, or in a race with the cancel) fails it at once, and no worker reads anything extra
 * per job. Then the API publishes on one channel every worker process subscribes to; the worker that
 * holds the job aborts it.
 */
export const cancellation = {
  channel: channels.cancel,
};

/** Marks a job so that a worker taking it fails it with `failedReason` instead of running it; false when the job is gone. */
export async function markCancelled(
  redis: RedisClient,
  prefix: string,
  queue: string,
  jobId: string,
  failedReason: string,
): Promise<boolean> {
  return (await redis.eval(MARK, 1, keys.job(prefix, queue, jobId), failedReason)) === 1;
}

/** Takes the mark off again (a job retried after a cancel runs normally). */
export async function clearCancelMark(redis: RedisClient, prefix: string, queue: string, jobId: string): Promise<void> {
  await redis.hdel(keys.job(prefix, queue, jobId), DEFERRED_FAILURE);
}

export const cancelMessageSchema = z.object({ queue: z.string(), jobId: z.string(), reason: z.string() });
export type CancelMessage = z.infer<typeof cancelMessageSchema>;
