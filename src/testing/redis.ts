import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";

export const testRedisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A BullMQ key prefix no other test uses; every key a test makes lives under it. */
export function uniquePrefix(): string {
  return `{test-${randomUUID()}}`;
}

/** Deletes every key under `prefix` (the test's queues, their events and jobs). */
export async function deletePrefix(prefix: string, url = testRedisUrl): Promise<number> {
  const redis = new Redis(url);
  let deleted = 0;
  try {
    // SCAN's MATCH treats `{`/`}` literally only when not part of a glob class; escape `[`/`*`/`?` if any.
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}:*`;
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  return deleted;
}
