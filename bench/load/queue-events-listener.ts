// Baseline: raw QueueEvents progress latency, measured in the listener against the `at` the processor
// stamped just before job.updateProgress.
import { QueueEvents } from "bullmq";
import { scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; skip: number }>();
const events = new QueueEvents("demo", { connection: { url: input.redisUrl, maxRetriesPerRequest: null }, prefix: input.prefix });
const latencies: number[] = [];
events.on("progress", ({ data }) => {
  const now = nowMs();
  const at = (data as { at?: number; tick?: number } | null)?.at;
  const tick = (data as { tick?: number } | null)?.tick ?? 0;
  if (typeof at === "number" && tick > input.skip) latencies.push(now - at);
});
await events.waitUntilReady();
process.send?.({ ready: true });
process.on("message", async () => {
  await events.close();
  process.send?.({ type: "report", ...summarize(latencies), samples: latencies }, () => process.exit(0));
});
