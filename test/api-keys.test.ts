import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { gql } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

const ADMIN = "test-admin-key-0123456789";
const root = path.resolve(import.meta.dirname, "..");
let api: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();

beforeAll(async () => {
  db = await createTestDatabase();
  api = await startTestApi({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ADMIN_API_KEY: ADMIN });
});

afterAll(async () => {
  await api?.stop();
  await deletePrefix(prefix);
  await db?.drop();
});

/** A request handler that sends `Authorization: <authorization>` (none when undefined). */
function as(authorization: string | undefined) {
  return (r: Request) => {
    if (authorization !== undefined) r.headers.set("authorization", authorization);
    return api.app.fetch(r);
  };
}
const bearer = (secret: string) => as(`Bearer ${secret}`);

async function sql<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const CREATE = `mutation ($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    __typename
    ... on CreateApiKeySuccess { secret apiKey { id name prefix scopes tenant queues createdAt lastUsedAt revokedAt } }
    ... on ValidationError { issues { path message } }
    ... on UserError { code message }
  }
}`;

type Created = { createApiKey: { __typename: string; secret?: string; apiKey?: { id: string; name: string; prefix: string } } };

async function createKey(input: Record<string, unknown>) {
  const { body } = await gql<Created>(bearer(ADMIN), CREATE, { input });
  const r = body.data?.createApiKey;
  if (!r?.secret || !r.apiKey) throw new Error(`createApiKey failed: ${JSON.stringify(body)}`);
  return { secret: r.secret, id: r.apiKey.id, apiKey: r.apiKey };
}

const VIEWER = "{ viewer { kind actor scopes tenant queues } }";

