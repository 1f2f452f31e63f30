import { type Job, Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Periodic } from "../src/infra/periodic.ts";
import {
  appendCancelledEvent,
  channels,
  clearCancelMark,
  finishedPage,
  hashTagOf,
  isSchedulerJob,
  jobStateIfExists,
  type KeySpace,
  keySpace,
  keys,
  Lease,
  layoutProblems,
  markCancelled,
  queuePrefix,
  queuesLeftInOtherLayout,
  ReservedIdQueue,
  scanPatterns,
} from "../src/jobs/bullmq/index.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// src/jobs/bullmq is the only code that knows BullMQ's private layout. These tests pin each thing it
// knows against a real BullMQ on real Redis, so an upgrade that changes one fails here, not in production.

const redis = new Redis(testRedisUrl);
const prefixes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

function fresh(): { prefix: string; queue: Queue } {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const queue = new Queue("q", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "q") });
  cleanups.push(() => queue.close());
  return { prefix, queue };
}

function worker(prefix: string, run: (job: Job) => Promise<unknown>): Worker {
  const w = new Worker("q", run, { connection: { url: testRedisUrl, maxRetriesPerRequest: null }, prefix: bullPrefix(prefix, "q") });
  cleanups.push(() => w.close());
  return w;
}

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
  redis.disconnect();
});

describe("keys", () => {
  it("name BullMQ's job hash, events stream and finished sets where BullMQ keeps them", async () => {
    const { prefix, queue } = fresh();
    const job = await queue.add("n", { a: 1 });
    expect(keys.job(keySpace(prefix), "q", String(job.id))).toBe(queue.toKey(String(job.id)));
    expect(await redis.hget(keys.job(keySpace(prefix), "q", String(job.id)), "name")).toBe("n");
    const entries = await redis.xrange(keys.events(keySpace(prefix), "q"), "-", "+");
    expect(entries.map(([, fields]) => fields[1])).toContain("added");
    worker(prefix, async () => "done");
    await until(
      "the job completed",
      () => redis.zscore(keys.finished(keySpace(prefix), "q", "completed"), String(job.id)),
      (s) => s !== null,
    );
  });

  const tagOf = (key: string) => {
    const at = hashTagOf(key);
    return at ? key.slice(at.open + 1, at.close) : key;
  };
  const ofQueue = (space: KeySpace, q: string) => [
    keys.job(space, q, "1"),
    keys.events(space, q),
    keys.finished(space, q, "failed"),
    keys.meta(space, q),
    keys.idCounter(space, q),
    keys.bullIdCounter(space, q),
    keys.ledgerPending(space, q),
    keys.ledgerLease(space, q),
    keys.ledgerWatermark(space, q),
    keys.quarantine(space, q),
    keys.relayLease(space, q),
    keys.relayPosition(space, q),
    keys.recoveryEpoch(space, q),
    channels.job(space, q, "1"),
    channels.queue(space, q),
    channels.cancel(space, q),
  ];

  it("per-queue layout: each queue's keys and channels share a hash tag of their own; the keys of no queue stay under the prefix", () => {
    const space = keySpace("{p}");
    expect(space.layout).toBe("per-queue");
    const q = ofQueue(space, "q");
    const r = ofQueue(space, "r");
    expect(new Set(q.map(tagOf))).toEqual(new Set(["p:q"]));
    expect(new Set(r.map(tagOf))).toEqual(new Set(["p:r"]));
    for (const k of q) expect(k.startsWith("{p:q}:")).toBe(true);
    expect(new Set([...q, ...r]).size).toBe(q.length + r.length);
    for (const k of [keys.retentionLease(space), keys.recoveryLease(space)]) expect(k.startsWith("{p}:")).toBe(true);
    // The tag is the prefix's, wherever it sits; a prefix without one gets one.
    expect(queuePrefix(keySpace("app{jobs}x"), "mail")).toBe("app{jobs:mail}x");
    expect(queuePrefix(keySpace("jobs"), "mail")).toBe("jobs{mail}");
  });

  it("single layout: every key and channel under the prefix, as before", () => {
    const space = keySpace("{p}", "single");
    const all = [...ofQueue(space, "q"), ...ofQueue(space, "r"), keys.retentionLease(space), keys.recoveryLease(space)];
    for (const k of all) expect(k.startsWith("{p}:")).toBe(true);
    expect(keys.job(space, "q", "1")).toBe("{p}:q:1");
    expect(channels.cancel(space, "q")).toBe(channels.cancel(space, "r"));
    expect(keys.recoveryEpoch(space, "q")).toBe("{p}:recovery:epoch");
  });

  it("scanPatterns match both layouts' keys of a prefix and no other prefix's", async () => {
    const prefix = uniquePrefix();
    const other = uniquePrefix();
    prefixes.push(prefix, other);
    const mine = [
      keys.job(keySpace(prefix), "q", "1"),
      keys.job(keySpace(prefix, "single"), "q", "1"),
      keys.retentionLease(keySpace(prefix)),
    ];
    for (const k of [...mine, keys.job(keySpace(other), "q", "1")]) await redis.set(k, "x");
    const found: string[] = [];
    for (const pattern of scanPatterns(prefix)) {
      let cursor = "0";
      do {
        const [next, page] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        found.push(...page);
      } while (cursor !== "0");
    }
    expect(found.sort()).toEqual([...mine].sort());
  });

  it("the start check finds unfinished jobs and ledger records left under the other layout, and only those", async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const single = keySpace(prefix, "single");
    const perQueue = keySpace(prefix);
    const old = new Queue("q", { connection: { url: testRedisUrl }, prefix: queuePrefix(single, "q") });
    cleanups.push(() => old.close());
    expect(await queuesLeftInOtherLayout(redis, perQueue, ["q", "r"])).toEqual([]);
    await old.add("n", {});
    expect(await queuesLeftInOtherLayout(redis, perQueue, ["q", "r"])).toEqual(["q"]);
    expect(await queuesLeftInOtherLayout(redis, single, ["q", "r"])).toEqual([]);
    expect(layoutProblems(perQueue, ["q"])).toEqual([
      `REDIS_KEY_LAYOUT: queue "q" has unfinished jobs under the single layout (keys ${prefix}:q:*) that REDIS_KEY_LAYOUT=per-queue would not see; set REDIS_KEY_LAYOUT=single, or drain or move them first (README: Key layout; npm run redis:migrate-layout)`,
    ]);
    await old.obliterate({ force: true });
    // A ledger record waiting for PostgreSQL counts too; finished jobs and queue settings do not.
    await redis.hset(keys.ledgerPending(single, "r"), "7:1", "{}");
    await redis.hset(keys.meta(single, "q"), "opts.maxLenEvents", "10");
    expect(await queuesLeftInOtherLayout(redis, perQueue, ["q", "r"])).toEqual(["r"]);
  });
});

