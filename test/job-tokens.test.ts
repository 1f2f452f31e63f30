import { print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signJobToken } from "../src/access/job-token.ts";
import { EnqueueJobWithTokenDocument, JobEventsDocument } from "../src/client/generated/graphql.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { enqueueDemo, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { connectWs } from "../src/testing/ws-client.ts";

const ADMIN = "test-admin-key-0123456789";
const SECRET = "job-token-secret-of-at-least-32-characters";
let api: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let jobX = "";
let jobY = "";
let issuer = { id: "", secret: "" };

const as = (authorization: string) => (r: Request) => {
  r.headers.set("authorization", authorization);
  return api.app.fetch(r);
};
const bearer = (credential: string) => as(`Bearer ${credential}`);

async function mint(credential: string, id: string, ttlSeconds?: number) {
  const { body } = await gql<{ createJobToken: { __typename: string; jobToken?: { token: string; expiresAt: string }; message?: string } }>(
    bearer(credential),
    `mutation ($id: ID!, $ttl: Int) { createJobToken(queue: "demo", id: $id, ttlSeconds: $ttl) { __typename ... on CreateJobTokenSuccess { jobToken { token expiresAt } } ... on UserError { message } } }`,
    { id, ttl: ttlSeconds },
  );
  return body.data?.createJobToken;
}

async function token(id: string, credential = issuer.secret): Promise<string> {
  const t = (await mint(credential, id))?.jobToken?.token;
  if (!t) throw new Error("no token");
  return t;
}

const JOB = `query ($id: ID!) { job(queue: "demo", id: $id) { id state } }`;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await startTestApi({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    ADMIN_API_KEY: ADMIN,
    JOB_TOKEN_SECRET: SECRET,
  });
  jobX = await enqueueDemo(bearer(ADMIN), "sleep", { steps: 1, stepMs: 1 });
  jobY = await enqueueDemo(bearer(ADMIN), "sleep", { steps: 1, stepMs: 1 });
  const created = await api.runtime.access.createKey({ name: "frontend-backend", scopes: ["READ", "ENQUEUE"] });
  issuer = { id: created.apiKey.id, secret: created.secret };
});

afterAll(async () => {
  await api?.stop();
  await deletePrefix(prefix);
  await db?.drop();
});

