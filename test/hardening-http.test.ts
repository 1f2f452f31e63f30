// Hardening of the HTTP path (issue 14): authentication before the body is read, request limits,
// no 5xx from malformed input, suggestions, CORS and CSRF, /metrics and /readyz.
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

const KEY = "hardening-admin-key-0123456789";
const METRICS_TOKEN = "metrics-token-0123456789";
const AUTH = { authorization: `Bearer ${KEY}` };
let api: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();

beforeAll(async () => {
  db = await createTestDatabase();
  api = await startTestApi({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    ADMIN_API_KEY: KEY,
    METRICS_TOKEN,
    INTROSPECTION: "false",
    CORS_ORIGINS: "https://app.example.com",
    MAX_CONNECTIONS_PER_ADDRESS: "3",
  });
});

afterAll(async () => {
  await api?.stop();
  await deletePrefix(prefix);
  await db?.drop();
});

type Body = { data?: unknown; errors?: { message: string; extensions?: { code?: string; issues?: unknown } }[] };

async function send(init: RequestInit & { url?: string }): Promise<{ status: number; body: Body; headers: Headers }> {
  const response = await fetch(init.url ?? api.url, init);
  const text = await response.text();
  let body: Body;
  try {
    body = JSON.parse(text) as Body;
  } catch {
    body = { errors: [{ message: text }] };
  }
  return { status: response.status, body, headers: response.headers };
}

const post = (payload: unknown, headers: Record<string, string> = AUTH) =>
  send({
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof payload === "string" ? payload : JSON.stringify(payload),
  });

const firstError = (body: Body) => body.errors?.[0];

describe("authentication before parsing", () => {
  it("answers 401 without reading the body: a request whose body never ends still gets its answer", async () => {
    const url = new URL(api.url);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json" } },
        (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      // Chunked, and never finished: a server that reads the body before checking the key waits forever.
      req.write(`{"query":"{ ${"a ".repeat(1000)}`);
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).errors[0].extensions.code).toBe("UNAUTHENTICATED");
  });

  it("answers an unauthenticated misspelled field with 401, not with the schema's names", async () => {
    const { status, body } = await post({ query: "{ jbos }" }, {});
    expect(status).toBe(401);
    expect(JSON.stringify(body)).not.toContain("jobs");
  });
});

describe("request limits", () => {
  it("refuses a body over MAX_REQUEST_BYTES (1 MiB) that is not an enqueueJobs mutation with 413", async () => {
    const { status, body } = await post({ query: "{ __typename }", variables: { pad: "x".repeat(1_100_000) } });
    expect(status).toBe(413);
    expect(firstError(body)?.extensions?.code).toBe("REQUEST_ENTITY_TOO_LARGE");
  });

  it("refuses a document over 1 MiB even within the bulk budget, before parsing it", async () => {
    const { status } = await post({ query: `mutation { enqueueJobs(inputs: []) { __typename } } ${"#".repeat(1_100_000)}` });
    expect(status).toBe(413);
  });

  it("takes an enqueueJobs mutation over 1 MiB (its own budget, MAX_BULK_REQUEST_BYTES)", async () => {
    const inputs = Array.from({ length: 150 }, () => ({ queue: "demo", name: "fail", data: { message: "x".repeat(10_000) } }));
    const { status, body } = await post({
      query: "mutation ($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { __typename } }",
      variables: { inputs },
    });
    expect(status).toBe(200);
    expect(body.data).toEqual({ enqueueJobs: { __typename: "EnqueueJobsSuccess" } });
  });

  it("refuses a body over the bulk budget with 413 whatever it runs", async () => {
    const { status } = await post({
      query: "mutation { enqueueJobs(inputs: []) { __typename } }",
      variables: { pad: "x".repeat(17_000_000) },
    });
    expect(status).toBe(413);
  });

  it.each([
    ["more than 10,000 tokens", `{ ${"__typename ".repeat(10_001)} }`, "MAX_QUERY_TOKENS"],
    ["fields 16 deep", `{ ${'job(queue: "demo", id: "x") { replayOf { '.repeat(8)} id ${"} } ".repeat(8)} }`, "MAX_QUERY_DEPTH"],
    ["51 aliases", `{ ${Array.from({ length: 51 }, (_, i) => `a${i}: __typename`).join(" ")} }`, "MAX_QUERY_ALIASES"],
    [
      "21 directives",
      `{ ${Array.from({ length: 21 }, (_, i) => `a${i}: __typename @skip(if: false)`).join(" ")} }`,
      "MAX_QUERY_DIRECTIVES",
    ],
    [
      "40 aliases of queue { workers }",
      `{ ${Array.from({ length: 45 }, (_, i) => `a${i}: queue(name: "demo") { workers counts { waiting } schedulers { id } }`).join(" ")} }`,
      "MAX_QUERY_COST",
    ],
    ["a literal nested 5,000 deep", `{ __typename(x: ${"[".repeat(5000)}${"]".repeat(5000)}) }`, "levels of brackets"],
  ])(
    "refuses %s with 400 QUERY_LIMIT_EXCEEDED, before running anything (again when the document is cached)",
    async (_what, query, named) => {
      // The second time the document (and its validation result) comes from the caches.
      for (let attempt = 0; attempt < 2; attempt++) {
        const { status, body } = await post({ query });
        expect(status).toBe(400);
        expect(firstError(body)?.extensions?.code).toBe("QUERY_LIMIT_EXCEEDED");
        expect(firstError(body)?.message).toContain(named);
      }
    },
  );

  it("runs a query within every limit", async () => {
    const query = `{ ${Array.from({ length: 49 }, (_, i) => `a${i}: __typename`).join(" ")} q: queue(name: "demo") { name counts { waiting } } }`;
    const { status, body } = await post({ query });
    expect(body.errors).toBeUndefined();
    expect(status).toBe(200);
  });
});

