import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { defineJob } from "../src/jobs/define-job.ts";
import { createRegistry } from "../src/jobs/registry.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { killAll, startProcess, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";
import { resolveQueueSettings } from "../workers/queue-settings.ts";
import { createWorkerRuntime } from "../workers/worker-runtime.ts";

// Deployable workers: stalled-job recovery after kill -9, the second signal, which queues a worker
// serves and with what concurrency and rate limit.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let env: Record<string, string>;
let queue: Queue;

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, WORKER_QUEUES: "demo" };
  queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
});

afterAll(async () => {
  await queue?.close();
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db?.drop();
});

async function untilState(jobId: string, state: string): Promise<void> {
  await until(
    `job ${jobId} ${state}`,
    () => queue.getJobState(jobId),
    (s) => s === state,
  );
}

describe("stalled jobs and signals", () => {
  it("a job whose worker is killed with kill -9 is finished by another worker, and history has it once", async () => {
    const fast = { ...env, WORKER_LOCK_DURATION_MS: "1000", WORKER_STALLED_INTERVAL_MS: "500" };
    const first = await startWorker(fast);
    const job = await queue.add("sleep", { steps: 10, stepMs: 200 });
    await untilState(String(job.id), "active");
    expect(await first.stop("SIGKILL")).toBe("SIGKILL");

    const second = await startWorker(fast);
    await untilState(String(job.id), "completed");
    expect((await queue.getJob(String(job.id)))?.returnvalue).toEqual({ steps: 10 });
    expect(second.stderr()).toContain("job stalled");
    // Wait for the worker's own history write, then look for duplicates of any kind.
    expect(await second.stop()).toBe(0);
    const rows = await queryRows<{ state: string; result: unknown }>(db.url, "SELECT state, result FROM job_history WHERE id = $1", [
      job.id,
    ]);
    expect(rows).toEqual([{ state: "COMPLETED", result: { steps: 10 } }]);
    expect(await queryRows(db.url, "SELECT * FROM failed_job_audit WHERE job_id = $1", [job.id])).toEqual([]);
  });

  it("a second signal during the grace period exits at once, leaving the job to stalled-job recovery", async () => {
    const worker = await startWorker({ ...env, SHUTDOWN_GRACE_MS: "60000", LOG_LEVEL: "info" });
    const job = await queue.add("sleep", { steps: 100, stepMs: 200 });
    await untilState(String(job.id), "active");
    worker.proc.kill("SIGTERM");
    while (!worker.stderr().includes("stopping: no new jobs")) await new Promise((r) => setTimeout(r, 20));
    expect(await worker.stop("SIGINT")).toBe(1);
    expect(worker.stderr()).toContain("second signal: exiting now");
    expect(await queue.getJobState(String(job.id))).toBe("active");
    await queue.remove(String(job.id)).catch(() => undefined);
  });
});

