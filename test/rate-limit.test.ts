import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { RateLimiter } from "../src/access/rate-limiter.ts";
import { createLogger } from "../src/infra/logger.ts";
import { clientAddress } from "../src/server/client-address.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { configProblems } from "../src/testing/config.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { subscribeWs } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { connectWs } from "../src/testing/ws-client.ts";

// RATE_LIMIT_PER_MINUTE: one budget per credential shared by every API instance (GCRA in Redis).

const ADMIN = "test-admin-key-0123456789";
const LIMIT = 10;
let one: TestApi;
let two: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();

beforeAll(async () => {
  db = await createTestDatabase();
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN,
    RATE_LIMIT_PER_MINUTE: String(LIMIT),
  };
  [one, two] = await Promise.all([startTestApi(env), startTestApi(env)]);
});

afterAll(async () => {
  await Promise.all([one?.stop(), two?.stop()]);
  await deletePrefix(prefix);
  await db?.drop();
});

async function post(url: string, authorization?: string) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ query: "{ viewer { actor } }" }),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    body: (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] },
  };
}

describe("rate limits", () => {
  it("one budget per credential across two API instances: 429 + Retry-After + RATE_LIMITED past it", async () => {
    const key = await one.runtime.access.createKey({ name: "busy", scopes: ["READ"] });
    const auth = `Bearer ${key.secret}`;
    const statuses: number[] = [];
    for (let i = 0; i < LIMIT; i++) statuses.push((await post(i % 2 === 0 ? one.url : two.url, auth)).status);
    expect(statuses).toEqual(Array(LIMIT).fill(200));
    const over = await post(two.url, auth);
    expect(over.status).toBe(429);
    expect(Number(over.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(over.retryAfter)).toBeLessThanOrEqual(60);
    expect(over.body.errors?.[0]).toMatchObject({ extensions: { code: "RATE_LIMITED" } });
    expect(over.body.errors?.[0]?.message).toMatch(/^Rate limit exceeded: retry after \d+ s$/);
    expect((await post(one.url, auth)).status).toBe(429);
    // Another credential has a budget of its own.
    expect((await post(one.url, `Bearer ${ADMIN}`)).status).toBe(200);
  });

  it("requests without a valid credential are limited per client address", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < LIMIT + 2; i++) statuses.push((await post(i % 2 === 0 ? one.url : two.url, `Bearer jca_${"x".repeat(43)}`)).status);
    expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(401));
    expect(statuses.slice(LIMIT)).toEqual([429, 429]);
    // Guessing with other wrong keys or none shares the address's budget.
    expect((await post(one.url, "Bearer something-else")).status).toBe(429);
    expect((await post(one.url)).status).toBe(429);
  });

  it("WebSocket subscribe messages count: past the budget a subscription gets a RATE_LIMITED error, the socket stays", async () => {
    const key = await one.runtime.access.createKey({ name: "ws-busy", scopes: ["READ"] });
    let closed = false;
    const { client, closed: whenClosed } = connectWs(two.url, `Bearer ${key.secret}`);
    void whenClosed.then(() => (closed = true));
    const once = () =>
      new Promise<unknown>((resolve) => {
        let result: unknown;
        client.subscribe(
          { query: "{ viewer { actor } }" },
          { next: (r) => (result = r), error: (e) => resolve(e), complete: () => resolve(result) },
        );
      });
    // connection_init took one request; each subscribe message takes one more.
    const answers = [];
    for (let i = 0; i < LIMIT + 1; i++) answers.push(await once());
    expect(answers.slice(0, LIMIT - 1)).toEqual(Array(LIMIT - 1).fill({ data: { viewer: { actor: "ws-busy" } } }));
    for (const refused of answers.slice(LIMIT - 1)) {
      expect(refused).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: "RATE_LIMITED" }) })]);
    }
    expect(closed).toBe(false);
    await client.dispose();
    // A new socket whose connection_init finds the budget spent is refused like a bad key (4403).
    const fresh = await subscribeWs(two.url, "{ viewer { actor } }", {}, { authorization: `Bearer ${key.secret}` });
    await expect(fresh.done).rejects.toThrow("WebSocket closed: 4403");
  });

  it("fails open at once when Redis is not connected", async () => {
    const dead = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const limiter = new RateLimiter(dead, prefix, 1, createLogger("silent"));
    // Nothing is sent (so nothing waits in ioredis' offline queue for a reconnect).
    const script = vi.spyOn(dead as unknown as { jobsRateLimit: () => Promise<unknown> }, "jobsRateLimit");
    for (let i = 0; i < 5; i++) await limiter.take("anyone");
    expect(script).not.toHaveBeenCalled();
    dead.disconnect();
  });

  it("requests of one bucket in the same event-loop turn are decided by one script call, with the outcome of separate calls", async () => {
    const redis = new Redis(testRedisUrl);
    try {
      await redis.ping();
      const limiter = new RateLimiter(redis, prefix, LIMIT, createLogger("silent"));
      const script = vi.spyOn(redis as unknown as { jobsRateLimit: () => Promise<unknown> }, "jobsRateLimit");
      // LIMIT + 5 at once for one bucket, 2 for another: the first LIMIT pass, in order; the rest are refused alike.
      const burst = Array.from({ length: LIMIT + 5 }, (_, i) =>
        limiter.admit("batch-a", i).then(
          (v) => ({ ok: v }),
          (e: unknown) => ({ e }),
        ),
      );
      const other = [limiter.take("batch-b"), limiter.take("batch-b")];
      const outcomes = await Promise.all(burst);
      await Promise.all(other);
      expect(script).toHaveBeenCalledTimes(2);
      expect(outcomes.slice(0, LIMIT)).toEqual(Array.from({ length: LIMIT }, (_, i) => ({ ok: i })));
      for (const refused of outcomes.slice(LIMIT)) {
        const err = (refused as { e: { message: string; extensions: { code: string; retryAfterSeconds: number } } }).e;
        expect(err.extensions.code).toBe("RATE_LIMITED");
        // The next cell frees up 60 s / LIMIT after the burst.
        expect(err.extensions.retryAfterSeconds).toBe(60 / LIMIT);
      }
      // A later call (another turn) finds the budget spent, as it would after LIMIT separate calls.
      await expect(limiter.take("batch-a")).rejects.toMatchObject({ extensions: { code: "RATE_LIMITED" } });
      await expect(limiter.take("batch-b")).resolves.toBeUndefined();
    } finally {
      redis.disconnect();
    }
  });

  it("RATE_LIMIT_PER_MINUTE must be an integer >= 0 (0: off)", () => {
    for (const bad of ["-1", "1.5", "lots"]) {
      expect(configProblems({ RATE_LIMIT_PER_MINUTE: bad })).toEqual([
        `RATE_LIMIT_PER_MINUTE: RATE_LIMIT_PER_MINUTE must be an integer >= 0 (got ${JSON.stringify(bad)})`,
      ]);
    }
  });

  it("0 turns the limit off", async () => {
    const offDb = await createTestDatabase();
    const offPrefix = uniquePrefix();
    const off = await startTestApi({
      DATABASE_URL: offDb.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: offPrefix,
      ADMIN_API_KEY: ADMIN,
      RATE_LIMIT_PER_MINUTE: "0",
    });
    try {
      const statuses = [];
      for (let i = 0; i < 30; i++) statuses.push((await post(off.url, `Bearer ${ADMIN}`)).status);
      expect(statuses).toEqual(Array(30).fill(200));
    } finally {
      await off.stop();
      await deletePrefix(offPrefix);
      await offDb.drop();
    }
  });
});

