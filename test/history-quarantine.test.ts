// A row PostgreSQL refuses (a NUL character in jsonb) costs no other row its write, is kept in the
// quarantine, and does not stop the reconciler (issue 14, point 2).
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/infra/logger.ts";
import { createPrisma, poolOf } from "../src/infra/prisma.ts";
import { keySpace } from "../src/jobs/bullmq/index.ts";
import { HistoryQuarantine, HistoryStore } from "../src/jobs/history/index.ts";
import type { JobView } from "../src/jobs/job-view.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { Ledger } from "../workers/ledger.ts";
import { LedgerReconciler } from "../workers/ledger-reconciler.ts";

const log = createLogger("silent", { process: "test" });
const redis = new Redis(testRedisUrl);
const prefix = uniquePrefix();
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let prisma: ReturnType<typeof createPrisma>;
let quarantine: HistoryQuarantine;

beforeAll(async () => {
  db = await createTestDatabase();
  prisma = createPrisma(db.url);
  quarantine = new HistoryQuarantine(poolOf(prisma), redis, keySpace(prefix));
});

afterAll(async () => {
  await prisma?.$disconnect();
  await deletePrefix(prefix);
  await db?.drop();
  redis.disconnect();
});

const count = async (sql: string) => Number((await queryRows<{ n: string }>(db.url, sql))[0]?.n);

function view(id: string, result: unknown): JobView {
  const now = new Date();
  return {
    id,
    queue: "demo",
    name: "sleep",
    data: { steps: 1, stepMs: 0 },
    state: "COMPLETED",
    progress: 100,
    attemptsMade: 1,
    maxAttempts: 1,
    priority: 0,
    createdAt: now,
    startedAt: now,
    finishedAt: now,
    result,
    failedReason: null,
    replayOfId: null,
    parentQueue: null,
    parentId: null,
    tenant: null,
  };
}

describe("history batches PostgreSQL refuses", () => {
  it("a poisoned row in a batch of 200 leaves the other 199 written and goes to the quarantine", async () => {
    const writes: Promise<void>[] = [];
    let batches = 0;
    const pool = poolOf(prisma);
    const query = pool.query.bind(pool);
    // Count the statements: the 200 rows must really travel together first.
    const spy = (...args: Parameters<typeof pool.query>) => {
      batches++;
      return (query as (...a: unknown[]) => unknown)(...args);
    };
    pool.query = spy as typeof pool.query;
    try {
      const store = new HistoryStore(prisma, { maxBatch: 500, concurrency: 1 }, quarantine);
      // The first write goes out alone; the 200 that follow wait for it and share one batch.
      writes.push(store.upsert(view("batch-first", { ok: true })));
      for (let i = 0; i < 200; i++) writes.push(store.upsert(view(`batch-${i}`, i === 117 ? { note: "bad\u0000byte" } : { ok: i })));
      await Promise.all(writes);
    } finally {
      pool.query = query;
    }
    expect(await count("SELECT count(*) AS n FROM job_history WHERE id LIKE 'batch-%' AND id <> 'batch-first'")).toBe(199);
    expect(await count("SELECT count(*) AS n FROM job_history WHERE id = 'batch-117'")).toBe(0);
    const rows = await queryRows<{ kind: string; job_id: string; row: string; error: string }>(
      db.url,
      "SELECT kind, job_id, row, error FROM history_quarantine WHERE job_id = 'batch-117'",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.kind).toBe("history");
    expect(rows[0]?.row).toContain("bad\\u0000byte");
    expect(await redis.hexists(quarantine.key("demo"), "history:batch-117")).toBe(1);
    // One statement for the first row, one for the batch of 200, then 200 single rows, plus the
    // quarantine's insert: the fallback ran because the batch failed.
    expect(batches).toBe(1 + 1 + 200 + 1);
  });

  it("without a data error, a failure still rejects the batch (PostgreSQL down is not a poisoned row)", async () => {
    const down = createPrisma("postgresql://postgres@127.0.0.1:1/nothing");
    try {
      const store = new HistoryStore(down, {}, quarantine);
      await expect(store.upsert(view("unreachable", { ok: true }))).rejects.toThrow();
    } finally {
      await down.$disconnect();
    }
  });
});

describe("the reconciler with a poisoned record", () => {
  it("quarantines the unwritable pending record, keeps going, and repairs a missing row afterwards", async () => {
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    const worker = new Worker("demo", async (job) => (job.data.poison ? { text: "nul\u0000here" } : { fine: true }), {
      connection: { url: testRedisUrl },
      prefix: bullPrefix(prefix, "demo"),
      autorun: true,
    });
    try {
      const poisoned = await queue.add("sleep", { poison: true }, { jobId: "poisoned-job" });
      const missing = await queue.add("sleep", { poison: false }, { jobId: "missing-row" });
      for (;;) {
        const states = await Promise.all([poisoned.getState(), missing.getState()]);
        if (states.every((s) => s === "completed")) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const store = new HistoryStore(prisma, {}, quarantine);
      const ledger = new Ledger(redis, keySpace(prefix), store, prisma, log, {}, quarantine);
      // The case: the poisoned job's record was parked in Redis by a failed write.
      const finished = (await queue.getJob("poisoned-job"))?.finishedOn;
      await redis.hset(
        ledger.pendingKey("demo"),
        `poisoned-job:${finished}`,
        JSON.stringify({ view: view("poisoned-job", { text: "nul\u0000here" }), audit: null }),
      );
      const reconciler = new LedgerReconciler(ledger, redis, [queue], prisma, log, {
        intervalMs: 60_000,
        lookbackMs: 60_000,
        workerId: "test",
      });
      await reconciler.runOnce();
      // The missing row is repaired, the poisoned one is quarantined, the pending hash is empty.
      expect(await count("SELECT count(*) AS n FROM job_history WHERE id = 'missing-row' AND state = 'COMPLETED'")).toBe(1);
      expect(await count("SELECT count(*) AS n FROM job_history WHERE id = 'poisoned-job'")).toBe(0);
      expect(await redis.hlen(ledger.pendingKey("demo"))).toBe(0);
      expect(await ledger.isQuarantined("demo", "poisoned-job")).toBe(true);
      const quarantined = await count("SELECT count(*) AS n FROM history_quarantine WHERE job_id = 'poisoned-job'");
      expect(quarantined).toBeGreaterThanOrEqual(1);

      // Later passes skip the quarantined job (no new quarantine rows) and still repair what goes missing.
      await prisma.jobHistory.delete({ where: { queue_id: { queue: "demo", id: "missing-row" } } });
      await reconciler.runOnce();
      await reconciler.runOnce();
      expect(await count("SELECT count(*) AS n FROM job_history WHERE id = 'missing-row' AND state = 'COMPLETED'")).toBe(1);
      expect(await count("SELECT count(*) AS n FROM history_quarantine WHERE job_id = 'poisoned-job'")).toBe(quarantined);
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});
