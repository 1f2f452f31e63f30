// Progress latency, one subscriber: worker job.updateProgress -> API -> one graphql-ws client, and
// -> one SSE client, vs a raw QueueEvents listener reading the same worker's progress. Rounds
// alternate raw, WebSocket, SSE (each a job of its own and a client process of its own), so the
// three see the same machine; each kind's percentiles are over all its rounds' samples. Also raw
// ioredis pub/sub, for reference.

import { bullPrefix } from "../../src/testing/redis.ts";
import { runScript } from "../lib/child.ts";
import { enqueueNoops } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import type { BenchContext, Row, Scenario } from "../lib/scenario.ts";
import type { Stack } from "../lib/stack.ts";
import { type Summary, summarize } from "../lib/stats.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

const TICK_MS = 10;
/** What ours may add to raw QueueEvents' percentiles (issue #19, section 2b). */
const P50_MARGIN_MS = 0.5;
const P99_MARGIN_MS = 1.5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One raw round: a QueueEvents listener process, one job of `ticks` progress events. */
async function rawRound(ctx: BenchContext, stack: Stack, ticks: number): Promise<number[]> {
  const skip = Math.floor(ticks / 10); // warm-up ticks, left out
  const listener = steer<{ type?: string }>("load/queue-events-listener.ts", {
    redisUrl: ctx.redisUrl,
    prefix: bullPrefix(stack.prefix, "demo"),
    skip,
  });
  try {
    await listener.next();
    await enqueueNoops(stack.url, ctx.apiKey, 1, { ticks, tickMs: TICK_MS });
    await sleep(ticks * TICK_MS + 1_000);
    listener.send("report");
    return (await listener.next<Summary & { type: string; samples: number[] }>("report")).samples;
  } finally {
    listener.kill();
  }
}

/** One round of ours: a client process (graphql-ws or SSE) subscribed to one job's events. */
async function clientRound(ctx: BenchContext, stack: Stack, ticks: number, entry: string): Promise<number[]> {
  const jobMs = ticks * TICK_MS;
  const [jobId] = await enqueueNoops(stack.url, ctx.apiKey, 1, { ticks, tickMs: TICK_MS });
  const client = steer<WsSubscribersMessage>(entry, {
    wsUrl: stack.url.replace(/^http/, "ws"),
    apiKey: ctx.apiKey,
    queue: "demo",
    jobIds: [jobId as string],
    openConcurrency: 1,
  });
  try {
    const sub = await client.next<Extract<WsSubscribersMessage, { type: "subscribed" }>>("subscribed");
    if (sub.subscribed !== 1) throw new Error(`${entry}: subscription failed: ${sub.firstError}`);
    // Warm-up (the tenth of the job the raw round skips), then the measured part.
    await sleep(jobMs / 10);
    client.send("reset");
    await sleep((jobMs * 8) / 10);
    client.send("report");
    const report = await client.next<Extract<WsSubscribersMessage, { type: "report" }>>("report");
    if (report.gaps || report.duplicates) throw new Error(`${entry}: ${report.gaps} gaps, ${report.duplicates} duplicates`);
    return report.samples;
  } finally {
    client.kill();
  }
}

export default {
  name: "progress-latency",
  async run(ctx) {
    const rounds = ctx.quick ? 1 : 3;
    const ticks = ctx.quick ? 150 : 700;
    const stack = await ctx.startStack({ workers: 1 });
    try {
      const samples = { raw: [] as number[], ws: [] as number[], sse: [] as number[] };
      for (let round = 0; round < rounds; round++) {
        samples.raw.push(...(await rawRound(ctx, stack, ticks)));
        samples.ws.push(...(await clientRound(ctx, stack, ticks, "load/ws-subscribers.ts")));
        samples.sse.push(...(await clientRound(ctx, stack, ticks, "load/sse-subscribers.ts")));
      }
      const raw = summarize(samples.raw);
      const ws = summarize(samples.ws);
      const sse = summarize(samples.sse);
      const pubsub = await runScript<Summary>(
        "load/redis-pubsub-latency.ts",
        { redisUrl: ctx.redisUrl, channel: `${stack.prefix}:bench-pubsub`, count: ticks, intervalMs: TICK_MS },
        ticks * TICK_MS + 30_000,
      );
      const rows: Row[] = [];
      for (const [name, o] of [
        ["graphql-ws", ws],
        ["SSE", sse],
      ] as const) {
        const scenario = `progress latency, 1 ${name} sub`;
        const base = { scenario, baselineName: "raw QueueEvents", ratio: null };
        rows.push(
          {
            ...base,
            metric: "p50 ms",
            project: o.p50,
            baseline: raw.p50,
            target: `<= base + ${P50_MARGIN_MS} ms`,
            pass: o.p50 <= raw.p50 + P50_MARGIN_MS,
          },
          { ...base, metric: "p95 ms", project: o.p95, baseline: raw.p95, target: "-", pass: null },
          {
            ...base,
            metric: "p99 ms",
            project: o.p99,
            baseline: raw.p99,
            target: `<= base + ${P99_MARGIN_MS} ms`,
            pass: o.p99 <= raw.p99 + P99_MARGIN_MS,
          },
        );
      }
      rows.push({
        scenario: "raw ioredis pub/sub",
        metric: "p50 / p99 ms",
        project: null,
        baseline: pubsub.p50,
        baselineName: `pub->sub p99 ${pubsub.p99.toFixed(2)} ms`,
        ratio: null,
        target: "-",
        pass: null,
        note: "reference only",
      });
      return {
        rows,
        details: { rounds, ticks, tickMs: TICK_MS, graphqlWs: ws, sse, rawQueueEvents: raw, rawRedisPubSub: pubsub },
      };
    } finally {
      await stack.stop();
    }
  },
} satisfies Scenario;
