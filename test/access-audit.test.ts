import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { gql } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

// Who did it: the operator audit names the key, and enqueues are counted per key name (not secret).

const ADMIN = "test-admin-key-0123456789";
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

const as = (secret: string) => (r: Request) => {
  r.headers.set("authorization", `Bearer ${secret}`);
  return api.app.fetch(r);
};

describe("audit and metrics by key", () => {
  it("records the key's name as the operator action's actor, and counts its enqueues by name", async () => {
    const key = await api.runtime.access.createKey({ name: "billing-backend", scopes: ["ENQUEUE", "CONTROL", "READ"] });
    const enqueue = await gql<{ enqueueJob: { job: { id: string } } }>(
      as(key.secret),
      `mutation { enqueueJob(input: { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, delayMs: 600000 }) { ... on EnqueueJobSuccess { job { id } } } }`,
    );
    const id = enqueue.body.data?.enqueueJob.job.id as string;
    await gql(
      as(key.secret),
      `mutation { enqueueJobs(inputs: [{ queue: "demo", name: "noop", data: {} }, { queue: "demo", name: "noop", data: {} }]) { __typename } }`,
    );
    await gql(as(ADMIN), `mutation { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { __typename } }`);
    expect((await gql(as(key.secret), `mutation { cancelJob(queue: "demo", id: "${id}") { __typename } }`)).body).toEqual({
      data: { cancelJob: { __typename: "JobActionSuccess" } },
    });
    const actions = await gql<{ operatorActions: { edges: { node: { actor: string; action: string; jobId: string } }[] } }>(
      as(ADMIN),
      "{ operatorActions { edges { node { actor action jobId } } } }",
    );
    expect(actions.body.data?.operatorActions.edges[0]?.node).toEqual({ actor: "billing-backend", action: "cancelJob", jobId: id });

    const metrics = await (await fetch(api.url.replace("/graphql", "/metrics"))).text();
    expect(metrics).toContain('jobs_enqueued_total{key="billing-backend",queue="demo"} 3');
    expect(metrics).toContain('jobs_enqueued_total{key="admin",queue="demo"} 1');
    expect(metrics).not.toContain(key.secret.slice(4));
    expect(metrics).not.toContain(ADMIN);
  });
});
