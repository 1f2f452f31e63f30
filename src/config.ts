import { z } from "zod";

/**
 * The only reader of `process.env`. Every variable is parsed here; a bad one stops the process with
 * one line naming it and what was expected (see `loadConfigOrExit`).
 */

const bool = (name: string) =>
  z.enum(["true", "false", "1", "0"], { error: `${name} must be true or false` }).transform((v) => v === "true" || v === "1");

/** A TCP port; 0 asks the OS for any free one (handy for tests and many workers on one host). */
const port = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a port number (0-65535)` })
    .int(`${name} must be a port number (0-65535)`)
    .min(0, `${name} must be a port number (0-65535)`)
    .max(65535, `${name} must be a port number (0-65535)`);

const url = (name: string, protocols: string[]) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { message: `${name} must be a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}` },
  );

/** `host:port` seed nodes, comma-separated; an IPv6 host goes in brackets (`[::1]:7000`). */
const CLUSTER_NODES = /^\s*(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}\s*(?:,\s*(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}\s*)*$/;

function parseClusterNodes(value: string): { host: string; port: number }[] {
  return value.split(",").map((entry) => {
    const at = entry.trim().lastIndexOf(":");
    return {
      host: entry
        .trim()
        .slice(0, at)
        .replace(/^\[(.*)\]$/, "$1"),
      port: Number(entry.trim().slice(at + 1)),
    };
  });
}

/**
 * True when every key starting with `prefix` hashes to one cluster slot: Redis hashes only the part
 * between the first `{` and the first `}` after it, when that part is not empty.
 */
export function hasHashTag(prefix: string): boolean {
  const open = prefix.indexOf("{");
  const close = open < 0 ? -1 : prefix.indexOf("}", open + 1);
  return close > open + 1;
}

const positiveInt = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a positive integer` })
    .int(`${name} must be a positive integer`)
    .min(1, `${name} must be a positive integer`);

