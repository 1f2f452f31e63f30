import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobIdCounterKey, keySpace } from "../src/jobs/bullmq/index.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { type PrivatePostgres, queryRows, startPrivatePostgres } from "../src/testing/private-postgres.ts";
import { killAll, type RunningProcess, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// Durable enqueue (issue #18): the history row is the record, committed before the job reaches
// Redis. With PostgreSQL really stopped (a private one), enqueues fail with UNAVAILABLE and leave
// nothing in Redis, while a worker is running and would otherwise have run them.

const ENQUEUE = `mutation($input: EnqueueJobInput!) { enqueueJob(input: $input) {
  __typename ... on EnqueueJobSuccess { job { id state } } ... on UserError { code message } } }`;
const ENQUEUE_FLOW = `mutation($input: FlowInput!) { enqueueFlow(input: $input) {
  __typename ... on EnqueueFlowSuccess { jobs { id parent { id } } } ... on UserError { code message } } }`;
const ENQUEUE_MANY = `mutation($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) {
  __typename ... on EnqueueJobsSuccess { jobs { id } } ... on UserError { code message } } }`;

let pgp: PrivatePostgres;
let api: TestApi;
let worker: RunningProcess;
let queue: Queue;
const prefix = uniquePrefix();
const redis = new Redis(testRedisUrl);

beforeAll(async () => {
  pgp = await startPrivatePostgres();
  const env = { DATABASE_URL: pgp.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, MIGRATE_ON_START: "false" };
  api = await startTestApi({ ...env, LOG_LEVEL: "silent" });
  worker = await startWorker({ ...env, WORKER_QUEUES: "demo", LEDGER_RECONCILE_MS: "500" });
  queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
});

afterAll(async () => {
  await queue?.close();
  await worker?.stop();
  await api?.stop();
  expect(await killAll()).toEqual([]);
  await pgp?.destroy();
  await deletePrefix(prefix);
  redis.disconnect();
});

/** Every job hash under the queue (whatever its state): what Redis really holds. */
async function jobsInRedis(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, page] = await redis.scan(cursor, "MATCH", `${bullPrefix(prefix, "demo")}:demo:*`, "COUNT", 1000);
    cursor = next;
    keys.push(...page);
  } while (cursor !== "0");
  const jobKey = new RegExp(`^${bullPrefix(prefix, "demo").replace(/[{}]/g, "\\$&")}:demo:([^:]+)$`);
  const ids: string[] = [];
  for (const key of keys) {
    const id = jobKey.exec(key)?.[1];
    if (id && (await redis.type(key)) === "hash" && (await redis.hexists(key, "name"))) ids.push(id);
  }
  return ids.sort();
}

const rowIds = async () => (await queryRows<{ id: string }>(pgp.url, "SELECT id FROM job_history ORDER BY id")).map((r) => r.id);

