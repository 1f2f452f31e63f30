import type { Queue } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";
import { type KeySpace, keys } from "./keys.ts";

// What this project does with BullMQ's private layout (keys, stream entries, id shapes) beyond its
// public API. Each is checked by a test that would fail on a BullMQ upgrade that changes it.

/** The key prefix a queue was made with (QueueSet always gives one). */
export function prefixOf(queue: Queue): string {
  return queue.opts.prefix ?? "bull";
}

/**
 * Appends a `cancelled` entry to BullMQ's own events stream of `queue`, so subscribers see a job
 * cancelled out of the queue in order with everything else BullMQ wrote (trimmed like BullMQ trims it).
 */
export async function appendCancelledEvent(
  redis: RedisClient,
  space: KeySpace,
  queue: string,
  maxLen: number,
  jobId: string,
  reason: string,
): Promise<void> {
  await redis.xadd(keys.events(space, queue), "MAXLEN", "~", String(maxLen), "*", "event", "cancelled", "jobId", jobId, "reason", reason);
}

/**
 * Appends a `log` entry (a processor's `job.log` line) to the events stream at `eventsKey`, so
 * subscribers see it as a LOG event in order with the job's other events.
 */
export async function appendLogEvent(redis: RedisClient, eventsKey: string, maxLen: number, jobId: string, line: string): Promise<void> {
  await redis.xadd(eventsKey, "MAXLEN", "~", String(maxLen), "*", "event", "log", "jobId", jobId, "line", line);
}

/**
 * One page of a queue's finished set (`completed` or `failed`): the jobs that finished from `from`
 * to `to` (epoch ms, inclusive), oldest first, skipping `offset`.
 */
export async function finishedPage(
  redis: RedisClient,
  queue: Queue,
  set: "completed" | "failed",
  range: { from: number; to: number; offset: number; count: number },
): Promise<{ id: string; finishedOn: string }[]> {
  const flat = await redis.zrangebyscore(queue.toKey(set), range.from, range.to, "WITHSCORES", "LIMIT", range.offset, range.count);
  const page: { id: string; finishedOn: string }[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) page.push({ id: flat[i] as string, finishedOn: flat[i + 1] as string });
  return page;
}

/** True for a job a job scheduler put in the queue (BullMQ gives them ids `repeat:<scheduler id>:<time>`). */
export function isSchedulerJob(jobId: string | undefined, schedulerId: string): boolean {
  return jobId?.startsWith(`repeat:${schedulerId}:`) ?? false;
}
