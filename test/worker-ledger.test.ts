import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/infra/logger.ts";
import { createPrisma } from "../src/infra/prisma.ts";
import { KEEP_FAILED, keySpace } from "../src/jobs/bullmq/index.ts";
import { HistoryStore } from "../src/jobs/history/index.ts";
import type { JobView } from "../src/jobs/job-view.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { type PrivatePostgres, queryRows, startPrivatePostgres } from "../src/testing/private-postgres.ts";
import { killAll, type RunningProcess, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";
import { Ledger, recordOf } from "../workers/ledger.ts";

// The failure ledger: exactly one audit row per final failure, nothing lost while PostgreSQL is down
// or when a worker dies between BullMQ's acknowledgement and the write.

const prefixes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
const redis = new Redis(testRedisUrl);

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  for (const c of cleanups.reverse()) await c();
  for (const p of prefixes) await deletePrefix(p);
  redis.disconnect();
});

function newPrefix(): string {
  const p = uniquePrefix();
  prefixes.push(p);
  return p;
}

function openQueue(prefix: string): Queue {
  const queue = new Queue("demo", {
    connection: { url: testRedisUrl },
    prefix: bullPrefix(prefix, "demo"),
    defaultJobOptions: { removeOnFail: KEEP_FAILED },
  });
  cleanups.push(() => queue.close());
  return queue;
}

const count = async (url: string, sql: string) => Number((await queryRows<{ n: string }>(url, sql))[0]?.n);

function healthPort(worker: RunningProcess): number {
  return Number(/health on port (\d+)/.exec(worker.stdout())?.[1]);
}

