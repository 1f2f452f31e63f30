import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { keySpace, queuePrefix, scanPatterns } from "../jobs/bullmq/index.ts";

export const testRedisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A BullMQ key prefix no other test uses; every key a test makes lives under it. */
export function uniquePrefix(): string {
  return `{test-${randomUUID()}}`;
}

/** Deletes every key under `prefix`, in either key layout (the test's queues, their events and jobs). */
export async function deletePrefix(prefix: string, url = testRedisUrl): Promise<number> {
  const redis = new Redis(url);
  let deleted = 0;
  try {
    // Both layouts: `<prefix>:*` (single, and the keys of no queue) and each queue's `{<tag>:<queue>}:*`.
    for (const pattern of scanPatterns(prefix)) {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) deleted += await redis.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    redis.disconnect();
  }
  return deleted;
}

/** The BullMQ prefix of `queue` for a test's `prefix` under the default key layout (per-queue). */
export function bullPrefix(prefix: string, queue: string): string {
  return queuePrefix(keySpace(prefix), queue);
}
