import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { RateLimiter } from "../src/access/rate-limiter.ts";
import { createLogger } from "../src/infra/logger.ts";
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
