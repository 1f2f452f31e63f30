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

/**
 * BullMQ's getStateV2 (`Queue.getJobState`) for a job whose hash exists, else "unknown" at once.
 * BullMQ's own script looks for the id in the active, wait and paused lists with LPOS, which walks a
 * whole list for an id that is not in it: asking after a job Redis no longer holds (every
 * `job(queue, id)` of a finished, removed job) cost a walk of every waiting job (~3-5 ms of Redis
 * at 100k waiting, blocking every other client meanwhile). Same keys and order as BullMQ's script.
 * `redis`: the connection the queues share (QueueSet.connection), so it goes out with their reads.
 */
const STATE_IF_EXISTS = `local rcall = redis.call
if rcall("EXISTS", KEYS[9]) == 0 then return "unknown" end
if rcall("ZSCORE", KEYS[1], ARGV[1]) then return "completed" end
if rcall("ZSCORE", KEYS[2], ARGV[1]) then return "failed" end
if rcall("ZSCORE", KEYS[3], ARGV[1]) then return "delayed" end
if rcall("ZSCORE", KEYS[8], ARGV[1]) then return "prioritized" end
if rcall("LPOS", KEYS[4], ARGV[1]) then return "active" end
if rcall("LPOS", KEYS[5], ARGV[1]) then return "waiting" end
if rcall("LPOS", KEYS[6], ARGV[1]) then return "waiting" end
if rcall("ZSCORE", KEYS[7], ARGV[1]) then return "waiting-children" end
return "unknown"`;

export async function jobStateIfExists(
  redis: RedisClient,
  queue: Queue,
  jobId: string,
): Promise<Awaited<ReturnType<Queue["getJobState"]>>> {
  const key = (type: string) => queue.keys[type] ?? queue.toKey(type);
  const k = {
    completed: key("completed"),
    failed: key("failed"),
    delayed: key("delayed"),
    active: key("active"),
    wait: key("wait"),
    paused: key("paused"),
    waitingChildren: key("waiting-children"),
    prioritized: key("prioritized"),
  };
  return (await redis.eval(
    STATE_IF_EXISTS,
    9,
    k.completed,
    k.failed,
    k.delayed,
    k.active,
    k.wait,
    k.paused,
    k.waitingChildren,
    k.prioritized,
    queue.toKey(jobId),
    jobId,
  )) as Awaited<ReturnType<Queue["getJobState"]>>;
}