describe("durable enqueue", () => {
  it("acknowledges a job only once its row is committed; with PostgreSQL stopped, fails with UNAVAILABLE and adds nothing", async () => {
    const ok = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
    expect(ok.body.data?.enqueueJob).toMatchObject({ __typename: "EnqueueJobSuccess", job: { id: "1" } });
    expect(await rowIds()).toEqual(["1"]);
    await until(
      "job 1 completed",
      async () => (await queue.getJob("1"))?.finishedOn ?? null,
      (v) => v != null,
    );

    await pgp.stop();
    try {
      const single = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
      expect(single.body.data?.enqueueJob ?? null).toBeNull();
      expect(single.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      expect(single.body.errors?.[0]?.message).toMatch(/history row could not be written to PostgreSQL, so nothing was enqueued/);

      const custom = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, jobId: "order-7" } });
      expect(custom.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");

      const delayed = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, delayMs: 60_000 } });
      expect(delayed.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");

      const bulk = await gql(api.url, ENQUEUE_MANY, {
        inputs: [
          { queue: "demo", name: "noop", data: {} },
          { queue: "demo", name: "noop", data: {}, priority: 3 },
          { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } },
        ],
      });
      expect(bulk.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      expect(bulk.body.errors?.[0]?.message).toMatch(/history rows of 3 jobs could not be written/);

      // Nothing reached Redis: the worker (running all along) has nothing to run.
      expect(await jobsInRedis()).toEqual(["1"]);
      expect(await queue.getJob("order-7")).toBeUndefined();
    } finally {
      await pgp.start();
    }

    // Back: enqueues are acknowledged again, their jobs run, and row and job agree.
    const after = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, jobId: "order-7" } });
    expect(after.body.data?.enqueueJob).toMatchObject({ __typename: "EnqueueJobSuccess", job: { id: "order-7" } });
    const next = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
    const nextId = (next.body.data?.enqueueJob as { job?: { id: string } } | undefined)?.job?.id ?? "";
    // The failed enqueues used up ids 2-4 (reserved, never given out): ids stay unique, not gap-free.
    expect(Number(nextId)).toBeGreaterThan(1);
    await until(
      "both completed",
      async () => (await queue.getJobs(["completed"])).length,
      (n) => n === 3,
    );
    expect(await jobsInRedis()).toEqual(["1", nextId, "order-7"].sort());
    expect(await rowIds()).toEqual(["1", nextId, "order-7"].sort());
    await until(
      "rows COMPLETED",
      async () => (await queryRows<{ n: string }>(pgp.url, "SELECT count(*) AS n FROM job_history WHERE state = 'COMPLETED'"))[0]?.n,
      (n) => n === "3",
    );
  });

  it("a Redis without the id counter (it lost its data) continues after the largest id history holds, never reusing one", async () => {
    const before = await rowIds();
    const largest = Math.max(...before.filter((id) => /^\d+$/.test(id)).map(Number));
    await redis.del(jobIdCounterKey(keySpace(prefix), "demo"), `${bullPrefix(prefix, "demo")}:demo:id`);
    const many = await gql(api.url, ENQUEUE_MANY, {
      inputs: Array.from({ length: 5 }, () => ({ queue: "demo", name: "noop", data: {} })),
    });
    const ids = ((many.body.data?.enqueueJobs as { jobs?: { id: string }[] } | undefined)?.jobs ?? []).map((j) => j.id);
    expect(ids).toEqual([1, 2, 3, 4, 5].map((k) => String(largest + k)));
    expect(await redis.get(jobIdCounterKey(keySpace(prefix), "demo"))).toBe(String(largest + 5));
  });

  it("a Redis that came back with an older counter (AOF everysec lost its last second) never reuses an id history holds", async () => {
    const before = await queryRows<{ id: string; data: unknown }>(pgp.url, "SELECT id, data FROM job_history WHERE id ~ '^[0-9]+$'");
    const largest = Math.max(...before.map((r) => Number(r.id)));
    // The counter is there, but behind: its next id, the largest, was issued before (and BullMQ's
    // own counter, which the API also stays ahead of, is behind too).
    await redis.set(jobIdCounterKey(keySpace(prefix), "demo"), String(largest - 1));
    await redis.del(`${bullPrefix(prefix, "demo")}:demo:id`);
    const one = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: { ticks: 7 } } });
    const id = (one.body.data?.enqueueJob as { job?: { id: string } } | undefined)?.job?.id ?? "";
    expect(Number(id)).toBe(largest + 1);
    const many = await gql(api.url, ENQUEUE_MANY, { inputs: [{ queue: "demo", name: "noop", data: { ticks: 8 } }] });
    expect((many.body.data?.enqueueJobs as { jobs?: { id: string }[] } | undefined)?.jobs?.[0]?.id).toBe(String(largest + 2));
    // The rows that held the ids the stale counter gave out first are untouched.
    const after = await queryRows<{ id: string; data: unknown }>(pgp.url, "SELECT id, data FROM job_history WHERE id = ANY($1)", [
      before.map((r) => r.id),
    ]);
    expect(after.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(before.sort((a, b) => Number(a.id) - Number(b.id)));
    expect((await queue.getJob(id))?.data).toEqual({ ticks: 7 });
  });

  it("enqueueJobs with an older counter gives the jobs whose ids history holds new ones, in Redis and history alike (its adds, built before, are rebuilt)", async () => {
    const before = await queryRows<{ id: string; data: unknown }>(pgp.url, "SELECT id, data FROM job_history WHERE id ~ '^[0-9]+$'");
    const largest = Math.max(...before.map((r) => Number(r.id)));
    await redis.set(jobIdCounterKey(keySpace(prefix), "demo"), String(largest - 1));
    await redis.del(`${bullPrefix(prefix, "demo")}:demo:id`);
    const many = await gql(api.url, ENQUEUE_MANY, {
      inputs: [0, 1, 2].map((k) => ({ queue: "demo", name: "noop", data: { ticks: 20 + k } })),
    });
    const ids = ((many.body.data?.enqueueJobs as { jobs?: { id: string }[] } | undefined)?.jobs ?? []).map((j) => j.id);
    expect(ids).toHaveLength(3);
    expect(ids.some((id) => before.some((r) => r.id === id))).toBe(false);
    for (const [k, id] of ids.entries()) {
      expect((await queue.getJob(id))?.data).toEqual({ ticks: 20 + k });
      const rows = await queryRows<{ data: unknown }>(pgp.url, "SELECT data FROM job_history WHERE queue = 'demo' AND id = $1", [id]);
      expect(rows.map((r) => r.data)).toEqual([{ ticks: 20 + k }]);
    }
    // The rows that held the ids the stale counter handed out are untouched, and no job took them in Redis.
    const after = await queryRows<{ id: string; data: unknown }>(pgp.url, "SELECT id, data FROM job_history WHERE id = ANY($1)", [
      before.map((r) => r.id),
    ]);
    expect(after.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(before.sort((a, b) => Number(a.id) - Number(b.id)));
    for (const id of [String(largest - 0), String(largest - 1)].filter((id) => before.some((r) => r.id === id))) {
      expect((await queue.getJob(id))?.data).not.toEqual({ ticks: 20 });
    }
  });

  it("a job added with BullMQ directly takes its number from BullMQ's counter, and the API's next id comes after it", async () => {
    const raw = await queue.add("noop", {});
    const viaApi = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
    const id = (viaApi.body.data?.enqueueJob as { job?: { id: string } } | undefined)?.job?.id ?? "";
    expect(Number(id)).toBeGreaterThan(Number(raw.id));
    expect((await queue.getJob(id))?.name).toBe("noop");
    expect((await queue.getJob(String(raw.id)))?.name).toBe("noop");
  });

  it("with PostgreSQL stopped and no id counter in Redis, enqueue fails with UNAVAILABLE instead of guessing an id", async () => {
    await redis.del(jobIdCounterKey(keySpace(prefix), "demo"));
    const countBefore = (await jobsInRedis()).length;
    await pgp.stop();
    try {
      const res = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
      expect(res.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      expect(res.body.errors?.[0]?.message).toMatch(/no job id can be issued safely/);
      expect(await redis.exists(jobIdCounterKey(keySpace(prefix), "demo"))).toBe(0);
      expect((await jobsInRedis()).length).toBe(countBefore);
    } finally {
      await pgp.start();
    }
    const res = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } });
    expect(res.body.data?.enqueueJob).toMatchObject({ __typename: "EnqueueJobSuccess" });
  });

  it("ENQUEUE_ACK=redis answers once the job is in Redis: with PostgreSQL stopped the enqueue still succeeds (and the row comes later)", async () => {
    const fast = await startTestApi({
      DATABASE_URL: pgp.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      MIGRATE_ON_START: "false",
      ENQUEUE_ACK: "redis",
      LOG_LEVEL: "silent",
      // A key the API checks without PostgreSQL (open auth asks the database whether any key exists).
      ADMIN_API_KEY: "durable-enqueue-admin-key",
    });
    try {
      // The counter exists (the tests above seeded it): no history read is needed for an id.
      await pgp.stop();
      let id = "";
      try {
        const res = await fetch(fast.url, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer durable-enqueue-admin-key" },
          body: JSON.stringify({ query: ENQUEUE, variables: { input: { queue: "demo", name: "noop", data: {} } } }),
        });
        const body = (await res.json()) as { data?: { enqueueJob?: { job?: { id: string } } } };
        id = body.data?.enqueueJob?.job?.id ?? "";
        expect(id).not.toBe("");
        expect(await queue.getJob(id)).toBeDefined();
      } finally {
        await pgp.start();
      }
      // The worker (its ledger keeps the final row until PostgreSQL is back) writes the row.
      await until("row written", async () => (await rowIds()).includes(id), Boolean);
    } finally {
      await fast.stop();
    }
  });

  it("a flow's rows are committed before any of it reaches Redis: with PostgreSQL stopped, enqueueFlow fails with UNAVAILABLE and adds no node", async () => {
    // BullMQ builds the flow's transaction while the rows commit; it is sent only after the commit.
    const before = await jobsInRedis();
    // A request first, so the API's credential cache (KEY_CACHE_MS) is fresh while PostgreSQL is down.
    await gql(api.url, "{ __typename }");
    await pgp.stop();
    try {
      const res = await gql(api.url, ENQUEUE_FLOW, {
        input: {
          queue: "demo",
          name: "fanout",
          data: {},
          children: Array.from({ length: 3 }, () => ({ queue: "demo", name: "noop", data: {} })),
        },
      });
      expect(res.body.data?.enqueueFlow ?? null).toBeNull();
      expect(res.body.errors?.[0]?.extensions?.code).toBe("UNAVAILABLE");
      expect(res.body.errors?.[0]?.message).toMatch(/history rows of 4 jobs could not be written/);
      // Past the moment the transaction would have gone out: nothing of the flow is in Redis.
      await new Promise((r) => setTimeout(r, 200));
      expect(await jobsInRedis()).toEqual(before);
    } finally {
      await pgp.start();
    }
  });

  it("a flow whose ids a stale counter had issued before gets new ones, its children's parent included, and runs", async () => {
    const largest = Math.max(
      ...(await queryRows<{ id: string }>(pgp.url, "SELECT id FROM job_history WHERE id ~ '^[0-9]+$'")).map((r) => Number(r.id)),
    );
    const taken = await queryRows<{ id: string; name: string }>(pgp.url, "SELECT id, name FROM job_history WHERE id = $1", [
      String(largest),
    ]);
    // The counter's next id (the root's) is one history already holds.
    await redis.set(jobIdCounterKey(keySpace(prefix), "demo"), String(largest - 1));
    await redis.del(`${bullPrefix(prefix, "demo")}:demo:id`);
    const res = await gql(api.url, ENQUEUE_FLOW, {
      input: {
        queue: "demo",
        name: "fanout",
        data: { label: "moved" },
        children: [
          { queue: "demo", name: "noop", data: {} },
          { queue: "demo", name: "noop", data: {} },
        ],
      },
    });
    const jobs = (res.body.data?.enqueueFlow as { jobs?: { id: string; parent: { id: string } | null }[] } | undefined)?.jobs ?? [];
    expect(jobs).toHaveLength(3);
    const [root, ...children] = jobs as [{ id: string }, ...{ id: string; parent: { id: string } | null }[]];
    expect(Number(root.id)).toBeGreaterThan(largest);
    for (const child of children) expect(child.parent?.id).toBe(root.id);
    // The row that held the reused id is untouched; the flow's rows name the new parent.
    expect(await queryRows(pgp.url, "SELECT id, name FROM job_history WHERE id = $1", [String(largest)])).toEqual(taken);
    const rows = await queryRows<{ id: string; parent_id: string | null }>(
      pgp.url,
      "SELECT id, parent_id FROM job_history WHERE id = ANY($1)",
      [children.map((c) => c.id)],
    );
    expect(rows.map((r) => r.parent_id)).toEqual([root.id, root.id]);
    // In Redis the flow is whole under the new ids: the children run, then the parent.
    await until(
      "the flow's parent completed",
      async () => (await queue.getJob(root.id))?.finishedOn ?? null,
      (v) => v != null,
    );
    expect((await queue.getJob(root.id))?.returnvalue).toMatchObject({ label: "moved", children: 2 });
  });
});
