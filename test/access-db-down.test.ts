import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { type PrivatePostgres, startPrivatePostgres } from "../src/testing/private-postgres.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { connectWs } from "../src/testing/ws-client.ts";

// A database-backed key cannot be checked while PostgreSQL is down and the key cache is cold: the
// API answers 503 UNAVAILABLE ("retry"), never 401 (the client would throw its key away) nor a
// masked 500. PostgreSQL is a private one, really stopped.

const ADMIN = "test-admin-key-0123456789";
let pgp: PrivatePostgres;
let first: TestApi;
let cold: TestApi | undefined;
const prefix = uniquePrefix();

beforeAll(async () => {
  pgp = await startPrivatePostgres();
  first = await startTestApi({
    DATABASE_URL: pgp.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "silent",
  });
});

afterAll(async () => {
  await cold?.stop();
  await first?.stop();
  await pgp?.destroy();
  await deletePrefix(prefix);
});

async function viewer(url: string, authorization: string) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization },
    body: JSON.stringify({ query: "{ viewer { actor } }" }),
  });
  return {
    status: response.status,
    body: (await response.json()) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] },
  };
}

describe("PostgreSQL unreachable, key cache cold", () => {
  it("an API key gets 503 UNAVAILABLE (not 401 or 500); ADMIN_API_KEY still works; the key works again once PostgreSQL is back", async () => {
    const { secret } = await first.runtime.access.createKey({ name: "db-backed", scopes: ["READ"] });
    expect(await viewer(first.url, `Bearer ${secret}`)).toEqual({ status: 200, body: { data: { viewer: { actor: "db-backed" } } } });

    await pgp.stop();
    // A second instance that never saw the key (cold cache), on the same stopped database.
    cold = await startTestApi({
      DATABASE_URL: pgp.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      ADMIN_API_KEY: ADMIN,
      MIGRATE_ON_START: "false",
      LOG_LEVEL: "silent",
    });
    const down = await viewer(cold.url, `Bearer ${secret}`);
    expect(down).toEqual({
      status: 503,
      body: {
        errors: [
          { message: "Could not check the credential right now (a store did not answer); retry", extensions: { code: "UNAVAILABLE" } },
        ],
      },
    });
    // SSE goes through the same check.
    const sse = await fetch(cold.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", authorization: `Bearer ${secret}` },
      body: JSON.stringify({ query: 'subscription { queueEvents(queue: "demo") { type } }' }),
    });
    expect(sse.status).toBe(503);
    expect(((await sse.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code).toBe("UNAVAILABLE");
    // WebSocket: closed with 1013 ("try again later"), not 4403 (a bad key).
    const ws = connectWs(cold.url, `Bearer ${secret}`);
    expect(await ws.closed).toBe(1013);
    await ws.client.dispose();
    // A credential that needs no database is unaffected.
    expect(await viewer(cold.url, `Bearer ${ADMIN}`)).toEqual({ status: 200, body: { data: { viewer: { actor: "admin" } } } });

    await pgp.start();
    let back = await viewer(cold.url, `Bearer ${secret}`);
    for (let i = 0; i < 50 && back.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      back = await viewer(cold.url, `Bearer ${secret}`);
    }
    expect(back).toEqual({ status: 200, body: { data: { viewer: { actor: "db-backed" } } } });
  });
});
