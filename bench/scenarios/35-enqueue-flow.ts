// enqueueFlow of a parent with 100 children (demo.fanout over 100 demo.noop, through the API) against
// raw BullMQ FlowProducer.add of the same tree from a load process of its own
// (bench/load/raw-flow-add.ts), same run: rounds of `perRound` flows of each, one flow at a time, the
// order alternating round by round; the ratio is the median of the rounds' flows/s ratios. Both sides
// write under the same per-queue prefixes (REDIS_KEY_LAYOUT=per-queue); the raw side in a queue of
// its own, and no worker runs, so nothing consumes either side's jobs during the measurement.
import { post } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";

const CHILDREN = 100;
const RAW_QUEUE = "rawflow";

const ENQUEUE_FLOW = `mutation($input: FlowInput!) {
  enqueueFlow(input: $input) { __typename ... on EnqueueFlowSuccess { job { id } } }
}`;

export default {
  name: "enqueue-flow",
  async run(ctx) {
    const scenario = `enqueueFlow 1+${CHILDREN}`;
    const rounds = ctx.quick ? 2 : 10;
    const perRound = ctx.quick ? 5 : 20;
    const stack = await ctx.startStack();
    const raw = steer<{ type: string; ms?: number[]; message?: string }>("load/raw-flow-add.ts", {
      redisUrl: ctx.redisUrl,
      basePrefix: stack.prefix,
      queue: RAW_QUEUE,
      children: CHILDREN,
    });
    try {
      await raw.next("ready");
      const input = {
        queue: "demo",
        name: "fanout",
        data: { label: "bench" },
        children: Array.from({ length: CHILDREN }, () => ({ queue: "demo", name: "noop", data: {} })),
      };
      const ours = async (count: number): Promise<number[]> => {
        const ms: number[] = [];
        for (let i = 0; i < count; i++) {
          const t = nowMs();
          const data = await post<{ enqueueFlow: { __typename: string } }>(stack.url, ctx.apiKey, ENQUEUE_FLOW, { input });
          ms.push(nowMs() - t);
          if (data.enqueueFlow.__typename !== "EnqueueFlowSuccess") throw new Error(`enqueueFlow answered ${data.enqueueFlow.__typename}`);
        }
        return ms;
      };
      const baseline = async (count: number): Promise<number[]> => {
        raw.send({ count });
        const m = await raw.next();
        if (m.type !== "ms") throw new Error(`raw FlowProducer.add failed: ${m.message}`);
        return m.ms as number[];
      };
      // Warm-up (connections, scripts loaded, JIT), not counted.
      await ours(2);
      await baseline(2);
      const ms = { ours: [] as number[], raw: [] as number[] };
      const ratios: number[] = [];
      const rates: { ours: number; raw: number }[] = [];
      const rate = (d: number[]) => (d.length / d.reduce((a, b) => a + b, 0)) * 1000;
      for (let r = 0; r < rounds; r++) {
        let o: number[];
        let b: number[];
        if (r % 2 === 0) {
          o = await ours(perRound);
          b = await baseline(perRound);
        } else {
          b = await baseline(perRound);
          o = await ours(perRound);
        }
        ms.ours.push(...o);
        ms.raw.push(...b);
        rates.push({ ours: rate(o), raw: rate(b) });
        ratios.push(rate(o) / rate(b));
      }
      const mid = rates[ratios.indexOf(median(ratios))] ?? rates[0];
      if (!mid) throw new Error("no rounds");
      const p = summarize(ms.ours);
      const b = summarize(ms.raw);
      const rawName = "raw FlowProducer.add, same tree";
      return {
        rows: [
          ratioRow({ scenario, metric: "flows/s", project: mid.ours, baseline: mid.raw, baselineName: rawName, target: ">= 0.8x" }, 0.8),
          ratioRow(
            {
              scenario,
              metric: "children/s",
              project: mid.ours * CHILDREN,
              baseline: mid.raw * CHILDREN,
              baselineName: rawName,
              target: "-",
            },
            null,
          ),
          ratioRow({ scenario, metric: "p50 ms per flow", project: p.p50, baseline: b.p50, baselineName: rawName, target: "-" }, null),
          ratioRow({ scenario, metric: "p99 ms per flow", project: p.p99, baseline: b.p99, baselineName: rawName, target: "-" }, null),
        ],
        details: {
          rounds,
          perRound,
          children: CHILDREN,
          ratios,
          rates,
          enqueueFlowMs: ms.ours,
          rawFlowMs: ms.raw,
          latency: { ours: p, raw: b },
        },
      };
    } finally {
      raw.kill();
      // The raw queue's keys are under the stack's prefix (its per-queue `{bench-…:rawflow}`): stop() removes them.
      await stack.stop();
    }
  },
} satisfies Scenario;
