import type { Queue, RepeatOptions } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";

/** The Redis set of a queue's scheduler ids that code declares (API-created ones are not in it). */
export function declaredSchedulersKey(queue: Queue): string {
  return queue.toKey("schedulers:declared");
}

/** One scheduler as code declares it, ready for BullMQ. */
export interface DeclaredScheduler {
  id: string;
  name: string;
  repeat: Omit<RepeatOptions, "key">;
  data: unknown;
}

/**
 * Puts a queue's declared schedulers in place: upserts each (BullMQ's `upsertJobScheduler`, idempotent,
 * so many workers starting at once leave one of each), records their ids as declared, and removes the
 * declared ones no longer in `declared` (with their next job). Schedulers created through the API are
 * never in the declared set, so they are left alone. Returns what it removed.
 */
export async function syncDeclaredSchedulers(queue: Queue, redis: RedisClient, declared: DeclaredScheduler[]): Promise<string[]> {
  const key = declaredSchedulersKey(queue);
  for (const s of declared) {
    await queue.upsertJobScheduler(s.id, s.repeat, { name: s.name, data: s.data });
  }
  if (declared.length > 0) await redis.sadd(key, ...declared.map((s) => s.id));
  const wanted = new Set(declared.map((s) => s.id));
  const stale = (await redis.smembers(key)).filter((id) => !wanted.has(id));
  for (const id of stale) {
    await queue.removeJobScheduler(id);
    await redis.srem(key, id);
  }
  return stale;
}

/** The ids of the queue's schedulers that code declares. */
export async function declaredSchedulerIds(queue: Queue, redis: RedisClient): Promise<Set<string>> {
  return new Set(await redis.smembers(declaredSchedulersKey(queue)));
}
