import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { enqueueDemo, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { connectWs } from "../src/testing/ws-client.ts";

// Revocation on one API instance ends the key's open subscriptions on another: WebSocket closed with
// 4403, SSE ended with UNAUTHENTICATED; within 5 s (pub/sub makes it a few ms).

const ADMIN = "test-admin-key-0123456789";
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
    JOB_TOKEN_SECRET: "x".repeat(32),
  };
  [one, two] = await Promise.all([startTestApi(env), startTestApi(env)]);
});

afterAll(async () => {
  await Promise.all([one?.stop(), two?.stop()]);
  await deletePrefix(prefix);
  await db?.drop();
});

const onTwo = (secret: string) => (r: Request) => {
  r.headers.set("authorization", `Bearer ${secret}`);
  return two.app.fetch(r);
};

describe("revocation across instances", () => {
  it("closes the key's WebSocket with 4403 and ends its SSE stream with UNAUTHENTICATED on the other instance", async () => {
    const key = await one.runtime.access.createKey({ name: "watcher", scopes: ["READ"] });
    const other = await one.runtime.access.createKey({ name: "bystander", scopes: ["READ"] });
    const q = `subscription { queueEvents(queue: "demo") { type } }`;
    const auth = { authorization: `Bearer ${key.secret}` };
    const ws = await subscribeWs(two.url, q, {}, auth);
    const sse = await subscribeSse(two.url, q, {}, auth);
    const bystander = await subscribeSse(two.url, q, {}, { authorization: `Bearer ${other.secret}` });
    // Live once the instance tracks them: the WebSocket connection, its subscription, two SSE streams.
    while (two.runtime.access.sessions.size() < 4) await new Promise((r) => setTimeout(r, 20));

    const started = Date.now();
    await one.runtime.access.revokeKey(key.apiKey.id);
    await expect(ws.done).rejects.toThrow("WebSocket closed: 4403");
    await sse.done;
    const elapsed = Date.now() - started;
    expect(sse.results.at(-1)?.errors?.[0]).toMatchObject({ message: "The API key was revoked", extensions: { code: "UNAUTHENTICATED" } });
    expect(elapsed).toBeLessThan(5_000);
    // The bystander's subscription is untouched, and the key is refused on the other instance.
    expect(two.runtime.access.sessions.size()).toBe(1);
    expect((await gql(onTwo(key.secret), "{ viewer { actor } }")).status).toBe(401);
    await bystander.close();
  });

  it("ends the subscriptions of job tokens the revoked key issued", async () => {
    const key = await one.runtime.access.createKey({ name: "issuer", scopes: ["READ", "ENQUEUE"] });
    const admin = (r: Request) => {
      r.headers.set("authorization", `Bearer ${ADMIN}`);
      return one.app.fetch(r);
    };
    const id = await enqueueDemo(admin, "sleep", { steps: 1, stepMs: 1 });
    const minted = await gql<{ createJobToken: { jobToken: { token: string } } }>(
      onTwo(key.secret),
      `mutation ($id: ID!) { createJobToken(queue: "demo", id: $id) { ... on CreateJobTokenSuccess { jobToken { token } } } }`,
      { id },
    );
    const token = minted.body.data?.createJobToken.jobToken.token as string;
    const ws = await subscribeWs(
      two.url,
      `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`,
      { id },
      { authorization: `Bearer ${token}` },
    );
    await ws.waitFor(1);
    await one.runtime.access.revokeKey(key.apiKey.id);
    await expect(ws.done).rejects.toThrow("WebSocket closed: 4403");
  });

  it("closes an idle WebSocket of the key too (no subscription open)", async () => {
    const key = await one.runtime.access.createKey({ name: "idle", scopes: ["READ"] });
    const { client, connected, closed } = connectWs(two.url, `Bearer ${key.secret}`);
    await connected;
    await one.runtime.access.revokeKey(key.apiKey.id);
    expect(await closed).toBe(4403);
    await client.dispose();
  });

  it("npm run keys -- revoke reaches running instances too", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const path = await import("node:path");
    const key = await one.runtime.access.createKey({ name: "cli-revoked", scopes: ["READ"] });
    const ws = await subscribeWs(
      two.url,
      `subscription { queueEvents(queue: "demo") { type } }`,
      {},
      { authorization: `Bearer ${key.secret}` },
    );
    while (two.runtime.access.sessions.size() < 1) await new Promise((r) => setTimeout(r, 20));
    await promisify(execFile)(process.execPath, [path.resolve(import.meta.dirname, "../scripts/keys.ts"), "revoke", "cli-revoked"], {
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix },
    });
    await expect(ws.done).rejects.toThrow("WebSocket closed: 4403");
  });
});
