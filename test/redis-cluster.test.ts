import { Cluster } from "ioredis";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { channels, keySpace, keys, queuePrefix } from "../src/jobs/bullmq/index.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { configProblems } from "../src/testing/config.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { type Collected, gql, subscribeWs } from "../src/testing/graphql.ts";
import { type PrivateRedisCluster, redisCli, startPrivateRedisCluster } from "../src/testing/private-redis-cluster.ts";
import { killAll, type RunningProcess, startProcess } from "../src/testing/processes.ts";
import { deletePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// The API and a worker process on a Redis Cluster of their own (REDIS_CLUSTER_NODES): three queues
// on three masters (per-queue key layout), each running jobs, streaming progress, cancelling, writing
// through the ledger and recovered by the reconciler; then one master killed and its replica promoted.

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

  it("refuses a QUEUE_PREFIX without a hash tag on a cluster with the single layout only (per-queue makes a tag per queue)", () => {
    expect(configProblems({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", REDIS_KEY_LAYOUT: "single", QUEUE_PREFIX: "jobs" })).toEqual([
      'QUEUE_PREFIX: QUEUE_PREFIX must contain a hash tag such as {jobs} when REDIS_CLUSTER_NODES is set with REDIS_KEY_LAYOUT=single (got "jobs")',
    ]);
    expect(configProblems({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", REDIS_KEY_LAYOUT: "single", QUEUE_PREFIX: "{}jobs" })).toHaveLength(1);
    expect(loadConfig({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", QUEUE_PREFIX: "jobs" }).redisKeyLayout).toBe("per-queue");
    expect(loadConfig({ QUEUE_PREFIX: "jobs" }).queuePrefix).toBe("jobs");
    expect(loadConfig({}).redisKeyLayout).toBe("per-queue");
    for (const bad of ["perqueue", "SINGLE", "per-queue,single", "x".repeat(10_000)]) {
      expect(configProblems({ REDIS_KEY_LAYOUT: bad })).toEqual([
        `REDIS_KEY_LAYOUT: REDIS_KEY_LAYOUT must be per-queue or single (got ${JSON.stringify(bad)})`,
      ]);
    }
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
/**
 * Fixed rather than unique (the cluster is this file's own): with it the three queues' tags
 * (`{cluster-test:demo}`, `...:mail}`, `...:invoices}`) hash to slots of three different masters of
 * a 3-master cluster, which the first test checks with CLUSTER KEYSLOT / CLUSTER NODES.
 */
const PREFIX = "{cluster-test}";
const QUEUES = ["demo", "mail", "invoices"];
const space = keySpace(PREFIX);

describe("queues spread over a Redis Cluster (3 masters, a replica each; per-queue key layout)", () => {
  let cluster: PrivateRedisCluster;
  let api: TestApi;
  let worker: RunningProcess;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  /** Our own cluster client, for CLUSTER commands and for looking at the keys. */
  let admin: Cluster;
  const open: Collected<unknown>[] = [];

  beforeAll(async () => {
    [cluster, db] = await Promise.all([
      startPrivateRedisCluster({ password: PASSWORD, replicas: 1, nodeTimeoutMs: 2_000 }),
      createTestDatabase(),
    ]);
    // REDIS_URL points nowhere: were anything to ignore REDIS_CLUSTER_NODES, it would fail loudly.
    const env = {
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.nodes,
      REDIS_CLUSTER_PASSWORD: PASSWORD,
      REDIS_URL: "redis://127.0.0.1:1",
      QUEUE_PREFIX: PREFIX,
      JOBS_MODULE: "./test/fixtures/jobs-modules/cluster-queues.ts",
      RECOVERY_INTERVAL_MS: "1000",
      RECOVERY_GRACE_MS: "500",
      LEDGER_RECONCILE_MS: "500",
    };
    // Three queues' worth of cluster connections: on a loaded machine this worker takes longer than 30 s to be ready.
    [api, worker] = await Promise.all([
      startTestApi(env),
      startProcess("workers/main.ts", { WORKER_PORT: "0", ...env }, /serving queues/, 120_000),
    ]);
    admin = new Cluster(
      cluster.ports.map((port) => ({ host: "127.0.0.1", port })),
      { redisOptions: { password: PASSWORD } },
    );
    admin.on("error", () => {});
    await new Promise((resolve) => admin.once("ready", resolve)); // nodes() is empty until then
  }, 240_000);

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  afterAll(async () => {
    admin?.disconnect();
    // A clean exit: the worker closes its cluster connections (BullMQ's duplicates included) on SIGTERM.
    if (worker) expect(await worker.stop()).toBe(0);
    await api?.stop();
    expect(await killAll()).toEqual([]);
    await cluster?.destroy();
    await db?.drop();
  });

  const ENQUEUE_ON = /* GraphQL */ `
    mutation ($input: EnqueueJobInput!) {
      enqueueJob(input: $input) { __typename ... on EnqueueJobSuccess { job { id } } ... on UserError { message } }
    }
  `;
  const CANCEL_ON = /* GraphQL */ `
    mutation ($queue: String!, $id: ID!) {
      cancelJob(queue: $queue, id: $id, reason: "stop") { __typename ... on JobActionSuccess { job { state } } ... on UserError { message } }
    }
  `;

  /** The job's id once the API acknowledged it (its history row committed: ENQUEUE_ACK=record), else null. */
  async function enqueueOn(queue: string, data: unknown, extra: Record<string, unknown> = {}): Promise<string | null> {
    try {
      const { body } = await gql<{ enqueueJob: { job?: { id: string } } }>(api.url, ENQUEUE_ON, {
        input: { queue, name: "sleep", data, ...extra },
      });
      return body.data?.enqueueJob.job?.id ?? null;
    } catch {
      return null;
    }
  }

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  function eventsOf(sub: Collected<unknown>): Event[] {
    return sub.results.map((r) => {
      expect(r.errors).toBeUndefined();
      return (r.data as { jobEvents: Event }).jobEvents;
    });
  }

  /** Master nodes by the slots they serve, from CLUSTER NODES as `node` (any live node) sees it. */
  async function masters(port?: number): Promise<{ id: string; port: number; ranges: [number, number][] }[]> {
    const text = port
      ? await redisCli(["-p", String(port), "-a", PASSWORD, "--no-auth-warning", "cluster", "nodes"])
      : ((await admin.cluster("NODES")) as string);
    return text
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
      .filter((f) => f[2]?.split(",").includes("master") && !f[2].includes("fail"))
      .map((f) => ({
        id: f[0] as string,
        port: Number(f[1]?.split("@")[0]?.split(":")[1]),
        ranges: f.slice(8).map((r) => {
          const [a, b] = r.split("-").map(Number);
          return [a as number, (b ?? a) as number];
        }),
      }));
  }

  async function masterOf(queue: string, port?: number): Promise<number | undefined> {
    const slot = Number(await admin.cluster("KEYSLOT", keys.meta(space, queue)));
    return (await masters(port)).find((m) => m.ranges.some(([a, b]) => slot >= a && slot <= b))?.port;
  }

  it("puts the three queues on three different masters", async () => {
    const slots = await Promise.all(QUEUES.map((q) => admin.cluster("KEYSLOT", keys.meta(space, q))));
    expect(new Set(slots).size).toBe(3);
    const owners = await Promise.all(QUEUES.map((q) => masterOf(q)));
    expect(owners.every((p) => typeof p === "number")).toBe(true);
    expect(new Set(owners).size).toBe(3);
    expect((await masters()).length).toBe(3);
  });

  it("runs jobs, streams their progress and cancels them on every queue", async () => {
    await Promise.all(
      QUEUES.map(async (queue) => {
        // The queue's events, watched before the job exists (a job subscribed to after its enqueue may be done by then).
        const sub = await subscribeWs(
          api.url,
          `subscription ($queue: String!) { queueEvents(queue: $queue, types: [PROGRESS, COMPLETED]) { jobId type progress job { state result } } }`,
          { queue },
        );
        open.push(sub);
        await until(`${queue}: the subscription listens`, () => api.runtime.channels.listenerCount(channels.queue(space, queue)) > 0);
        const id = (await enqueueOn(queue, { steps: 3, stepMs: 100 })) as string;
        expect(id).toBeTruthy();
        const mine = () =>
          sub.results.map((r) => (r.data as { queueEvents: Event & { jobId: string } }).queueEvents).filter((e) => e.jobId === id);
        await until(`${queue}: job ${id}'s COMPLETED event`, () => mine().some((e) => e.type === "COMPLETED"));
        expect(
          mine()
            .filter((e) => e.type === "PROGRESS")
            .map((e) => e.progress),
        ).toEqual(expect.arrayContaining([100]));
        expect(mine().at(-1)).toMatchObject({ type: "COMPLETED", job: { state: "COMPLETED", result: { steps: 3 } } });
        // The worker's ledger wrote the final row.
        await until(
          `${queue} job ${id}'s COMPLETED row`,
          async () => (await sql<{ state: string }>("SELECT state FROM job_history WHERE queue = $1 AND id = $2", [queue, id]))[0]?.state,
          (state) => state === "COMPLETED",
        );

        // Cancel: the job's mark and the queue's own control channel reach the worker running it.
        const long = (await enqueueOn(queue, { steps: 100, stepMs: 100 })) as string;
        const watch = await subscribeWs(api.url, JOB_EVENTS, { queue, id: long });
        open.push(watch);
        await until(`${queue}: a PROGRESS event`, () => eventsOf(watch).some((e) => e.type === "PROGRESS"));
        const { body } = await gql(api.url, CANCEL_ON, { queue, id: long });
        expect(body.data?.cancelJob).toEqual({ __typename: "JobActionSuccess", job: { state: "CANCELLED" } });
        await watch.done;
        expect(eventsOf(watch).at(-1)).toMatchObject({ type: "CANCELLED", job: { state: "CANCELLED" } });
      }),
    );
  });

  it("writes a failed demo.fail job's audit row through the ledger", async () => {
    const { body } = await gql<{ enqueueJob: { job?: { id: string } } }>(api.url, ENQUEUE_ON, {
      input: { queue: "demo", name: "fail", data: { message: "cluster says no" } },
    });
    const id = body.data?.enqueueJob.job?.id as string;
    const audit = await until(
      "the audit row",
      async () => (await sql("SELECT queue, job_name, failed_reason, attempts_made FROM failed_job_audit WHERE job_id = $1", [id]))[0],
      (row) => row !== undefined,
    );
    expect(audit).toEqual({ queue: "demo", job_name: "fail", failed_reason: "cluster says no", attempts_made: 1 });
  });

  it("the recovery reconciler puts back a job each queue's shard lost", async () => {
    const lost = await Promise.all(
      QUEUES.map(async (queue) => {
        const id = (await enqueueOn(queue, { steps: 1, stepMs: 0 }, { delayMs: 3_600_000 })) as string;
        expect(id).toBeTruthy();
        // What a shard that came back without the job holds: neither its hash nor its entry in the delayed set.
        await admin.del(keys.job(space, queue, id));
        await admin.zrem(`${queuePrefix(space, queue)}:${queue}:delayed`, id);
        return { queue, id };
      }),
    );
    for (const { queue, id } of lost) {
      await until(
        `${queue} job ${id} back in Redis`,
        () => admin.exists(keys.job(space, queue, id)),
        (n) => n === 1,
      );
      expect(await admin.zscore(`${queuePrefix(space, queue)}:${queue}:delayed`, id)).not.toBeNull();
      const [row] = await sql<{ state: string }>("SELECT state FROM job_recovery WHERE queue = $1 AND job_id = $2", [queue, id]);
      expect(row?.state).toBe("DELAYED");
    }
  });

  it("keeps each queue's keys in the queue's own slot, and the rest under the prefix's tag", async () => {
    const found: string[] = [];
    for (const node of admin.nodes("master")) {
      let cursor = "0";
      do {
        const [next, batch] = await node.scan(cursor, "COUNT", 1000);
        cursor = next;
        found.push(...batch);
      } while (cursor !== "0");
    }
    for (const queue of QUEUES) {
      const own = found.filter((k) => k.startsWith(`${queuePrefix(space, queue)}:`));
      // BullMQ's keys, the relay's lease and position, the ledger's watermark, the recovery epoch at least.
      expect(own).toEqual(
        expect.arrayContaining([
          keys.meta(space, queue),
          keys.relayLease(space, queue),
          keys.relayPosition(space, queue),
          keys.ledgerWatermark(space, queue),
          keys.recoveryEpoch(space, queue),
        ]),
      );
      const slots = new Set(await Promise.all(own.map((k) => admin.cluster("KEYSLOT", k))));
      expect(slots.size).toBe(1);
    }
    // Every registered queue (the product's report and webhook too) has its keys in one slot of its own.
    const all = api.runtime.registry.queues();
    for (const queue of all) {
      const own = found.filter((k) => k.startsWith(`${queuePrefix(space, queue)}:`));
      expect(new Set(await Promise.all(own.map((k) => admin.cluster("KEYSLOT", k)))).size).toBeLessThanOrEqual(1);
    }
    const rest = found.filter((k) => !all.some((q) => k.startsWith(`${queuePrefix(space, q)}:`)));
    expect(rest.filter((k) => !k.startsWith(`${PREFIX}:`))).toEqual([]);
    // Nothing reached the shared single Redis either.
    expect(await deletePrefix(PREFIX)).toBe(0);
  });

  it("runs a flow within one queue; refuses one across queues up front (ValidationError naming each node, the reason and the remedy), writing nothing", async () => {
    const ENQUEUE_FLOW = /* GraphQL */ `
      mutation ($input: FlowInput!) {
        enqueueFlow(input: $input) {
          __typename
          ... on EnqueueFlowSuccess { jobs { id queue state } }
          ... on ValidationError { message issues { path message } }
          ... on UserError { message }
        }
      }
    `;
    type Answer = {
      __typename: string;
      jobs?: { id: string; queue: string; state: string }[];
      issues?: { path: string[]; message: string }[];
    };
    const enqueueFlow = async (input: unknown) => {
      const { body } = await gql<{ enqueueFlow: Answer }>(api.url, ENQUEUE_FLOW, { input });
      expect(body.errors).toBeUndefined();
      return body.data?.enqueueFlow as Answer;
    };
    const sleep = (queue: string, extra: Record<string, unknown> = {}) => ({
      queue,
      name: "sleep",
      data: { steps: 1, stepMs: 10 },
      ...extra,
    });

    // One queue: parent and children in one slot, added in one MULTI, run by the worker.
    const same = await enqueueFlow({
      queue: "demo",
      name: "fanout",
      data: { label: "one slot" },
      children: [sleep("demo"), sleep("demo")],
    });
    expect(same.__typename).toBe("EnqueueFlowSuccess");
    const root = same.jobs?.[0] as { id: string };
    const done = await until(
      `flow root ${root.id} COMPLETED`,
      async () =>
        (
          await sql<{ state: string; result: unknown }>("SELECT state, result FROM job_history WHERE queue = 'demo' AND id = $1", [root.id])
        )[0],
      (row) => row?.state === "COMPLETED",
      { timeoutMs: 60_000 },
    );
    expect(done?.result).toMatchObject({ label: "one slot", children: 2, steps: 2 });

    // Across queues (three slots): refused before anything is written, each node in another slot named.
    const counts = async () => {
      const [row] = await sql<{ jobs: number }>("SELECT count(*)::int AS jobs FROM job_history");
      const waiting = await Promise.all(QUEUES.map((q) => admin.zcard(`${queuePrefix(space, q)}:${q}:waiting-children`)));
      const ids = await Promise.all(QUEUES.map((q) => admin.get(keys.idCounter(space, q))));
      return { jobs: row?.jobs, waiting, ids };
    };
    const before = await counts();
    const cross = await enqueueFlow({
      queue: "demo",
      name: "fanout",
      data: { label: "three slots" },
      children: [sleep("demo"), sleep("mail"), { queue: "demo", name: "fanout", data: {}, children: [sleep("invoices")] }],
    });
    expect(cross.__typename).toBe("ValidationError");
    expect(cross.issues?.map((i) => i.path)).toEqual([
      ["children", "1", "queue"],
      ["children", "2", "children", "0", "queue"],
    ]);
    for (const issue of cross.issues ?? []) {
      expect(issue.message).toMatch(
        /^queue "(mail|invoices)" keeps its keys in another Redis Cluster hash slot than the root's queue "demo"/,
      );
      expect(issue.message).toContain("REDIS_KEY_LAYOUT=per-queue");
      expect(issue.message).toContain(
        "put every job of the flow in the root's queue, or run every API and worker with REDIS_KEY_LAYOUT=single",
      );
      expect(issue.message).not.toContain("CROSSSLOT");
    }
    expect(await counts()).toEqual(before);
  });

  it("loses no acknowledged job of the other queues when one master dies and its replica takes over", async () => {
    const victim = "invoices";
    const others = QUEUES.filter((q) => q !== victim);
    const victimPort = (await masterOf(victim)) as number;
    const acknowledged: { queue: string; id: string }[] = [];
    const enqueueMany = async (n: number) => {
      for (let i = 0; i < n; i++) {
        for (const queue of others) {
          const id = await enqueueOn(queue, { steps: 1, stepMs: 0 });
          if (id) acknowledged.push({ queue, id });
        }
      }
    };
    await enqueueMany(10);
    const beforeKill = acknowledged.length;
    expect(beforeKill).toBe(20);
    await cluster.kill(victimPort);
    // While the cluster notices and promotes the replica (node timeout 2 s), the other shards take jobs.
    await enqueueMany(10);
    const survivor = cluster.ports.find((p) => p !== victimPort) as number;
    await until(
      "the replica promoted",
      () => masterOf(victim, survivor),
      (port) => port !== undefined && port !== victimPort,
      { timeoutMs: 30_000 },
    );
    await enqueueMany(5);
    // Every acknowledged job of the other queues ran: its history row says COMPLETED.
    for (const { queue, id } of acknowledged) {
      await until(
        `${queue} job ${id} COMPLETED`,
        async () => (await sql<{ state: string }>("SELECT state FROM job_history WHERE queue = $1 AND id = $2", [queue, id]))[0]?.state,
        (state) => state === "COMPLETED",
        { timeoutMs: 60_000 },
      );
    }
    expect(acknowledged.length).toBeGreaterThan(beforeKill);
    // And the queue whose master died works again on the promoted replica.
    const id = await until("an enqueue on the failed-over queue", () => enqueueOn(victim, { steps: 1, stepMs: 0 }), Boolean, {
      timeoutMs: 30_000,
    });
    await until(
      `${victim} job ${id} COMPLETED`,
      async () => (await sql<{ state: string }>("SELECT state FROM job_history WHERE queue = $1 AND id = $2", [victim, id]))[0]?.state,
      (state) => state === "COMPLETED",
      { timeoutMs: 60_000 },
    );
  });
});
