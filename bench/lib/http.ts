import type { HttpLoadInput, HttpLoadResult } from "../load/http-load.ts";
import { runScript } from "./child.ts";
import type { BenchContext } from "./scenario.ts";
import { cpuMs } from "./stack.ts";
import { median } from "./stats.ts";

type Target = Omit<HttpLoadInput, "warmupSec" | "durationSec"> & {
  /** The server's process: its CPU time per request is measured too (`serverCpuUs`). */
  serverPid?: number;
};

export type HttpRun = HttpLoadResult & {
  /**
   * CPU time of the server process per request answered (warm-up included), in µs, when its pid was
   * given. Unlike req/s it does not depend on how fast the load generator is, nor on what else runs
   * on the machine: 1,000,000 / serverCpuUs is what the server answers per second with one core of
   * its own (every server here is one Node process: one core at most).
   */
  serverCpuUs: number | null;
};

/** Runs the autocannon load process against one URL with the run's durations (quick or full). */
export async function httpLoad(ctx: BenchContext, input: Target): Promise<HttpRun> {
  const warmupSec = ctx.quick ? 1 : 2;
  const durationSec = ctx.quick ? 2 : 5;
  const { serverPid, ...load } = input;
  const cpu0 = serverPid ? cpuMs(serverPid) : 0;
  const r = await runScript<HttpLoadResult>(
    "load/http-load.ts",
    { ...load, warmupSec, durationSec },
    (warmupSec + durationSec) * 1000 + 30_000,
  );
  const answered = r.requests + r.warmupRequests;
  const serverCpuUs = serverPid && answered > 0 ? ((cpuMs(serverPid) - cpu0) * 1000) / answered : null;
  return { ...r, serverCpuUs };
}

export interface Comparison {
  /** The round whose ratio is the median one (its own figures, so they stay consistent). */
  project: HttpRun;
  baseline: HttpRun;
  ratio: number;
  ratios: number[];
}

/**
 * Baseline and project in alternating rounds (B, P, B, P ...), the ratio being the median of the
 * rounds' ratios: the machine is shared, and drift hits both sides of a round alike.
 */
export async function compareHttp(ctx: BenchContext, baseline: Target, project: Target): Promise<Comparison> {
  const rounds = await httpRounds(ctx, { baseline, project });
  return pick(rounds, "project", "baseline");
}

/** One round: every target's figures, measured one after the other. */
export type Round<K extends string> = Record<K, HttpRun>;

/**
 * Several targets measured in the same rounds (5, or 1 with --quick), each round in a different order
 * (rotated), so drift within a round does not always favour the same target. `pick` then reads any
 * pair's median ratio from them.
 */
export async function httpRounds<K extends string>(ctx: BenchContext, targets: Record<K, Target>): Promise<Round<K>[]> {
  const count = ctx.quick ? 1 : 5;
  const keys = Object.keys(targets) as K[];
  const rounds: Round<K>[] = [];
  for (let r = 0; r < count; r++) {
    const round: Partial<Round<K>> = {};
    const order = [...keys.slice(r % keys.length), ...keys.slice(0, r % keys.length)];
    for (const k of order) round[k] = await httpLoad(ctx, targets[k]);
    rounds.push(round as Round<K>);
  }
  return rounds;
}

/** `project` against `baseline` over the rounds: req/s ratios per round, and the median round's figures. */
export function pick<K extends string>(rounds: Round<K>[], project: K, baseline: K): Comparison {
  const results = rounds.map((r) => ({ p: r[project], b: r[baseline], ratio: r[project].rps / r[baseline].rps }));
  const ratios = results.map((r) => r.ratio);
  const mid = results.find((r) => r.ratio === median(ratios)) ?? results[0];
  if (!mid) throw new Error("no rounds");
  return { project: mid.p, baseline: mid.b, ratio: mid.ratio, ratios };
}

/** The floor's request (bench/load/floor-enqueue-server.ts): the same job as ENQUEUE_NOOP_BODY, as plain JSON. */
export const FLOOR_ENQUEUE_BODY = JSON.stringify({ queue: "floor", name: "noop", data: {} });

export const TRIVIAL_BODY = JSON.stringify({ query: "{ __typename }" });

/** enqueueJob of a demo `noop`, asking for the job's id: the enqueue scenarios' request. */
export const ENQUEUE_NOOP_BODY = JSON.stringify({
  query: 'mutation { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { __typename ... on EnqueueJobSuccess { job { id } } } }',
});