describe("which queues a worker serves", () => {
  it("serves every registered queue by default, and only WORKER_QUEUES when set", async () => {
    const all = await startWorker({ ...env, WORKER_QUEUES: "" });
    expect(all.stdout()).toMatch(/serving queues: demo, report, webhook;/);
    await all.stop();
    const some = await startWorker({ ...env, WORKER_QUEUES: "report, webhook" });
    expect(some.stdout()).toMatch(/serving queues: report, webhook;/);
    await some.stop();
  });

  it("an unknown queue in WORKER_QUEUES stops the worker at start, naming it", async () => {
    const worker = await startProcess("workers/main.ts", { ...env, WORKER_PORT: "0", WORKER_QUEUES: "demo,nope" }, null);
    expect(await worker.exited).toBe(1);
    expect(worker.stderr()).toContain('config error: WORKER_QUEUES: unknown queue "nope" (registered: demo, report, webhook)');
  });

  it("a per-queue variable for a queue that does not exist stops the worker at start, naming it", async () => {
    const worker = await startProcess("workers/main.ts", { ...env, WORKER_PORT: "0", WORKER_CONCURRENCY_DEMOS: "4" }, null);
    expect(await worker.exited).toBe(1);
    expect(worker.stderr()).toContain("config error: WORKER_CONCURRENCY_DEMOS: no registered queue is called that");
  });

  it("malformed worker variables are config errors naming each one", () => {
    const problems = (() => {
      try {
        loadConfig({
          WORKER_QUEUES: "demo,,x",
          WORKER_CONCURRENCY_DEMO: "0",
          WORKER_RATE_LIMIT_WEBHOOK: "fast",
          WORKER_LOCK_DURATION_MS: "-1",
          WORKER_STALLED_INTERVAL_MS: "soon",
          WORKER_MAX_STALLED_COUNT: "1.5",
          LEDGER_RECONCILE_MS: "0",
          WEBHOOK_SECRET: "short",
          METRICS_TOKEN: "short",
        });
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
      }
      return [];
    })();
    expect(problems).toEqual([
      'WORKER_QUEUES: WORKER_QUEUES must be a comma-separated list of queue names (got "demo,,x")',
      'WORKER_LOCK_DURATION_MS: WORKER_LOCK_DURATION_MS must be a positive integer (got "-1")',
      'WORKER_STALLED_INTERVAL_MS: WORKER_STALLED_INTERVAL_MS must be a positive integer (got "soon")',
      'WORKER_MAX_STALLED_COUNT: WORKER_MAX_STALLED_COUNT must be an integer >= 0 (got "1.5")',
      'LEDGER_RECONCILE_MS: LEDGER_RECONCILE_MS must be a positive integer (got "0")',
      "WEBHOOK_SECRET: WEBHOOK_SECRET must be at least 16 characters",
      "METRICS_TOKEN: METRICS_TOKEN must be at least 16 characters",
      'WORKER_CONCURRENCY_DEMO: WORKER_CONCURRENCY_DEMO must be a positive integer (got "0")',
      'WORKER_RATE_LIMIT_WEBHOOK: WORKER_RATE_LIMIT_WEBHOOK must be <max jobs>/<milliseconds>, e.g. 100/1000 (got "fast")',
    ]);
  });

  it("concurrency and rate limit: per-queue variable, then WORKER_CONCURRENCY, then the definitions", () => {
    const schema = z.object({});
    const defs = [
      defineJob({
        queue: "mail-out",
        name: "a",
        description: "",
        schema,
        defaults: { concurrency: 4, rateLimit: { max: 10, durationMs: 1000 } },
      }),
      defineJob({
        queue: "mail-out",
        name: "b",
        description: "",
        schema,
        defaults: { concurrency: 7, rateLimit: { max: 1, durationMs: 1000 } },
      }),
      defineJob({ queue: "other", name: "c", description: "", schema }),
    ];
    const registry = createRegistry(defs);
    expect(resolveQueueSettings(loadConfig({}), registry)).toEqual([
      { queue: "mail-out", concurrency: 7, rateLimit: { max: 1, durationMs: 1000 } },
      { queue: "other", concurrency: 1, rateLimit: undefined },
    ]);
    expect(
      resolveQueueSettings(
        loadConfig({ WORKER_CONCURRENCY: "3", WORKER_CONCURRENCY_MAIL_OUT: "12", WORKER_RATE_LIMIT_MAIL_OUT: "50/60000" }),
        registry,
      ),
    ).toEqual([
      { queue: "mail-out", concurrency: 12, rateLimit: { max: 50, durationMs: 60000 } },
      { queue: "other", concurrency: 3, rateLimit: undefined },
    ]);
  });

  it("the BullMQ workers get those settings, and the stalled-job settings from the environment", async () => {
    const config = loadConfig({
      ...env,
      LOG_LEVEL: "silent",
      WORKER_QUEUES: "demo,webhook",
      WORKER_CONCURRENCY_DEMO: "3",
      WORKER_RATE_LIMIT_DEMO: "5/1000",
      WORKER_LOCK_DURATION_MS: "4000",
      WORKER_STALLED_INTERVAL_MS: "2000",
      WORKER_MAX_STALLED_COUNT: "2",
    });
    const runtime = await createWorkerRuntime(config, createLogger("silent"));
    try {
      expect(runtime.workers.map((w) => ({ name: w.name, concurrency: w.concurrency, limiter: w.opts.limiter }))).toEqual([
        { name: "demo", concurrency: 3, limiter: { max: 5, duration: 1000 } },
        { name: "webhook", concurrency: 20, limiter: undefined },
      ]);
      expect(runtime.workers[0]?.opts).toMatchObject({ lockDuration: 4000, stalledInterval: 2000, maxStalledCount: 2 });
    } finally {
      await runtime.stop();
    }
  });
});