describe("BullMQ internals", () => {
  it("finishedPage reads a finished set's ids with their finish times", async () => {
    const { prefix, queue } = fresh();
    const w = worker(prefix, async (job) => {
      if (job.name === "bad") throw new Error("no");
      return 1;
    });
    await queue.addBulk([
      { name: "good", data: {} },
      { name: "good", data: {} },
      { name: "bad", data: {} },
    ]);
    await until(
      "three jobs finished",
      async () => (await queue.getCompletedCount()) + (await queue.getFailedCount()),
      (n) => n === 3,
    );
    await w.close();
    const completed = await finishedPage(redis, queue, "completed", { from: 0, to: Date.now(), offset: 0, count: 10 });
    expect(completed).toHaveLength(2);
    for (const { id, finishedOn } of completed) expect(Number(finishedOn)).toBe((await queue.getJob(id))?.finishedOn);
    const failed = await finishedPage(redis, queue, "failed", { from: 0, to: Date.now(), offset: 0, count: 10 });
    expect(failed.map((f) => f.id)).toEqual([String((await queue.getFailed())[0]?.id)]);
    expect(await finishedPage(redis, queue, "completed", { from: 0, to: Date.now(), offset: 1, count: 10 })).toHaveLength(1);
    expect(await finishedPage(redis, queue, "completed", { from: 0, to: 1, offset: 0, count: 10 })).toEqual([]);
  });

  it("isSchedulerJob recognises the jobs a scheduler put in the queue, and only its own", async () => {
    const { queue } = fresh();
    await queue.upsertJobScheduler("every-hour", { every: 3_600_000 }, { name: "tick", data: {} });
    await queue.upsertJobScheduler("every-hour-2", { every: 3_600_000 }, { name: "tick", data: {} });
    const jobs = await queue.getJobs(["delayed", "waiting", "prioritized"]);
    expect(jobs.filter((j) => isSchedulerJob(j.id, "every-hour"))).toHaveLength(1);
    expect(jobs.filter((j) => isSchedulerJob(j.id, "every-hour-2"))).toHaveLength(1);
    expect(isSchedulerJob(undefined, "every-hour")).toBe(false);
    expect(isSchedulerJob("every-hour", "every-hour")).toBe(false);
  });

  it("a job marked cancelled is failed by the worker with the mark, without running; a cleared mark runs it", async () => {
    const { prefix, queue } = fresh();
    const marked = await queue.add("n", {});
    const cleared = await queue.add("n", {});
    expect(await markCancelled(redis, keySpace(prefix), "q", String(marked.id), "Cancelled: stop")).toBe(true);
    expect(await markCancelled(redis, keySpace(prefix), "q", String(cleared.id), "Cancelled: stop")).toBe(true);
    await clearCancelMark(redis, keySpace(prefix), "q", String(cleared.id));
    expect(await markCancelled(redis, keySpace(prefix), "q", "no-such-job", "Cancelled: stop")).toBe(false);
    expect(await redis.exists(keys.job(keySpace(prefix), "q", "no-such-job"))).toBe(0);
    const ran: string[] = [];
    worker(prefix, async (job) => {
      ran.push(String(job.id));
      return 1;
    });
    await until(
      "both jobs finished",
      async () => (await queue.getCompletedCount()) + (await queue.getFailedCount()),
      (n) => n === 2,
    );
    expect(ran).toEqual([String(cleared.id)]);
    expect((await queue.getJob(String(marked.id)))?.failedReason).toBe("Cancelled: stop");
  });

  it("ReservedIdQueue.prepareBulk sends nothing until send(), then adds what addBulk adds", async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const defaults = { removeOnComplete: { age: 60, count: 5 } };
    const connection = { url: testRedisUrl };
    const prepared = new ReservedIdQueue("q", { connection, prefix: bullPrefix(prefix, "q"), defaultJobOptions: defaults });
    const plain = new ReservedIdQueue("p", { connection, prefix: bullPrefix(prefix, "p"), defaultJobOptions: defaults });
    cleanups.push(
      () => prepared.close(),
      () => plain.close(),
    );
    const jobs = (ids: string[]) =>
      ids.map((id, i) => ({
        name: `n${i}`,
        data: { i },
        opts: { jobId: id, attempts: 3, priority: i === 1 ? 5 : undefined, timestamp: 1_700_000_000_000 },
      }));
    const bulk = await prepared.prepareBulk(jobs(["7", "8", "custom-9"]));
    expect(await prepared.count()).toBe(0);
    expect(await redis.exists(prepared.toKey("7"))).toBe(0);
    const added = await bulk.send();
    await expect(bulk.send()).rejects.toThrow(/once/);
    const reference = await plain.addBulk(jobs(["7", "8", "custom-9"]));
    expect(added.map((j) => j.id)).toEqual(["7", "8", "custom-9"]);
    expect(added.map((j) => j.id)).toEqual(reference.map((j) => j.id));
    for (const id of ["7", "8", "custom-9"]) {
      const [a, b] = await Promise.all([prepared.getJob(id), plain.getJob(id)]);
      expect({ name: a?.name, data: a?.data, opts: a?.opts, timestamp: a?.timestamp }).toEqual({
        name: b?.name,
        data: b?.data,
        opts: b?.opts,
        timestamp: b?.timestamp,
      });
      expect(await prepared.getJobState(id)).toBe(await plain.getJobState(id));
    }
    expect(await prepared.getJobCounts()).toEqual(await plain.getJobCounts());
  });

  it("appendCancelledEvent writes an entry QueueEvents delivers as `cancelled`", async () => {
    const { prefix } = fresh();
    const events = new QueueEvents("q", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "q"), lastEventId: "0-0" });
    cleanups.push(() => events.close());
    const seen = new Promise<Record<string, unknown>>((resolve) =>
      events.on("cancelled" as "added", ((args: Record<string, unknown>) => resolve(args)) as never),
    );
    await events.waitUntilReady();
    await appendCancelledEvent(redis, keySpace(prefix), "q", 100, "17", "operator said so");
    expect(await seen).toMatchObject({ jobId: "17", reason: "operator said so" });
  });
});

