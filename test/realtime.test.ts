import { spawn } from "node:child_process";
import path from "node:path";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { type Collected, enqueueDemo, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { killAll, type RunningProcess, startApi, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// Subscriptions that never silently miss: through real listening API instances, a real worker
// process and real Redis.

const JOB_EVENTS = `subscription ($id: ID!, $since: String) {
  jobEvents(queue: "demo", id: $id, since: $since) { id type progress resync job { state progress } } }`;

interface Ev {
  id: string;
  type: string;
  progress: unknown;
  resync: boolean;
  job: { state: string; progress: unknown } | null;
}

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let env: Record<string, string>;
let api: TestApi;
let worker: RunningProcess;
let queue: Queue;
const open: Collected<unknown>[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, RELAY_LEASE_MS: "1000" };
  [api, worker] = await Promise.all([startTestApi(env), startWorker({ ...env, WORKER_CONCURRENCY: "20" })]);
  // Same stream length as the API and worker: every Queue writes it to the queue's settings.
  queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await queue?.close();
  await worker?.stop();
  await api?.stop();
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db?.drop();
});

const enqueue = enqueueDemo;

const events = (sub: Collected<unknown>): Ev[] =>
  sub.results.map((r) => {
    if (r.errors) throw new Error(JSON.stringify(r.errors));
    return (r.data as { jobEvents: Ev }).jobEvents;
  });

/** Progress values of `steps` steps, as demo.sleep reports them. */
const allSteps = (steps: number) => Array.from({ length: steps }, (_, i) => Math.round((100 * (i + 1)) / steps));

describe("jobEvents", () => {
  it("snapshot then live, with no gap, when subscribing while progress is flowing", async () => {
    const id = await enqueue(api.url, "sleep", { steps: 20, stepMs: 60 });
    await until(
      "progress 25",
      async () => Number((await queue.getJob(id))?.progress ?? 0),
      (p) => p >= 25,
    );
    const sub = await subscribeWs(api.url, JOB_EVENTS, { id });
    open.push(sub);
    await sub.done;
    const [snapshot, ...rest] = events(sub);
    expect(snapshot?.type).toBe("SNAPSHOT");
    const seen = Number(snapshot?.job?.progress ?? 0);
    expect(seen).toBeGreaterThanOrEqual(25);
    expect(rest.filter((e) => e.type === "PROGRESS").map((e) => e.progress)).toEqual(allSteps(20).filter((p) => p > seen));
    expect(rest.at(-1)?.type).toBe("COMPLETED");
  });

  it("gives the same event sequence over SSE and WebSocket", async () => {
    // The queue is paused until both subscriptions are live, so both see the whole run.
    await queue.pause();
    const id = await enqueue(api.url, "sleep", { steps: 6, stepMs: 40 });
    const ws = await subscribeWs(api.url, JOB_EVENTS, { id });
    const sse = await subscribeSse(api.url, JOB_EVENTS, { id });
    open.push(ws, sse);
    await Promise.all([ws.waitFor(1), sse.waitFor(1)]);
    await queue.resume();
    await Promise.all([ws.done, sse.done]);
    const strip = (list: Ev[]) => list.filter((e) => e.type !== "SNAPSHOT").map((e) => [e.id, e.type, e.progress]);
    expect(strip(events(sse))).toEqual(strip(events(ws)));
    expect(strip(events(ws)).map((e) => e[1])).toEqual([
      "ACTIVE",
      "PROGRESS",
      "PROGRESS",
      "PROGRESS",
      "PROGRESS",
      "PROGRESS",
      "PROGRESS",
      "COMPLETED",
    ]);
  });

  it("announces a resync with a fresh SNAPSHOT when `since` is older than the stream still holds", async () => {
    // Its own queue prefix, API and worker, with an events stream kept to about 50 entries.
    const short = { ...env, QUEUE_PREFIX: uniquePrefix(), EVENTS_MAX_LEN: "50" };
    const [api, worker] = await Promise.all([startTestApi(short), startWorker(short)]);
    try {
      await resyncScenario(api);
    } finally {
      // This API stops before afterEach runs: close its subscriptions first.
      await Promise.all(open.splice(0).map((sub) => sub.close()));
      await Promise.all([worker.stop(), api.stop()]);
      await deletePrefix(short.QUEUE_PREFIX);
    }
  });

  it("completes at once, with nothing, when `since` is at or past the job's end", async () => {
    const id = await enqueue(api.url, "sleep", { steps: 1, stepMs: 0 });
    const sub = await subscribeWs(api.url, JOB_EVENTS, { id });
    open.push(sub);
    await sub.done;
    const resumed = await subscribeWs(api.url, JOB_EVENTS, { id, since: events(sub).at(-1)?.id });
    open.push(resumed);
    await resumed.done;
    expect(resumed.results).toEqual([]);
  });
});

/** A finished job's events trimmed away by 300 later ones; resuming from before them resyncs. */
async function resyncScenario(api: TestApi) {
  {
    const first = await enqueue(api.url, "sleep", { steps: 1, stepMs: 0 });
    const early = await subscribeWs(api.url, JOB_EVENTS, { id: first });
    open.push(early);
    await early.done;
    const since = events(early)[0]?.id as string;
    // 300 events through a stream kept to about 50: the ones after `since` are trimmed away.
    const busy = await enqueue(api.url, "sleep", { steps: 300, stepMs: 0 });
    const done = await subscribeWs(api.url, JOB_EVENTS, { id: busy });
    open.push(done);
    await done.done;
    const resumed = await subscribeWs(api.url, JOB_EVENTS, { id: first, since });
    open.push(resumed);
    await resumed.done;
    expect(events(resumed)).toEqual([
      expect.objectContaining({ type: "SNAPSHOT", resync: true, job: expect.objectContaining({ state: "COMPLETED" }) }),
    ]);
  }
}

