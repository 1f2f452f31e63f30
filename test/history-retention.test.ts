import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import type { Prisma } from "../src/generated/prisma/client.ts";
import { createLogger } from "../src/infra/logger.ts";
import { createPrisma, type Db } from "../src/infra/prisma.ts";
import { HistoryRetention, retentionLockKey } from "../src/jobs/history/index.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { killAll, startWorker } from "../src/testing/processes.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// HISTORY_RETENTION_DAYS: which rows go, one sweep per interval across workers, and the worker runs it.

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let prisma: Db;
let redis: Redis;
const prefix = uniquePrefix();
const log = createLogger("silent", {});
const DAY = 24 * 3600 * 1000;
const now = new Date("2026-06-01T00:00:00.000Z");

beforeAll(async () => {
  db = await createTestDatabase();
  prisma = createPrisma(db.url);
  redis = new Redis(testRedisUrl);
});

afterAll(async () => {
  await prisma?.$disconnect();
  redis?.disconnect();
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db?.drop();
});

beforeEach(async () => {
  await prisma.$executeRawUnsafe("TRUNCATE job_history, failed_job_audit, operator_action");
  await redis.del(retentionLockKey(prefix));
});

function row(id: string, createdDaysAgo: number, extra: Partial<Prisma.JobHistoryCreateManyInput> = {}): Prisma.JobHistoryCreateManyInput {
  const createdAt = new Date(now.getTime() - createdDaysAgo * DAY);
  return {
    queue: "demo",
    id,
    name: "sleep",
    data: {},
    state: "COMPLETED",
    createdAt,
    updatedAt: createdAt,
    finishedAt: createdAt,
    ...extra,
  };
}

async function ids(): Promise<string[]> {
  return (await prisma.jobHistory.findMany({ select: { id: true }, orderBy: { id: "asc" } })).map((r) => r.id);
}

function retention(lockKey = retentionLockKey(prefix), intervalMs = 60_000, batchSize = 2) {
  return new HistoryRetention(prisma, redis, log, { days: 30, intervalMs, lockKey, batchSize });
}

describe("history retention", () => {
  it("deletes finished jobs created and finished before the cutoff, in batches, and keeps the rest", async () => {
    await prisma.jobHistory.createMany({
      data: [
        row("old-completed", 40),
        row("old-failed", 31, { state: "FAILED", failedReason: "x" }),
        row("old-cancelled", 90, { state: "CANCELLED" }),
        row("old-completed-2", 45),
        row("old-completed-3", 50),
        row("recent", 29),
        row("old-but-waiting", 40, { state: "DELAYED", finishedAt: null }),
        row("old-but-active", 40, { state: "ACTIVE", finishedAt: null }),
        row("created-old-finished-recently", 40, { finishedAt: new Date(now.getTime() - 2 * DAY) }),
      ],
    });
    await prisma.failedJobAudit.create({
      data: {
        queue: "demo",
        jobId: "old-failed",
        jobName: "sleep",
        data: {},
        failedReason: "x",
        stacktrace: [],
        attemptsMade: 1,
        failedAt: new Date(now.getTime() - 31 * DAY),
        workerId: "w",
      },
    });
    // 5 rows at 2 per statement: three statements, the last one short.
    expect(await retention().sweep(now)).toBe(5);
    expect(await ids()).toEqual(["created-old-finished-recently", "old-but-active", "old-but-waiting", "recent"]);
    expect(await prisma.failedJobAudit.count()).toBe(1);
  });

  it("sweeps once per interval however many workers try (a Redis lock)", async () => {
    await prisma.jobHistory.createMany({ data: [row("a", 40), row("b", 40), row("c", 40)] });
    const workers = [retention(), retention(), retention()];
    const results = await Promise.all(workers.map((w) => w.runIfDue(now)));
    expect(results.filter((r) => r === null)).toHaveLength(2);
    expect(results.find((r) => r !== null)).toBe(3);
    expect(await redis.pttl(retentionLockKey(prefix))).toBeGreaterThan(0);

    await prisma.jobHistory.createMany({ data: [row("d", 40)] });
    expect(await retention().runIfDue(now)).toBeNull();
    expect(await ids()).toEqual(["d"]);
    // Once the interval is over (the lock expired), the next worker to try sweeps again.
    await redis.del(retentionLockKey(prefix));
    expect(await retention().runIfDue(now)).toBe(1);
  });

  it("is run by the worker process when HISTORY_RETENTION_DAYS is set", async () => {
    const old = (id: string) => row(id, 400, { createdAt: new Date(Date.now() - 400 * DAY), finishedAt: new Date(Date.now() - 400 * DAY) });
    const fresh = (id: string) => row(id, 0, { createdAt: new Date(), finishedAt: new Date() });
    await prisma.jobHistory.createMany({ data: [old("ancient-1"), old("ancient-2"), fresh("today")] });
    const worker = await startWorker({
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      HISTORY_RETENTION_DAYS: "365",
      HISTORY_RETENTION_INTERVAL_MS: "3600000",
    });
    try {
      await until("the old rows deleted", ids, (left) => left.length <= 1);
      expect(await ids()).toEqual(["today"]);
      expect(await redis.exists(retentionLockKey(prefix))).toBe(1);
    } finally {
      expect(await worker.stop()).toBe(0);
    }
  });

  it("is off by default: a worker without HISTORY_RETENTION_DAYS never takes the lock", async () => {
    const worker = await startWorker({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix });
    try {
      expect(await redis.exists(retentionLockKey(prefix))).toBe(0);
    } finally {
      expect(await worker.stop()).toBe(0);
    }
    expect(loadConfig({}).historyRetentionDays).toBeUndefined();
  });
});

describe("configuration", () => {
  it.each([
    ["HISTORY_RETENTION_DAYS", "0", "HISTORY_RETENTION_DAYS: HISTORY_RETENTION_DAYS must be a positive integer"],
    ["HISTORY_RETENTION_DAYS", "a week", "HISTORY_RETENTION_DAYS: HISTORY_RETENTION_DAYS must be a positive integer"],
    ["HISTORY_RETENTION_INTERVAL_MS", "-1", "HISTORY_RETENTION_INTERVAL_MS: HISTORY_RETENTION_INTERVAL_MS must be a positive integer"],
    ["MAX_PAGE_SIZE", "0", "MAX_PAGE_SIZE: MAX_PAGE_SIZE must be an integer from 1 to 1000"],
    ["MAX_PAGE_SIZE", "1001", "MAX_PAGE_SIZE: MAX_PAGE_SIZE must be an integer from 1 to 1000"],
    ["MAX_PAGE_SIZE", "2.5", "MAX_PAGE_SIZE: MAX_PAGE_SIZE must be an integer from 1 to 1000"],
  ])("refuses %s=%s, naming it", (name, value, message) => {
    try {
      loadConfig({ [name]: value });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([`${message} (got ${JSON.stringify(value)})`]);
    }
  });

  it("reads the defaults and valid values", () => {
    expect(loadConfig({})).toMatchObject({ maxPageSize: 100, historyRetentionDays: undefined, historyRetentionIntervalMs: 3_600_000 });
    expect(loadConfig({ MAX_PAGE_SIZE: "250", HISTORY_RETENTION_DAYS: "30" })).toMatchObject({
      maxPageSize: 250,
      historyRetentionDays: 30,
    });
  });
});
