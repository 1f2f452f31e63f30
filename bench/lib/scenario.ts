import type { Stack, StackOptions } from "./stack.ts";

/** One line of the results table: the project's figure against a baseline measured in the same run. */
export interface Row {
  scenario: string;
  metric: string;
  project: number | null;
  baseline: number | null;
  baselineName: string;
  /** project / baseline (for latencies: what the target compares, see `target`). */
  ratio: number | null;
  /** The target in words, e.g. ">= 0.25x" or "p50 <= base + 1 ms"; "-" for information only. */
  target: string;
  /** null: no target, or the scenario could not run (`note` says why). */
  pass: boolean | null;
  note?: string;
}

export interface ScenarioOutput {
  rows: Row[];
  /** Everything else worth keeping in the JSON (percentiles, counts, per-level figures). */
  details: Record<string, unknown>;
}

export interface BenchContext {
  quick: boolean;
  /** `--seed-rows <n>`: an extra, larger level of history for the scenarios that seed it (null: none). */
  seedRows: number | null;
  redisUrl: string;
  /** A URL to a database the harness may CREATE DATABASE from. */
  adminDatabaseUrl: string;
  /** API key every request sends (the API runs as in production: auth on). */
  apiKey: string;
  /** A fresh database, key prefix and API process (and worker processes when asked); stop() removes them. */
  startStack(options?: StackOptions): Promise<Stack>;
  /** Figures one scenario measured that a later one compares against (same run). */
  memo: Map<string, number>;
  log(message: string): void;
}

/** A file under bench/scenarios/ default-exports one of these; run.ts runs them in file-name order. */
export interface Scenario {
  name: string;
  run(ctx: BenchContext): Promise<ScenarioOutput>;
}

export const ratioRow = (r: Omit<Row, "ratio" | "pass">, min: number | null): Row => {
  const ratio = r.project !== null && r.baseline ? r.project / r.baseline : null;
  return { ...r, ratio, pass: min === null || ratio === null ? null : ratio >= min };
};

/** The row a scenario (or one level of it) leaves when it failed, so one failure doesn't lose the others. */
export function errorRow(scenario: string, err: unknown, pass: boolean | null = null): Row {
  const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return {
    scenario,
    metric: "-",
    project: null,
    baseline: null,
    baselineName: "-",
    ratio: null,
    target: "-",
    pass,
    note: `error: ${message}`,
  };
}
