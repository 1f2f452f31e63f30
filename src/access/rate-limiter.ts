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
 * {allowed, retry after ms, left}: the first `allowed` requests pass, the rest are refused with that
 * wait; `left` is how many more would pass right now.
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
if allowed < n then return {allowed, math.ceil(tat - now - tolerance), 0} end
return {allowed, 0, math.floor((now + tolerance - tat) / interval) + 1}`;

type WithGcra = RedisClient & {
  jobsRateLimit(key: string, interval: number, tolerance: number, count: number): Promise<[number, number, number]>;
};

/** Requests of one bucket waiting for the next flush: each resolves with its own value, or is refused. */
interface Pending {
  values: unknown[];
  resolves: ((value: unknown) => void)[];
  rejects: ((err: unknown) => void)[];
}

/** The callback of a request admitted without waiting (its outcome is not waited for). */
const NO_WAIT = (): void => {};

/** Most buckets whose requests left are remembered (past it they are forgotten, and their requests wait again). */
const MAX_KNOWN = 10_000;

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
 *
 * A credential far from its limit does not wait for that call: each answer says how many more
 * requests the bucket has right now, and while this process knows of more than a tenth of the
 * limit (at least 2) beyond the requests it has sent since, a valid credential's request (`admit`)
 * passes at once and is counted by the next script call like any other. Near the limit every
 * request waits for Redis' decision, so one API instance never lets more than the limit through;
 * several instances spending one credential's last tenth within one round trip of each other can
 * let through a few more than the limit. A request without a valid credential (`take`, by
 * address: key guessing) always waits.
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
  /** Per bucket: requests left at the last answer, less the requests counted since (sent or not). */
  private readonly left = new Map<string, number>();
  /** Per bucket: requests counted and not yet answered by Redis. */
  private readonly unanswered = new Map<string, number>();
  /** Requests left above which a valid credential's request passes without waiting. */
  private readonly spare: number;

  constructor(redis: RedisClient, prefix: string, perMinute: number, log: Logger) {
    this.log = log;
    redis.defineCommand("jobsRateLimit", { numberOfKeys: 1, lua: GCRA });
    this.redis = redis as WithGcra;
    this.prefix = prefix;
    this.interval = 60_000 / perMinute;
    this.tolerance = 60_000 - this.interval;
    this.spare = Math.max(2, Math.ceil(perMinute / 10));
  }

  /** Resolves when the bucket has room (and takes one); rejects with RATE_LIMITED (HTTP 429, Retry-After) when not. */
  take(bucket: string): Promise<void> {
    return this.decided(bucket, undefined);
  }

  /**
   * A valid credential's request: resolves with `value` when the bucket has room (and takes one),
   * at once while the bucket is known to have plenty (see the class); rejects with RATE_LIMITED
   * (HTTP 429, Retry-After) when not.
   */
  admit<T>(bucket: string, value: T): Promise<T> {
    const left = this.left.get(bucket) ?? 0;
    if (left > this.spare && this.redis.status === "ready") {
      this.left.set(bucket, left - 1);
      // Counted by the next script call; its answer for this request is not waited for.
      this.queue(bucket, value, NO_WAIT, NO_WAIT);
      return Promise.resolve(value);
    }
    return this.decided(bucket, value);
  }

  /** Resolves with `value` once Redis has let the request through. */
  private decided<T>(bucket: string, value: T): Promise<T> {
    // Not connected: no waiting for a reconnect (a request must fail or succeed fast on its own).
    if (this.redis.status !== "ready") {
      this.failedOpen(new Error(`Redis connection is ${this.redis.status}`));
      return Promise.resolve(value);
    }
    return new Promise<T>((resolve, reject) => {
      const left = (this.left.get(bucket) ?? 0) - 1;
      if (left > 0) this.left.set(bucket, left);
      else this.left.delete(bucket);
      this.queue(bucket, value, resolve as (value: unknown) => void, reject);
    });
  }

  private queue(bucket: string, value: unknown, resolve: (value: unknown) => void, reject: (err: unknown) => void): void {
    let batch = this.pending.get(bucket);
    if (!batch) {
      batch = { values: [], resolves: [], rejects: [] };
      this.pending.set(bucket, batch);
    }
    batch.values.push(value);
    batch.resolves.push(resolve);
    batch.rejects.push(reject);
    this.unanswered.set(bucket, (this.unanswered.get(bucket) ?? 0) + 1);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
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
      ([allowed, retryAfterMs, left]) => {
        this.answered(bucket, to - from, left);
        const pass = from + allowed;
        for (let i = from; i < pass; i++) batch.resolves[i]?.(batch.values[i]);
        // Every refused request of the batch gets the same wait, as separate calls would (a refusal takes nothing).
        for (let i = pass; i < to; i++) batch.rejects[i]?.(rateLimited(retryAfterMs));
      },
      (err: unknown) => {
        this.answered(bucket, to - from, 0);
        // Redis unreachable: the limit fails open (requests that need Redis fail on their own; reads
        // from history keep working), and says so at most once a minute.
        this.failedOpen(err);
        for (let i = from; i < to; i++) batch.resolves[i]?.(batch.values[i]);
      },
    );
  }

  /** What the bucket has left: Redis' count at its answer, less the requests counted since and not yet answered. */
  private answered(bucket: string, count: number, left: number): void {
    const unanswered = (this.unanswered.get(bucket) ?? count) - count;
    if (unanswered > 0) this.unanswered.set(bucket, unanswered);
    else this.unanswered.delete(bucket);
    const known = left - Math.max(0, unanswered);
    if (known <= 0) this.left.delete(bucket);
    else {
      // Bounded: buckets by client address are as many as the addresses that ask.
      if (this.left.size >= MAX_KNOWN && !this.left.has(bucket)) this.left.clear();
      this.left.set(bucket, known);
    }
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
