import { createHash } from "node:crypto";
import fs from "node:fs";
import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ViewerDocument } from "../src/client/generated/graphql.ts";
import { documentHash, request } from "../src/client/request.ts";
import { MANIFEST_URL } from "../src/server/persisted-operations.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { configProblems } from "../src/testing/config.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

// PERSISTED_OPERATIONS (runtime contract, "Access rules"): `only` runs nothing but the typed client's
// operations, named by hash (Apollo's extensions.persistedQuery.sha256Hash); `allow` runs those and
// any document. The same answers on HTTP POST, GET, SSE and graphql-ws.

const ADMIN = "test-admin-key-0123456789";
const AUTH = `Bearer ${ADMIN}`;
const manifest = JSON.parse(fs.readFileSync(MANIFEST_URL, "utf8")) as Record<string, string>;
const VIEWER_HASH = documentHash(ViewerDocument as never) as string;
const VIEWER_TEXT = manifest[`sha256:${VIEWER_HASH}`] as string;
const OTHER = "{ viewer { actor } }";
const pq = (sha256Hash: unknown) => ({ persistedQuery: { version: 1, sha256Hash } });

let only: TestApi;
let allow: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();

beforeAll(async () => {
  db = await createTestDatabase();
  const env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ADMIN_API_KEY: ADMIN, LOG_LEVEL: "silent" };
  [only, allow] = await Promise.all([startTestApi({ ...env, PERSISTED_OPERATIONS: "only" }), startTestApi(env)]);
});

afterAll(async () => {
  await Promise.all([only?.stop(), allow?.stop()]);
  await deletePrefix(prefix);
  await db?.drop();
});

type Answer = { status: number; code: string | undefined; data: unknown };

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  // SSE: the first `data:` line holds the result.
  const json = response.headers.get("content-type")?.includes("text/event-stream")
    ? JSON.parse(/^data: (.*)$/m.exec(text)?.[1] ?? "{}")
    : JSON.parse(text || "{}");
  return { status: response.status, code: json.errors?.[0]?.extensions?.code, data: json.data?.viewer?.actor ?? null };
}

type Body = { query?: unknown; extensions?: unknown };

const transports: Record<string, (api: TestApi, body: Body) => Promise<Answer>> = {
  POST: async (api, body) =>
    answer(
      await fetch(api.url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: AUTH },
        body: JSON.stringify(body),
      }),
    ),
  GET: async (api, body) => {
    const url = new URL(api.url);
    if (body.query !== undefined) url.searchParams.set("query", String(body.query));
    if (body.extensions !== undefined) url.searchParams.set("extensions", JSON.stringify(body.extensions));
    return answer(await fetch(url, { headers: { authorization: AUTH, accept: "application/graphql-response+json" } }));
  },
  SSE: async (api, body) =>
    answer(
      await fetch(api.url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream", authorization: AUTH },
        body: JSON.stringify(body),
      }),
    ),
  WebSocket: async (api, body) => {
    const client = createClient({
      url: api.url.replace(/^http/, "ws"),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: AUTH },
      retryAttempts: 0,
    });
    try {
      return await new Promise<Answer>((resolve) => {
        let data: unknown = null;
        client.subscribe(
          { query: typeof body.query === "string" ? body.query : "", extensions: body.extensions as Record<string, unknown> },
          {
            next: (r) => (data = (r.data as { viewer?: { actor?: string } } | null)?.viewer?.actor ?? null),
            error: (e) =>
              resolve({
                status: 0,
                code: Array.isArray(e) ? (e[0] as { extensions?: { code?: string } })?.extensions?.code : `closed`,
                data: null,
              }),
            complete: () => resolve({ status: 0, code: undefined, data }),
          },
        );
      });
    } finally {
      await client.dispose();
    }
  },
};

const ok = { code: undefined, data: "admin" };
const status = (transport: string, http: number) => (transport === "WebSocket" ? 0 : http);

