import type { HttpLoadInput, HttpLoadResult } from "../load/http-load.ts";
import { runScript } from "./child.ts";
import type { BenchContext } from "./scenario.ts";
import { median } from "./stats.ts";

type Target = Omit<HttpLoadInput, "warmupSec" | "durationSec">;

/** Runs the autocannon load process against one URL with the run's durations (quick or full). */
export function httpLoad(ctx: BenchContext, input: Target): Promise<HttpLoadResult> {
  const warmupSec = ctx.quick ? 1 : 2;
  const durationSec = ctx.quick ? 2 : 5;
  return runScript<HttpLoadResult>("load/http-load.ts", { ...input, warmupSec, durationSec }, (warmupSec + durationSec) * 1000 + 30_000);
}

export interface Comparison {
  /** The round whose ratio is the median one (its own figures, so they stay consistent). */
  project: HttpLoadResult;
  baseline: HttpLoadResult;
  ratio: number;
  ratios: number[];
}

/**
 * Baseline and project in alternating rounds (B, P, B, P ...), the ratio being the median of the
 * rounds' ratios: the machine is shared, and drift hits both sides of a round alike.
 */
export async function compareHttp(ctx: BenchContext, baseline: Target, project: Target): Promise<Comparison> {
  const rounds = ctx.quick ? 1 : 5;
  const results: { b: HttpLoadResult; p: HttpLoadResult; ratio: number }[] = [];
  for (let r = 0; r < rounds; r++) {
    const b = await httpLoad(ctx, baseline);
    const p = await httpLoad(ctx, project);
    results.push({ b, p, ratio: p.rps / b.rps });
  }
  const ratios = results.map((r) => r.ratio);
  const mid = results.find((r) => r.ratio === median(ratios)) ?? results[0];
  if (!mid) throw new Error("no rounds");
  return { project: mid.p, baseline: mid.b, ratio: mid.ratio, ratios };
}

export const TRIVIAL_BODY = JSON.stringify({ query: "{ __typename }" });

/** enqueueJob of a demo `noop`, asking for the job's id: the enqueue scenarios' request. */
export const ENQUEUE_NOOP_BODY = JSON.stringify({
  query: 'mutation { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { __typename ... on EnqueueJobSuccess { job { id } } } }',
});
