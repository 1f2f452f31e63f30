import { z } from "zod";
import type { RedisClient } from "../../infra/redis.ts";
import { channels, type KeySpace, keys } from "./keys.ts";

/** BullMQ's job-hash field its Worker fails a job with before running it (`Job.deferredFailure`); BullMQ deletes it when the job fails. */
const DEFERRED_FAILURE = "defa";
/**
 * Our own job-hash field (BullMQ neither reads nor deletes it): the failure reason the cancel path
 * gave the job. A job is CANCELLED when it failed with exactly that reason (see `whichCancelled`).
 */
const CANCEL_MARK = "jc:cancelled";

/** Sets both fields only on a job that still exists (KEYS[1] the job hash, ARGV[1] the failure). */
const MARK = `if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("HSET", KEYS[1], "${DEFERRED_FAILURE}", ARGV[1], "${CANCEL_MARK}", ARGV[1]) return 1 end return 0`;

/**
 * How the API tells workers to cancel an active job. The API first marks the job itself: the
 * `defa` field of its hash (`Job.deferredFailure`), which BullMQ's Worker checks when it takes a job and turns
 * into an UnrecoverableError without running the processor. So a worker that picks the job up later
 * (after a stall, or in a race with the cancel) fails it at once, and no worker reads anything extra
 * per job. Then the API publishes on the queue's control channel, which every worker process serving
 * the queue subscribes to; the worker that holds the job aborts it.
 */
export const cancellation = {
  channel: channels.cancel,
};

/**
 * Marks a job cancelled: a worker taking it from now on fails it with `failedReason` instead of
 * running it, and the job counts as CANCELLED once it failed with that reason. False when the job is gone.
 */
export async function markCancelled(
  redis: RedisClient,
  space: KeySpace,
  queue: string,
  jobId: string,
  failedReason: string,
): Promise<boolean> {
  return (await redis.eval(MARK, 1, keys.job(space, queue, jobId), failedReason)) === 1;
}

/** Takes the mark off again (a job retried after a cancel runs normally). */
export async function clearCancelMark(redis: RedisClient, space: KeySpace, queue: string, jobId: string): Promise<void> {
  await redis.hdel(keys.job(space, queue, jobId), DEFERRED_FAILURE, CANCEL_MARK);
}

/** What `whichCancelled` needs of a job (a BullMQ Job has it). */
export interface FailedJobRef {
  queueName: string;
  id?: string | undefined;
  failedReason?: string | undefined;
}

/**
 * For each job, whether it ended CANCELLED rather than FAILED: it failed with exactly the reason the
 * cancel path marked it with (`markCancelled`). The one place that decides it. A processor cannot
 * forge it whatever it throws (`Error("Cancelled order 17")` is a failure like any other): only
 * cancelJob writes the mark, and a job that failed for its own reason while a cancel was on its way
 * keeps that reason and counts as FAILED. One Redis round trip per queue of the jobs; a job without a
 * failure reason is not read.
 */
export async function whichCancelled(redis: RedisClient, space: KeySpace, jobs: readonly FailedJobRef[]): Promise<boolean[]> {
  const asked = jobs.filter((job) => job.failedReason && job.id !== undefined);
  if (asked.length === 0) return jobs.map(() => false);
  // One pipeline per queue: on a cluster (per-queue layout) a pipeline must stay within one slot.
  const byQueue = new Map<string, FailedJobRef[]>();
  for (const job of asked) byQueue.set(job.queueName, [...(byQueue.get(job.queueName) ?? []), job]);
  const marks = new Map<FailedJobRef, unknown>();
  await Promise.all(
    [...byQueue.values()].map(async (ofQueue) => {
      const pipeline = redis.pipeline();
      for (const job of ofQueue) pipeline.hget(keys.job(space, job.queueName, job.id as string), CANCEL_MARK);
      const replies = (await pipeline.exec()) ?? [];
      for (const [i, job] of ofQueue.entries()) {
        const [err, mark] = replies[i] ?? [new Error("no reply")];
        if (err) throw err;
        marks.set(job, mark);
      }
    }),
  );
  return jobs.map((job) => marks.has(job) && marks.get(job) === job.failedReason);
}

/** `whichCancelled` for one job. */
export async function isCancelled(redis: RedisClient, space: KeySpace, job: FailedJobRef): Promise<boolean> {
  return (await whichCancelled(redis, space, [job]))[0] ?? false;
}

export const cancelMessageSchema = z.object({ queue: z.string(), jobId: z.string(), reason: z.string() });
export type CancelMessage = z.infer<typeof cancelMessageSchema>;
