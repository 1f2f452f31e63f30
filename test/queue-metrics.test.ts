import { type Job, Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/infra/logger.ts";
import { createRedis } from "../src/infra/redis.ts";
import { keySpace, QueueSet } from "../src/jobs/bullmq/index.ts";
import { createRegistry, defaultDefinitions } from "../src/jobs/registry.ts";
import { QueueMetrics } from "../src/server/queue-metrics.ts";
import { subscribeWs } from "../src/testing/graphql.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";

// The API's /metrics: queue gauges read from Redis at scrape time (cached ~1 s), the relay's and the
// subscriptions' numbers, and the HTTP request counter. The counts must equal what BullMQ reports.

let stack: TestStack;

beforeAll(async () => {
  // No worker process: the test's own BullMQ Worker makes the states it wants.
  stack = await startTestStack({ worker: false });
});

afterAll(async () => {
  await stack?.stop();
});

async function scrape(): Promise<string> {
  const res = await stack.api.app.fetch(new Request("http://test/metrics"));
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one sample (`name{labels}`), or undefined when the scrape has none. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Scrapes until `series` satisfies `ok`; returns its value then. */
function untilSample(series: string, ok: (n: number | undefined) => boolean): Promise<number | undefined> {
  return until(series, async () => sample(await scrape(), series), ok);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("queue metrics on the API's /metrics", () => {
  it("after a known sequence, jobs by state, workers and the oldest waiting age equal what BullMQ reports", async () => {
    const queue = stack.queue;
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    // One worker of concurrency 1: "fail" jobs fail for good, the "sleep" job holds it (active).
    const worker = new Worker(
      "demo",
      async (job: Job) => {
        if (job.name === "fail") throw new Error("boom");
        await blocked;
        return null;
      },
      { connection: { url: testRedisUrl, maxRetriesPerRequest: null }, prefix: bullPrefix(stack.prefix, "demo"), concurrency: 1 },
    );
    try {
      await worker.waitUntilReady();
      await queue.add("fail", { message: "a" });
      await queue.add("fail", { message: "b" });
      await queue.add("sleep", { steps: 1, stepMs: 1 });
      await until(
        "two failed and one active",
        () => queue.getJobCounts("failed", "active"),
        (c) => c.failed === 2 && c.active === 1,
      );
      // The worker is busy: these stay where they are put.
      const first = await queue.add("noop", {});
      // Apart in time, so the oldest one is told from the others.
      await sleep(100);
      await queue.add("noop", {});
      await queue.add("noop", {});
      await queue.add("noop", {}, { priority: 5 });
      await queue.add("noop", {}, { priority: 1 });
      await queue.add("noop", {}, { delay: 3_600_000 });
      // Past any earlier scrape's cached read.
      await sleep(1_100);

      const before = Date.now();
      const text = await scrape();
      const after = Date.now();
      const counts = await queue.getJobCounts("waiting", "prioritized", "delayed", "active", "failed");
      expect(counts).toEqual({ waiting: 3, prioritized: 2, delayed: 1, active: 1, failed: 2 });
      for (const [state, n] of Object.entries(counts)) expect(sample(text, `queue_jobs{queue="demo",state="${state}"}`)).toBe(n);
      expect(sample(text, 'queue_workers{queue="demo"}')).toBe(await queue.getWorkersCount());
      expect(sample(text, 'queue_workers{queue="demo"}')).toBe(1);
      expect(sample(text, 'queue_paused{queue="demo"}')).toBe(0);
      // Every registered queue is reported, idle ones with zeros.
      expect(sample(text, 'queue_jobs{queue="webhook",state="waiting"}')).toBe(0);
      expect(sample(text, 'queue_workers{queue="webhook"}')).toBe(0);
      expect(sample(text, 'queue_oldest_waiting_seconds{queue="webhook"}')).toBe(0);
      // The oldest waiting job is the first "noop": its age at the time of the read.
      const age = sample(text, 'queue_oldest_waiting_seconds{queue="demo"}') as number;
      expect(age).toBeGreaterThanOrEqual((before - (first.timestamp as number)) / 1000 - 0.001);
      expect(age).toBeLessThanOrEqual((after - (first.timestamp as number)) / 1000 + 0.001);
      expect(sample(text, 'queue_metrics_read_errors_total{queue="demo"}')).toBe(0);
      expect(text).toContain("# TYPE queue_jobs gauge");

      // Paused: the flag, and the counts still equal BullMQ's.
      await queue.pause();
      await sleep(1_100);
      const paused = await scrape();
      expect(sample(paused, 'queue_paused{queue="demo"}')).toBe(1);
      const pausedCounts = await queue.getJobCounts("waiting", "prioritized", "delayed", "active", "failed");
      for (const [state, n] of Object.entries(pausedCounts)) {
        expect(sample(paused, `queue_jobs{queue="demo",state="${state}"}`)).toBe(n);
      }
      await queue.resume();
    } finally {
      release();
      await worker.close();
    }
    // The worker closed: no worker for the queue.
    await untilSample('queue_workers{queue="demo"}', (n) => n === 0);
  });

  it("counts events relayed by this instance (the relay leader) and subscriptions open", async () => {
    const text = await scrape();
    expect(sample(text, 'event_relay_leader{queue="demo"}')).toBe(1);
    const relayedBefore = sample(text, 'events_relayed_total{queue="demo"}') as number;
    expect(relayedBefore).toBeGreaterThan(0);
    expect(sample(text, "subscriptions_open")).toBe(0);

    // From the stream's current end (`since`): a subscription without it starts where the stream is
    // once it is set up, which is after it counts as open, so an event right then could be before it.
    const redis = new Redis(testRedisUrl);
    const tail = (await redis.xrevrange(`${bullPrefix(stack.prefix, "demo")}:demo:events`, "+", "-", "COUNT", 1))[0]?.[0] ?? "0-0";
    await redis.quit();
    const sub = await subscribeWs(
      stack.api.url,
      'subscription ($since: String) { queueEvents(queue: "demo", since: $since) { id type } }',
      {
        since: tail,
      },
    );
    await untilSample("subscriptions_open", (n) => n === 1);
    // No worker runs now: the job stays waiting, its WAITING event reaches the subscriber.
    await stack.queue.add("noop", {});
    await sub.waitFor(1);
    const relayed = (await untilSample('events_relayed_total{queue="demo"}', (n) => (n ?? 0) > relayedBefore)) as number;
    expect(relayed).toBeGreaterThanOrEqual(relayedBefore + 1);
    await sub.close();
    await untilSample("subscriptions_open", (n) => n === 0);
  });

  it("counts HTTP responses by route and status", async () => {
    await stack.api.app.fetch(
      new Request("http://test/graphql", { method: "POST", body: "{not json", headers: { "content-type": "application/json" } }),
    );
    await stack.api.app.fetch(new Request("http://test/nowhere/../x?y=1"));
    await stack.api.app.fetch(new Request("http://test/healthz"));
    const text = await scrape();
    expect(sample(text, 'api_http_requests_total{route="graphql",status="400"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'api_http_requests_total{route="healthz",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'api_http_requests_total{route="other",status="404"}')).toBeGreaterThanOrEqual(1);
    // The scrapes themselves are counted.
    expect(sample(text, 'api_http_requests_total{route="metrics",status="200"}')).toBeGreaterThanOrEqual(1);
  });
});

/** QueueMetrics over `redisUrl` alone (no relay, no subscriptions), for its cache and error paths. */
function standalone(redisUrl: string, prefix: string, cacheMs: number) {
  const registry = createRegistry(defaultDefinitions({ demoQueue: true }));
  // Fails at once when Redis is not there, rather than retrying.
  const redis = createRedis({ redisUrl, redisClusterNodes: undefined, redisClusterAuth: {} }, "request", { retryStrategy: () => null });
  redis.on("error", () => {});
  const queues = new QueueSet(registry, redis, keySpace(prefix));
  const base = {
    queues,
    redis,
    names: ["demo"],
    relay: { relayedCount: () => 0, isLeader: () => false },
    channels: { listenerTotal: () => 0 },
    log: createLogger("silent", {}),
  };
  return {
    metrics: new QueueMetrics({ ...base, cacheMs }),
    close: async () => {
      await queues.close().catch(() => {});
      redis.disconnect();
    },
  };
}

describe("QueueMetrics cache", () => {
  it("serves one Redis read to every scrape within cacheMs, and reads again after it", async () => {
    const prefix = `${stack.prefix}-cache`;
    const direct = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    const a = standalone(testRedisUrl, prefix, 60_000);
    const b = standalone(testRedisUrl, prefix, 0);
    const cached = a.metrics;
    const fresh = b.metrics;
    try {
      expect((await cached.read()).get("demo")?.counts.waiting).toBe(0);
      await direct.add("noop", {});
      expect((await cached.read()).get("demo")?.counts.waiting).toBe(0);
      expect((await fresh.read()).get("demo")?.counts.waiting).toBe(1);
      expect(await cached.registry.metrics()).toContain('queue_jobs{queue="demo",state="waiting"} 0');
      expect(await fresh.registry.metrics()).toContain('queue_jobs{queue="demo",state="waiting"} 1');
    } finally {
      await direct.obliterate({ force: true });
      await direct.close();
      await a.close();
      await b.close();
    }
  });

  it("leaves out a queue it cannot read and counts the error, instead of failing the scrape", async () => {
    // Nothing listens on port 1: every read fails at once.
    const { metrics, close } = standalone("redis://127.0.0.1:1", "unreachable", 0);
    try {
      const text = await metrics.registry.metrics();
      expect(text).not.toContain('queue_jobs{queue="demo"');
      expect(sample(text, 'queue_metrics_read_errors_total{queue="demo"}')).toBeGreaterThanOrEqual(1);
    } finally {
      await close();
    }
  });
});
