import { createHash } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Logger } from "../infra/logger.ts";
import type { RedisClient } from "../infra/redis.ts";
import type { Principal } from "./principal.ts";

/**
 * GCRA (the generic cell rate algorithm) in one script: one round trip, one key per credential
 * holding its "theoretical arrival time", the clock Redis' own (TIME) so every API instance shares
 * one budget. `limit` requests per minute, all of them usable at once (a burst of up to `limit`),
 * then one every 60 s / limit. ARGV[3] requests of the same credential are decided in one call
 * (1 when absent), exactly as that many calls one after the other at the same instant would be:
 * each allowed one moves the arrival time by one interval, a refused one moves nothing. Returns
 * {allowed, retry after ms}: the first `allowed` requests pass, the rest are refused with that wait.
 */
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed = 0
while allowed < n and tat - now - tolerance <= 0 do
  tat = tat + interval
  allowed = allowed + 1
end
if allowed > 0 then redis.call('SET', KEYS[1], tat, 'PX', math.max(1, math.ceil(tat - now))) end
if allowed < n then return {allowed, math.ceil(tat - now - tolerance)} end
return {allowed, 0}`;

type WithGcra = RedisClient & {
  jobsRateLimit(key: string, interval: number, tolerance: number, count: number): Promise<[number, number]>;
};

/** Requests of one bucket waiting for the next flush: each resolves with its own value, or is refused. */
interface Pending {
  values: unknown[];
  resolves: ((value: unknown) => void)[];
  rejects: ((err: unknown) => void)[];
}

/** Most requests of one bucket decided by one script call (a bigger batch is split). */
const MAX_BATCH = 1_000;

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
 *
 * The requests of one bucket that arrive in the same turn of the event loop are decided by one
 * script call (flushed in `setImmediate`, i.e. once the turn's I/O callbacks have run): under load
 * that is one Redis command for many requests instead of one each, with the same outcome as
 * separate calls (the script takes them in arrival order; see GCRA).
 */
export class RateLimiter {
  private readonly redis: WithGcra;
  private readonly prefix: string;
  private readonly interval: number;
  private readonly tolerance: number;
  private readonly log: Logger;
  private lastWarned = 0;
  private pending = new Map<string, Pending>();
  private flushScheduled = false;

  constructor(redis: RedisClient, prefix: string, perMinute: number, log: Logger) {
    this.log = log;
    redis.defineCommand("jobsRateLimit", { numberOfKeys: 1, lua: GCRA });
    this.redis = redis as WithGcra;
    this.prefix = prefix;
    this.interval = 60_000 / perMinute;
    this.tolerance = 60_000 - this.interval;
  }

  /** Resolves when the bucket has room (and takes one); rejects with RATE_LIMITED (HTTP 429, Retry-After) when not. */
  take(bucket: string): Promise<void> {
    return this.admit(bucket, undefined);
  }

  /** `take`, resolving with `value` (saves the caller a promise per request). */
  admit<T>(bucket: string, value: T): Promise<T> {
    // Not connected: no waiting for a reconnect (a request must fail or succeed fast on its own).
    if (this.redis.status !== "ready") {
      this.failedOpen(new Error(`Redis connection is ${this.redis.status}`));
      return Promise.resolve(value);
    }
    return new Promise<T>((resolve, reject) => {
      let batch = this.pending.get(bucket);
      if (!batch) {
        batch = { values: [], resolves: [], rejects: [] };
        this.pending.set(bucket, batch);
      }
      batch.values.push(value);
      batch.resolves.push(resolve as (value: unknown) => void);
      batch.rejects.push(reject);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const batches = this.pending;
    this.pending = new Map();
    for (const [bucket, batch] of batches) {
      for (let from = 0; from < batch.values.length; from += MAX_BATCH)
        this.decide(bucket, batch, from, Math.min(batch.values.length, from + MAX_BATCH));
    }
  };

  /** One script call for requests [from, to) of a batch. */
  private decide(bucket: string, batch: Pending, from: number, to: number): void {
    if (this.redis.status !== "ready") {
      this.failedOpen(new Error(`Redis connection is ${this.redis.status}`));
      for (let i = from; i < to; i++) batch.resolves[i]?.(batch.values[i]);
      return;
    }
    this.redis.jobsRateLimit(`${this.prefix}:rl:${bucket}`, this.interval, this.tolerance, to - from).then(
      ([allowed, retryAfterMs]) => {
        const pass = from + allowed;
        for (let i = from; i < pass; i++) batch.resolves[i]?.(batch.values[i]);
        // Every refused request of the batch gets the same wait, as separate calls would (a refusal takes nothing).
        for (let i = pass; i < to; i++) batch.rejects[i]?.(rateLimited(retryAfterMs));
      },
      (err: unknown) => {
        // Redis unreachable: the limit fails open (requests that need Redis fail on their own; reads
        // from history keep working), and says so at most once a minute.
        this.failedOpen(err);
        for (let i = from; i < to; i++) batch.resolves[i]?.(batch.values[i]);
      },
    );
  }

  private failedOpen(err: unknown): void {
    const now = Date.now();
    if (now - this.lastWarned > 60_000) {
      this.lastWarned = now;
      this.log.warn("rate limit not enforced: Redis did not answer", { err: err instanceof Error ? err.message : String(err) });
    }
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
