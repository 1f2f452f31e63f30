import type { Queue } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";

/** The states BullMQ counts for `Queue.counts` and `/metrics`. */
const COUNTED = ["waiting", "prioritized", "delayed", "active", "completed", "failed"] as const;
export type JobCounts = Record<(typeof COUNTED)[number], number>;

/** JobCounts from counts by lower-case state name (BullMQ's, or history's); a state left out is 0. */
export function toJobCounts(counts: Partial<Record<string, number>>): JobCounts {
  return {
    waiting: counts.waiting ?? 0,
    prioritized: counts.prioritized ?? 0,
    delayed: counts.delayed ?? 0,
    active: counts.active ?? 0,
    completed: counts.completed ?? 0,
    failed: counts.failed ?? 0,
  };
}

/** A queue's jobs by state, from one BullMQ script call (`getJobCounts`). */
export async function readJobCounts(queue: Queue): Promise<JobCounts> {
  return toJobCounts(await queue.getJobCounts(...COUNTED));
}

/** What `/metrics` reports of one queue: BullMQ's own counts and worker count, and the oldest wait. */
export interface QueueGauges {
  counts: JobCounts;
  paused: boolean;
  /** Worker connections serving the queue (BullMQ's `getWorkersCount`: named clients in CLIENT LIST). */
  workers: number;
  /** Milliseconds the job next in line (waiting list or prioritized set, the older) has been ready; 0 when none waits. */
  oldestWaitingMs: number;
}

/**
 * The time the job next in line became ready to run, in epoch ms, or 0 when nothing waits.
 * KEYS: the wait list, the paused list, the prioritized set. ARGV[1]: the queue's job key prefix.
 * Workers take from the right end of the wait list and the lowest score of the prioritized set, so
 * those are the jobs that have waited longest in each. A job became ready at `timestamp + delay`
 * (enqueue plus its delay); a retried one at its last attempt's start at the earliest
 * (`processedOn`), so for it the age is an upper bound. Markers ("0:...") are skipped.
 */
const OLDEST_READY = `local oldest = 0
local function consider(id)
  if not id or string.sub(id, 1, 2) == "0:" then return end
  local f = redis.call("HMGET", ARGV[1] .. id, "timestamp", "delay", "processedOn")
  local ready = (tonumber(f[1]) or 0) + (tonumber(f[2]) or 0)
  local processed = tonumber(f[3]) or 0
  if processed > ready then ready = processed end
  if ready > 0 and (oldest == 0 or ready < oldest) then oldest = ready end
end
consider(redis.call("LINDEX", KEYS[1], -1))
consider(redis.call("LINDEX", KEYS[2], -1))
local first = redis.call("ZRANGE", KEYS[3], 0, 0)
consider(first[1])
return oldest`;

/**
 * Reads one queue's gauges: counts (`readJobCounts`), `isPaused`,
 * `getWorkersCount` (CLIENT LIST), and the oldest ready job (one script on `redis`), all at once.
 */
export async function readQueueGauges(queue: Queue, redis: RedisClient, now = Date.now()): Promise<QueueGauges> {
  const [counts, paused, workers, oldestReady] = await Promise.all([
    readJobCounts(queue),
    queue.isPaused(),
    queue.getWorkersCount(),
    redis.eval(OLDEST_READY, 3, queue.toKey("wait"), queue.toKey("paused"), queue.toKey("prioritized"), queue.toKey("")) as Promise<number>,
  ]);
  return {
    counts,
    paused,
    workers,
    oldestWaitingMs: oldestReady > 0 ? Math.max(0, now - Number(oldestReady)) : 0,
  };
}