describe("malformed input gets a 4xx, never a 5xx", () => {
  const enqueue =
    'mutation ($d: JSON!) { enqueueJob(input: { queue: "demo", name: "sleep", data: $d }) { __typename ... on UserError { message } } }';

  it("GET with variables that are not JSON: 400", async () => {
    const { status, body } = await send({
      url: `${api.url}?query=${encodeURIComponent("{ __typename }")}&variables={bad`,
      headers: AUTH,
    });
    expect(status).toBe(400);
    expect(firstError(body)?.message).toContain("variables");
  });

  it("GET with extensions that are not an object: 400", async () => {
    const { status } = await send({ url: `${api.url}?query=${encodeURIComponent("{ __typename }")}&extensions=[1]`, headers: AUTH });
    expect(status).toBe(400);
  });

  it("variables nested 20,000 deep: a VALIDATION error naming the limit, not a stack overflow", async () => {
    const { status, body } = await post(
      `{"query":${JSON.stringify(enqueue)},"variables":{"d":${"[".repeat(20_000)}1${"]".repeat(20_000)}}}`,
    );
    expect(status).toBe(400);
    expect(firstError(body)?.extensions?.code).toBe("VALIDATION");
    expect(firstError(body)?.message).toContain("more than 64 levels");
  });

  it("data nested 65 deep inline: ValidationError in the result union", async () => {
    const literal = `${"[".repeat(65)}1${"]".repeat(65)}`;
    const { status, body } = await post({
      query: `mutation { enqueueJob(input: { queue: "demo", name: "sleep", data: ${literal} }) { __typename ... on UserError { message } } }`,
    });
    expect(status).toBe(200);
    expect(body.data).toEqual({ enqueueJob: { __typename: "ValidationError", message: expect.stringContaining("more than 64 levels") } });
  });

  it("a cursor whose time is out of range: ValidationError on `after`", async () => {
    const cursor = Buffer.from(JSON.stringify(["j", 8.64e15 + 1, "demo", "x"])).toString("base64url");
    const { body } = await post({ query: `{ jobs(first: 5, after: "${cursor}") { edges { node { id } } } }` });
    expect(firstError(body)?.extensions?.code).toBe("VALIDATION");
    expect(firstError(body)?.message).toContain("is not a cursor");
  });

  it.each([
    ["a jobs filter", `query ($q: String!) { jobs(first: 5, filter: { queue: $q }) { edges { node { id } } } }`, { q: "de\u0000mo" }],
    ["a job id", `query ($id: ID!) { job(queue: "demo", id: $id) { id } }`, { id: "a\u0000b" }],
    ["job data", enqueue, { d: { steps: 1, stepMs: 0, note: "a\u0000b" } }],
    ["a key of job data", enqueue, { d: { "a\u0000": 1 } }],
    ["a cancel reason", `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id) { __typename } }`, { id: "x\u0000" }],
  ])("NUL in %s: a VALIDATION error, nothing reaches PostgreSQL", async (_what, query, variables) => {
    const { status, body } = await post({ query, variables });
    expect(status).toBe(400);
    expect(firstError(body)?.extensions?.code).toBe("VALIDATION");
    expect(firstError(body)?.message).toContain("NUL");
  });

  it("NUL in a string literal of the document: VALIDATION", async () => {
    const { status, body } = await post({ query: `{ job(queue: "demo", id: "a\\u0000b") { id } }` });
    expect(status).toBe(400);
    expect(firstError(body)?.extensions?.code).toBe("VALIDATION");
  });
});

