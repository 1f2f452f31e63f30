import { randomUUID } from "node:crypto";
import type { RedisClient } from "../../infra/redis.ts";

// Renews / releases only a lease we still hold (it may have expired and been taken by another process).
const RENEW = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`;

/**
 * A Redis lease: one key holding its owner's random token, which expires by itself `ttlMs` after it
 * was taken or last renewed. At most one process holds it at a time; a holder that dies loses it at
 * expiry. This is the only lease/lock in the project (the event relay, the ledger reconciler and
 * history retention use it; so does each running bulk action).
 */
export class Lease {
  readonly key: string;
  readonly ttlMs: number;
  private readonly redis: RedisClient;
  private readonly token: string;

  constructor(redis: RedisClient, key: string, ttlMs: number, token: string = randomUUID()) {
    this.redis = redis;
    this.key = key;
    this.ttlMs = ttlMs;
    this.token = token;
  }

  /** Takes the lease if nobody holds it; true when we hold it now. */
  async acquire(): Promise<boolean> {
    return (await this.redis.set(this.key, this.token, "PX", this.ttlMs, "NX")) === "OK";
  }

  /** Extends the lease by `ttlMs` if we still hold it; false when it was lost. */
  async renew(): Promise<boolean> {
    return (await this.redis.eval(RENEW, 1, this.key, this.token, String(this.ttlMs))) === 1;
  }

  /** Gives the lease back if we still hold it, so another process may take it at once. */
  async release(): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.key, this.token);
  }
}
