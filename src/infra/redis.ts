import type { ConnectionOptions } from "bullmq";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Config } from "../config.ts";

/**
 * A connection to one Redis or to a Redis Cluster. Both speak the same commands; code that takes a
 * connection takes this, so nothing else needs to know which one it got.
 */
export type RedisClient = Redis | Cluster;

/** Where Redis is: `REDIS_URL`, or the cluster's seed nodes when `REDIS_CLUSTER_NODES` is set. */
export type RedisTarget = Pick<Config, "redisUrl" | "redisClusterNodes" | "redisClusterAuth">;

/**
 * What a connection is for. `blocking`: BullMQ Workers and QueueEvents, and commands that must wait
 * out a Redis restart; `request`: serves API requests; `subscriber`: pub/sub.
 */
export type RedisRole = "blocking" | "request" | "subscriber";

/**
 * Connection factory. BullMQ needs `maxRetriesPerRequest: null` on connections that block (workers,
 * QueueEvents); connections that serve API requests give up after 2 s instead, so a request never
 * hangs while Redis is down. With `redisClusterNodes` set it returns an ioredis `Cluster` seeded with
 * them, the same options (and `redisClusterAuth`'s user and password) applying to each node's connection.
 */
export function createRedis(target: RedisTarget, role: RedisRole, extra: RedisOptions = {}): RedisClient {
  const options: RedisOptions = {
    maxRetriesPerRequest: role === "request" ? 1 : null,
    commandTimeout: role === "request" ? 2_000 : undefined,
    connectTimeout: 2_000,
    ...extra,
  };
  if (!target.redisClusterNodes) return new Redis(target.redisUrl, options);
  // `lazyConnect` and `enableAutoPipelining` belong to the Cluster itself: it opens (and lazily
  // re-opens) its node connections, and batches commands per node.
  const { lazyConnect, enableAutoPipelining, ...redisOptions } = options;
  const { username, password } = target.redisClusterAuth;
  return new Cluster(target.redisClusterNodes, {
    lazyConnect,
    enableAutoPipelining,
    redisOptions: { ...redisOptions, username, password },
  });
}

/**
 * The `connection` option for a BullMQ Worker or QueueEvents (both block, so `maxRetriesPerRequest`
 * is null). On one Redis these are plain options and BullMQ makes its own connections, exactly as
 * before clusters were supported. On a cluster BullMQ cannot build a `Cluster` from options, so this
 * is a `Cluster` that never connects: BullMQ duplicates it for each connection it needs (and closes
 * those itself), leaving nothing of ours to close.
 */
export function bullConnection(target: RedisTarget): ConnectionOptions {
  if (!target.redisClusterNodes) return { url: target.redisUrl, maxRetriesPerRequest: null };
  return createRedis(target, "blocking", { lazyConnect: true });
}

/** Closes a connection, falling back to a hard disconnect when Redis is not answering. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === "end") return;
  try {
    await Promise.race([client.quit(), new Promise((_, reject) => setTimeout(() => reject(new Error("quit timed out")), 1_000))]);
  } catch {
    client.disconnect();
  }
}