describe("failure ledger", () => {
  let pgp: PrivatePostgres;

  beforeAll(async () => {
    pgp = await startPrivatePostgres();
    cleanups.push(() => pgp.destroy());
  });

  /** A worker serving `demo` (reconciling every 300 ms) on a fresh prefix, then PostgreSQL stopped. */
  async function workerWithPostgresStopped(): Promise<{ prefix: string; worker: RunningProcess; queue: Queue }> {
    const prefix = newPrefix();
    const worker = await startWorker({
      DATABASE_URL: pgp.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      MIGRATE_ON_START: "false",
      WORKER_QUEUES: "demo",
      LEDGER_RECONCILE_MS: "300",
    });
    const queue = openQueue(prefix);
    await pgp.stop();
    return { prefix, worker, queue };
  }

  it("200 jobs failing while PostgreSQL is stopped: kept in Redis, then exactly 200 audit rows once it is back", async () => {
    const { prefix, worker, queue } = await workerWithPostgresStopped();

    await queue.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: "fail", data: { message: `boom ${i}` }, opts: { attempts: 1 } })));
    await until(
      "failed jobs in Redis",
      () => queue.getFailedCount(),
      (n) => n === 200,
    );
    // Every record waits in Redis (not in the worker's memory) until PostgreSQL answers again.
    await until(
      "ledger backlog",
      () => redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`),
      (n) => n === 200,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${healthPort(worker)}/metrics`)).text();
    expect(metrics).toContain('ledger_backlog{queue="demo"} 200');
    expect(metrics).toContain('jobs_failed_total{queue="demo",name="fail"} 200');

    await pgp.start();
    await until(
      "audit rows",
      () => count(pgp.url, "SELECT count(*) AS n FROM failed_job_audit"),
      (n) => n === 200,
    );
    await until(
      "ledger backlog",
      () => redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`),
      (n) => n === 0,
    );
    // A few more reconcile passes must add nothing.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await count(pgp.url, "SELECT count(*) AS n FROM failed_job_audit")).toBe(200);
    expect(await count(pgp.url, "SELECT count(DISTINCT job_id) AS n FROM failed_job_audit")).toBe(200);
    expect(await count(pgp.url, "SELECT count(*) AS n FROM job_history WHERE state = 'FAILED'")).toBe(200);

    const [job] = await queue.getFailed(0, 0);
    const [row] = await queryRows<Record<string, unknown>>(pgp.url, "SELECT * FROM failed_job_audit WHERE job_id = $1", [job?.id]);
    expect(row).toMatchObject({
      queue: "demo",
      job_name: "fail",
      data: job?.data,
      failed_reason: job?.failedReason,
      attempts_made: 1,
      failed_at: new Date(job?.finishedOn ?? 0),
      worker_id: expect.stringMatching(/^.+:\d+$/),
    });
    expect((row?.stacktrace as string[] | undefined)?.[0]).toContain(job?.failedReason);
    expect(await worker.stop()).toBe(0);
  });

  it("100 jobs completing while PostgreSQL is stopped: their rows kept in Redis, then written once it is back", async () => {
    const { prefix, worker, queue } = await workerWithPostgresStopped();

    // Ids of their own: the table is shared with the other tests of this file.
    await queue.addBulk(Array.from({ length: 100 }, (_, i) => ({ name: "noop", data: {}, opts: { jobId: `done-${i}` } })));
    await until(
      "completed jobs in Redis",
      () => queue.getCompletedCount(),
      (n) => n === 100,
    );
    // The rows of the batches PostgreSQL refused wait in Redis, one record per job.
    await until(
      "ledger backlog",
      () => redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`),
      (n) => n === 100,
    );

    await pgp.start();
    const completedRows = () => count(pgp.url, "SELECT count(*) AS n FROM job_history WHERE id LIKE 'done-%' AND state = 'COMPLETED'");
    await until("COMPLETED rows", completedRows, (n) => n === 100);
    await until(
      "ledger backlog",
      () => redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`),
      (n) => n === 0,
    );
    const [job] = await queue.getCompleted(0, 0);
    const [row] = await queryRows<Record<string, unknown>>(pgp.url, "SELECT * FROM job_history WHERE id = $1", [job?.id]);
    expect(row).toMatchObject({ queue: "demo", name: "noop", state: "COMPLETED", finished_at: new Date(job?.finishedOn ?? 0) });
    expect(await worker.stop()).toBe(0);
  });

  it("a failure whose worker died before writing anything is found by the reconciler", async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const prefix = newPrefix();
    const queue = openQueue(prefix);
    // A bare BullMQ worker acknowledges the failures and writes nothing, like one killed right after.
    const bare = new Worker(
      "demo",
      async () => {
        throw new Error("died before the ledger");
      },
      { connection: { url: testRedisUrl, maxRetriesPerRequest: null }, prefix: bullPrefix(prefix, "demo") },
    );
    await queue.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: "fail", data: { message: `m${i}` } })));
    await until(
      "failed jobs",
      () => queue.getFailedCount(),
      (n) => n === 3,
    );
    await bare.close();
    expect(await count(db.url, "SELECT count(*) AS n FROM failed_job_audit")).toBe(0);

    const worker = await startWorker({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, LEDGER_RECONCILE_MS: "300" });
    await until(
      "audit rows",
      () => count(db.url, "SELECT count(*) AS n FROM failed_job_audit"),
      (n) => n === 3,
    );
    const rows = await queryRows<{ state: string; failed_reason: string }>(
      db.url,
      "SELECT state, failed_reason FROM job_history ORDER BY id",
    );
    expect(rows).toEqual(Array.from({ length: 3 }, () => ({ state: "FAILED", failed_reason: "died before the ledger" })));
    expect(await worker.stop()).toBe(0);
  });

  it("a job retried after failing for good gets a second row; re-delivering a write adds none", async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const prefix = newPrefix();
    const queue = openQueue(prefix);
    const worker = await startWorker({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix });
    const job = await queue.add("fail", { message: "twice" });
    await until(
      "first audit row",
      () => count(db.url, "SELECT count(*) AS n FROM failed_job_audit"),
      (n) => n === 1,
    );
    const first = await queue.getJob(String(job.id));
    await first?.retry();
    await until(
      "second audit row",
      () => count(db.url, "SELECT count(*) AS n FROM failed_job_audit"),
      (n) => n === 2,
    );
    expect(await worker.stop()).toBe(0);

    const again = await queue.getJob(String(job.id));
    const record = again && recordOf(again, "failed", "test:1");
    expect(record?.audit).toBeTruthy();
    const prisma = createPrisma(db.url, { max: 1 });
    cleanups.push(() => prisma.$disconnect());
    const ledger = new Ledger(redis, keySpace(prefix), new HistoryStore(prisma), prisma, createLogger("silent"));
    if (record) {
      await ledger.write(record);
      await ledger.write(record);
    }
    expect(await count(db.url, "SELECT count(*) AS n FROM failed_job_audit")).toBe(2);
    expect(await count(db.url, "SELECT count(DISTINCT failed_at) AS n FROM failed_job_audit")).toBe(2);
    expect(await redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`)).toBe(0);
  });

  it("a completed job's row that PostgreSQL refuses is kept in Redis whole, and written as it was", async () => {
    const prefix = newPrefix();
    const view: JobView = {
      id: "42",
      queue: "demo",
      name: "noop",
      data: { ticks: 0, note: 'quotes " and \\ and ünïcode' },
      state: "COMPLETED",
      progress: { tick: 3 },
      attemptsMade: 2,
      maxAttempts: 3,
      priority: 5,
      createdAt: new Date(1764582000123),
      startedAt: new Date(1764582000456),
      finishedAt: new Date(1764582000789),
      result: { ticks: 0 },
      failedReason: null,
      replayOfId: "41",
      tenant: "acme",
      parentQueue: null,
      parentId: null,
    };
    // Nothing listens on port 1: every write fails at once.
    const down = createPrisma("postgresql://postgres@127.0.0.1:1/none", { max: 1 });
    cleanups.push(() => down.$disconnect());
    await new Ledger(redis, keySpace(prefix), new HistoryStore(down), down, createLogger("silent")).write({ view, audit: null });
    expect(await redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`)).toBe(1);

    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const prisma = createPrisma(db.url, { max: 1 });
    cleanups.push(() => prisma.$disconnect());
    const history = new HistoryStore(prisma);
    const kept: unknown[] = [];
    const written = await new Ledger(redis, keySpace(prefix), history, prisma, createLogger("silent")).flushPending(
      "demo",
      async (record) => {
        kept.push(record);
        return true;
      },
    );
    expect(written).toBe(1);
    expect(kept).toEqual([{ view, audit: null }]);
    expect(await history.get("demo", "42")).toEqual(view);
    expect(await redis.hlen(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`)).toBe(0);
  });
});