describe("Lease", () => {
  it("is held by one owner at a time, renewed and released only by its owner", async () => {
    const { prefix } = fresh();
    const key = keys.relayLease(keySpace(prefix), "q");
    const a = new Lease(redis, key, 60_000);
    const b = new Lease(redis, key, 60_000);
    expect(await a.acquire()).toBe(true);
    expect(await b.acquire()).toBe(false);
    expect(await b.renew()).toBe(false);
    await b.release();
    expect(await redis.exists(key)).toBe(1);
    expect(await a.renew()).toBe(true);
    await a.release();
    expect(await redis.exists(key)).toBe(0);
    expect(await b.acquire()).toBe(true);
    expect(await a.renew()).toBe(false);
  });

  it("expires by itself, and a renewal extends it", async () => {
    const { prefix } = fresh();
    const key = keys.ledgerLease(keySpace(prefix), "q");
    const a = new Lease(redis, key, 200);
    expect(await a.acquire()).toBe(true);
    await redis.pexpire(key, 10_000);
    expect(await a.renew()).toBe(true);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(200);
    await until(
      "the lease expired",
      () => redis.exists(key),
      (n) => n === 0,
    );
    expect(await new Lease(redis, key, 200).acquire()).toBe(true);
  });
});

describe("Periodic", () => {
  it("never runs twice at once, goes on after a failure, and stop waits for the run under way", async () => {
    let running = 0;
    let overlapped = false;
    let runs = 0;
    const errors: unknown[] = [];
    let release: () => void = () => {};
    const loop = new Periodic(
      async () => {
        running++;
        overlapped ||= running > 1;
        runs++;
        try {
          if (runs === 2) throw new Error("second run fails");
          if (runs === 4) await new Promise<void>((r) => (release = r));
          else await new Promise((r) => setTimeout(r, 5));
        } finally {
          running--;
        }
      },
      { intervalMs: 1, onError: (err) => errors.push(err) },
    );
    loop.start();
    await until(
      "the fourth run started",
      () => runs,
      (n) => n >= 4,
    );
    let stopped = false;
    const stopping = loop.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBe(false);
    release();
    await stopping;
    await new Promise((r) => setTimeout(r, 20));
    expect(runs).toBe(4);
    expect(overlapped).toBe(false);
    expect(errors.map((e) => (e as Error).message)).toEqual(["second run fails"]);
  });
});

