// Enqueue to start: from enqueueJob's HTTP response to the job's ACTIVE event at a graphql-ws
// subscriber (queueEvents), one job at a time, the worker idle and waiting; against raw Queue.add ->
// raw Worker -> raw QueueEvents `active` in the same run, rounds alternating (load/enqueue-to-start.ts).

import { runScript } from "../lib/child.ts";
import { steer } from "../lib/ipc.ts";
import type { Row, Scenario } from "../lib/scenario.ts";
import { summarize } from "../lib/stats.ts";
import type { EnqueueToStartInput, EnqueueToStartResult } from "../load/enqueue-to-start.ts";

/** The design's promise, tightened: ours may add at most this much to raw BullMQ's p99. */
const P99_MARGIN_MS = 5;

export default {
  name: "enqueue-to-start",
  async run(ctx) {
    const stack = await ctx.startStack({ workers: 1 });
    const rawQueue = "start-raw";
    // demo's concurrency is 10 (src/jobs/definitions/demo-noop.ts): the raw Worker gets the same.
    const rawWorker = steer<{ ready?: boolean }>("load/raw-worker.ts", {
      redisUrl: ctx.redisUrl,
      prefix: stack.prefix,
      concurrency: 10,
      queue: rawQueue,
    });
    try {
      await rawWorker.next();
      const rounds = ctx.quick ? 2 : 5;
      const perRound = ctx.quick ? 20 : 100;
      const r = await runScript<EnqueueToStartResult>(
        "load/enqueue-to-start.ts",
        {
          url: stack.url,
          apiKey: ctx.apiKey,
          redisUrl: ctx.redisUrl,
          prefix: stack.prefix,
          rawQueue,
          perRound,
          rounds,
          idleMs: 30,
        } satisfies EnqueueToStartInput,
        600_000,
      );
      const api = summarize(r.api);
      const raw = summarize(r.raw);
      const apiSend = summarize(r.apiFromSend);
      const rawSend = summarize(r.rawFromSend);
      const apiEnqueue = summarize(r.apiEnqueue);
      const rawEnqueue = summarize(r.rawEnqueue);
      const scenario = `enqueue to start, ${api.count} jobs`;
      const base = { scenario, baselineName: "raw Queue.add -> Worker -> QueueEvents", ratio: null };
      const rows: Row[] = [
        { ...base, metric: "answer -> ACTIVE p50 ms", project: api.p50, baseline: raw.p50, target: "-", pass: null },
        {
          ...base,
          metric: "answer -> ACTIVE p99 ms",
          project: api.p99,
          baseline: raw.p99,
          target: `<= base + ${P99_MARGIN_MS} ms`,
          pass: api.p99 <= raw.p99 + P99_MARGIN_MS,
        },
        {
          ...base,
          metric: "send -> ACTIVE p50 / p99 ms",
          project: apiSend.p50,
          baseline: rawSend.p50,
          baselineName: `raw p99 ${rawSend.p99.toFixed(2)}; ours p99 ${apiSend.p99.toFixed(2)}`,
          target: "-",
          pass: null,
        },
        {
          ...base,
          metric: "enqueue round trip p50 ms",
          project: apiEnqueue.p50,
          baseline: rawEnqueue.p50,
          baselineName: "raw Queue.add",
          target: "-",
          pass: null,
        },
      ];
      return {
        rows,
        details: { rounds, perRound, idleMs: 30, api, raw, apiFromSend: apiSend, rawFromSend: rawSend, apiEnqueue, rawEnqueue },
      };
    } finally {
      rawWorker.kill();
      await stack.stop();
    }
  },
} satisfies Scenario;
