// `npm run dev` after the Node check: PostgreSQL and Redis when none are given (see README "Quick
// start"), the database created and migrated, then the API and one worker, each restarted when its
// files change. Ctrl-C stops the API and the worker first, then the Redis and PostgreSQL it started.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ConfigError, type DevConfig, loadDevConfig } from "../src/config.ts";
import { ensureDatabase } from "../src/infra/ensure-database.ts";
import { applyMigrations } from "../src/infra/migrate.ts";
import { stopChild } from "../src/infra/stop-child.ts";
import { startLocalPostgres } from "./local/postgres.ts";
import { startLocalRedis } from "./local/redis.ts";

const say = (line: string) => process.stdout.write(`[dev] ${line}\n`);
const fail = (text: string): never => {
  process.stderr.write(`\n${text}\n\n`);
  return process.exit(1);
};

let dev: DevConfig;
try {
  dev = loadDevConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  fail(err.problems.map((line) => `config error: ${line}`).join("\n"));
  throw err;
}
const dataDir = path.resolve(dev.dataDir);
/** The data directory as the user would type it: relative when it is under the working directory. */
const shownDataDir = dataDir.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), dataDir) : dataDir;

// One `npm run dev` per data directory: a second one would share (and, on Ctrl-C, stop) the first's
// PostgreSQL. A lock file left by a run that was killed is taken over.
const lockFile = path.join(dataDir, "dev.pid");
fs.mkdirSync(dataDir, { recursive: true });
const holder = Number.parseInt(fs.existsSync(lockFile) ? fs.readFileSync(lockFile, "utf8") : "", 10);
if (holder && holder !== process.pid && isAlive(holder)) {
  fail(
    `Another npm run dev (pid ${holder}) is using ${shownDataDir}: stop it first, or give this one DEV_DATA_DIR=<another directory> (and PORT, WORKER_PORT, DEV_REDIS_PORT of its own).`,
  );
}
fs.writeFileSync(lockFile, String(process.pid));
process.on("exit", () => {
  if (fs.existsSync(lockFile) && fs.readFileSync(lockFile, "utf8") === String(process.pid)) fs.rmSync(lockFile, { force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Stops what this process started, last started first. */
const cleanups: (() => Promise<void>)[] = [];
async function cleanUp() {
  for (const stop of cleanups.reverse()) await stop().catch(() => undefined);
  cleanups.length = 0;
}
async function failAfterCleanUp(text: string): Promise<never> {
  await cleanUp();
  return fail(text);
}

// --- PostgreSQL -----------------------------------------------------------------------------------
let databaseUrl = dev.databaseUrl;
let postgresNote: string;
if (databaseUrl) {
  postgresNote = `${redactUrl(databaseUrl)} (DATABASE_URL)`;
} else {
  try {
    const local = await startLocalPostgres(dataDir, say);
    cleanups.push(local.stop);
    databaseUrl = local.url("jobs");
    postgresNote = `embedded PostgreSQL 18, data in ${shownDataDir}/postgres: psql '${databaseUrl}'`;
  } catch (err) {
    await failAfterCleanUp(`Could not start the embedded PostgreSQL: ${(err as Error).message}`);
    throw err;
  }
}
try {
  if (dev.config.nodeEnv !== "production" && (await ensureDatabase(databaseUrl))) {
    say(`created database ${new URL(databaseUrl).pathname.slice(1)}`);
  }
  const applied = await applyMigrations(databaseUrl);
  if (applied.length > 0) say(`applied migrations: ${applied.join(", ")}`);
} catch (err) {
  await failAfterCleanUp(
    `Could not prepare the database at ${redactUrl(databaseUrl)}: ${(err as Error).message}\n` +
      "Start that PostgreSQL, fix DATABASE_URL, or unset DATABASE_URL to use the embedded one.",
  );
}

// --- Redis -------------------------------------------------------------------------------------------
let redisUrl = dev.redisUrl;
let redisNote: string;
if (redisUrl || dev.redisCluster) {
  redisNote = redisUrl ? `${redactUrl(redisUrl)} (REDIS_URL)` : "the cluster in REDIS_CLUSTER_NODES";
} else {
  try {
    const local = await startLocalRedis(dataDir, dev.redisPort, say);
    cleanups.push(local.stop);
    redisUrl = local.url;
    redisNote = local.child
      ? `redis-server started by npm run dev on ${local.url}, data (AOF) in ${shownDataDir}/redis`
      : `${local.url} (already running)`;
  } catch (err) {
    await failAfterCleanUp((err as Error).message);
    throw err;
  }
}

// --- the API and a worker ----------------------------------------------------------------------------
const env: NodeJS.ProcessEnv = {
  ...process.env,
  NODE_ENV: dev.config.nodeEnv,
  LOG_FORMAT: process.env.LOG_FORMAT || "pretty",
  DATABASE_URL: databaseUrl,
  ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
};
let stopping = false;
let exitCode = 0;
const children: ChildProcess[] = [];
for (const [name, entry, flags] of [
  ["api", "src/server/main.ts", []],
  ["worker", "workers/main.ts", ["--max-semi-space-size=32"]],
] as const) {
  // Process groups of their own, so Ctrl-C reaches them once, from here, in order.
  const child = spawn(process.execPath, [...flags, "--watch", "--watch-preserve-output", entry], {
    stdio: ["ignore", "pipe", "inherit"],
    env,
    detached: true,
  });
  let line = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    process.stdout.write(chunk);
    if (name !== "api") return;
    // Line by line: the ready line may arrive split over two chunks.
    const lines = (line + String(chunk)).split("\n");
    line = lines.pop() ?? "";
    for (const l of lines) {
      const ready = /GraphQL API ready at (\S+)/.exec(l);
      if (ready?.[1]) banner(ready[1]);
    }
  });
  child.on("exit", (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[dev] ${name} exited (${code ?? signal}); stopping\n`);
      exitCode = 1;
      void stop();
    }
  });
  children.push(child);
}

function banner(graphqlUrl: string) {
  const origin = new URL(graphqlUrl).origin;
  process.stdout.write(
    [
      "",
      "  Ready.",
      `    GraphQL playground  ${graphqlUrl}`,
      `    Demo page           ${origin}/demo`,
      `    PostgreSQL          ${postgresNote}`,
      `    Redis               ${redisNote}`,
      "  Ctrl-C stops everything; the data is kept for the next run.",
      "",
      "",
    ].join("\n"),
  );
}

async function stop() {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((child) => stopChild(child, "SIGTERM")));
  await cleanUp();
  process.exit(exitCode);
}
// SIGHUP: the terminal was closed. The children are in groups of their own, so it reaches only us.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop());

/** A URL with its password replaced, for printing. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}
