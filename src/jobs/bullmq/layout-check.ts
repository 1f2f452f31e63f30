import type { RedisClient } from "../../infra/redis.ts";
import { type KeySpace, keySpace, keys, queuePrefix } from "./keys.ts";

/** BullMQ's keys that hold unfinished jobs (Redis deletes an empty list, set or hash). */
const UNFINISHED = ["wait", "active", "delayed", "prioritized", "paused", "waiting-children"] as const;

/**
 * The queues whose unfinished jobs or unconfirmed ledger records sit under the *other* key layout
 * (REDIS_KEY_LAYOUT switched without moving them): a process started on this layout would never see
 * them. Both processes call it at start and refuse to run while it names a queue (README: Key layout).
 * One EXISTS per key, not a multi-key command: on a cluster the two layouts' keys sit in different slots.
 */
export async function queuesLeftInOtherLayout(redis: RedisClient, space: KeySpace, queues: readonly string[]): Promise<string[]> {
  const other = keySpace(space.base, space.layout === "single" ? "per-queue" : "single");
  const left: string[] = [];
  for (const queue of queues) {
    if (queuePrefix(other, queue) === queuePrefix(space, queue)) continue;
    const base = `${queuePrefix(other, queue)}:${queue}:`;
    const candidates = [...UNFINISHED.map((k) => base + k), keys.ledgerPending(other, queue)];
    const found = await Promise.all(candidates.map((key) => redis.exists(key)));
    if (found.some((n) => n > 0)) left.push(queue);
  }
  return left;
}

/** The start error for `queuesLeftInOtherLayout`'s answer (one line per queue), or [] when none. */
export function layoutProblems(space: KeySpace, left: readonly string[]): string[] {
  const other = space.layout === "single" ? "per-queue" : "single";
  return left.map(
    (queue) =>
      `REDIS_KEY_LAYOUT: queue ${JSON.stringify(queue)} has unfinished jobs under the ${other} layout (keys ${queuePrefix(keySpace(space.base, other), queue)}:${queue}:*) that REDIS_KEY_LAYOUT=${space.layout} would not see; set REDIS_KEY_LAYOUT=${other}, or drain or move them first (README: Key layout; npm run redis:migrate-layout)`,
  );
}
