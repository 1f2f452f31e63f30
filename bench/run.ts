// `npm run bench [-- --quick] [-- --only <name>] [-- --seed-rows <n>]`: every scenario under bench/scenarios/, one table,
// JSON and SVG under bench/results/.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { renderChart } from "./lib/chart.ts";
import { type PrivatePostgres, startPrivatePostgres } from "./lib/private-postgres.ts";
import { type PrivateRedis, startPrivateRedis } from "./lib/private-redis.ts";
import { type BenchContext, errorRow, type Row, type Scenario, type ScenarioOutput } from "./lib/scenario.ts";
import { startStack } from "./lib/stack.ts";
import { formatTable } from "./lib/table.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
// An opt-in level of history above the 1M every full run seeds (history-queries), e.g. 10000000.
const seedRowsArg = args.includes("--seed-rows") ? args[args.indexOf("--seed-rows") + 1] : undefined;
const seedRows = seedRowsArg === undefined ? null : Number(seedRowsArg);
if (seedRows !== null && (!Number.isInteger(seedRows) || seedRows <= 1_000_000 || seedRows > 100_000_000 || quick)) {
  process.stderr.write("--seed-rows takes a whole number of rows above 1000000 (at most 100000000), and not with --quick\n");
  process.exit(2);
}
const started = Date.now();
const log = (m: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] ${m}\n`);

// Private servers unless the environment names its own: the bench must not load the shared ones.
let redis: PrivateRedis | null = null;
let postgres: PrivatePostgres | null = null;
const cleanup = async () => {
  await redis?.destroy();
  await postgres?.stop();
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
// The harness is a composition root of its own (like main.ts): it reads only these two variables.
const env = process.env;
try {
  if (!env.REDIS_URL) redis = await startPrivateRedis();
  if (!env.DATABASE_URL) postgres = await startPrivatePostgres();
  const redisUrl = env.REDIS_URL ?? redis?.url ?? "";
  const adminDatabaseUrl = env.DATABASE_URL ?? postgres?.adminUrl ?? "";
  const machine = await describeMachine(redisUrl, adminDatabaseUrl);
  log(`machine: ${JSON.stringify(machine)}`);

  const ctx: BenchContext = {
    quick,
    seedRows,
    redisUrl,
    adminDatabaseUrl,
    apiKey: `bench-${randomBytes(16).toString("hex")}`,
    startStack: (options) => startStack({ redisUrl, adminDatabaseUrl, apiKey: ctx.apiKey }, options),
    memo: new Map(),
    log,
  };

  const dir = path.join(import.meta.dirname, "scenarios");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".ts"))
    .sort();
  const scenarios = await Promise.all(files.map(async (f) => ((await import(path.join(dir, f))).default as Scenario).name));
  const exact = only !== undefined && scenarios.includes(only);
  const outputs: Record<string, ScenarioOutput & { seconds: number }> = {};
  const rows: Row[] = [];
  for (const file of files) {
    const scenario = (await import(path.join(dir, file))).default as Scenario;
    // --only <name>: that scenario when one has exactly this name (fan-out, not also tenant-fan-out), else every name containing it.
    if (only && (exact ? scenario.name !== only : !scenario.name.includes(only))) continue;
    const t0 = Date.now();
    log(`scenario ${scenario.name}`);
    try {
      const out = await scenario.run(ctx);
      outputs[scenario.name] = { ...out, seconds: (Date.now() - t0) / 1000 };
      rows.push(...out.rows);
    } catch (err) {
      log(`scenario ${scenario.name} failed: ${err instanceof Error ? err.stack : String(err)}`);
      rows.push(errorRow(scenario.name, err));
    }
  }

  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(
    `\n${formatTable(rows)}\n\n${quick ? "quick run" : "full run"} in ${seconds.toFixed(0)} s on ${machine.cpus} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, Redis ${machine.redis}, ${machine.postgres}\n`,
  );
  const resultsDir = path.join(import.meta.dirname, "results");
  mkdirSync(resultsDir, { recursive: true });
  // A partial run (--only) must not replace the latest complete one.
  const name = `${only ? `only-${only}-` : ""}${seedRows ? `seed-rows-${seedRows}-` : ""}${quick ? "latest-quick" : "latest"}`;
  const report = { mode: quick ? "quick" : "full", seedRows, date: new Date().toISOString(), seconds, machine, rows, scenarios: outputs };
  writeFileSync(path.join(resultsDir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(path.join(resultsDir, `${name}.svg`), renderChart(report));
  log(`wrote bench/results/${name}.json and ${name}.svg`);
} finally {
  await cleanup();
}
// Load clients' sockets and pools may still hold the loop open for a while; the run is over.
process.exit(process.exitCode ?? 0);

async function describeMachine(redisUrl: string, databaseUrl: string) {
  const r = new Redis(redisUrl);
  const info = await r.info("server");
  r.disconnect();
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  const version = (await c.query("SHOW server_version")).rows[0]?.server_version as string;
  await c.end();
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown",
    postgres: `PostgreSQL ${version}`,
    os: `${os.type()} ${os.release()}`,
  };
}