const envSchema = z.object({
  NODE_ENV: z
    .enum(["development", "production", "test"], { error: "NODE_ENV must be development, production or test" })
    .default("development"),
  PORT: port("PORT").default(4000),
  HOST: z.string().min(1, "HOST must not be empty").default("127.0.0.1"),
  WORKER_PORT: port("WORKER_PORT").default(4001),
  REDIS_URL: url("REDIS_URL", ["redis:", "rediss:"]).default("redis://127.0.0.1:6379"),
  REDIS_CLUSTER_NODES: z
    .string()
    .refine(
      (v) => CLUSTER_NODES.test(v) && parseClusterNodes(v).every((n) => n.port >= 1 && n.port <= 65535),
      "REDIS_CLUSTER_NODES must be a comma-separated list of host:port (e.g. 10.0.0.1:7000,10.0.0.2:7000)",
    )
    .optional(),
  REDIS_CLUSTER_USERNAME: z.string().min(1, "REDIS_CLUSTER_USERNAME must not be empty").optional(),
  REDIS_CLUSTER_PASSWORD: z.string().min(1, "REDIS_CLUSTER_PASSWORD must not be empty").optional(),
  DATABASE_URL: url("DATABASE_URL", ["postgresql:", "postgres:"]).default("postgresql://postgres@127.0.0.1:5432/jobs"),
  DEMO_QUEUE: bool("DEMO_QUEUE").optional(),
  MIGRATE_ON_START: bool("MIGRATE_ON_START").default(true),
  INTROSPECTION: bool("INTROSPECTION").optional(),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}.-]+$/, "QUEUE_PREFIX may only contain letters, digits and _ { } . -")
    .default("{jobs}"),
  WORKER_CONCURRENCY: positiveInt("WORKER_CONCURRENCY").optional(),
  SHUTDOWN_GRACE_MS: positiveInt("SHUTDOWN_GRACE_MS").default(30_000),
  MAX_PAYLOAD_BYTES: positiveInt("MAX_PAYLOAD_BYTES").default(512 * 1024),
  MAX_BULK_ENQUEUE: positiveInt("MAX_BULK_ENQUEUE").default(1_000),
  MAX_BULK_RETRY: positiveInt("MAX_BULK_RETRY").default(10_000),
  CANCEL_WAIT_MS: positiveInt("CANCEL_WAIT_MS").default(2_000),
  CANCEL_GRACE_MS: positiveInt("CANCEL_GRACE_MS").default(5_000),
  SUBSCRIBER_MAX_BUFFER: positiveInt("SUBSCRIBER_MAX_BUFFER").default(1_000),
  RELAY_LEASE_MS: positiveInt("RELAY_LEASE_MS").default(5_000),
  EVENTS_MAX_LEN: positiveInt("EVENTS_MAX_LEN").default(10_000),
  WS_KEEPALIVE_MS: positiveInt("WS_KEEPALIVE_MS").default(12_000),
  WS_INIT_TIMEOUT_MS: positiveInt("WS_INIT_TIMEOUT_MS").default(10_000),
  WS_MAX_SUBSCRIPTIONS: positiveInt("WS_MAX_SUBSCRIPTIONS").default(100),
  WS_SLOW_CONSUMER_MS: positiveInt("WS_SLOW_CONSUMER_MS").default(10_000),
  ADMIN_API_KEY: z.string().min(16, "ADMIN_API_KEY must be at least 16 characters").optional(),
  LOG_LEVEL: z
    .enum(["debug", "info", "warn", "error", "silent"], { error: "LOG_LEVEL must be debug, info, warn, error or silent" })
    .default("info"),
  WORKER_QUEUES: z
    .string()
    .regex(/^\s*[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\s*$/, "WORKER_QUEUES must be a comma-separated list of queue names")
    .optional(),
  WORKER_LOCK_DURATION_MS: positiveInt("WORKER_LOCK_DURATION_MS").default(30_000),
  WORKER_STALLED_INTERVAL_MS: positiveInt("WORKER_STALLED_INTERVAL_MS").default(30_000),
  WORKER_MAX_STALLED_COUNT: z.coerce
    .number({ error: "WORKER_MAX_STALLED_COUNT must be an integer >= 0" })
    .int("WORKER_MAX_STALLED_COUNT must be an integer >= 0")
    .min(0, "WORKER_MAX_STALLED_COUNT must be an integer >= 0")
    .default(1),
  LEDGER_RECONCILE_MS: positiveInt("LEDGER_RECONCILE_MS").default(30_000),
  LEDGER_LOOKBACK_MS: positiveInt("LEDGER_LOOKBACK_MS").default(300_000),
  WEBHOOK_SECRET: z.string().min(16, "WEBHOOK_SECRET must be at least 16 characters").optional(),
  REPORT_DIR: z.string().min(1, "REPORT_DIR must not be empty").default("reports"),
  METRICS_TOKEN: z.string().min(16, "METRICS_TOKEN must be at least 16 characters").optional(),
  MAX_PAGE_SIZE: z.coerce
    .number({ error: "MAX_PAGE_SIZE must be an integer from 1 to 1000" })
    .int("MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .min(1, "MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .max(1000, "MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .default(100),
  HISTORY_RETENTION_DAYS: positiveInt("HISTORY_RETENTION_DAYS").optional(),
  HISTORY_RETENTION_INTERVAL_MS: positiveInt("HISTORY_RETENTION_INTERVAL_MS").default(3_600_000),
  READYZ_REQUIRE_WORKERS: z
    .string()
    .regex(/^\s*[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\s*$/, "READYZ_REQUIRE_WORKERS must be a comma-separated list of queue names")
    .optional()
    .describe("(API) comma-separated queues that must have a worker: the API's /readyz answers 503 while one has none"),
});

/** `WORKER_CONCURRENCY_<QUEUE>` / `WORKER_RATE_LIMIT_<QUEUE>`: names made from the queue's name. */
export const QUEUE_CONCURRENCY_PREFIX = "WORKER_CONCURRENCY_";
export const QUEUE_RATE_LIMIT_PREFIX = "WORKER_RATE_LIMIT_";
/** `WORKER_TIMEOUT_MS_<QUEUE>`: the longest one attempt of any job of the queue may run. */
export const QUEUE_TIMEOUT_PREFIX = "WORKER_TIMEOUT_MS_";
/** The longest timeout a Node timer holds (about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

/** The `<QUEUE>` part of a per-queue variable: upper case, anything but letters and digits as `_`. */
export function queueEnvSuffix(queue: string): string {
  return queue.toUpperCase().replace(/[^A-Z0-9]/g, "_");
}

/** Per-queue overrides by env suffix; checked against the registered queues when a worker starts. */
function perQueueOverrides(present: Record<string, string | undefined>): {
  concurrency: Record<string, number>;
  rateLimit: Record<string, { max: number; durationMs: number }>;
  timeoutMs: Record<string, number>;
  problems: string[];
} {
  const concurrency: Record<string, number> = {};
  const rateLimit: Record<string, { max: number; durationMs: number }> = {};
  const timeoutMs: Record<string, number> = {};
  const problems: string[] = [];
  for (const [name, value = ""] of Object.entries(present)) {
    if (name.startsWith(QUEUE_TIMEOUT_PREFIX)) {
      const n = Number(value);
      if (/^\d+$/.test(value.trim()) && n >= 1 && n <= MAX_TIMER_MS) timeoutMs[name.slice(QUEUE_TIMEOUT_PREFIX.length)] = n;
      else problems.push(`${name}: ${name} must be milliseconds from 1 to ${MAX_TIMER_MS} (got ${JSON.stringify(value)})`);
    } else if (name.startsWith(QUEUE_CONCURRENCY_PREFIX)) {
      const n = Number(value);
      if (Number.isInteger(n) && n >= 1) concurrency[name.slice(QUEUE_CONCURRENCY_PREFIX.length)] = n;
      else problems.push(`${name}: ${name} must be a positive integer (got ${JSON.stringify(value)})`);
    } else if (name.startsWith(QUEUE_RATE_LIMIT_PREFIX)) {
      const m = /^(\d+)\/(\d+)$/.exec(value.trim());
      const max = Number(m?.[1]);
      const durationMs = Number(m?.[2]);
      if (m && max >= 1 && durationMs >= 1) rateLimit[name.slice(QUEUE_RATE_LIMIT_PREFIX.length)] = { max, durationMs };
      else problems.push(`${name}: ${name} must be <max jobs>/<milliseconds>, e.g. 100/1000 (got ${JSON.stringify(value)})`);
    }
  }
  return { concurrency, rateLimit, timeoutMs, problems };
}

export type Env = z.input<typeof envSchema>;

export interface Config {
  nodeEnv: "development" | "production" | "test";
  port: number;
  host: string;
  workerPort: number;
  redisUrl: string;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); when set, every connection is a cluster connection and `redisUrl` is unused. */
  redisClusterNodes: { host: string; port: number }[] | undefined;
  /** ACL user and password for every cluster node (REDIS_CLUSTER_USERNAME / _PASSWORD); one Redis takes them in REDIS_URL. */
  redisClusterAuth: { username?: string; password?: string };
  databaseUrl: string;
  /** Whether the `demo` queue is registered (runtime contract: on outside production). */
  demoQueue: boolean;
  migrateOnStart: boolean;
  introspection: boolean;
  /** BullMQ key prefix. The hash tag keeps every queue's keys in one Redis Cluster slot. */
  queuePrefix: string;
  workerConcurrency: number | undefined;
  shutdownGraceMs: number;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** Largest job payload accepted at enqueue, in bytes of JSON. */
  maxPayloadBytes: number;
  /** A key with every scope, accepted as `Authorization: Bearer <key>`; unset = auth open (not in production). */
  adminApiKey: string | undefined;
  /** Most inputs one enqueueJobs call takes. */
  maxBulkEnqueue: number;
  /** Most jobs one retryFailedJobs call retries (its `limit` may not exceed it). */
  maxBulkRetry: number;
  /** How long cancelJob waits for an active job to end before answering. */
  cancelWaitMs: number;
  /** After a cancel, how long a processor that ignores its AbortSignal may keep the job. */
  cancelGraceMs: number;
  /** Events held for a subscriber that is not reading before it is cut off. */
  subscriberMaxBuffer: number;
  /** How long an API instance's lease on relaying a queue's events lasts without renewal. */
  relayLeaseMs: number;
  /** Approximate length BullMQ trims each queue's events stream to (how far back `since` reaches). */
  eventsMaxLen: number;
  /** graphql-ws: ping interval; a client that misses a pong by then is disconnected. */
  wsKeepAliveMs: number;
  /** graphql-ws: time allowed between opening the socket and `connection_init` (then close 4408). */
  wsInitTimeoutMs: number;
  /** graphql-ws: subscriptions one connection may run at once (more: close 4029). */
  wsMaxSubscriptions: number;
  /** graphql-ws: how long one message may wait to be taken by the client before it is closed with 4008. */
  wsSlowConsumerMs: number;
  /** Queues this worker serves (WORKER_QUEUES); undefined = every registered queue. */
  workerQueues: string[] | undefined;
  /** Per-queue concurrency by env suffix (`WORKER_CONCURRENCY_<QUEUE>`, see queueEnvSuffix). */
  queueConcurrency: Record<string, number>;
  /** Per-queue rate limits by env suffix (`WORKER_RATE_LIMIT_<QUEUE>=max/ms`). */
  queueRateLimit: Record<string, { max: number; durationMs: number }>;
  /** Per-queue job timeouts by env suffix (`WORKER_TIMEOUT_MS_<QUEUE>=ms`), beating the definitions' `timeoutMs`. */
  queueTimeoutMs: Record<string, number>;
  /** BullMQ stalled-job recovery: how long a job's lock lives without renewal. */
  lockDurationMs: number;
  /** How often each worker looks for jobs whose lock expired. */
  stalledIntervalMs: number;
  /** Times a job may stall before it fails for good. */
  maxStalledCount: number;
  /** How often a worker writes pending ledger records and compares finished sets with PostgreSQL. */
  ledgerReconcileMs: number;
  /** How far back (by finish time) the reconciler compares finished sets with PostgreSQL. */
  ledgerLookbackMs: number;
  /** HMAC-SHA256 key for `webhook.deliver` signatures; unset = those jobs fail, naming it. */
  webhookSecret: string | undefined;
  /** Where `report.csv` writes its files (resolved against the working directory). */
  reportDir: string;
  /** When set, `/metrics` needs `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
  /** Largest `first` the paginated queries (`jobs`, `failedJobAudits`, `operatorActions`) accept. */
  maxPageSize: number;
  /** Finished jobs' history rows older than this many days are deleted by the workers; undefined = kept for good. */
  historyRetentionDays: number | undefined;
  /** How often (at most, across all workers) the retention sweep runs. */
  historyRetentionIntervalMs: number;
  /** Queues the API's /readyz requires a worker for (READYZ_REQUIRE_WORKERS); empty: none. */
  readyzRequireWorkers: string[];
}

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.problems = problems;
    this.name = "ConfigError";
  }
}