describe("schema privacy", () => {
  it("refuses introspection while it is off, also for a document the caches already hold", async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const { status, body } = await post({ query: "{ __schema { queryType { name } } }" });
      expect(body.data).toBeUndefined();
      expect(firstError(body)?.message).toMatch(/introspection/i);
      statuses.push(status);
    }
    expect(statuses[1]).toBe(statuses[0]);
  });

  it("gives no field suggestions while introspection is off", async () => {
    const { body } = await post({ query: "{ jbos }" });
    expect(firstError(body)?.message).toBe('Cannot query field "jbos" on type "Query".');
  });

  it("gives no enum suggestions in variable errors either", async () => {
    const { body } = await post({
      query: 'query ($s: [JobState!]) { jobs(first: 1, filter: { queue: "demo", states: $s }) { edges { node { id } } } }',
      variables: { s: ["COMPLETE"] },
    });
    expect(JSON.stringify(body)).not.toContain("Did you mean");
    expect(body.errors?.length).toBeGreaterThan(0);
  });
});

describe("CORS and CSRF", () => {
  it("sends no CORS headers to another origin", async () => {
    const { headers } = await post({ query: "{ __typename }" }, { ...AUTH, origin: "https://evil.example" });
    expect(headers.get("access-control-allow-origin")).toBeNull();
    expect(headers.get("access-control-allow-credentials")).toBeNull();
  });

  it("refuses another origin's preflight and answers an allowed one's (CORS_ORIGINS), without credentials", async () => {
    const preflight = (origin: string) =>
      fetch(api.url, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
      });
    const evil = await preflight("https://evil.example");
    expect(evil.headers.get("access-control-allow-origin")).toBeNull();
    const good = await preflight("https://app.example.com");
    expect(good.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(good.headers.get("access-control-allow-credentials")).toBeNull();
  });

  it.each([
    ["a form post", "application/x-www-form-urlencoded", "query=mutation%7BpauseQueue(name%3A%22demo%22)%7B__typename%7D%7D"],
    ["a multipart post", "multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{}\r\n--x--'],
    ["a text/plain post", "text/plain", '{"query":"mutation { pauseQueue(name: \\"demo\\") { __typename } }"}'],
    ["an application/graphql post", "application/graphql", "{ __typename }"],
  ])("does not run %s (415)", async (_what, type, body) => {
    const { status } = await send({ method: "POST", headers: { "content-type": type, ...AUTH }, body });
    expect(status).toBe(415);
  });

  it("runs application/graphql-response+json posts", async () => {
    const { status, body } = await send({
      method: "POST",
      headers: { "content-type": "application/graphql-response+json", ...AUTH },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    expect(status).toBe(200);
    expect(body.data).toEqual({ __typename: "Query" });
  });

  it("does not run a mutation or a subscription from a GET", async () => {
    const mutation = await send({
      url: `${api.url}?query=${encodeURIComponent('mutation { pauseQueue(name: "demo") { __typename } }')}`,
      headers: AUTH,
    });
    expect(mutation.status).toBe(405);
    const subscription = await fetch(`${api.url}?query=${encodeURIComponent('subscription { queueEvents(queue: "demo") { id } }')}`, {
      headers: { ...AUTH, accept: "text/event-stream" },
    });
    expect(subscription.status).toBe(405);
    await subscription.body?.cancel();
  });
});

describe("SSE connections per address", () => {
  it("refuses a fourth open SSE stream from one address with 429 (MAX_CONNECTIONS_PER_ADDRESS=3), and takes one again after a close", async () => {
    const open: AbortController[] = [];
    const start = async () => {
      const abort = new AbortController();
      const response = await fetch(api.url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream", ...AUTH },
        body: JSON.stringify({ query: 'subscription { queueEvents(queue: "demo") { id } }' }),
        signal: abort.signal,
      });
      open.push(abort);
      return response;
    };
    try {
      for (let i = 0; i < 3; i++) expect((await start()).status).toBe(200);
      const refused = await start();
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as Body).errors?.[0]?.extensions?.code).toBe("TOO_MANY_CONNECTIONS");
      open.shift()?.abort();
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        const again = await start();
        status = again.status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 20));
      }
      expect(status).toBe(200);
    } finally {
      for (const a of open) a.abort();
    }
  });
});

