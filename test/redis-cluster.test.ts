import { Cluster } from "ioredis";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { channels } from "../src/jobs/events/index.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { configProblems } from "../src/testing/config.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { type Collected, enqueueDemo, gql, subscribeWs } from "../src/testing/graphql.ts";
import { type PrivateRedisCluster, redisCli, startPrivateRedisCluster } from "../src/testing/private-redis-cluster.ts";
import { killAll, type RunningProcess, startProcess, startWorker } from "../src/testing/processes.ts";
import { deletePrefix, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// The API and a worker process on a Redis Cluster of their own (REDIS_CLUSTER_NODES): BullMQ,
// the event relay, pub/sub and the ledger all work across three masters.

const _ENQUEUE = /* GraphQL */ `
  mutation ($input: EnqueueJobInput!) {
    enqueueJob(input: $input) { __typename ... on EnqueueJobSuccess { job { id state } } ... on UserError { message } }
  }
`;
const CANCEL = /* GraphQL */ `
  mutation ($id: ID!) {
    cancelJob(queue: "demo", id: $id, reason: "stop") { __typename ... on JobActionSuccess { job { state } } ... on UserError { message } }
  }
`;
const JOB_EVENTS = /* GraphQL */ `
  subscription ($queue: String!, $id: ID!) {
    jobEvents(queue: $queue, id: $id) { id type progress failedReason job { state result failedReason } }
  }
`;

interface Event {
  type: string;
  progress: unknown;
  failedReason: string | null;
  job: { state: string; result: unknown; failedReason: string | null } | null;
}

describe("REDIS_CLUSTER_NODES config", () => {
  it("parses a comma-separated host:port list", () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-b:7001,[::1]:7002" }).redisClusterNodes).toEqual([
      { host: "10.0.0.1", port: 7000 },
      { host: "redis-b", port: 7001 },
      { host: "::1", port: 7002 },
    ]);
    expect(loadConfig({}).redisClusterNodes).toBeUndefined();
  });

  it.each([["10.0.0.1"], ["10.0.0.1:7000,"], ["redis://10.0.0.1:7000"], ["10.0.0.1:99999"], ["a:1 b:2"]])(
    "refuses %j with one line naming the variable",
    (value) => {
      const lines = configProblems({ REDIS_CLUSTER_NODES: value });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^REDIS_CLUSTER_NODES: REDIS_CLUSTER_NODES must be a comma-separated list of host:port/);
      expect(lines[0]?.endsWith(`(got ${JSON.stringify(value)})`)).toBe(true);
    },
  );

  it("takes the nodes' user and password from REDIS_CLUSTER_USERNAME / _PASSWORD, and refuses them without nodes", () => {
    const env = { REDIS_CLUSTER_NODES: "10.0.0.1:7000", REDIS_CLUSTER_USERNAME: "jobs", REDIS_CLUSTER_PASSWORD: "s3cret" };
    expect(loadConfig(env).redisClusterAuth).toEqual({ username: "jobs", password: "s3cret" });
    const lines = configProblems({ REDIS_CLUSTER_PASSWORD: "s3cret", REDIS_CLUSTER_USERNAME: "jobs" });
    expect(lines).toEqual([
      "REDIS_CLUSTER_USERNAME: only used with REDIS_CLUSTER_NODES; one Redis takes its credentials in REDIS_URL (redis://user:password@host:6379)",
      "REDIS_CLUSTER_PASSWORD: only used with REDIS_CLUSTER_NODES; one Redis takes its credentials in REDIS_URL (redis://user:password@host:6379)",
    ]);
    expect(lines.join("\n")).not.toContain("s3cret");
  });

  it("refuses a QUEUE_PREFIX without a hash tag on a cluster (a queue's keys would span slots)", () => {
    expect(configProblems({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", QUEUE_PREFIX: "jobs" })).toEqual([
      'QUEUE_PREFIX: QUEUE_PREFIX must contain a hash tag such as {jobs} when REDIS_CLUSTER_NODES is set (got "jobs")',
    ]);
    expect(configProblems({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", QUEUE_PREFIX: "{}jobs" })).toHaveLength(1);
    // Without a cluster any prefix goes, as before.
    expect(loadConfig({ QUEUE_PREFIX: "jobs" }).queuePrefix).toBe("jobs");
  });

  it("stops the worker at start with one clear line and no stack trace", async () => {
    const proc = await startProcess("workers/main.ts", { REDIS_CLUSTER_NODES: "localhost" }, null);
    expect(await proc.exited).toBe(1);
    expect(proc.stderr().trim().split("\n")).toEqual([
      'config error: REDIS_CLUSTER_NODES: REDIS_CLUSTER_NODES must be a comma-separated list of host:port (e.g. 10.0.0.1:7000,10.0.0.2:7000) (got "localhost")',
    ]);
  });
});

/** The test cluster's nodes require this password (requirepass), from clients and from each other. */
const PASSWORD = "cluster-secret";

describe("on a Redis Cluster", () => {
  let cluster: PrivateRedisCluster;
  let api: TestApi;
  let worker: RunningProcess;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const prefix = uniquePrefix();
  const open: Collected<unknown>[] = [];

  beforeAll(async () => {
    [cluster, db] = await Promise.all([startPrivateRedisCluster({ password: PASSWORD }), createTestDatabase()]);
    // REDIS_URL points nowhere: were anything to ignore REDIS_CLUSTER_NODES, it would fail loudly.
    const env = {
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.nodes,
      REDIS_CLUSTER_PASSWORD: PASSWORD,
      REDIS_URL: "redis://127.0.0.1:1",
      QUEUE_PREFIX: prefix,
    };
    [api, worker] = await Promise.all([startTestApi(env), startWorker(env)]);
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  afterAll(async () => {
    // A clean exit: the worker closes its cluster connections (BullMQ's duplicates included) on SIGTERM.
    if (worker) expect(await worker.stop()).toBe(0);
    await api?.stop();
    expect(await killAll()).toEqual([]);
    await cluster?.destroy();
    await db?.drop();
  });

  const enqueue = (name: string, data: unknown, extra: Record<string, unknown> = {}) => enqueueDemo(api.url, name, data, extra);

  function eventsOf(sub: Collected<unknown>): Event[] {
    return sub.results.map((r) => {
      expect(r.errors).toBeUndefined();
      return (r.data as { jobEvents: Event }).jobEvents;
    });
  }

  async function untilRow<T>(sql: string, params: unknown[]): Promise<T> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await until(
        `a row for ${sql} ${JSON.stringify(params)}`,
        async () => (await client.query(sql, params)).rows[0],
        (row) => row !== undefined,
      )) as T;
    } finally {
      await client.end();
    }
  }

  it("is ready, with Redis answering through the cluster, whose nodes refuse clients without the password", async () => {
    // Ready once its probes answer in time (each gets 1 s; a loaded machine may need a second try).
    await until(
      "/readyz says ready",
      async () => (await fetch(api.url.replace("/graphql", "/readyz"))).status,
      (s) => s === 200,
    );
    const port = String(cluster.ports[0]);
    expect(await redisCli(["-p", port, "ping"])).toMatch(/NOAUTH/);
    expect(await redisCli(["-p", port, "-a", PASSWORD, "--no-auth-warning", "ping"])).toBe("PONG");
  });

  it("runs a demo.sleep job and streams SNAPSHOT, PROGRESS and COMPLETED over graphql-ws", async () => {
    const id = await enqueue("sleep", { steps: 4, stepMs: 150 });
    const sub = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await sub.done;
    const events = eventsOf(sub);
    expect(events[0]?.type).toBe("SNAPSHOT");
    expect(events.filter((e) => e.type === "PROGRESS").map((e) => e.progress)).toEqual(expect.arrayContaining([100]));
    expect(events.at(-1)).toMatchObject({ type: "COMPLETED", job: { state: "COMPLETED", result: { steps: 4 } } });
    const row = await untilRow<{ state: string }>(
      "SELECT state FROM job_history WHERE queue = 'demo' AND id = $1 AND state = 'COMPLETED'",
      [id],
    );
    expect(row.state).toBe("COMPLETED");
  });

  it("writes a failed demo.fail job's audit row through the ledger", async () => {
    // The queue's FAILED events, watched before the job exists: its event arrives live whenever it
    // runs (a delay before it ran was a race lost under load).
    const sub = await subscribeWs(
      api.url,
      `subscription { queueEvents(queue: "demo", types: [FAILED]) { jobId type failedReason job { state } } }`,
    );
    open.push(sub);
    await until("the subscription listens", () => api.runtime.channels.listenerCount(channels.queue(prefix, "demo")) > 0);
    const id = await enqueue("fail", { message: "cluster says no" });
    const failed = await until(
      "the job's FAILED event",
      () => sub.results.map((r) => (r.data as { queueEvents: Event & { jobId: string } }).queueEvents).find((e) => e.jobId === id),
      (e) => e !== undefined,
    );
    expect(failed).toMatchObject({ type: "FAILED", failedReason: "cluster says no", job: { state: "FAILED" } });
    const audit = await untilRow<Record<string, unknown>>(
      "SELECT queue, job_name, failed_reason, attempts_made FROM failed_job_audit WHERE job_id = $1",
      [id],
    );
    expect(audit).toEqual({ queue: "demo", job_name: "fail", failed_reason: "cluster says no", attempts_made: 1 });
  });

  it("cancels an active job in the worker process (job mark, control channel, CANCELLED event)", async () => {
    const id = await enqueue("sleep", { steps: 50, stepMs: 100 });
    const sub = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await until("a PROGRESS event", () => eventsOf(sub).some((e) => e.type === "PROGRESS"));
    const { body } = await gql(api.url, CANCEL, { id });
    expect(body.data?.cancelJob).toEqual({ __typename: "JobActionSuccess", job: { state: "CANCELLED" } });
    await sub.done;
    expect(eventsOf(sub).at(-1)).toMatchObject({ type: "CANCELLED", job: { state: "CANCELLED" } });
  });

  it("keeps every key it made under the hash-tagged prefix, so all of them share one slot", async () => {
    const client = new Cluster(
      cluster.ports.map((port) => ({ host: "127.0.0.1", port })),
      { redisOptions: { password: PASSWORD } },
    );
    try {
      await new Promise((resolve) => client.once("ready", resolve)); // nodes() is empty until then
      const keys: string[] = [];
      for (const node of client.nodes("master")) {
        let cursor = "0";
        do {
          const [next, batch] = await node.scan(cursor, "COUNT", 1000);
          cursor = next;
          keys.push(...batch);
        } while (cursor !== "0");
      }
      // The relay's lease and position, the ledger's reconcile marks and BullMQ's own keys at least.
      expect(keys).toEqual(expect.arrayContaining([`${prefix}:relay:demo:leader`, `${prefix}:relay:demo:position`, `${prefix}:demo:meta`]));
      expect(keys.filter((k) => !k.startsWith(`${prefix}:`))).toEqual([]);
      const slots = new Set(await Promise.all(keys.map((k) => client.cluster("KEYSLOT", k))));
      expect(slots.size).toBe(1);
    } finally {
      client.disconnect();
    }
    // Nothing reached the shared single Redis either.
    expect(await deletePrefix(prefix)).toBe(0);
  });
});
