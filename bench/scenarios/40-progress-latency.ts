// Progress latency, one subscriber: worker job.updateProgress -> API -> graphql-ws client, vs raw
// QueueEvents reading the same worker's progress. Also raw ioredis pub/sub, for reference.

import { runScript } from "../lib/child.ts";
import { enqueueNoops } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import type { Row, Scenario } from "../lib/scenario.ts";
import type { Summary } from "../lib/stats.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

const TICK_MS = 10;

export default {
  name: "progress-latency",
  async run(ctx) {
    const ticks = ctx.quick ? 150 : 2_000;
    const skip = Math.floor(ticks / 10); // warm-up ticks, left out of the percentiles
    const jobMs = ticks * TICK_MS;
    const stack = await ctx.startStack({ workers: 1 });
    try {
      // Baseline: QueueEvents in its own process, listening to the real worker's progress.
      const listener = steer<{ type?: string }>("load/queue-events-listener.ts", { redisUrl: ctx.redisUrl, prefix: stack.prefix, skip });
      await listener.next();
      await enqueueNoops(stack.url, ctx.apiKey, 1, { ticks, tickMs: TICK_MS });
      await new Promise((r) => setTimeout(r, jobMs + 1_000));
      listener.send("report");
      const raw = await listener.next<Summary & { type: string }>("report");

      // Ours: one graphql-ws subscriber in its own process.
      const [jobId] = await enqueueNoops(stack.url, ctx.apiKey, 1, { ticks, tickMs: TICK_MS });
      const client = steer<WsSubscribersMessage>("load/ws-subscribers.ts", {
        wsUrl: stack.url.replace(/^http/, "ws"),
        apiKey: ctx.apiKey,
        queue: "demo",
        jobIds: [jobId],
        openConcurrency: 1,
      });
      const sub = await client.next<Extract<WsSubscribersMessage, { type: "subscribed" }>>("subscribed");
      if (sub.subscribed !== 1) throw new Error(`subscription failed: ${sub.firstError}`);
      await new Promise((r) => setTimeout(r, Math.min(jobMs / 10, 2_000)));
      client.send("reset");
      await new Promise((r) => setTimeout(r, jobMs));
      client.send("report");
      const ours = await client.next<Extract<WsSubscribersMessage, { type: "report" }>>("report");
      client.kill();

      const pubsub = await runScript<Summary>(
        "load/redis-pubsub-latency.ts",
        { redisUrl: ctx.redisUrl, channel: `${stack.prefix}:bench-pubsub`, count: ticks, intervalMs: TICK_MS },
        jobMs + 30_000,
      );
      const o = ours.latency;
      const rows: Row[] = [
        {
          scenario: "progress latency, 1 sub",
          metric: "p50 ms",
          project: o.p50,
          baseline: raw.p50,
          baselineName: "raw QueueEvents",
          ratio: null,
          target: "<= base + 1 ms",
          pass: o.p50 <= raw.p50 + 1,
        },
        {
          scenario: "progress latency, 1 sub",
          metric: "p95 ms",
          project: o.p95,
          baseline: raw.p95,
          baselineName: "raw QueueEvents",
          ratio: null,
          target: "-",
          pass: null,
        },
        {
          scenario: "progress latency, 1 sub",
          metric: "p99 ms",
          project: o.p99,
          baseline: raw.p99,
          baselineName: "raw QueueEvents",
          ratio: null,
          target: "<= base + 3 ms",
          pass: o.p99 <= raw.p99 + 3,
        },
        {
          scenario: "raw ioredis pub/sub",
          metric: "p50 / p99 ms",
          project: null,
          baseline: pubsub.p50,
          baselineName: `pub->sub p99 ${pubsub.p99.toFixed(2)} ms`,
          ratio: null,
          target: "-",
          pass: null,
          note: "reference only",
        },
      ];
      return { rows, details: { ticks, tickMs: TICK_MS, warmupTicks: skip, graphqlWs: ours, rawQueueEvents: raw, rawRedisPubSub: pubsub } };
    } finally {
      await stack.stop();
    }
  },
} satisfies Scenario;
