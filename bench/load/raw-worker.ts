// Baseline: a raw BullMQ Worker with a no-op processor; drains `queue` (default `demo`) under `prefix`, then answers.
import { Worker } from "bullmq";
import { answer, scriptInput } from "../lib/child.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; concurrency: number; queue?: string }>();
const worker = new Worker(input.queue ?? "demo", async () => ({}), {
  connection: { url: input.redisUrl, maxRetriesPerRequest: null },
  prefix: input.prefix,
  concurrency: input.concurrency,
});
await worker.waitUntilReady();
process.send?.({ ready: true });
process.on("message", async () => {
  await worker.close();
  answer({});
});
