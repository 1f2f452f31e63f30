import { Queue, Worker } from "bullmq";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { demoNoop } from "../src/jobs/definitions/demo-noop.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";
import { defineProcessor, type ProcessorContext } from "../workers/processor.ts";
import { runJob } from "../workers/run-job.ts";

// At-least-once delivery (durable enqueue re-adds lost jobs; stalls re-run them): processors get a
// stable idempotency key and the attempt number in their context. A real BullMQ Worker runs a real
// job through `runJob` (the worker's own path) with a processor that fails twice.

const prefix = uniquePrefix();
const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });

afterAll(async () => {
  await queue.close();
  await deletePrefix(prefix);
});

describe("processor context: idempotency key and attempt", () => {
  it("gives every run of a job the same key and counts its attempts from 1", async () => {
    const seen: Pick<ProcessorContext, "idempotencyKey" | "attempt">[] = [];
    const processor = defineProcessor(demoNoop, async (_data, ctx) => {
      seen.push({ idempotencyKey: ctx.idempotencyKey, attempt: ctx.attempt });
      if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} fails`);
      return { ok: true };
    });
    const options = { cancelRequested: () => undefined, cancelGraceMs: 1_000, services: { config: loadConfig({}), db: null as never } };
    const worker = new Worker("demo", (job, _token, signal) => runJob(job, signal, processor, options), {
      connection: { url: testRedisUrl, maxRetriesPerRequest: null },
      prefix: bullPrefix(prefix, "demo"),
    });
    try {
      const job = await queue.add("noop", {}, { attempts: 3, jobId: "stable-7" });
      await until(
        "completed",
        async () => (await queue.getJob(String(job.id)))?.finishedOn ?? null,
        (v) => v != null,
      );
      expect(seen).toEqual([
        { idempotencyKey: "demo:stable-7", attempt: 1 },
        { idempotencyKey: "demo:stable-7", attempt: 2 },
        { idempotencyKey: "demo:stable-7", attempt: 3 },
      ]);
    } finally {
      await worker.close();
    }
  });
});