describe("the client's address behind proxies (TRUST_PROXY_HOPS)", () => {
  const wrongKey = `Bearer jca_${"y".repeat(43)}`;
  async function postFrom(url: string, forwardedFor: string | undefined) {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: wrongKey,
        ...(forwardedFor ? { "x-forwarded-for": forwardedFor } : {}),
      },
      body: JSON.stringify({ query: "{ viewer { actor } }" }),
    });
    await response.body?.cancel();
    return response.status;
  }
  async function withApi(hops: string | undefined, run: (url: string) => Promise<void>) {
    const ownPrefix = uniquePrefix();
    const api = await startTestApi({
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: ownPrefix,
      ADMIN_API_KEY: ADMIN,
      RATE_LIMIT_PER_MINUTE: String(LIMIT),
      ...(hops === undefined ? {} : { TRUST_PROXY_HOPS: hops }),
    });
    try {
      await run(api.url);
    } finally {
      await api.stop();
      await deletePrefix(ownPrefix);
    }
  }

  it("not trusted (default 0): a spoofed X-Forwarded-For, different on every request, still spends the socket address's budget", async () => {
    await withApi(undefined, async (url) => {
      const statuses: number[] = [];
      for (let i = 0; i < LIMIT + 2; i++) statuses.push(await postFrom(url, `198.51.100.${i}, 203.0.113.${i}`));
      expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(401));
      expect(statuses.slice(LIMIT)).toEqual([429, 429]);
      // Huge, malformed or absent: the same budget, still refused.
      expect(await postFrom(url, `${"1.2.3.4, ".repeat(1500)}5.6.7.8`)).toBe(429);
      expect(await postFrom(url, "not-an-address")).toBe(429);
      expect(await postFrom(url, undefined)).toBe(429);
    });
  });

  it("TRUST_PROXY_HOPS=1: the entry the proxy appended is the client; what the client wrote left of it is ignored", async () => {
    await withApi("1", async (url) => {
      const statuses: number[] = [];
      // A client spoofing a new leftmost entry each time; the proxy appends the real address.
      for (let i = 0; i < LIMIT + 2; i++) statuses.push(await postFrom(url, `198.51.100.${i}, 203.0.113.7`));
      expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(401));
      expect(statuses.slice(LIMIT)).toEqual([429, 429]);
      expect(await postFrom(url, "203.0.113.7")).toBe(429);
      // Another client behind the same proxy has a budget of its own, and so does the proxy itself (the socket).
      expect(await postFrom(url, "198.51.100.1, 203.0.113.8")).toBe(401);
      expect(await postFrom(url, undefined)).toBe(401);
      // An entry that is not an address (a proxy misconfigured): the socket's address, never the text.
      expect(await postFrom(url, "203.0.113.7, garbage")).toBe(401);
    });
  });

  it("TRUST_PROXY_HOPS=2: two proxies; the entry two from the right is the client", async () => {
    await withApi("2", async (url) => {
      const statuses: number[] = [];
      for (let i = 0; i < LIMIT + 1; i++) statuses.push(await postFrom(url, `10.9.9.${i}, 192.0.2.44, 10.0.0.${i}`));
      expect(statuses).toEqual([...Array(LIMIT).fill(401), 429]);
    });
  });

  it("clientAddress picks the right hop and never reads more of the header than the hops need", () => {
    expect(clientAddress("10.0.0.1", "6.6.6.6", 0)).toBe("10.0.0.1");
    expect(clientAddress("10.0.0.1", "6.6.6.6, 1.1.1.1", 1)).toBe("1.1.1.1");
    expect(clientAddress("10.0.0.1", "6.6.6.6, 1.1.1.1, 10.0.0.2", 2)).toBe("1.1.1.1");
    expect(clientAddress("10.0.0.1", ["6.6.6.6", "1.1.1.1"], 1)).toBe("1.1.1.1");
    // Shorter chain than configured: its leftmost entry.
    expect(clientAddress("10.0.0.1", "1.1.1.1", 3)).toBe("1.1.1.1");
    // Not an address: the nearest valid one to its right, else the socket's.
    expect(clientAddress("10.0.0.1", "x, 2001:db8::1", 2)).toBe("2001:db8::1");
    expect(clientAddress("10.0.0.1", "1.1.1.1:80", 1)).toBe("10.0.0.1");
    expect(clientAddress("10.0.0.1", `${"a".repeat(100_000)},`, 1)).toBe("10.0.0.1");
    expect(clientAddress("10.0.0.1", "", 1)).toBe("10.0.0.1");
    expect(clientAddress(undefined, undefined, 1)).toBeUndefined();
  });

  it("TRUST_PROXY_HOPS must be an integer from 0 to 16", () => {
    for (const bad of ["-1", "17", "1.5", "all"]) {
      expect(configProblems({ TRUST_PROXY_HOPS: bad })).toEqual([
        `TRUST_PROXY_HOPS: TRUST_PROXY_HOPS must be an integer from 0 to 16 (got ${JSON.stringify(bad)})`,
      ]);
    }
  });
});
