// enqueueJobs with 1,000 inputs against its floor (bench/load/floor-add-bulk.ts: addBulk of the same
// 1,000 jobs plus one multi-row history insert through the same PostgreSQL function), and raw
// Queue.addBulk for reference: one batch of each in turn, the order alternating, median of repeats.
import { deletePrefix } from "../../src/testing/redis.ts";
import { post } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { median, nowMs } from "../lib/stats.ts";

const SIZE = 1_000;
const KINDS = ["ours", "floor", "raw"] as const;
type Kind = (typeof KINDS)[number];

export default {
  name: "enqueue-jobs-bulk",
  async run(ctx) {
    const scenario = `enqueueJobs x${SIZE}`;
    const repeats = ctx.quick ? 2 : 15;
    const stack = await ctx.startStack();
    const prefix = `${stack.prefix}-floor`;
    const baselines = steer<{ type: string; ms?: number; message?: string }>("load/floor-add-bulk.ts", {
      redisUrl: ctx.redisUrl,
      prefix,
      databaseUrl: stack.databaseUrl,
      size: SIZE,
    });
    try {
      await baselines.next("ready");
      const inputs = Array.from({ length: SIZE }, () => ({ queue: "demo", name: "noop", data: {} }));
      const query = "mutation($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { __typename } }";
      const once = async (kind: Kind): Promise<number> => {
        if (kind === "ours") {
          const t = nowMs();
          const data = await post<{ enqueueJobs: { __typename: string } }>(stack.url, ctx.apiKey, query, { inputs });
          if (data.enqueueJobs.__typename !== "EnqueueJobsSuccess") throw new Error(`enqueueJobs answered ${data.enqueueJobs.__typename}`);
          return nowMs() - t;
        }
        baselines.send({ kind });
        const m = await baselines.next();
        if (m.type !== "ms") throw new Error(`${kind} batch failed: ${m.message}`);
        return m.ms as number;
      };
      const ms: Record<Kind, number[]> = { ours: [], floor: [], raw: [] };
      // One warm-up batch of each, then rounds in alternating order.
      for (const kind of KINDS) await once(kind);
      for (let r = 0; r < repeats; r++) {
        for (const kind of r % 2 === 0 ? KINDS : [...KINDS].reverse()) ms[kind].push(await once(kind));
      }
      const rate = (kind: Kind) => (SIZE / median(ms[kind])) * 1000;
      return {
        rows: [
          ratioRow(
            {
              scenario,
              metric: "jobs/s",
              project: rate("ours"),
              baseline: rate("floor"),
              baselineName: "floor: addBulk + 1 multi-row insert",
              target: ">= 0.9x",
            },
            0.9,
          ),
          // Information: the old ratio (the target the floor replaced, issue #19).
          ratioRow(
            { scenario, metric: "jobs/s", project: rate("ours"), baseline: rate("raw"), baselineName: "raw Queue.addBulk", target: "-" },
            null,
          ),
        ],
        details: { repeats, enqueueJobsMs: ms.ours, floorMs: ms.floor, addBulkMs: ms.raw },
      };
    } finally {
      baselines.kill();
      await stack.stop();
      await deletePrefix(prefix, ctx.redisUrl);
    }
  },
} satisfies Scenario;
