// Baseline: raw BullMQ Queue.addBulk of `size` jobs, `repeats` times; answers each duration in ms.
import { Queue } from "bullmq";
import { answer, scriptInput } from "../lib/child.ts";
import { nowMs } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; size: number; repeats: number }>();
const queue = new Queue("demo", { connection: { url: input.redisUrl }, prefix: input.prefix });
await queue.waitUntilReady();
const durations: number[] = [];
// One extra round first, as warm-up.
for (let r = 0; r <= input.repeats; r++) {
  const jobs = Array.from({ length: input.size }, () => ({ name: "noop", data: {} }));
  const t = nowMs();
  await queue.addBulk(jobs);
  if (r > 0) durations.push(nowMs() - t);
}
await queue.close();
answer({ durations });
