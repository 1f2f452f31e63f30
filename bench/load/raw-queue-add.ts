// Baseline: raw BullMQ Queue.add from `concurrency` concurrent loops, like 64 HTTP connections would.
import { Queue } from "bullmq";
import { answer, scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; concurrency: number; warmupSec: number; durationSec: number }>();
const queue = new Queue("demo", { connection: { url: input.redisUrl }, prefix: input.prefix });
await queue.waitUntilReady();

async function load(seconds: number, latencies: number[] | null): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (Date.now() < end) {
        const t = nowMs();
        await queue.add("noop", {}, { removeOnComplete: { age: 86_400, count: 10_000 } });
        latencies?.push(nowMs() - t);
        done++;
      }
    }),
  );
  return done;
}

await load(input.warmupSec, null);
const latencies: number[] = [];
const done = await load(input.durationSec, latencies);
await queue.close();
answer({ rps: done / input.durationSec, ...summarize(latencies) });
