import { type Job, Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Periodic } from "../src/infra/periodic.ts";
import {
  appendCancelledEvent,
  channels,
  clearCancelMark,
  finishedPage,
  isSchedulerJob,
  keys,
  Lease,
  markCancelled,
} from "../src/jobs/bullmq/index.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// src/jobs/bullmq is the only code that knows BullMQ's private layout. These tests pin each thing it
// knows against a real BullMQ on real Redis, so an upgrade that changes one fails here, not in production.

const redis = new Redis(testRedisUrl);
const prefixes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

function fresh(): { prefix: string; queue: Queue } {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const queue = new Queue("q", { connection: { url: testRedisUrl }, prefix });
  cleanups.push(() => queue.close());
  return { prefix, queue };
}

function worker(prefix: string, run: (job: Job) => Promise<unknown>): Worker {
  const w = new Worker("q", run, { connection: { url: testRedisUrl, maxRetriesPerRequest: null }, prefix });
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
    expect(keys.job(prefix, "q", String(job.id))).toBe(queue.toKey(String(job.id)));
    expect(await redis.hget(keys.job(prefix, "q", String(job.id)), "name")).toBe("n");
    const entries = await redis.xrange(keys.events(prefix, "q"), "-", "+");
    expect(entries.map(([, fields]) => fields[1])).toContain("added");
    worker(prefix, async () => "done");
    await until(
      "the job completed",
      () => redis.zscore(keys.finished(prefix, "q", "completed"), String(job.id)),
      (s) => s !== null,
    );
  });

  it("keep every key and channel under the prefix", () => {
    const p = "{p}";
    const all = [
      keys.job(p, "q", "1"),
      keys.events(p, "q"),
      keys.finished(p, "q", "failed"),
      keys.ledgerPending(p, "q"),
      keys.ledgerLease(p, "q"),
      keys.ledgerWatermark(p, "q"),
      keys.relayLease(p, "q"),
      keys.relayPosition(p, "q"),
      keys.retentionLease(p),
      channels.job(p, "q", "1"),
      channels.queue(p, "q"),
      channels.cancel(p),
    ];
    for (const k of all) expect(k.startsWith(`${p}:`)).toBe(true);
    expect(new Set(all).size).toBe(all.length);
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
    expect(await markCancelled(redis, prefix, "q", String(marked.id), "Cancelled: stop")).toBe(true);
    expect(await markCancelled(redis, prefix, "q", String(cleared.id), "Cancelled: stop")).toBe(true);
    await clearCancelMark(redis, prefix, "q", String(cleared.id));
    expect(await markCancelled(redis, prefix, "q", "no-such-job", "Cancelled: stop")).toBe(false);
    expect(await redis.exists(keys.job(prefix, "q", "no-such-job"))).toBe(0);
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

  it("appendCancelledEvent writes an entry QueueEvents delivers as `cancelled`", async () => {
    const { prefix } = fresh();
    const events = new QueueEvents("q", { connection: { url: testRedisUrl }, prefix, lastEventId: "0-0" });
    cleanups.push(() => events.close());
    const seen = new Promise<Record<string, unknown>>((resolve) =>
      events.on("cancelled" as "added", ((args: Record<string, unknown>) => resolve(args)) as never),
    );
    await events.waitUntilReady();
    await appendCancelledEvent(redis, prefix, "q", 100, "17", "operator said so");
    expect(await seen).toMatchObject({ jobId: "17", reason: "operator said so" });
  });
});

describe("Lease", () => {
  it("is held by one owner at a time, renewed and released only by its owner", async () => {
    const { prefix } = fresh();
    const key = keys.relayLease(prefix, "q");
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
    const key = keys.ledgerLease(prefix, "q");
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
