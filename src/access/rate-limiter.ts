import { createHash } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Logger } from "../infra/logger.ts";
import type { RedisClient } from "../infra/redis.ts";
import type { Principal } from "./principal.ts";

/**
 * GCRA (the generic cell rate algorithm) in one script: one round trip per request, one key per
 * credential holding its "theoretical arrival time", the clock Redis' own (TIME) so every API
 * instance shares one budget. `limit` requests per minute, all of them usable at once (a burst of
 * up to `limit`), then one every 60 s / limit. Returns {1, 0} when allowed, {0, retry after ms} when not.
 */
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return {0, math.ceil(wait)} end
local next = tat + interval
redis.call('SET', KEYS[1], next, 'PX', math.max(1, math.ceil(next - now)))
return {1, 0}`;

type WithGcra = RedisClient & { jobsRateLimit(key: string, interval: number, tolerance: number): Promise<[number, number]> };

export function rateLimited(retryAfterMs: number): GraphQLError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new GraphQLError(`Rate limit exceeded: retry after ${seconds} s`, {
    extensions: { code: "RATE_LIMITED", retryAfterSeconds: seconds, http: { status: 429, headers: { "retry-after": String(seconds) } } },
  });
}

/**
 * Requests per credential per minute (RATE_LIMIT_PER_MINUTE), counted in Redis: an API key (by id:
 * its job tokens have budgets of their own), ADMIN_API_KEY, a job token (by its text), and requests
 * without a valid credential by client address.
 */
export class RateLimiter {
  private readonly redis: WithGcra;
  private readonly prefix: string;
  private readonly interval: number;
  private readonly tolerance: number;
  private readonly log: Logger;
  private lastWarned = 0;

  constructor(redis: RedisClient, prefix: string, perMinute: number, log: Logger) {
    this.log = log;
    redis.defineCommand("jobsRateLimit", { numberOfKeys: 1, lua: GCRA });
    this.redis = redis as WithGcra;
    this.prefix = prefix;
    this.interval = 60_000 / perMinute;
    this.tolerance = 60_000 - this.interval;
  }

  /** Resolves when the bucket has room (and takes one); rejects with RATE_LIMITED (HTTP 429, Retry-After) when not. */
  async take(bucket: string): Promise<void> {
    let answer: [number, number];
    try {
      // Not connected: no waiting for a reconnect (a request must fail or succeed fast on its own).
      if (this.redis.status !== "ready") throw new Error(`Redis connection is ${this.redis.status}`);
      answer = await this.redis.jobsRateLimit(`${this.prefix}:rl:${bucket}`, this.interval, this.tolerance);
    } catch (err) {
      // Redis unreachable: the limit fails open (requests that need Redis fail on their own; reads
      // from history keep working), and says so at most once a minute.
      const now = Date.now();
      if (now - this.lastWarned > 60_000) {
        this.lastWarned = now;
        this.log.warn("rate limit not enforced: Redis did not answer", { err: err instanceof Error ? err.message : String(err) });
      }
      return;
    }
    if (answer[0] !== 1) throw rateLimited(answer[1]);
  }
}

/** Requests without a valid credential: by client address (the socket's, or per TRUST_PROXY_HOPS: src/server/client-address.ts). */
export function addressBucket(address: string | undefined): string {
  return `addr:${address ?? "unknown"}`;
}

/** The bucket a principal's requests count against; `address` for anonymous (auth open) ones. */
export function bucketOf(p: Principal, credential: string | null | undefined, address: string | undefined): string {
  switch (p.kind) {
    case "API_KEY":
      return `key:${p.keyId}`;
    case "ADMIN_ENV":
      return "admin";
    case "JOB_TOKEN":
      return `token:${createHash("sha256")
        .update(credential ?? "")
        .digest("base64url")
        .slice(0, 22)}`;
    default:
      return addressBucket(address);
  }
}
