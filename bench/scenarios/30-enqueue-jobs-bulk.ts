// enqueueJobs with 1,000 inputs vs raw Queue.addBulk of the same 1,000 jobs (median of repeats).
import { readFileSync } from "node:fs";
import path from "node:path";
import { deletePrefix } from "../../src/testing/redis.ts";
import { runScript } from "../lib/child.ts";
import { post } from "../lib/graphql-client.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { median, nowMs } from "../lib/stats.ts";

const SIZE = 1_000;

/** The mutation's argument name from the committed schema, or null while it does not exist yet. */
function enqueueJobsArgument(): string | null {
  const schema = readFileSync(path.resolve(import.meta.dirname, "../../schema.graphql"), "utf8");
  return /\benqueueJobs\(\s*(\w+)\s*:/.exec(schema)?.[1] ?? null;
}

export default {
  name: "enqueue-jobs-bulk",
  async run(ctx) {
    const arg = enqueueJobsArgument();
    const scenario = `enqueueJobs x${SIZE}`;
    if (!arg) {
      return {
        rows: [
          {
            scenario,
            metric: "jobs/s",
            project: null,
            baseline: null,
            baselineName: "raw Queue.addBulk",
            ratio: null,
            target: ">= 0.8x",
            pass: null,
            note: "not available: no enqueueJobs in schema.graphql yet",
          },
        ],
        details: { available: false },
      };
    }
    const repeats = ctx.quick ? 2 : 9;
    const stack = await ctx.startStack();
    try {
      const inputs = Array.from({ length: SIZE }, () => ({ queue: "demo", name: "noop", data: {} }));
      const query = `mutation($inputs: [EnqueueJobInput!]!) { enqueueJobs(${arg}: $inputs) { __typename } }`;
      const durations: number[] = [];
      for (let r = 0; r <= repeats; r++) {
        const t = nowMs();
        await post(stack.url, ctx.apiKey, query, { inputs });
        if (r > 0) durations.push(nowMs() - t);
      }
      const raw = await runScript<{ durations: number[] }>(
        "load/raw-add-bulk.ts",
        { redisUrl: ctx.redisUrl, prefix: `${stack.prefix}-raw`, size: SIZE, repeats },
        120_000,
      );
      const project = (SIZE / median(durations)) * 1000;
      const baseline = (SIZE / median(raw.durations)) * 1000;
      return {
        rows: [ratioRow({ scenario, metric: "jobs/s", project, baseline, baselineName: "raw Queue.addBulk", target: ">= 0.8x" }, 0.8)],
        details: { available: true, repeats, enqueueJobsMs: durations, addBulkMs: raw.durations },
      };
    } finally {
      await stack.stop();
      await deletePrefix(`${stack.prefix}-raw`, ctx.redisUrl);
    }
  },
} satisfies Scenario;