describe("job tokens", () => {
  it("createJobToken mints a compact jct_ token expiring after ttlSeconds", async () => {
    const before = Date.now();
    const r = await mint(issuer.secret, jobX, 120);
    expect(r?.__typename).toBe("CreateJobTokenSuccess");
    expect(r?.jobToken?.token).toMatch(/^jct_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect((r?.jobToken?.token.length ?? 0) < 300).toBe(true);
    const expires = Date.parse(r?.jobToken?.expiresAt ?? "");
    expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 119_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 121_000);
  });

  it("reads its job and viewer over HTTP", async () => {
    const t = await token(jobX);
    expect((await gql(bearer(t), JOB, { id: jobX })).body).toEqual({ data: { job: { id: jobX, state: "WAITING" } } });
    expect((await gql(bearer(t), "{ viewer { kind actor scopes tenant } }")).body).toEqual({
      data: { viewer: { kind: "JOB_TOKEN", actor: "job-token", scopes: [], tenant: null } },
    });
  });

  it("subscribes to its job over SSE and over WebSocket (connection_init)", async () => {
    const t = await token(jobX);
    const q = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type jobId } }`;
    const sse = await subscribeSse(api.url, q, { id: jobX }, { authorization: `Bearer ${t}` });
    const ws = await subscribeWs(api.url, q, { id: jobX }, { authorization: `Bearer ${t}` });
    await sse.waitFor(1);
    await ws.waitFor(1);
    for (const sub of [sse, ws]) {
      expect(sub.results[0]).toEqual({ data: { jobEvents: { type: "SNAPSHOT", jobId: jobX } } });
      await sub.close();
    }
  });

  it("another job answers exactly as a job that does not exist (null / NOT_FOUND)", async () => {
    const t = await token(jobX);
    expect((await gql(bearer(t), JOB, { id: jobY })).body).toEqual({ data: { job: null } });
    expect((await gql(bearer(t), JOB, { id: "no-such-job" })).body).toEqual({ data: { job: null } });
    const q = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`;
    const other = await subscribeSse(api.url, q, { id: jobY }, { authorization: `Bearer ${t}` });
    const missing = await subscribeSse(api.url, q, { id: "no-such-job" }, { authorization: `Bearer ${t}` });
    await other.waitFor(1);
    await missing.waitFor(1);
    // BullMQ's ids are small numbers: replace the quoted id only.
    const blind = (v: unknown, id: string) => JSON.stringify(v).split(`\\"${id}\\"`).join("<id>");
    expect(blind(other.results, jobY)).toBe(blind(missing.results, "no-such-job"));
    expect(other.results[0]?.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    // Another queue too.
    expect((await gql(bearer(t), `{ job(queue: "report", id: "${jobX}") { id } }`)).body).toEqual({ data: { job: null } });
  });

  it("anything else is FORBIDDEN, and a token cannot mint tokens", async () => {
    const t = await token(jobX);
    expect((await gql(bearer(t), "{ jobs { edges { cursor } } }")).body.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect((await mint(t, jobX))?.__typename).toBe("ForbiddenError");
  });

  it("is UNAUTHENTICATED once expired", async () => {
    const expired = signJobToken(
      { queue: "demo", id: jobX, tenant: null, exp: Math.floor(Date.now() / 1000) - 1, keyId: issuer.id },
      SECRET,
    );
    const { status, body } = await gql(bearer(expired), JOB, { id: jobX });
    expect(status).toBe(401);
    expect(body.errors?.[0]).toMatchObject({ message: "Invalid or expired job token", extensions: { code: "UNAUTHENTICATED" } });
    // And a 1-second token stops working by itself.
    const short = (await mint(issuer.secret, jobX, 1))?.jobToken?.token as string;
    let s = 200;
    while (s === 200) {
      s = (await gql(bearer(short), JOB, { id: jobX })).status;
      if (s === 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(s).toBe(401);
  });

  it("is UNAUTHENTICATED when tampered with, signed with another secret, or malformed", async () => {
    const t = await token(jobX);
    const [body, mac] = t.slice(4).split(".") as [string, string];
    const claims = JSON.parse(Buffer.from(body, "base64url").toString()) as unknown[];
    claims[1] = jobY;
    const forged = [
      `jct_${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${mac}`,
      `jct_${body}.${mac.slice(0, -2)}${mac.endsWith("AA") ? "BB" : "AA"}`,
      `jct_${body}.`,
      signJobToken({ queue: "demo", id: jobX, tenant: null, exp: Math.floor(Date.now() / 1000) + 60, keyId: null }, `${SECRET}-other`),
      "jct_",
      "jct_x.y",
      `jct_${"A".repeat(5000)}.${mac}`,
      `jct_${Buffer.from('{"deep":'.repeat(500)).toString("base64url")}.${mac}`,
    ];
    for (const f of forged) {
      const { status, body: b } = await gql(bearer(f), JOB, { id: jobX });
      expect(status, f.slice(0, 60)).toBe(401);
      expect(b.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    }
  });

  it("a bad token in connection_init closes the WebSocket with 4403", async () => {
    const { client, closed } = connectWs(api.url, "Bearer jct_x.y");
    expect(await closed).toBe(4403);
    await client.dispose();
  });

  it("stops working when its issuing key is revoked", async () => {
    const key = await api.runtime.access.createKey({ name: "short-lived-issuer", scopes: ["READ"] });
    const t = await token(jobX, key.secret);
    expect((await gql(bearer(t), JOB, { id: jobX })).status).toBe(200);
    await api.runtime.access.revokeKey(key.apiKey.id);
    const { status, body } = await gql(bearer(t), JOB, { id: jobX });
    expect(status).toBe(401);
    expect(body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("EnqueueJobSuccess.jobToken mints one in the same round trip; null without READ", async () => {
    const q = `mutation ($ttl: Int) { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { ... on EnqueueJobSuccess { job { id } jobToken(ttlSeconds: $ttl) { token expiresAt } } } }`;
    const { body } = await gql<{ enqueueJob: { job: { id: string }; jobToken: { token: string } } }>(bearer(issuer.secret), q, { ttl: 60 });
    const job = body.data?.enqueueJob;
    expect((await gql(bearer(job?.jobToken.token as string), JOB, { id: job?.job.id })).body.data).toEqual({
      job: { id: job?.job.id, state: expect.any(String) },
    });
    const enqueueOnly = await api.runtime.access.createKey({ name: "enqueue-only", scopes: ["ENQUEUE"] });
    const none = await gql<{ enqueueJob: { jobToken: unknown } }>(bearer(enqueueOnly.secret), q, { ttl: 60 });
    expect(none.body.data?.enqueueJob.jobToken).toBeNull();
    for (const ttl of [0, -5, 86_401, 2 ** 31 - 1]) {
      const bad = await gql(bearer(issuer.secret), q, { ttl });
      expect(bad.body.errors?.[0]).toMatchObject({
        message: `ttlSeconds: must be an integer from 1 to 86400 (got ${ttl})`,
        extensions: { code: "VALIDATION" },
      });
    }
  });

  it("the typed client's EnqueueJobWithToken and JobEvents: a backend enqueues, the browser watches with the token", async () => {
    const { body } = await gql<{ enqueueJob: { job: { id: string }; jobToken: { token: string } } }>(
      bearer(issuer.secret),
      print(EnqueueJobWithTokenDocument),
      { input: { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } }, ttlSeconds: 300 },
    );
    const answer = body.data?.enqueueJob;
    const sub = await subscribeWs(
      api.url,
      print(JobEventsDocument),
      { queue: "demo", id: answer?.job.id },
      { authorization: `Bearer ${answer?.jobToken.token}` },
    );
    await sub.waitFor(1);
    expect(sub.results[0]?.data).toMatchObject({ jobEvents: { type: "SNAPSHOT", job: { id: answer?.job.id, state: "WAITING" } } });
    await sub.close();
  });

  it("createJobToken refuses a bad ttl and an unknown job", async () => {
    for (const ttl of [0, 86_401]) {
      const r = await mint(issuer.secret, jobX, ttl);
      expect(r).toEqual({ __typename: "ValidationError", message: `ttlSeconds: must be an integer from 1 to 86400 (got ${ttl})` });
    }
    expect(await mint(issuer.secret, "no-such-job")).toEqual({
      __typename: "NotFoundError",
      message: 'No job "no-such-job" in queue "demo"',
    });
  });
});
