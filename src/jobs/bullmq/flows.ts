import type { Job, Queue } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";

// Flows (issue #20) as BullMQ keeps them: a parent's `:processed` hash (completed children and their
// results), `:dependencies` set (children not finished), `:failed` hash (children whose failure was
// ignored: ignoreDependencyOnFailure) and `:unsuccessful` sorted set
// (children that failed it: failParentOnFailure). Children are named by their full job keys.

/** A flow child's counts, as `Job.childrenCounts` and the CHILD_* events show them. */
export interface ChildrenCounts {
  /** Completed. */
  processed: number;
  /** Not finished yet (including a failed child without a parent policy: the parent waits for its retry). */
  pending: number;
  /** Failed and failed the parent (failParentOnFailure). */
  failed: number;
  /** Failed, and the parent went on without it (ignoreDependencyOnFailure). */
  ignored: number;
}

/**
 * `{ queue, id }` of a BullMQ job key `<prefix>:<queue>:<id>`, read from its end (ids and queue
 * names hold no ':'; prefixes may, and differ per queue with REDIS_KEY_LAYOUT=per-queue).
 */
export function jobOfKey(key: string): { queue: string; id: string } | null {
  const idAt = key.lastIndexOf(":");
  const queueAt = idAt > 0 ? key.lastIndexOf(":", idAt - 1) : -1;
  return queueAt >= 0 && idAt > queueAt + 1 ? { queue: key.slice(queueAt + 1, idAt), id: key.slice(idAt + 1) } : null;
}

/** The queue name of BullMQ's parent reference `queueKey` (`<prefix>:<queue>`). */
export function queueOfKey(queueKey: string): string {
  return queueKey.slice(queueKey.lastIndexOf(":") + 1);
}

/** The counts of a parent Redis holds, or null when Redis no longer has it. */
export async function liveChildrenCounts(queue: Queue, id: string): Promise<ChildrenCounts | null> {
  const job = await queue.getJob(id);
  if (!job) return null;
  const c = await job.getDependenciesCount();
  return { processed: c.processed ?? 0, pending: c.unprocessed ?? 0, failed: c.failed ?? 0, ignored: c.ignored ?? 0 };
}

/** A parent's completed children's results keyed `<queue>:<id>`, or null when Redis no longer has the parent. */
export async function liveChildrenValues(queue: Queue, id: string): Promise<Record<string, unknown> | null> {
  const job = await queue.getJob(id);
  if (!job) return null;
  return childrenValuesOf(job);
}

/** What a processor's `ctx.childrenValues()` answers: its completed children's results keyed `<queue>:<id>`. */
export async function childrenValuesOf(job: Job): Promise<Record<string, unknown>> {
  const values = (await job.getChildrenValues()) ?? {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    const child = jobOfKey(key);
    out[child ? `${child.queue}:${child.id}` : key] = value ?? null;
  }
  return out;
}

/**
 * KEYS[1] the parent's job hash, KEYS[2] its queue's events stream; ARGV: maxLen, event name,
 * parent id, child queue, child id, outcome, the child's parent policy. Counts the child's end in
 * fields of our own on the parent's hash (BullMQ neither reads nor deletes them) and appends the
 * event with the counts: each event counts one more end than the one before, whatever order
 * concurrent siblings are recorded in by BullMQ. The number of children is what BullMQ holds for the
 * parent (a child removed by removeDependencyOnFailure leaves it once removed). Nothing when the
 * parent is gone.
 */
const APPEND_CHILD_EVENT = `
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local total = redis.call("SCARD", KEYS[1] .. ":dependencies") + redis.call("HLEN", KEYS[1] .. ":processed")
  + redis.call("HLEN", KEYS[1] .. ":failed") + redis.call("ZCARD", KEYS[1] .. ":unsuccessful")
local field = nil
if ARGV[6] == "completed" then field = "jc:children:processed"
elseif ARGV[7] == "failParentOnFailure" then field = "jc:children:failed"
elseif ARGV[7] == "ignoreDependencyOnFailure" then field = "jc:children:ignored"
end
if field then redis.call("HINCRBY", KEYS[1], field, 1) end
local counts = redis.call("HMGET", KEYS[1], "jc:children:processed", "jc:children:failed", "jc:children:ignored")
local processed = tonumber(counts[1]) or 0
local failed = tonumber(counts[2]) or 0
local ignored = tonumber(counts[3]) or 0
local pending = math.max(0, total - processed - failed - ignored)
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[1], "*", "event", ARGV[2], "jobId", ARGV[3], "childQueue", ARGV[4], "childId", ARGV[5],
  "processed", processed, "pending", pending, "failed", failed, "ignored", ignored)
return 1`;

/** The parent policy a child was added with (BullMQ's option names). */
function policyOf(opts: Job["opts"]): string {
  if (opts.failParentOnFailure) return "failParentOnFailure";
  if (opts.ignoreDependencyOnFailure) return "ignoreDependencyOnFailure";
  if (opts.removeDependencyOnFailure) return "removeDependencyOnFailure";
  return "";
}

/**
 * Tells a child's parent that the child is finishing (`child-completed` / `child-failed` in the
 * parent queue's events stream, with the ends counted so far), so the parent's
 * jobEvents show CHILD_COMPLETED / CHILD_FAILED in order with its other events. Called by the worker
 * running the child when its processor has settled for good, before BullMQ records the end (a run
 * whose end BullMQ then refuses, e.g. a lost lock, may report it again); does nothing for a job
 * without a parent.
 */
export async function appendChildEvent(
  redis: RedisClient,
  maxLen: number,
  child: Pick<Job, "parent" | "queueName" | "id" | "opts">,
  outcome: "completed" | "failed",
): Promise<void> {
  const parent = child.parent;
  if (!parent?.id) return;
  // BullMQ's own names for the parent's hash and its queue's stream (`<queueKey>:<id>`, `<queueKey>:events`).
  await redis.eval(
    APPEND_CHILD_EVENT,
    2,
    `${parent.queueKey}:${parent.id}`,
    `${parent.queueKey}:events`,
    String(maxLen),
    `child-${outcome}`,
    parent.id,
    child.queueName,
    String(child.id),
    outcome,
    policyOf(child.opts),
  );
}
