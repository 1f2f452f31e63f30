import { Redis, type RedisOptions } from "ioredis";

/**
 * Connection factory. BullMQ needs `maxRetriesPerRequest: null` on connections that block (workers,
 * QueueEvents); connections that serve API requests give up after 2 s instead, so a request never
 * hangs while Redis is down.
 */
export function createRedis(url: string, role: "blocking" | "request" | "subscriber", extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: role === "request" ? 1 : null,
    commandTimeout: role === "request" ? 2_000 : undefined,
    connectTimeout: 2_000,
    ...extra,
  });
}

/** Closes a connection, falling back to a hard disconnect when Redis is not answering. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === "end") return;
  try {
    await Promise.race([client.quit(), new Promise((_, reject) => setTimeout(() => reject(new Error("quit timed out")), 1_000))]);
  } catch {
    client.disconnect();
  }
}