describe("many API instances", () => {
  it("two instances, subscribers on both: each gets every event of the job exactly once", async () => {
    const second = await startTestApi(env);
    try {
      await queue.pause();
      const id = await enqueue(api.url, "sleep", { steps: 8, stepMs: 40 });
      const subs = await Promise.all([api, second, api, second].map((a) => subscribeWs(a.url, JOB_EVENTS, { id })));
      open.push(...subs);
      await Promise.all(subs.map((s) => s.waitFor(1)));
      await queue.resume();
      await Promise.all(subs.map((s) => s.done));
      const sequences = subs.map((s) =>
        events(s)
          .filter((e) => e.type !== "SNAPSHOT")
          .map((e) => `${e.id}:${e.type}`),
      );
      for (const seq of sequences) {
        expect(new Set(seq).size).toBe(seq.length);
        expect(seq).toEqual(sequences[0]);
      }
      expect(sequences[0]?.filter((s) => s.endsWith(":PROGRESS"))).toHaveLength(8);
      // One relay for the queue, whichever instance holds the lease.
      const redis = new Redis(testRedisUrl);
      expect(await redis.exists(`${bullPrefix(prefix, "demo")}:relay:demo:leader`)).toBe(1);
      redis.disconnect();
    } finally {
      await second.stop();
    }
  });

  it("an API instance killed mid-job: its client resumes on another with `since` and misses nothing", async () => {
    // A separate API process that holds the relay lease, so killing it also kills the relay.
    await api.stop();
    const doomed = await startApi(env);
    const doomedUrl = /GraphQL API ready at (\S+)/.exec(doomed.stdout())?.[1] as string;
    api = await startTestApi(env);
    const id = await enqueue(doomedUrl, "sleep", { steps: 30, stepMs: 100 });
    const first = await subscribeWs(doomedUrl, JOB_EVENTS, { id });
    await first.waitFor(4);
    await doomed.stop("SIGKILL");
    await first.done.catch(() => undefined);
    await first.close();
    const before = events(first);
    const since = before.at(-1)?.id as string;
    const resumed = await subscribeWs(api.url, JOB_EVENTS, { id, since });
    open.push(resumed);
    await resumed.done;
    const after = events(resumed);
    expect(after.map((e) => e.type)).not.toContain("SNAPSHOT");
    expect(after.at(-1)?.type).toBe("COMPLETED");
    const seen = Number(before[0]?.job?.progress ?? 0);
    const progress = [...before.slice(1), ...after].filter((e) => e.type === "PROGRESS").map((e) => e.progress);
    expect(progress).toEqual(allSteps(30).filter((p) => p > seen));
  });
});

describe("slow subscribers", () => {
  it("a subscriber that stops reading is cut off (4008) while a fast one gets every event", async () => {
    const limited = await startTestApi({
      ...env,
      SUBSCRIBER_MAX_BUFFER: "1000",
      WS_SLOW_CONSUMER_MS: "1000",
    });
    const query = `subscription { queueEvents(queue: "demo", types: [FAILED]) { id job { data failedReason } } }`;
    try {
      const fast = await subscribeWs(limited.url, query);
      open.push(fast);
      // The slow one: a client (see the fixture) whose socket receive buffer is tiny and who stops
      // reading once subscribed, so the server sees backpressure after a few KB, not megabytes.
      const port = new URL(limited.url).port;
      const slow = spawn("python3", [path.join(import.meta.dirname, "fixtures/slow-ws-client.py"), port, "/graphql", "6", query]);
      let slowOut = "";
      slow.stdout.on("data", (d) => {
        slowOut += d;
      });
      slow.stderr.on("data", (d) => {
        slowOut += d;
      });
      const slowDone = new Promise((resolve) => slow.on("exit", resolve));
      await until("the slow client subscribed", () => slowOut.includes("subscribed"));
      expect(slowOut).toContain("subscribed");
      // 500 failures of ~20 KB each (payload + reason): about 10 MB for each subscriber.
      const message = "x".repeat(10_000);
      const inputs = Array.from({ length: 500 }, () => ({ queue: "demo", name: "fail", data: { message } }));
      const { body } = await gql(limited.url, `mutation ($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { __typename } }`, {
        inputs,
      });
      expect(body.data).toEqual({ enqueueJobs: { __typename: "EnqueueJobsSuccess" } });
      await fast.waitFor(500, 45_000);
      await slowDone;
      // It got some events before the server stopped sending, then the slow-consumer close.
      const [, received, code] = /messages (\d+) close (\d+|None)/.exec(slowOut) ?? [];
      expect(code, slowOut).toBe("4008");
      expect(Number(received)).toBeLessThan(500);
      const ids = fast.results.map((r) => (r.data as { queueEvents: { id: string } }).queueEvents.id);
      expect(new Set(ids).size).toBe(500);
    } finally {
      await limited.stop();
    }
  });
});
