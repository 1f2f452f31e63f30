// Hardening of the WebSocket path (issue 14): the key before anything is parsed, message sizes,
// origins, connections per address and per credential, subscription setups counted until torn down.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

const KEY = "hardening-ws-admin-key-0123456789";
let api: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
const sockets: WebSocket[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  api = await startTestApi({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    ADMIN_API_KEY: KEY,
    LOG_LEVEL: "silent",
    MAX_REQUEST_BYTES: "65536",
    MAX_CONNECTIONS_PER_ADDRESS: "4",
    MAX_CONNECTIONS_PER_CREDENTIAL: "2",
    WS_MAX_SUBSCRIPTIONS: "3",
    CORS_ORIGINS: "https://app.example.com",
  });
});
afterEach(() => {
  for (const s of sockets.splice(0)) s.terminate();
});
afterAll(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await api?.stop();
  await deletePrefix(prefix);
  await db?.drop();
});

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A raw graphql-transport-ws socket: its messages, its close code, and whether it opened at all. */
function socket(headers: Record<string, string> = {}) {
  const ws = new WebSocket(api.url.replace(/^http/, "ws"), "graphql-transport-ws", { headers });
  sockets.push(ws);
  const messages: { type: string; id?: string; payload?: unknown }[] = [];
  ws.on("message", (m) => messages.push(JSON.parse(String(m))));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const opened = new Promise<boolean>((resolve) => {
    ws.once("open", () => resolve(true));
    ws.once("error", () => resolve(false));
  });
  return { ws, messages, closed, opened };
}

async function authed() {
  const s = socket();
  expect(await s.opened).toBe(true);
  s.ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${KEY}` } }));
  await until(() => s.messages.some((m) => m.type === "connection_ack"), "connection_ack");
  return s;
}

describe("before connection_init is accepted", () => {
  it("closes with 4400 a message over 16 KiB, without parsing it", async () => {
    const s = socket();
    await s.opened;
    // Not even JSON: parsing it would be a different close (4400 "Invalid message received").
    s.ws.send(`{"type":"connection_init","payload":{"authorization":"${"x".repeat(20_000)}`);
    const { code, reason } = await s.closed;
    expect(code).toBe(4400);
    expect(reason).toContain("before connection_init was accepted");
  });

  it("closes a bad key with 4403 as before", async () => {
    const s = socket();
    await s.opened;
    s.ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: "Bearer wrong" } }));
    expect((await s.closed).code).toBe(4403);
  });
});

describe("message size", () => {
  it("closes with 1009 a message over MAX_REQUEST_BYTES after auth", async () => {
    const s = await authed();
    s.ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: "{ __typename }", variables: { pad: "x".repeat(70_000) } } }));
    expect((await s.closed).code).toBe(1009);
  });
});

describe("origins", () => {
  it("refuses the upgrade from another site's page, accepts CORS_ORIGINS and clients without an Origin", async () => {
    expect(await socket({ origin: "https://evil.example" }).opened).toBe(false);
    const allowed = socket({ origin: "https://app.example.com" });
    expect(await allowed.opened).toBe(true);
    allowed.ws.close();
    const same = socket({ origin: api.url.replace("/graphql", "") });
    expect(await same.opened).toBe(true);
    same.ws.close();
  });
});

describe("connection limits", () => {
  it("closes a third authenticated socket of one credential with 4030 (MAX_CONNECTIONS_PER_CREDENTIAL=2)", async () => {
    const a = await authed();
    const b = await authed();
    const c = socket();
    await c.opened;
    c.ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${KEY}` } }));
    expect((await c.closed).code).toBe(4030);
    // Closing one frees its place.
    a.ws.close();
    await a.closed;
    await until(() => true, "");
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const d = socket();
      await d.opened;
      d.ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${KEY}` } }));
      const first = await Promise.race([d.closed.then(() => "closed"), until(() => d.messages.length > 0, "ack").then(() => "ack")]);
      ok = first === "ack";
      if (!ok) await new Promise((r) => setTimeout(r, 20));
    }
    expect(ok).toBe(true);
    b.ws.close();
  });

  it("closes a fifth socket from one address with 4030, before any message (MAX_CONNECTIONS_PER_ADDRESS=4)", async () => {
    const open = [socket(), socket(), socket(), socket()];
    for (const s of open) expect(await s.opened).toBe(true);
    const fifth = socket();
    const { code, reason } = await fifth.closed;
    expect(code).toBe(4030);
    expect(reason).toContain("from one address");
  });
});

describe("subscription setups", () => {
  it("closes with 4029 a socket sending subscribe+complete pairs faster than they are torn down", async () => {
    const s = await authed();
    const query = 'subscription { queueEvents(queue: "demo") { id } }';
    // 500 pairs at once: each setup subscribes in Redis; only 2 x WS_MAX_SUBSCRIPTIONS may be in flight.
    const frames: string[] = [];
    for (let i = 0; i < 500; i++) {
      frames.push(JSON.stringify({ id: String(i), type: "subscribe", payload: { query } }));
      frames.push(JSON.stringify({ id: String(i), type: "complete" }));
    }
    for (const f of frames) s.ws.send(f);
    const { code } = await s.closed;
    expect(code).toBe(4029);
  });
});
