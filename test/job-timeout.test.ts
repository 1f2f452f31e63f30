import { type Job, Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { demoSleep } from "../src/jobs/definitions/demo-sleep.ts";
import { createRegistry, defaultDefinitions } from "../src/jobs/registry.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { enqueueDemo, gql } from "../src/testing/graphql.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";
import { defineProcessor, type Processor } from "../workers/processor.ts";
import { processors } from "../workers/processors/index.ts";
import { resolveQueueSettings } from "../workers/queue-settings.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

// Per-queue job timeouts: a definition's `timeoutMs` or WORKER_TIMEOUT_MS_<QUEUE> aborts the
// processor's signal and fails the attempt "timed out after N ms", retried like any failure; a
// processor that ignores the signal is ended after CANCEL_GRACE_MS, as a cancel would.

/** The job once BullMQ has finished it (completed or failed for good). */
function finished(queue: Queue, id: string): Promise<Job> {
  return until(
    `job ${id} finished`,
    () => queue.getJob(id),
    (j) => j?.finishedOn != null,
  ) as Promise<Job>;
}

describe("WORKER_TIMEOUT_MS_<QUEUE> on a worker process", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ workerEnv: { WORKER_QUEUES: "demo", WORKER_TIMEOUT_MS_DEMO: "300" } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("fails an attempt that runs too long with the reason, retries it, and records the final failure", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 1, stepMs: 60_000 }, { attempts: 2 });
    const job = await finished(stack.queue, id);
    expect(job.failedReason).toBe("timed out after 300 ms");
    // Retried once (two attempts), each ended by the timeout rather than the 60 s sleep.
    expect(job.attemptsMade).toBe(2);
    expect(await job.getState()).toBe("failed");
    const { body } = await gql<{ job: { state: string; failedReason: string } }>(
      stack.api.url,
      `{ job(queue: "demo", id: "${id}") { state failedReason } }`,
    );
    expect(body.data?.job).toEqual({ state: "FAILED", failedReason: "timed out after 300 ms" });
    const audits = await until(
      "the audit row",
      async () =>
        (
          await gql<{ failedJobAudits: { edges: { node: { failedReason: string; attemptsMade: number } }[] } }>(
            stack.api.url,
            `{ failedJobAudits(queue: "demo", jobId: "${id}") { edges { node { failedReason attemptsMade } } } }`,
          )
        ).body.data?.failedJobAudits.edges ?? [],
      (e) => e.length === 1,
    );
    expect(audits[0]?.node).toEqual({ failedReason: "timed out after 300 ms", attemptsMade: 2 });
  });

  it("leaves a job that finishes in time alone", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 2, stepMs: 10 });
    const job = await finished(stack.queue, id);
    expect(job.failedReason ?? null).toBeNull();
    expect(job.returnvalue).toEqual({ steps: 2 });
  });
});

describe("a definition's timeoutMs, with a processor that ignores its signal", () => {
  const prefix = uniquePrefix();
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let queue: Queue;
  const runtimes: WorkerRuntime[] = [];
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let returned = 0;
  // demo.sleep with a 200 ms timeout, and a processor that never looks at its AbortSignal.
  const definition = { ...demoSleep, defaults: { ...demoSleep.defaults, timeoutMs: 200 } };
  const stubborn = defineProcessor(definition, async ({ steps }) => {
    await released;
    returned++;
    return { steps };
  });

  async function start(extra: Record<string, string>): Promise<void> {
    const config = loadConfig({
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      WORKER_QUEUES: "demo",
      CANCEL_GRACE_MS: "300",
      LOG_LEVEL: "silent",
      ...extra,
    });
    const own = processors.filter((p) => p.definition !== demoSleep);
    runtimes.push(await createWorkerRuntime(config, createLogger("silent"), [stubborn as unknown as Processor, ...own]));
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
  });
  afterAll(async () => {
    release();
    for (const r of runtimes) await r.stop();
    await queue?.close();
    await deletePrefix(prefix);
    await db?.drop();
  });

  it("ends the attempt after the grace period, timed out, while the processor is still running", async () => {
    await start({});
    const added = await queue.add("sleep", { steps: 1, stepMs: 1 }, { attempts: 1 });
    const job = await finished(queue, String(added.id));
    expect(job.failedReason).toBe("timed out after 200 ms");
    expect(returned).toBe(0);
    // Not before the timeout and the grace period.
    expect((job.finishedOn as number) - (job.processedOn as number)).toBeGreaterThanOrEqual(500);
    await runtimes
      .pop()
      ?.stop()
      .catch(() => {});
  });

  it("WORKER_TIMEOUT_MS_<QUEUE> beats the definition's timeoutMs", async () => {
    await start({ WORKER_TIMEOUT_MS_DEMO: "250" });
    const added = await queue.add("sleep", { steps: 1, stepMs: 1 }, { attempts: 1 });
    const job = await finished(queue, String(added.id));
    expect(job.failedReason).toBe("timed out after 250 ms");
  });
});

describe("WORKER_TIMEOUT_MS_<QUEUE> values", () => {
  it("refuses what is not a whole number of milliseconds from 1 to 2147483647, naming the variable", () => {
    for (const bad of ["abc", "0", "-5", "1e3", "2.5", "2147483648", "9".repeat(400)]) {
      try {
        loadConfig({ WORKER_TIMEOUT_MS_DEMO: bad });
        expect.unreachable(`accepted ${bad}`);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).problems).toEqual([
          `WORKER_TIMEOUT_MS_DEMO: WORKER_TIMEOUT_MS_DEMO must be milliseconds from 1 to 2147483647 (got ${JSON.stringify(bad)})`,
        ]);
      }
    }
    expect(loadConfig({ WORKER_TIMEOUT_MS_MAIL_OUT: "2147483647" }).queueTimeoutMs).toEqual({ MAIL_OUT: 2147483647 });
  });

  it("refuses one for a queue nobody registered, and sets it on the queue's settings", () => {
    const registry = createRegistry(defaultDefinitions({ demoQueue: true }));
    expect(() => resolveQueueSettings(loadConfig({ WORKER_TIMEOUT_MS_NOPE: "100" }), registry)).toThrow(
      /WORKER_TIMEOUT_MS_NOPE: no registered queue/,
    );
    const settings = resolveQueueSettings(loadConfig({ WORKER_TIMEOUT_MS_DEMO: "100" }), registry);
    expect(settings.find((s) => s.queue === "demo")?.timeoutMs).toBe(100);
    expect(settings.find((s) => s.queue === "webhook")?.timeoutMs).toBeUndefined();
  });
});