describe("API keys", () => {
  it("createApiKey returns a jca_ secret once, stores only its SHA-256, and the key works", async () => {
    const { secret, id, apiKey } = await createKey({ name: "frontend", scopes: ["READ", "ENQUEUE"], tenant: "acme", queues: ["demo"] });
    expect(secret).toMatch(/^jca_[A-Za-z0-9_-]{43}$/);
    expect(apiKey).toMatchObject({
      name: "frontend",
      prefix: secret.slice(0, 12),
      scopes: ["READ", "ENQUEUE"],
      tenant: "acme",
      queues: ["demo"],
    });
    const rows = await sql<Record<string, unknown>>("SELECT * FROM api_key WHERE id = $1", [id]);
    expect(JSON.stringify(rows)).not.toContain(secret.slice(12));
    expect(rows[0]?.secret_hash).toMatch(/^[0-9a-f]{64}$/);
    expect((await gql(bearer(secret), VIEWER)).body).toEqual({
      data: { viewer: { kind: "API_KEY", actor: "frontend", scopes: ["READ", "ENQUEUE"], tenant: "acme", queues: ["demo"] } },
    });
  });

  it("viewer answers for the admin key", async () => {
    expect((await gql(bearer(ADMIN), VIEWER)).body).toEqual({
      data: { viewer: { kind: "ADMIN_ENV", actor: "admin", scopes: ["READ", "ENQUEUE", "CONTROL", "ADMIN"], tenant: null, queues: null } },
    });
  });

  it("apiKeys lists keys without secrets; only for ADMIN", async () => {
    const { secret } = await createKey({ name: "reader", scopes: ["READ"] });
    const { body } = await gql<{ apiKeys: Record<string, unknown>[] }>(bearer(ADMIN), "{ apiKeys { id name prefix scopes revokedAt } }");
    expect(body.data?.apiKeys.map((k) => k.name)).toContain("reader");
    expect(JSON.stringify(body)).not.toContain(secret.slice(12));
    const denied = await gql(bearer(secret), "{ apiKeys { id } }");
    expect(denied.body).toEqual({
      data: null,
      errors: [expect.objectContaining({ message: "apiKeys needs the ADMIN scope", extensions: { code: "FORBIDDEN" } })],
    });
  });

  it("refuses bad createApiKey input with a ValidationError naming each field", async () => {
    const cases: [Record<string, unknown>, string[]][] = [
      [{ name: "", scopes: ["READ"] }, ["name"]],
      [{ name: "x".repeat(101), scopes: ["READ"] }, ["name"]],
      [{ name: "bad name\n", scopes: ["READ"] }, ["name"]],
      [{ name: "admin", scopes: ["READ"] }, ["name"]],
      [{ name: "no-scopes", scopes: [] }, ["scopes"]],
      [{ name: "t", scopes: ["READ"], tenant: "" }, ["tenant"]],
      [{ name: "t", scopes: ["READ"], tenant: "a/b" }, ["tenant"]],
      [{ name: "t", scopes: ["READ"], tenant: "t".repeat(10_000) }, ["tenant"]],
      [{ name: "q", scopes: ["READ"], queues: [] }, ["queues"]],
      [{ name: "q", scopes: ["READ"], queues: ["no-such-queue"] }, ["queues"]],
      [{ name: "q", scopes: ["READ"], queues: Array.from({ length: 101 }, (_, i) => `q${i}`) }, ["queues"]],
    ];
    for (const [input, path] of cases) {
      const { body } = await gql<{ createApiKey: { __typename: string; issues: { path: string[] }[] } }>(bearer(ADMIN), CREATE, { input });
      expect(body.data?.createApiKey.__typename, JSON.stringify(input).slice(0, 80)).toBe("ValidationError");
      expect(body.data?.createApiKey.issues.map((i) => i.path)).toContainEqual(path);
    }
    await createKey({ name: "taken", scopes: ["READ"] });
    const again = await gql<{ createApiKey: { __typename: string; message: string } }>(bearer(ADMIN), CREATE, {
      input: { name: "taken", scopes: ["READ"] },
    });
    expect(again.body.data?.createApiKey).toMatchObject({
      __typename: "ValidationError",
      message: 'name: a key named "taken" exists already',
    });
    // An unknown scope never reaches the resolver: the enum refuses it.
    const unknownScope = await gql(bearer(ADMIN), CREATE, { input: { name: "u", scopes: ["ROOT"] } });
    expect(unknownScope.body.errors?.[0]?.message).toContain("ROOT");
  });

  it("revokeApiKey stops the key at once on this instance; revoking twice keeps the first time", async () => {
    const { secret, id } = await createKey({ name: "to-revoke", scopes: ["READ"] });
    expect((await gql(bearer(secret), VIEWER)).status).toBe(200);
    const REVOKE = `mutation ($id: ID!) { revokeApiKey(id: $id) { __typename ... on RevokeApiKeySuccess { apiKey { revokedAt } } ... on UserError { code message } } }`;
    const first = await gql<{ revokeApiKey: { apiKey: { revokedAt: string } } }>(bearer(ADMIN), REVOKE, { id });
    const revokedAt = first.body.data?.revokeApiKey.apiKey.revokedAt;
    expect(revokedAt).toMatch(/^\d{4}-/);
    const after = await gql(bearer(secret), VIEWER);
    expect(after.status).toBe(401);
    expect(after.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    const second = await gql<{ revokeApiKey: { apiKey: { revokedAt: string } } }>(bearer(ADMIN), REVOKE, { id });
    expect(second.body.data?.revokeApiKey.apiKey.revokedAt).toBe(revokedAt);
    for (const unknown of ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "x".repeat(5000)]) {
      expect((await gql(bearer(ADMIN), REVOKE, { id: unknown })).body.data).toEqual({
        revokeApiKey: { __typename: "NotFoundError", code: "NOT_FOUND", message: `No API key "${unknown}"` },
      });
    }
  });

  it("a revoked key stops working on another instance within 5 s (its cache lasts 4 s)", async () => {
    const other = await startTestApi({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ADMIN_API_KEY: ADMIN });
    try {
      const { secret, id } = await createKey({ name: "two-instances", scopes: ["READ"] });
      const onOther = (r: Request) => {
        r.headers.set("authorization", `Bearer ${secret}`);
        return other.app.fetch(r);
      };
      expect((await gql(onOther, VIEWER)).status).toBe(200);
      await api.runtime.access.revokeKey(id);
      const revokedAt = Date.now();
      let status = 200;
      while (status === 200) {
        status = (await gql(onOther, VIEWER)).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(401);
      expect(Date.now() - revokedAt).toBeLessThan(5_000);
    } finally {
      await other.stop();
    }
  });

  it("records lastUsedAt, at most once a minute", async () => {
    const { secret, id } = await createKey({ name: "used", scopes: ["READ"] });
    const lastUsed = async () =>
      (await sql<{ last_used_at: Date | null }>("SELECT last_used_at FROM api_key WHERE id = $1", [id]))[0]?.last_used_at;
    expect(await lastUsed()).toBeNull();
    await gql(bearer(secret), VIEWER);
    let first: Date | null | undefined = null;
    while (!first) {
      first = await lastUsed();
      if (!first) await new Promise((r) => setTimeout(r, 50));
    }
    await sql("UPDATE api_key SET last_used_at = last_used_at - interval '30 seconds' WHERE id = $1", [id]);
    const moved = await lastUsed();
    await gql(bearer(secret), VIEWER);
    await new Promise((r) => setTimeout(r, 300));
    expect(await lastUsed()).toEqual(moved);
  });

  it.each([
    ["a jca_ secret nobody was given", `Bearer jca_${"A".repeat(43)}`],
    ["a jca_ secret of the wrong length", "Bearer jca_short"],
    ["a huge bearer", `Bearer ${"x".repeat(100_000)}`],
    ["two credentials", `Bearer ${ADMIN} ${ADMIN}`],
    ["a lone Bearer", "Bearer"],
    ["a non-Bearer scheme", `Basic ${ADMIN}`],
  ])("answers %s with 401 UNAUTHENTICATED", async (_what, authorization) => {
    const { status, body } = await gql(as(authorization), VIEWER);
    expect(status).toBe(401);
    expect(body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });
});

describe("ADMIN keys bound to a tenant or to queues", () => {
  it("manage only keys within their own bounds, and never make one that reaches further", async () => {
    const bound = await createKey({ name: "acme-admin", scopes: ["ADMIN"], tenant: "acme", queues: ["demo", "report"] });
    const unbound = await createKey({ name: "global-reader", scopes: ["READ"] });
    const asBound = bearer(bound.secret);
    const made = await gql<Created>(asBound, CREATE, { input: { name: "acme-frontend", scopes: ["READ"] } });
    expect(made.body.data?.createApiKey.apiKey).toMatchObject({ name: "acme-frontend", tenant: "acme", queues: ["demo", "report"] });
    const otherTenant = await gql<{ createApiKey: unknown }>(asBound, CREATE, {
      input: { name: "x1", scopes: ["READ"], tenant: "globex" },
    });
    expect(otherTenant.body.data?.createApiKey).toEqual({
      __typename: "ForbiddenError",
      code: "FORBIDDEN",
      message: "tenant: a tenant-bound key creates keys of its own tenant only",
    });
    const widerQueues = await gql<{ createApiKey: { __typename: string } }>(asBound, CREATE, {
      input: { name: "x2", scopes: ["READ"], queues: ["webhook"] },
    });
    expect(widerQueues.body.data?.createApiKey.__typename).toBe("ForbiddenError");
    const listed = await gql<{ apiKeys: { name: string; tenant: string }[] }>(asBound, "{ apiKeys { name tenant } }");
    const names = listed.body.data?.apiKeys.map((k) => k.name) ?? [];
    expect(names).toEqual(expect.arrayContaining(["acme-admin", "acme-frontend"]));
    expect(names).not.toContain("global-reader");
    expect(listed.body.data?.apiKeys.every((k) => k.tenant === "acme")).toBe(true);
    const REVOKE = `mutation ($id: ID!) { revokeApiKey(id: $id) { __typename ... on UserError { code message } } }`;
    const theirs = await gql(asBound, REVOKE, { id: unbound.id });
    const missing = "00000000-0000-0000-0000-000000000001";
    expect(JSON.stringify(theirs.body).replace(unbound.id, "<id>")).toBe(
      JSON.stringify((await gql(asBound, REVOKE, { id: missing })).body).replace(missing, "<id>"),
    );
    expect((await gql(bearer(unbound.secret), VIEWER)).status).toBe(200);
  });
});

describe("npm run keys", () => {
  const run = (...args: string[]) =>
    promisify(execFile)(process.execPath, [path.join(root, "scripts/keys.ts"), ...args], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: db.url },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  it("creates a key whose secret works, lists it, revokes it by name", async () => {
    const created = await run("create", "--name", "cli-key", "--scopes", "read,enqueue", "--tenant", "acme");
    expect(created.code).toBe(0);
    const secret = /secret \(shown once, store it now\): (jca_\S+)/.exec(created.stdout)?.[1];
    expect(secret).toBeDefined();
    expect((await gql(bearer(secret as string), VIEWER)).body.data).toEqual({
      viewer: { kind: "API_KEY", actor: "cli-key", scopes: ["READ", "ENQUEUE"], tenant: "acme", queues: null },
    });
    const listed = await run("list");
    expect(listed.stdout).toContain("cli-key");
    expect(listed.stdout).not.toContain((secret as string).slice(12));
    const revoked = await run("revoke", "cli-key");
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain("REVOKED");
  });

  it("refuses bad input with a line per problem and exit code 1 or 2", async () => {
    expect(await run("create", "--name", "x", "--scopes", "read,root")).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("scopes.1"),
    });
    expect(await run("revoke", "nobody")).toMatchObject({ code: 1, stderr: 'No API key "nobody"\n' });
    expect((await run("frobnicate")).code).toBe(2);
    expect((await run("create", "--bogus")).code).toBe(2);
  });
});

