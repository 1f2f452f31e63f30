import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { TestApi } from "../src/testing/api.ts";
import { gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { startProcess } from "../src/testing/processes.ts";
import { testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

const KEY = "test-admin-key-0123456789";
let stack: TestStack;
let api: TestApi;
let prefix: string;

beforeAll(async () => {
  stack = await startTestStack({ worker: false, env: { ADMIN_API_KEY: KEY } });
  ({ api, prefix } = stack);
});

afterAll(async () => {
  await stack?.stop();
});

async function post(authorization?: string) {
  const response = await fetch(api.url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ query: "{ __typename }" }),
  });
  return { status: response.status, body: (await response.json()) as { errors?: { message: string; extensions: { code: string } }[] } };
}

describe("ADMIN_API_KEY", () => {
  it.each([
    ["no key", undefined],
    ["a wrong key", "Bearer not-the-key"],
    ["the key without Bearer", KEY],
    ["an empty bearer", "Bearer "],
  ])("answers %s with HTTP 401 and UNAUTHENTICATED", async (_what, authorization) => {
    const { status, body } = await post(authorization);
    expect(status).toBe(401);
    expect(body.errors?.[0]).toMatchObject({
      message: "Missing or invalid API key: send Authorization: Bearer <key>",
      extensions: { code: "UNAUTHENTICATED" },
    });
  });

  it("accepts the admin key", async () => {
    expect(await post(`Bearer ${KEY}`)).toEqual({ status: 200, body: { data: { __typename: "Query" } } });
  });

  it("refuses an SSE subscription without the key with 401", async () => {
    const sub = await subscribeSse(api.url, `subscription { queueEvents(queue: "demo") { id } }`);
    expect(sub.status).toBe(401);
    await sub.close();
  });

  it("closes a WebSocket with a bad key with code 4403", async () => {
    let client: ReturnType<typeof createClient> | undefined;
    const closed = new Promise<number>((resolve) => {
      client = createClient({
        url: api.url.replace(/^http/, "ws"),
        webSocketImpl: WebSocket,
        connectionParams: { authorization: "Bearer wrong" },
        retryAttempts: 0,
        lazy: false,
        onNonLazyError: () => {},
        on: { closed: (event) => resolve((event as { code: number }).code) },
      });
      client.subscribe({ query: "{ __typename }" }, { next: () => {}, error: () => {}, complete: () => {} });
    });
    expect(await closed).toBe(4403);
    await client?.dispose();
  });

  it("runs a WebSocket subscription with the right key", async () => {
    const sub = await subscribeWs(
      api.url,
      `subscription { jobEvents(queue: "demo", id: "nope") { id } }`,
      {},
      { authorization: `Bearer ${KEY}` },
    );
    await sub.done;
    expect(sub.results[0]?.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    await sub.close();
  });

  it("keeps /healthz and /readyz open", async () => {
    const base = api.url.replace("/graphql", "");
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ status: "ready", checks: { redis: "ok", postgres: "ok" } });
  });

  it("in production, the API refuses to start with auth open", async () => {
    const proc = await startProcess("src/server/main.ts", { NODE_ENV: "production", PORT: "0" }, null);
    expect(await proc.exited).toBe(1);
    expect(proc.stderr().trim().split("\n")).toEqual([
      "config error: ADMIN_API_KEY: must be set when NODE_ENV=production (the API refuses to run with auth open)",
      "config error: JOB_TOKEN_SECRET: must be set when NODE_ENV=production (32+ characters, the same on every API instance)",
    ]);
  });

  it("says loudly at start that auth is open when no key is set", async () => {
    const proc = await startProcess(
      "src/server/main.ts",
      { DATABASE_URL: stack.databaseUrl, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, PORT: "0" },
      /ready at/,
    );
    expect(await proc.stop()).toBe(0);
    expect(proc.stderr()).toContain("WARNING: AUTH IS OPEN");
  });
});

describe("gql helper sanity", () => {
  it("reaches the in-process handler with the key", async () => {
    const request = (r: Request) => {
      r.headers.set("authorization", `Bearer ${KEY}`);
      return api.app.fetch(r);
    };
    expect((await gql(request, "{ __typename }")).body).toEqual({ data: { __typename: "Query" } });
  });
});
