import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";
import { applyMigrations } from "../../src/infra/migrate.ts";
import { type RunningProcess, startApi, startWorker } from "../../src/testing/processes.ts";
import { deletePrefix } from "../../src/testing/redis.ts";

export interface StackOptions {
  workers?: number;
  workerEnv?: Record<string, string>;
  apiEnv?: Record<string, string>;
  /** No API process (worker-only scenarios). */
  noApi?: boolean;
}

export interface Stack {
  /** The API's /graphql URL ("" without an API). */
  url: string;
  prefix: string;
  databaseUrl: string;
  env: Record<string, string>;
  api: RunningProcess | null;
  workers: RunningProcess[];
  /** `from`: another checkout's workers/main.ts (same environment), for A/B runs of the worker. */
  startWorker(extra?: Record<string, string>, from?: string): Promise<RunningProcess>;
  stop(): Promise<void>;
}

async function admin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Starts a stack like production runs it (NODE_ENV=production, auth on), isolated by prefix and database. */
export async function startStack(
  base: { redisUrl: string; adminDatabaseUrl: string; apiKey: string },
  options: StackOptions = {},
): Promise<Stack> {
  const id = randomBytes(4).toString("hex");
  const prefix = `{bench-${id}}`;
  const dbName = `bench_${id}`;
  await admin(base.adminDatabaseUrl, `CREATE DATABASE "${dbName}"`);
  const dbUrl = new URL(base.adminDatabaseUrl);
  dbUrl.pathname = `/${dbName}`;
  const databaseUrl = dbUrl.toString();
  await applyMigrations(databaseUrl);
  const env: Record<string, string> = {
    NODE_ENV: "production",
    ADMIN_API_KEY: base.apiKey,
    JOB_TOKEN_SECRET: randomBytes(32).toString("base64url"),
    // The bench's load comes from one credential: a budget it never reaches, so the limiter's cost
    // (one script call per request) is measured but never its refusals.
    RATE_LIMIT_PER_MINUTE: "1000000000",
    DEMO_QUEUE: "true",
    REDIS_URL: base.redisUrl,
    DATABASE_URL: databaseUrl,
    QUEUE_PREFIX: prefix,
    MIGRATE_ON_START: "false",
    LOG_LEVEL: "error",
    SHUTDOWN_GRACE_MS: "2000",
    // Every load client of the bench is one address with one key: the per-address and
    // per-credential connection limits (100 and 500 by default) would cut the fan-out levels short.
    MAX_CONNECTIONS_PER_ADDRESS: "0",
    MAX_CONNECTIONS_PER_CREDENTIAL: "0",
  };
  // BENCH_PROFILE_DIR: every API and worker process writes a V8 CPU profile there when it stops
  // (they are then stopped with SIGTERM, since SIGKILL writes nothing).
  const profileDir = process.env.BENCH_PROFILE_DIR;
  if (profileDir) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${profileDir}`;
  const workers: RunningProcess[] = [];
  const spawnWorker = async (extra: Record<string, string> = {}, from?: string) => {
    const w = await startWorker({ ...env, ...options.workerEnv, ...extra }, from);
    workers.push(w);
    return w;
  };
  let api: RunningProcess | null = null;
  let url = "";
  if (!options.noApi) {
    api = await startApi({ ...env, ...options.apiEnv });
    url = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "";
  }
  for (let i = 0; i < (options.workers ?? 0); i++) await spawnWorker();
  return {
    url,
    prefix,
    databaseUrl,
    env,
    api,
    workers,
    startWorker: spawnWorker,
    stop: async () => {
      await Promise.all([...workers, ...(api ? [api] : [])].map((p) => p.stop(profileDir ? "SIGTERM" : "SIGKILL")));
      await deletePrefix(prefix, base.redisUrl);
      await admin(base.adminDatabaseUrl, `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    },
  };
}

/** Resident memory of a process, from /proc (Linux). */
/** CPU time (user + system) a process has used so far, in ms, from `/proc` (10 ms resolution). */
export function cpuMs(pid: number): number {
  // Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(")").at(-1)?.trim().split(" ") ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/**
 * CPU time used so far by a process and its children, in ms, from `/proc`: its own, that of the
 * children it has waited for (cutime, cstime: a PostgreSQL backend that exited) and that of its live
 * children (a postmaster's backends, WAL writer, checkpointer). For one server's share of the
 * machine when other servers of the same program run beside it (`programCpuMs` counts them all).
 */
export function treeCpuMs(pid: number): number {
  const stat = (p: string) => readFileSync(`/proc/${p}/stat`, "utf8").split(")").at(-1)?.trim().split(" ") ?? [];
  const own = stat(String(pid));
  let total = ((Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])) * 1000) / 100;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || entry === String(pid)) continue;
    let f: string[];
    try {
      f = stat(entry);
    } catch {
      continue; // exited since the listing
    }
    // Field 4 (ppid) is the second after the ")".
    if (Number(f[1]) === pid) total += ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100;
  }
  return total;
}

/**
 * CPU time used so far by every live process of one program (by its command name, e.g.
 * "redis-server" or "postgres": a server and all its backends), in ms, from `/proc`.
 */
export function programCpuMs(command: string): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited since the listing
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (name !== command) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    total += ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  }
  return total;
}

/**
 * CPU time used so far by the one server listening on `url`'s port (a `redis://` or `postgresql://`
 * URL), in ms, from `/proc`: for PostgreSQL the postmaster started with `-p <port>` (with its reaped
 * children's time) and every live process it forked (backends, autovacuum, WAL writer); for Redis the
 * `redis-server <host>:<port>` process. Unlike `programCpuMs`, other servers of the same program on the
 * machine (the shared ones, other benches' private ones) are not counted. Falls back to
 * `programCpuMs` when no such process is found (a server on another host, or not started this way).
 */
export function serverCpuMs(url: string): number {
  const { protocol, port } = new URL(url);
  const redis = protocol === "redis:" || protocol === "rediss:";
  const stats = new Map<number, { ppid: number; own: number; reaped: number }>();
  let server = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      cmdline = server ? "" : readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue; // exited since the listing
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (name !== (redis ? "redis-server" : "postgres")) continue;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the command name: ppid is the 2nd field; utime, stime, cutime, cstime the 12th to 15th.
    const pid = Number(entry);
    stats.set(pid, { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) });
    if (!server && (redis ? cmdline.trim().endsWith(`:${port}`) : cmdline.includes(` -p ${port} `))) server = pid;
  }
  const root = stats.get(server);
  if (!root) return programCpuMs(redis ? "redis-server" : "postgres");
  let ticks = root.own + root.reaped;
  for (const s of stats.values()) if (s.ppid === server) ticks += s.own;
  return (ticks * 1000) / 100;
}

/**
 * CPU time the whole machine has been busy so far (every process and the kernel, all cores), in ms,
 * from `/proc/stat` (Linux).
 */
export function machineBusyMs(): number {
  const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/) ?? [];
  // user nice system idle iowait irq softirq steal: everything but idle and iowait.
  const t = ticks.map(Number);
  return (((t[0] ?? 0) + (t[1] ?? 0) + (t[2] ?? 0) + (t[5] ?? 0) + (t[6] ?? 0) + (t[7] ?? 0)) * 1000) / 100;
}

export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb * 1024;
}