describe("open auth (development, no ADMIN_API_KEY)", () => {
  it("serves requests without a key as anonymous until a key exists, then refuses them", async () => {
    const openDb = await createTestDatabase();
    const openPrefix = uniquePrefix();
    const open = await startTestApi({ DATABASE_URL: openDb.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: openPrefix });
    try {
      expect((await gql(open.app.fetch, VIEWER)).body.data).toEqual({
        viewer: { kind: "ANONYMOUS", actor: "anonymous", scopes: ["READ", "ENQUEUE", "CONTROL", "ADMIN"], tenant: null, queues: null },
      });
      const { body } = await gql<Created>(open.app.fetch, CREATE, { input: { name: "first", scopes: ["ADMIN"] } });
      const secret = body.data?.createApiKey.secret as string;
      const refused = await gql(open.app.fetch, VIEWER);
      expect(refused.status).toBe(401);
      const withKey = (r: Request) => {
        r.headers.set("authorization", `Bearer ${secret}`);
        return open.app.fetch(r);
      };
      expect((await gql(withKey, VIEWER)).body.data).toMatchObject({ viewer: { kind: "API_KEY", actor: "first" } });
    } finally {
      await open.stop();
      await deletePrefix(openPrefix);
      await openDb.drop();
    }
  });
});