/** Parses an environment; throws a ConfigError listing every bad variable at once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable means "unset": `PORT= npm start` should get the default, not an error.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(present);
  const overrides = perQueueOverrides(present);
  // BullMQ's scripts touch several keys of a queue at once, and so do ours: on a cluster they must
  // all hash to one slot, which only a hash tag in the prefix guarantees.
  const clusterProblems =
    present.REDIS_CLUSTER_NODES && !hasHashTag(present.QUEUE_PREFIX ?? "{jobs}")
      ? [
          `QUEUE_PREFIX: QUEUE_PREFIX must contain a hash tag such as {jobs} when REDIS_CLUSTER_NODES is set (got ${JSON.stringify(present.QUEUE_PREFIX)})`,
        ]
      : [];
  // Credentials are never echoed back.
  for (const name of ["REDIS_CLUSTER_USERNAME", "REDIS_CLUSTER_PASSWORD"]) {
    if (present[name] && !present.REDIS_CLUSTER_NODES) {
      clusterProblems.push(
        `${name}: only used with REDIS_CLUSTER_NODES; one Redis takes its credentials in REDIS_URL (redis://user:password@host:6379)`,
      );
    }
  }
  if (!parsed.success || overrides.problems.length > 0 || clusterProblems.length > 0) {
    const problems = (parsed.error?.issues ?? []).map((issue) => {
      const name = String(issue.path[0] ?? "environment");
      return `${name}: ${issue.message} (got ${JSON.stringify(present[name])})`;
    });
    throw new ConfigError([...new Set([...problems, ...overrides.problems, ...clusterProblems])]);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === "production";

  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    workerPort: e.WORKER_PORT,
    redisUrl: e.REDIS_URL,
    redisClusterNodes: e.REDIS_CLUSTER_NODES ? parseClusterNodes(e.REDIS_CLUSTER_NODES) : undefined,
    redisClusterAuth: { username: e.REDIS_CLUSTER_USERNAME, password: e.REDIS_CLUSTER_PASSWORD },
    databaseUrl: e.DATABASE_URL,
    demoQueue: e.DEMO_QUEUE ?? !production,
    migrateOnStart: e.MIGRATE_ON_START,
    introspection: e.INTROSPECTION ?? !production,
    queuePrefix: e.QUEUE_PREFIX,
    workerConcurrency: e.WORKER_CONCURRENCY,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    logLevel: e.LOG_LEVEL,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    maxBulkEnqueue: e.MAX_BULK_ENQUEUE,
    maxBulkRetry: e.MAX_BULK_RETRY,
    cancelWaitMs: e.CANCEL_WAIT_MS,
    cancelGraceMs: e.CANCEL_GRACE_MS,
    subscriberMaxBuffer: e.SUBSCRIBER_MAX_BUFFER,
    relayLeaseMs: e.RELAY_LEASE_MS,
    eventsMaxLen: e.EVENTS_MAX_LEN,
    wsKeepAliveMs: e.WS_KEEPALIVE_MS,
    wsInitTimeoutMs: e.WS_INIT_TIMEOUT_MS,
    wsMaxSubscriptions: e.WS_MAX_SUBSCRIPTIONS,
    wsSlowConsumerMs: e.WS_SLOW_CONSUMER_MS,
    adminApiKey: e.ADMIN_API_KEY,
    workerQueues: e.WORKER_QUEUES?.split(",").map((q) => q.trim()),
    queueConcurrency: overrides.concurrency,
    queueRateLimit: overrides.rateLimit,
    queueTimeoutMs: overrides.timeoutMs,
    lockDurationMs: e.WORKER_LOCK_DURATION_MS,
    stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    ledgerReconcileMs: e.LEDGER_RECONCILE_MS,
    ledgerLookbackMs: e.LEDGER_LOOKBACK_MS,
    webhookSecret: e.WEBHOOK_SECRET,
    reportDir: e.REPORT_DIR,
    metricsToken: e.METRICS_TOKEN,
    maxPageSize: e.MAX_PAGE_SIZE,
    historyRetentionDays: e.HISTORY_RETENTION_DAYS,
    historyRetentionIntervalMs: e.HISTORY_RETENTION_INTERVAL_MS,
    readyzRequireWorkers: [...new Set(e.READYZ_REQUIRE_WORKERS?.split(",").map((q) => q.trim()) ?? [])],
  };
}

/** The API's extra rule: in production it refuses to start with auth open. */
export function apiConfigProblems(config: Config): string[] {
  return config.nodeEnv === "production" && !config.adminApiKey
    ? ["ADMIN_API_KEY: must be set when NODE_ENV=production (the API refuses to run with auth open)"]
    : [];
}

/** For the two composition roots: a bad environment prints one line per variable and exits 1. */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.problems) process.stderr.write(`config error: ${line}\n`);
      process.exit(1);
    }
    throw err;
  }
}