describe("jobStateIfExists", () => {
  it("answers as Queue.getJobState for a job in every state, and 'unknown' for one Redis does not hold (ids unlike BullMQ's key names)", async () => {
    const { prefix, queue } = fresh();
    // One job at a time: once j-runs is active (for a minute), every job added after it stays where it was put.
    const w = new Worker(
      "q",
      async (job) => {
        if (job.id === "j-fails") throw new Error("no");
        if (job.id === "j-runs") await new Promise((r) => setTimeout(r, 60_000));
        return 1;
      },
      { connection: { url: testRedisUrl, maxRetriesPerRequest: null }, prefix: bullPrefix(prefix, "q"), concurrency: 1 },
    );
    await queue.add("x", {}, { jobId: "j-completes" });
    await queue.add("x", {}, { jobId: "j-fails" });
    await queue.add("x", {}, { jobId: "j-runs" });
    await until(
      "completed, failed and active jobs",
      async () => [await queue.getJobState("j-completes"), await queue.getJobState("j-fails"), await queue.getJobState("j-runs")],
      (s) => s.join() === "completed,failed,active",
    );
    await queue.add("x", {}, { jobId: "j-waiting" });
    await queue.add("x", {}, { jobId: "j-delayed", delay: 3_600_000 });
    await queue.add("x", {}, { jobId: "j-prioritized", priority: 5 });
    await queue.pause();
    await queue.add("x", {}, { jobId: "j-paused" });
    const expected: [string, string][] = [];
    const ours: [string, string][] = [];
    for (const id of ["j-waiting", "j-delayed", "j-prioritized", "j-paused", "j-completes", "j-fails", "j-runs", "j-never-there"]) {
      expected.push([id, await queue.getJobState(id)]);
      ours.push([id, await jobStateIfExists(redis, queue, id)]);
    }
    expect(ours).toEqual(expected);
    expect(ours.map(([, state]) => state)).toEqual([
      "waiting",
      "delayed",
      "prioritized",
      "waiting",
      "completed",
      "failed",
      "active",
      "unknown",
    ]);
    await w.close(true);
  });
});
