// Baseline: raw ioredis publish -> subscribe latency, `count` messages `intervalMs` apart.
import { Redis } from "ioredis";
import { answer, scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; channel: string; count: number; intervalMs: number }>();
const pub = new Redis(input.redisUrl);
const sub = new Redis(input.redisUrl);
const latencies: number[] = [];
await sub.subscribe(input.channel);
sub.on("message", (_c, message: string) => latencies.push(nowMs() - Number(message)));
for (let i = 0; i < input.count; i++) {
  await pub.publish(input.channel, String(nowMs()));
  await new Promise((r) => setTimeout(r, input.intervalMs));
}
await new Promise((r) => setTimeout(r, 100));
pub.disconnect();
sub.disconnect();
// The first tenth is warm-up.
answer(summarize(latencies.slice(Math.floor(input.count / 10))));