describe.each(Object.keys(transports))("PERSISTED_OPERATIONS over %s", (transport) => {
  const send = transports[transport] as (api: TestApi, body: Body) => Promise<Answer>;

  it("only: a known hash runs; any document is refused with 403 PERSISTED_QUERY_ONLY", async () => {
    expect(await send(only, { extensions: pq(VIEWER_HASH) })).toEqual({ status: status(transport, 200), ...ok });
    // The hash with its own text is fine too.
    expect(await send(only, { query: VIEWER_TEXT, extensions: pq(VIEWER_HASH) })).toEqual({ status: status(transport, 200), ...ok });
    expect(await send(only, { query: OTHER })).toEqual({ status: status(transport, 403), code: "PERSISTED_QUERY_ONLY", data: null });
    // A document with its own (correct) hash that is not in the manifest: still refused.
    const ownHash = createHash("sha256").update(OTHER).digest("hex");
    expect(await send(only, { query: OTHER, extensions: pq(ownHash) })).toEqual({
      status: status(transport, 403),
      code: "PERSISTED_QUERY_ONLY",
      data: null,
    });
  });

  it("hostile hashes: unknown, huge, not a string, another query's text", async () => {
    for (const api of [only, allow]) {
      expect(await send(api, { extensions: pq("0".repeat(64)) })).toEqual({
        status: status(transport, 400),
        code: "PERSISTED_QUERY_NOT_FOUND",
        data: null,
      });
      for (const bad of ["f".repeat(100_000), 12345, { $gt: "" }, [VIEWER_HASH], VIEWER_HASH.toUpperCase(), `sha256:${VIEWER_HASH}`]) {
        const expected =
          transport === "GET" && typeof bad === "string" && bad.length > 16_000
            ? { status: 431, code: undefined, data: null } // Node refuses a URL that long before the API sees it
            : { status: status(transport, 400), code: "PERSISTED_QUERY_INVALID", data: null };
        expect(await send(api, { extensions: pq(bad) })).toEqual(expected);
      }
      expect(await send(api, { query: OTHER, extensions: pq(VIEWER_HASH) })).toEqual({
        status: status(transport, 400),
        code: "PERSISTED_QUERY_HASH_MISMATCH",
        data: null,
      });
    }
  });

  it("allow (the default): a known hash and any document both run", async () => {
    expect(await send(allow, { extensions: pq(VIEWER_HASH) })).toEqual({ status: status(transport, 200), ...ok });
    expect(await send(allow, { query: OTHER })).toEqual({ status: status(transport, 200), ...ok });
  });
});

describe("the manifest and the typed client", () => {
  it("every manifest entry's key is the SHA-256 of its text (what clients send)", () => {
    expect(Object.keys(manifest).length).toBeGreaterThan(5);
    for (const [hash, text] of Object.entries(manifest)) {
      expect(hash).toBe(`sha256:${createHash("sha256").update(text).digest("hex")}`);
    }
  });

  it("`request` sends the hash alone, so the typed client works against an API in only mode", async () => {
    expect(await request(only.url, ViewerDocument, {}, { authorization: AUTH })).toMatchObject({ viewer: { actor: "admin" } });
  });

  it("GraphiQL is not served in only mode (it sends documents)", async () => {
    const page = await fetch(only.url, { headers: { accept: "text/html" } });
    expect(await page.text()).not.toContain("graphiql");
    const open = await fetch(allow.url, { headers: { accept: "text/html" } });
    expect((await open.text()).toLowerCase()).toContain("graphiql");
  });

  it("PERSISTED_OPERATIONS must be only or allow", () => {
    expect(configProblems({ PERSISTED_OPERATIONS: "sometimes" })).toEqual([
      'PERSISTED_OPERATIONS: PERSISTED_OPERATIONS must be only or allow (got "sometimes")',
    ]);
  });
});