describe("/metrics and /readyz", () => {
  const base = () => api.url.replace("/graphql", "");

  it("/metrics needs the token: a wrong one, one of another length and none get 401", async () => {
    for (const authorization of [undefined, "Bearer wrong", `Bearer ${METRICS_TOKEN}x`, METRICS_TOKEN]) {
      const response = await fetch(`${base()}/metrics`, { headers: authorization ? { authorization } : {} });
      expect(response.status).toBe(401);
      await response.body?.cancel();
    }
    const ok = await fetch(`${base()}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
  });
});

describe("/readyz with a dependency down", () => {
  it("names the failed dependency without its error text", async () => {
    // Nothing listens on port 1: PostgreSQL is down from the start (Prisma connects lazily).
    const downPrefix = uniquePrefix();
    const down = await startTestApi({
      DATABASE_URL: "postgresql://postgres:secret-password@127.0.0.1:1/jobs",
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: downPrefix,
      LOG_LEVEL: "silent",
    });
    try {
      const response = await fetch(down.url.replace("/graphql", "/readyz"));
      const text = await response.text();
      expect(response.status).toBe(503);
      expect(JSON.parse(text)).toEqual({ status: "not ready", checks: { redis: "ok", postgres: "failed" } });
      expect(text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|secret/);
    } finally {
      await down.stop();
      await deletePrefix(downPrefix);
    }
  });
});

describe("the worker's health server", () => {
  it("/readyz names the failed check without its text; /metrics compares the token in constant time", async () => {
    const { startHealthServer } = await import("../src/infra/health-server.ts");
    const logged: Record<string, string>[] = [];
    const health = await startHealthServer(
      0,
      "127.0.0.1",
      async () => ({ ok: false, checks: { postgres: "failed: connect ECONNREFUSED 10.0.0.5:5432", redis: "ok", worker: "not running" } }),
      { render: async () => ({ contentType: "text/plain", body: "up 1\n" }), token: METRICS_TOKEN },
      (checks) => logged.push(checks),
    );
    try {
      const ready = await fetch(`http://127.0.0.1:${health.port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: "not ready", checks: { postgres: "failed", redis: "ok", worker: "not running" } });
      expect(logged[0]?.postgres).toContain("ECONNREFUSED");
      for (const authorization of ["Bearer nope", `Bearer ${METRICS_TOKEN}0`]) {
        expect((await fetch(`http://127.0.0.1:${health.port}/metrics`, { headers: { authorization } })).status).toBe(401);
      }
      const metrics = await fetch(`http://127.0.0.1:${health.port}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(await metrics.text()).toBe("up 1\n");
    } finally {
      await health.close();
    }
  });
});
