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

/** Variables whose value a config error never quotes. */
const NOT_ECHOED = new Set([
  "PAYLOAD_ENCRYPTION_KEYS",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "ADMIN_API_KEY",
  "WEBHOOK_SECRET",
  "METRICS_TOKEN",
  "JOB_TOKEN_SECRET",
  "REDIS_CLUSTER_PASSWORD",
]);

/** How a rejected value is quoted in a config error: secrets never, a URL's password masked (runtime contract, "Secrets"). */
function echoed(name: string, value: string | undefined): string {
  if (NOT_ECHOED.has(name)) return "";
  const shown = name.endsWith("_URL") && value ? value.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@") : value;
  return ` (got ${JSON.stringify(shown)})`;
}

/** A PAYLOAD_ENCRYPTION_KEYS entry: the id kept with each ciphertext, and 32 bytes of AES-256 key. */
export interface PayloadKeyConfig {
  id: string;
  key: Buffer;
}

/** `<id>:<base64 key>[,...]`: ids of letters, digits, `_` and `-` (at most 32), unique; keys of exactly 32 bytes. */
function parsePayloadKeys(value: string): PayloadKeyConfig[] | string {
  const keys: PayloadKeyConfig[] = [];
  for (const [i, entry] of value.split(",").entries()) {
    const [id, key, ...rest] = entry.trim().split(":");
    if (!id || key === undefined || rest.length > 0) return `entry ${i + 1} must be <id>:<base64 key>`;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id)) return `entry ${i + 1}: the id must be 1-32 letters, digits, _ or -`;
    if (keys.some((k) => k.id === id)) return `entry ${i + 1}: the id "${id}" appears twice`;
    const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(key) ? Buffer.from(key, "base64") : Buffer.alloc(0);
    if (bytes.length !== 32) return `entry ${i + 1} ("${id}"): the key must be 32 bytes in base64 (e.g. \`openssl rand -base64 32\`)`;
    keys.push({ id, key: bytes });
  }
  return keys;
}

/**
 * `OTEL_EXPORTER_OTLP_HEADERS` (the OpenTelemetry spec's format: `k=v,k2=v2`, values URL-encoded),
 * or null when it is not that. Header names are HTTP tokens; values must decode and hold no CR/LF.
 */
export function parseOtlpHeaders(value: string): Record<string, string> | null {
  const headers: Record<string, string> = {};
  for (const pair of value.split(",")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    if (eq < 0) return null;
    const name = pair.slice(0, eq).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return null;
    let decoded: string;
    try {
      decoded = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      return null;
    }
    if (/[\r\n\0]/.test(decoded)) return null;
    headers[name.toLowerCase()] = decoded;
  }
  return headers;
}

const positiveInt = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a positive integer` })
    .int(`${name} must be a positive integer`)
    .min(1, `${name} must be a positive integer`);

/** The longest delay a Node timer takes (2^31 - 1 ms); a longer one fires after 1 ms instead. */
const TIMER_MAX_MS = 2_147_483_647;

/**
 * Every variable, each described once (`.describe`): the README's configuration table is generated from
 * this (`npm run config:docs`; CI checks it with `--check`).
 */
export const envSchema = z.object({
  NODE_ENV: z
    .enum(["development", "production", "test"], { error: "NODE_ENV must be development, production or test" })
    .default("development")
    .describe(
      "`production` turns off introspection (unless `INTROSPECTION=true`) and GraphiQL, and refuses to start the API without `ADMIN_API_KEY`",
    ),
  PORT: port("PORT").default(4000).describe("API port (`0`: any free port)"),
  HOST: z.string().min(1, "HOST must not be empty").default("127.0.0.1").describe("bind address (the Docker image sets `0.0.0.0`)"),
  WORKER_PORT: port("WORKER_PORT").default(4001).describe("the worker's `/healthz`, `/readyz` and `/metrics` (`0`: any free port)"),
  REDIS_URL: url("REDIS_URL", ["redis:", "rediss:"])
    .default("redis://127.0.0.1:6379")
    .describe(
      "BullMQ, its events, and pub/sub; credentials go in it (`redis://user:password@host:6379`); unused when `REDIS_CLUSTER_NODES` is set",
    ),
  REDIS_CLUSTER_NODES: z
    .string()
    .refine(
      (v) => CLUSTER_NODES.test(v) && parseClusterNodes(v).every((n) => n.port >= 1 && n.port <= 65535),
      "REDIS_CLUSTER_NODES must be a comma-separated list of host:port (e.g. 10.0.0.1:7000,10.0.0.2:7000)",
    )
    .optional()
    .describe(
      "seed nodes of a Redis Cluster, `host:port` comma-separated (`10.0.0.1:7000,10.0.0.2:7000`); when set, every connection of the API and the worker is a cluster connection and `REDIS_URL` is not used (see [Redis Cluster](#redis-cluster))",
    ),
  REDIS_CLUSTER_USERNAME: z
    .string()
    .min(1, "REDIS_CLUSTER_USERNAME must not be empty")
    .optional()
    .describe("ACL user of every cluster node; only with `REDIS_CLUSTER_NODES`"),
  REDIS_CLUSTER_PASSWORD: z
    .string()
    .min(1, "REDIS_CLUSTER_PASSWORD must not be empty")
    .optional()
    .describe("password of every cluster node (`requirepass` / ACL); only with `REDIS_CLUSTER_NODES`"),
  DATABASE_URL: url("DATABASE_URL", ["postgresql:", "postgres:"])
    .default("postgresql://postgres@127.0.0.1:5432/jobs")
    .describe("history and audit rows"),
  DEMO_QUEUE: bool("DEMO_QUEUE").optional().describe("registers the `demo` queue; unset: on outside production"),
  JOBS_MODULE: z
    .string()
    .max(1000, "JOBS_MODULE must be a path or package name of at most 1000 characters")
    .optional()
    .describe(
      "your own job types: a module exporting `definitions` (and `processors` for the worker); default ./jobs/index.ts when it exists",
    ),
  DEMO_PAGE: bool("DEMO_PAGE")
    .optional()
    .describe("serves the demo page at /demo (enqueue demo.sleep jobs and demo.fanout flows, live progress bars, failures with Replay)"),
  MIGRATE_ON_START: bool("MIGRATE_ON_START").default(true).describe("`npm start` / `npm run worker` apply pending migrations first"),
  INTROSPECTION: bool("INTROSPECTION").optional().describe("GraphQL introspection; unset: on outside production"),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}.-]+$/, "QUEUE_PREFIX may only contain letters, digits and _ { } . -")
    .default("{jobs}")
    .describe(
      "the start of every Redis key and channel the product uses; with `REDIS_KEY_LAYOUT=per-queue` each queue's keys go under its own hash tag made from it (`{jobs}` -> `{jobs:<queue>}`), with `single` all of them under this one",
    ),
  REDIS_KEY_LAYOUT: z
    .enum(["per-queue", "single"], { error: "REDIS_KEY_LAYOUT must be per-queue or single" })
    .default("per-queue")
    .describe(
      "per-queue: each queue's keys under a hash tag of its own, so a Redis Cluster spreads queues over its shards; single: every key under `QUEUE_PREFIX`'s one tag (one shard; the layout before this setting existed: see [Key layout](#key-layout) to switch)",
    ),
  WORKER_CONCURRENCY: positiveInt("WORKER_CONCURRENCY")
    .optional()
    .describe("jobs a worker runs at once, per queue; unset: each job definition's own"),
  SHUTDOWN_GRACE_MS: positiveInt("SHUTDOWN_GRACE_MS")
    .default(30_000)
    .describe("how long SIGTERM waits for active jobs (worker) or open requests (API)"),
  MAX_PAYLOAD_BYTES: positiveInt("MAX_PAYLOAD_BYTES")
    .default(512 * 1024)
    .describe("largest job payload accepted at enqueue"),
  MAX_BULK_ENQUEUE: positiveInt("MAX_BULK_ENQUEUE").default(1_000).describe("most inputs one `enqueueJobs` call takes"),
  MAX_FLOW_NODES: positiveInt("MAX_FLOW_NODES")
    .default(1_000)
    .describe("most jobs (parent, children and theirs) one `enqueueFlow` tree may hold"),
  MAX_FLOW_DEPTH: positiveInt("MAX_FLOW_DEPTH")
    .default(10)
    .describe("most levels one `enqueueFlow` tree may have (1: a parent alone, 2: a parent with children)"),
  MAX_BULK_RETRY: positiveInt("MAX_BULK_RETRY").default(10_000).describe("the largest `limit` of `retryFailedJobs`"),
  BULK_MAX_SELECTION: positiveInt("BULK_MAX_SELECTION")
    .default(50_000)
    .describe(
      "(API) most jobs one `bulkJobAction` may select; a filter matching more is refused with `SelectionTooLargeError` naming the count",
    ),
  BULK_SELECTION_TTL_MS: positiveInt("BULK_SELECTION_TTL_MS")
    .default(15 * 60_000)
    .describe(
      "(API) how long a dry run's frozen selection may be confirmed (`confirmBulkJobAction`); kept in PostgreSQL, it outlives API restarts and Redis",
    ),
  BULK_BATCH_SIZE: positiveInt("BULK_BATCH_SIZE")
    .default(100)
    .describe(
      "(API) jobs a confirmed bulk action works through per batch; each batch's outcomes and counts are written at once and reported",
    ),
  BULK_LEASE_MS: positiveInt("BULK_LEASE_MS")
    .default(30_000)
    .describe(
      "(API) the lease of the API instance running a bulk action, renewed while it runs; another instance resumes the action this long after the holder died",
    ),
  CANCEL_WAIT_MS: positiveInt("CANCEL_WAIT_MS")
    .default(2_000)
    .describe("how long `cancelJob` waits for an active job to end before answering with its state then"),
  CANCEL_GRACE_MS: positiveInt("CANCEL_GRACE_MS")
    .default(5_000)
    .describe(
      "(worker) after a cancel, how long a processor that ignores its `AbortSignal` keeps the job before it is ended CANCELLED anyway",
    ),
  SUBSCRIBER_MAX_BUFFER: positiveInt("SUBSCRIBER_MAX_BUFFER")
    .default(1_000)
    .describe(
      "events held for one subscription whose client is not taking them; past it progress coalesces (latest wins) and then the subscription ends with an error",
    ),
  RELAY_LEASE_MS: positiveInt("RELAY_LEASE_MS")
    .default(5_000)
    .describe("how long an API instance's lease on relaying a queue's events lasts; another instance takes over this long after one dies"),
  EVENTS_MAX_LEN: positiveInt("EVENTS_MAX_LEN")
    .default(10_000)
    .describe(
      "(API and worker: set both alike) approximate length BullMQ keeps each queue's events stream to: how far back `since` reaches, and how far the event relay may fall behind",
    ),
  WS_KEEPALIVE_MS: positiveInt("WS_KEEPALIVE_MS")
    .default(12_000)
    .describe("graphql-ws ping interval; a client that misses a pong is disconnected"),
  WS_INIT_TIMEOUT_MS: positiveInt("WS_INIT_TIMEOUT_MS")
    .default(10_000)
    .describe("time allowed between opening a WebSocket and `connection_init` (then close 4408)"),
  WS_MAX_SUBSCRIPTIONS: positiveInt("WS_MAX_SUBSCRIPTIONS")
    .default(100)
    .describe("subscriptions one WebSocket may run at once; one more closes it with 4029"),
  WS_SLOW_CONSUMER_MS: positiveInt("WS_SLOW_CONSUMER_MS")
    .default(10_000)
    .describe("a WebSocket whose client takes no message for this long is closed with 4008"),
  ADMIN_API_KEY: z
    .string()
    .min(16, "ADMIN_API_KEY must be at least 16 characters")
    .optional()
    .describe("a key (16+ characters) accepted as `Authorization: Bearer <key>`; acts as actor `admin`"),
  RATE_LIMIT_PER_MINUTE: z.coerce
    .number({ error: "RATE_LIMIT_PER_MINUTE must be an integer >= 0" })
    .int("RATE_LIMIT_PER_MINUTE must be an integer >= 0")
    .min(0, "RATE_LIMIT_PER_MINUTE must be an integer >= 0")
    .default(6_000)
    .describe("requests per credential per minute, across all API instances (0: off); without a valid credential, per client address"),
  PERSISTED_OPERATIONS: z
    .enum(["only", "allow"], { error: "PERSISTED_OPERATIONS must be only or allow" })
    .default("allow")
    .describe(
      "(API) only: run nothing but the typed client's operations, by hash (extensions.persistedQuery.sha256Hash; GraphiQL off); allow: those by hash and any document",
    ),
  TRUST_PROXY_HOPS: z.coerce
    .number({ error: "TRUST_PROXY_HOPS must be an integer from 0 to 16" })
    .int("TRUST_PROXY_HOPS must be an integer from 0 to 16")
    .min(0, "TRUST_PROXY_HOPS must be an integer from 0 to 16")
    .max(16, "TRUST_PROXY_HOPS must be an integer from 0 to 16")
    .default(0)
    .describe(
      "(API) proxies in front of the API that append to X-Forwarded-For; the client's address (per-address rate and connection limits) is the entry that many places from the right (0: the socket's address, X-Forwarded-For never read)",
    ),
  PAYLOAD_ENCRYPTION_KEYS: z
    .string()
    .transform((value, ctx) => {
      const keys = parsePayloadKeys(value);
      if (typeof keys === "string") {
        ctx.addIssue({ code: "custom", message: `PAYLOAD_ENCRYPTION_KEYS ${keys}` });
        return z.NEVER;
      }
      return keys;
    })
    .optional()
    .describe(
      "(API) keys that encrypt the real values of secret payload fields in history, so replays and recovery send them again: `<id>:<32 bytes in base64>`, comma-separated; the first encrypts, all decrypt (rotation). Unset: history keeps them masked only (README: Secret payload fields)",
    ),
  JOB_TOKEN_SECRET: z
    .string()
    .min(32, "JOB_TOKEN_SECRET must be at least 32 characters")
    .optional()
    .describe("HMAC-SHA256 key of job tokens; required in production (the same on every API instance)"),
  LOG_LEVEL: z
    .enum(["debug", "info", "warn", "error", "silent"], { error: "LOG_LEVEL must be debug, info, warn, error or silent" })
    .default("info")
    .describe("`debug`, `info`, `warn`, `error` or `silent` (JSON lines on stderr)"),
  WORKER_QUEUES: z
    .string()
    .regex(/^\s*[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\s*$/, "WORKER_QUEUES must be a comma-separated list of queue names")
    .optional()
    .describe("comma-separated queues this worker serves; an unknown name stops it at start, naming it; unset: every registered queue"),
  WORKER_LOCK_DURATION_MS: positiveInt("WORKER_LOCK_DURATION_MS")
    .default(30_000)
    .describe("a job's lock; a worker that stops renewing it (killed, frozen) loses the job after this long"),
  WORKER_STALLED_INTERVAL_MS: positiveInt("WORKER_STALLED_INTERVAL_MS")
    .default(30_000)
    .describe("how often each worker looks for jobs with expired locks and moves them back to wait"),
  WORKER_MAX_STALLED_COUNT: z.coerce
    .number({ error: "WORKER_MAX_STALLED_COUNT must be an integer >= 0" })
    .int("WORKER_MAX_STALLED_COUNT must be an integer >= 0")
    .min(0, "WORKER_MAX_STALLED_COUNT must be an integer >= 0")
    .default(1)
    .describe("times a job may stall before it fails for good (`0`: the first stall fails it)"),
  LEDGER_RECONCILE_MS: positiveInt("LEDGER_RECONCILE_MS")
    .default(30_000)
    .describe("how often a worker writes pending ledger records and compares finished jobs with PostgreSQL"),
  LEDGER_LOOKBACK_MS: positiveInt("LEDGER_LOOKBACK_MS")
    .default(300_000)
    .describe(
      "each reconcile pass re-checks jobs finished this long before the last successful pass (clock skew between workers, writes in flight)",
    ),
  WEBHOOK_SECRET: z
    .string()
    .min(16, "WEBHOOK_SECRET must be at least 16 characters")
    .optional()
    .describe("HMAC-SHA256 key (16+ characters) for `webhook.deliver`; without it those jobs fail, naming it"),
  REPORT_DIR: z
    .string()
    .min(1, "REPORT_DIR must not be empty")
    .default("reports")
    .describe("where `report.csv` writes its files (the Docker image sets `/var/lib/job-reports`)"),
  METRICS_TOKEN: z
    .string()
    .min(16, "METRICS_TOKEN must be at least 16 characters")
    .optional()
    .describe("when set (16+ characters), `/metrics` on the API and the worker needs `Authorization: Bearer <token>`"),
  MAX_PAGE_SIZE: z.coerce
    .number({ error: "MAX_PAGE_SIZE must be an integer from 1 to 1000" })
    .int("MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .min(1, "MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .max(1000, "MAX_PAGE_SIZE must be an integer from 1 to 1000")
    .default(100)
    .describe("largest `first` of `jobs`, `failedJobAudits`, `operatorActions` (1-1000); more is a `VALIDATION` error"),
  HISTORY_RETENTION_DAYS: positiveInt("HISTORY_RETENTION_DAYS")
    .optional()
    .describe(
      "workers delete history rows of finished jobs created and finished more than this many days ago (audit rows and operator actions are kept); unset: history is kept for good",
    ),
  HISTORY_RETENTION_INTERVAL_MS: positiveInt("HISTORY_RETENTION_INTERVAL_MS")
    .default(3_600_000)
    .describe("at most one retention sweep per interval across all workers (a Redis lease under `QUEUE_PREFIX`)"),
  LOG_FORMAT: z
    .enum(["json", "pretty"], { error: "LOG_FORMAT must be json or pretty" })
    .optional()
    .describe("json: one JSON object per line on stderr (default); pretty: coloured lines for people (`npm run dev` sets it)"),
  DEV_DATA_DIR: z
    .string()
    .min(1, "DEV_DATA_DIR must not be empty")
    .default(".data")
    .describe("`npm run dev`: where the embedded PostgreSQL and the Redis it starts keep their data"),
  DEV_REDIS_PORT: port("DEV_REDIS_PORT")
    .default(6379)
    .describe("`npm run dev` without REDIS_URL: the loopback port it looks for a Redis on, and starts redis-server on if none answers"),
  MAX_REQUEST_BYTES: positiveInt("MAX_REQUEST_BYTES")
    .default(1024 * 1024)
    .describe("Largest HTTP request body and WebSocket message the API reads, in bytes (413 past it)"),
  MAX_BULK_REQUEST_BYTES: positiveInt("MAX_BULK_REQUEST_BYTES")
    .default(16 * 1024 * 1024)
    .describe("Largest HTTP request body of an enqueueJobs-only mutation, in bytes (its own budget: bulk inputs weigh more)"),
  MAX_QUERY_TOKENS: positiveInt("MAX_QUERY_TOKENS").default(10_000).describe("Most lexical tokens one GraphQL document may have"),
  MAX_QUERY_DEPTH: positiveInt("MAX_QUERY_DEPTH").default(15).describe("Deepest field nesting one operation may select"),
  MAX_QUERY_ALIASES: positiveInt("MAX_QUERY_ALIASES").default(50).describe("Most aliases in one document"),
  MAX_QUERY_DIRECTIVES: positiveInt("MAX_QUERY_DIRECTIVES").default(20).describe("Most directives in one document"),
  MAX_QUERY_COST: positiveInt("MAX_QUERY_COST")
    .default(5_000)
    .describe("Highest estimated cost of one operation (fields weighted by depth and by what they read; README: Hardening)"),
  MAX_DATA_DEPTH: positiveInt("MAX_DATA_DEPTH").default(64).describe("Deepest nesting of a JSON value (job data, variables, literals)"),
  PARSER_CACHE_BYTES: z.coerce
    .number({ error: "PARSER_CACHE_BYTES must be an integer >= 0" })
    .int("PARSER_CACHE_BYTES must be an integer >= 0")
    .min(0, "PARSER_CACHE_BYTES must be an integer >= 0")
    .default(16 * 1024 * 1024)
    .describe("Estimated bytes of parsed documents kept for reuse (0 = no cache)"),
  CORS_ORIGINS: z
    .string()
    .refine(
      (v) =>
        v === "*" ||
        v.split(",").every((o) => {
          try {
            return new URL(o.trim()).origin === o.trim();
          } catch {
            return false;
          }
        }),
      "CORS_ORIGINS must be * or a comma-separated list of origins such as https://app.example.com",
    )
    .optional()
    .describe("Origins (scheme://host[:port], comma-separated, or *) whose pages may call the API; unset = same origin only"),
  MAX_CONNECTIONS_PER_ADDRESS: z.coerce
    .number({ error: "MAX_CONNECTIONS_PER_ADDRESS must be an integer >= 0" })
    .int("MAX_CONNECTIONS_PER_ADDRESS must be an integer >= 0")
    .min(0, "MAX_CONNECTIONS_PER_ADDRESS must be an integer >= 0")
    .default(100)
    .describe("Open WebSockets plus SSE streams one client address may hold (0 = no limit)"),
  MAX_CONNECTIONS_PER_CREDENTIAL: z.coerce
    .number({ error: "MAX_CONNECTIONS_PER_CREDENTIAL must be an integer >= 0" })
    .int("MAX_CONNECTIONS_PER_CREDENTIAL must be an integer >= 0")
    .min(0, "MAX_CONNECTIONS_PER_CREDENTIAL must be an integer >= 0")
    .default(500)
    .describe("Open WebSockets plus SSE streams one credential may hold across addresses (0 = no limit)"),
  WEBHOOK_ALLOW_PRIVATE: bool("WEBHOOK_ALLOW_PRIVATE")
    .default(false)
    .describe("Let webhook.deliver reach loopback, private, link-local and metadata addresses"),
  WEBHOOK_ALLOWED_HOSTS: z
    .string()
    .regex(/^\s*[A-Za-z0-9_.:[\]-]+(\s*,\s*[A-Za-z0-9_.:[\]-]+)*\s*$/, "WEBHOOK_ALLOWED_HOSTS must be a comma-separated list of host names")
    .optional()
    .describe("Hosts webhook.deliver may reach even when they resolve to private addresses (comma-separated)"),
  SCHEDULER_MIN_INTERVAL_MS: positiveInt("SCHEDULER_MIN_INTERVAL_MS")
    .default(1_000)
    .describe("Shortest repeat a job scheduler may have (every, or the gap between cron runs)"),
  MAX_SCHEDULERS_PER_QUEUE: positiveInt("MAX_SCHEDULERS_PER_QUEUE").default(1_000).describe("Most job schedulers one queue may hold"),
  ENQUEUE_ACK: z
    .enum(["record", "redis"], { error: "ENQUEUE_ACK must be record or redis" })
    .default("record")
    .describe(
      "(API) record: enqueueJob(s) answer once the job's history row is committed (row first, then the job: durable); redis: once the job is in Redis, the row written after without waiting",
    ),
  RECOVERY_INTERVAL_MS: z.coerce
    .number({ error: "RECOVERY_INTERVAL_MS must be an integer >= 0" })
    .int("RECOVERY_INTERVAL_MS must be an integer >= 0")
    .min(0, "RECOVERY_INTERVAL_MS must be an integer >= 0")
    .max(TIMER_MAX_MS, `RECOVERY_INTERVAL_MS must be at most ${TIMER_MAX_MS} (a Node timer's limit)`)
    .default(300_000)
    .describe(
      "(API) time between periodic recovery passes, which re-add jobs Redis lost from their history rows (0: only at start and after Redis lost data)",
    ),
  RECOVERY_WATCH_MS: positiveInt("RECOVERY_WATCH_MS")
    .max(TIMER_MAX_MS, `RECOVERY_WATCH_MS must be at most ${TIMER_MAX_MS} (a Node timer's limit)`)
    .default(1_000)
    .describe("(API) how often each API instance checks whether Redis lost its data (then a recovery pass runs at once)"),
  RECOVERY_GRACE_MS: positiveInt("RECOVERY_GRACE_MS")
    .max(TIMER_MAX_MS, `RECOVERY_GRACE_MS must be at most ${TIMER_MAX_MS} (a Node timer's limit)`)
    .default(10_000)
    .describe("(API) history rows younger than this are not recovered (their enqueue may still be adding the job)"),
  RECOVERY_LEASE_MS: positiveInt("RECOVERY_LEASE_MS")
    .max(TIMER_MAX_MS, `RECOVERY_LEASE_MS must be at most ${TIMER_MAX_MS} (a Node timer's limit)`)
    .default(30_000)
    .describe(
      "(API) the recovery pass' lease across API instances, renewed while it runs; another instance can run one this long after a holder died",
    ),
  RECOVERY_PAGE_SIZE: positiveInt("RECOVERY_PAGE_SIZE")
    .max(10_000, "RECOVERY_PAGE_SIZE must be at most 10000")
    .default(200)
    .describe(
      "(API) history rows a recovery pass compares with Redis per step (smaller steps hold the API's event loop and Redis for less at a time)",
    ),
  RECOVERY_ROWS_PER_SECOND: z.coerce
    .number({ error: "RECOVERY_ROWS_PER_SECOND must be an integer >= 0" })
    .int("RECOVERY_ROWS_PER_SECOND must be an integer >= 0")
    .min(0, "RECOVERY_ROWS_PER_SECOND must be an integer >= 0")
    .max(1_000_000, "RECOVERY_ROWS_PER_SECOND must be at most 1000000")
    .default(4_000)
    .describe(
      "(API) most pending history rows a recovery pass checks per second (0: no limit); 100,000 pending jobs then take at least 25 s, with the API's latency barely moved",
    ),
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .max(2048, "OTEL_EXPORTER_OTLP_ENDPOINT must be at most 2048 characters")
    .pipe(url("OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]))
    .refine((v) => !/[?#]/.test(v), "OTEL_EXPORTER_OTLP_ENDPOINT must be a base URL without ? or # (spans go to <endpoint>/v1/traces)")
    .optional()
    .describe(
      "OpenTelemetry traces (API and worker): the OTLP/HTTP collector's base URL (`http://otel-collector:4318`); spans are POSTed as JSON to `<endpoint>/v1/traces`. Unset: tracing is off and no OpenTelemetry SDK is loaded (see [Traces](#traces))",
    ),
  OTEL_EXPORTER_OTLP_HEADERS: z
    .string()
    .refine((v) => parseOtlpHeaders(v) !== null, "OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value pairs, values URL-encoded")
    .optional()
    .describe(
      "headers sent with every OTLP export, `key=value` comma-separated, values URL-encoded (`authorization=Bearer%20abc`); never logged",
    ),
  OTEL_SERVICE_NAME: z
    .string()
    .min(1)
    .max(255, "OTEL_SERVICE_NAME must be at most 255 characters")
    .optional()
    .describe("`service.name` of the spans; unset: `job-control-api` for the API, `job-control-worker` for workers"),
  OTEL_TRACES_SAMPLER_ARG: z.coerce
    .number({ error: "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1" })
    .min(0, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1")
    .max(1, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1")
    .default(1)
    .describe(
      "share of new traces recorded (parent-based: a request or job whose caller's trace was sampled is always recorded, one that was not never is); `1`: all",
    ),
  OTEL_SDK_DISABLED: bool("OTEL_SDK_DISABLED")
    .default(false)
    .describe("`true` turns tracing off even with `OTEL_EXPORTER_OTLP_ENDPOINT` set"),
  READYZ_REQUIRE_WORKERS: z
    .string()
    .regex(/^\s*[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\s*$/, "READYZ_REQUIRE_WORKERS must be a comma-separated list of queue names")
    .optional()
    .describe("(API) comma-separated queues that must have a worker: the API's /readyz answers 503 while one has none"),
});

/** Every variable the schema reads (the per-queue ones below are by prefix). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** `WORKER_CONCURRENCY_<QUEUE>` / `WORKER_RATE_LIMIT_<QUEUE>`: names made from the queue's name. */
export const QUEUE_CONCURRENCY_PREFIX = "WORKER_CONCURRENCY_";
export const QUEUE_RATE_LIMIT_PREFIX = "WORKER_RATE_LIMIT_";
/** `WORKER_TIMEOUT_MS_<QUEUE>`: the longest one attempt of any job of the queue may run. */
export const QUEUE_TIMEOUT_PREFIX = "WORKER_TIMEOUT_MS_";
/** The longest timeout a Node timer holds (about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

/** The per-queue variables (not in envSchema: their names are made from the queues'), described once for the README's table. */
export const PER_QUEUE_VARIABLES: { name: string; default: string; description: string }[] = [
  {
    name: `${QUEUE_CONCURRENCY_PREFIX}<QUEUE>`,
    default: "unset",
    description:
      "concurrency of one queue in this worker (beats `WORKER_CONCURRENCY`); `<QUEUE>` is the queue name upper-cased, other characters as `_` (`mail-out` → `WORKER_CONCURRENCY_MAIL_OUT`)",
  },
  {
    name: `${QUEUE_RATE_LIMIT_PREFIX}<QUEUE>`,
    default: "from the definitions",
    description: "BullMQ rate limit `<max>/<ms>` (e.g. `100/1000`): at most max jobs of the queue start per ms, across all workers",
  },
  {
    name: `${QUEUE_TIMEOUT_PREFIX}<QUEUE>`,
    default: "from the definitions' `timeoutMs` (none: no limit)",
    description:
      "the longest one attempt of any job of the queue may run (1-2147483647 ms); past it the processor's `AbortSignal` fires and the attempt fails `timed out after N ms`, retried like any failure; a processor that ignores the signal is ended after `CANCEL_GRACE_MS` (its code may still be running: it must honour the signal to really stop)",
  },
];

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
  /** Module of the team's own job types (JOBS_MODULE); undefined = `jobs/index.ts` in the working directory, if any. */
  jobsModule: string | undefined;
  /** Whether the API serves the demo page at `/demo` (DEMO_PAGE; on outside production). */
  demoPage: boolean;
  migrateOnStart: boolean;
  introspection: boolean;
  /** The start of every Redis key (see src/jobs/bullmq/keys.ts for how the layout uses it). */
  queuePrefix: string;
  /** per-queue: a hash tag per queue (queues spread over a cluster's shards); single: one tag for all. */
  redisKeyLayout: "per-queue" | "single";
  workerConcurrency: number | undefined;
  shutdownGraceMs: number;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** Largest job payload accepted at enqueue, in bytes of JSON. */
  maxPayloadBytes: number;
  /** A key with every scope, accepted as `Authorization: Bearer <key>`; unset = auth open (not in production). */
  adminApiKey: string | undefined;
  /** Requests per credential per minute, counted in Redis (0: no limit). */
  rateLimitPerMinute: number;
  /** PAYLOAD_ENCRYPTION_KEYS: the first encrypts secret payload fields kept for replays and recovery, all decrypt; undefined: kept masked only. */
  payloadEncryptionKeys: PayloadKeyConfig[] | undefined;
  /** PERSISTED_OPERATIONS: `only` runs just the manifest's operations (by hash); `allow` those and any document. */
  persistedOperations: "only" | "allow";
  /** Proxies whose X-Forwarded-For entries are trusted for the client's address (0: none; src/server/client-address.ts). */
  trustProxyHops: number;
  /** HMAC key of job tokens; unset outside production = a random one per process (tokens work on that instance only). */
  jobTokenSecret: string | undefined;
  /** Most inputs one enqueueJobs call takes. */
  maxBulkEnqueue: number;
  maxFlowNodes: number;
  maxFlowDepth: number;
  /** Most jobs one retryFailedJobs call retries (its `limit` may not exceed it). */
  maxBulkRetry: number;
  /** How long cancelJob waits for an active job to end before answering. */
  cancelWaitMs: number;
  /** Bulk actions: most jobs per selection, a dry run's lifetime, jobs per batch, the runner's lease. */
  bulk: { maxSelection: number; selectionTtlMs: number; batchSize: number; leaseMs: number };
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
  /** When enqueues answer: after the history row's commit (`record`) or after the add to Redis (`redis`). */
  enqueueAck: "record" | "redis";
  /** Durable enqueue's recovery reconciler (API): periodic interval (0 off), watch, grace, lease, and its pace (rows per step, rows per second). */
  recovery: { intervalMs: number; watchMs: number; graceMs: number; leaseMs: number; pageSize: number; rowsPerSecond: number };
  /** Largest `first` the paginated queries (`jobs`, `failedJobAudits`, `operatorActions`) accept. */
  maxPageSize: number;
  /** Finished jobs' history rows older than this many days are deleted by the workers; undefined = kept for good. */
  historyRetentionDays: number | undefined;
  /** How often (at most, across all workers) the retention sweep runs. */
  historyRetentionIntervalMs: number;
  /** Log lines as JSON (machines) or pretty (people, `npm run dev`). */
  logFormat: "json" | "pretty";
  /** Queues the API's /readyz requires a worker for (READYZ_REQUIRE_WORKERS); empty: none. */
  readyzRequireWorkers: string[];
  /** Request-cost limits (README: Hardening). */
  limits: RequestLimits;
  /** Allowed cross-origin callers; empty = same origin only; ["*"] = any. */
  corsOrigins: string[];
  /** webhook.deliver's outbound policy. */
  webhookAllowPrivate: boolean;
  webhookAllowedHosts: string[];
  /**
   * OpenTelemetry traces over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT); undefined = off (no SDK
   * loaded, no telemetry option given to BullMQ). `serviceName` undefined: each process' default.
   */
  tracing: { endpoint: string; headers: Record<string, string>; serviceName: string | undefined; sampleRatio: number } | undefined;
  /** Shortest scheduler repeat, in ms. */
  schedulerMinIntervalMs: number;
  /** Most schedulers per queue. */
  maxSchedulersPerQueue: number;
}

/** What one request may cost (MAX_* variables); 0 for a connection limit = no limit. */
export interface RequestLimits {
  maxRequestBytes: number;
  maxBulkRequestBytes: number;
  maxTokens: number;
  maxDepth: number;
  maxAliases: number;
  maxDirectives: number;
  maxCost: number;
  maxDataDepth: number;
  parserCacheBytes: number;
  maxConnectionsPerAddress: number;
  maxConnectionsPerCredential: number;
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
  // all hash to one slot. The per-queue layout gives every queue a tag of its own; the single one
  // needs the tag in the prefix.
  const clusterProblems =
    present.REDIS_CLUSTER_NODES && present.REDIS_KEY_LAYOUT === "single" && !hasHashTag(present.QUEUE_PREFIX ?? "{jobs}")
      ? [
          `QUEUE_PREFIX: QUEUE_PREFIX must contain a hash tag such as {jobs} when REDIS_CLUSTER_NODES is set with REDIS_KEY_LAYOUT=single (got ${JSON.stringify(present.QUEUE_PREFIX)})`,
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
      return `${name}: ${issue.message}${echoed(name, present[name])}`;
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
    demoPage: e.DEMO_PAGE ?? !production,
    jobsModule: e.JOBS_MODULE,
    migrateOnStart: e.MIGRATE_ON_START,
    introspection: e.INTROSPECTION ?? !production,
    queuePrefix: e.QUEUE_PREFIX,
    redisKeyLayout: e.REDIS_KEY_LAYOUT,
    workerConcurrency: e.WORKER_CONCURRENCY,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    logLevel: e.LOG_LEVEL,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    maxBulkEnqueue: e.MAX_BULK_ENQUEUE,
    maxFlowNodes: e.MAX_FLOW_NODES,
    maxFlowDepth: e.MAX_FLOW_DEPTH,
    maxBulkRetry: e.MAX_BULK_RETRY,
    cancelWaitMs: e.CANCEL_WAIT_MS,
    bulk: {
      maxSelection: e.BULK_MAX_SELECTION,
      selectionTtlMs: e.BULK_SELECTION_TTL_MS,
      batchSize: e.BULK_BATCH_SIZE,
      leaseMs: e.BULK_LEASE_MS,
    },
    cancelGraceMs: e.CANCEL_GRACE_MS,
    subscriberMaxBuffer: e.SUBSCRIBER_MAX_BUFFER,
    relayLeaseMs: e.RELAY_LEASE_MS,
    eventsMaxLen: e.EVENTS_MAX_LEN,
    wsKeepAliveMs: e.WS_KEEPALIVE_MS,
    wsInitTimeoutMs: e.WS_INIT_TIMEOUT_MS,
    wsMaxSubscriptions: e.WS_MAX_SUBSCRIPTIONS,
    wsSlowConsumerMs: e.WS_SLOW_CONSUMER_MS,
    adminApiKey: e.ADMIN_API_KEY,
    jobTokenSecret: e.JOB_TOKEN_SECRET,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    trustProxyHops: e.TRUST_PROXY_HOPS,
    persistedOperations: e.PERSISTED_OPERATIONS,
    payloadEncryptionKeys: e.PAYLOAD_ENCRYPTION_KEYS,
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
    logFormat: e.LOG_FORMAT ?? "json",
    readyzRequireWorkers: [...new Set(e.READYZ_REQUIRE_WORKERS?.split(",").map((q) => q.trim()) ?? [])],
    enqueueAck: e.ENQUEUE_ACK,
    recovery: {
      intervalMs: e.RECOVERY_INTERVAL_MS,
      watchMs: e.RECOVERY_WATCH_MS,
      graceMs: e.RECOVERY_GRACE_MS,
      leaseMs: e.RECOVERY_LEASE_MS,
      pageSize: e.RECOVERY_PAGE_SIZE,
      rowsPerSecond: e.RECOVERY_ROWS_PER_SECOND,
    },
    limits: {
      maxRequestBytes: e.MAX_REQUEST_BYTES,
      maxBulkRequestBytes: e.MAX_BULK_REQUEST_BYTES,
      maxTokens: e.MAX_QUERY_TOKENS,
      maxDepth: e.MAX_QUERY_DEPTH,
      maxAliases: e.MAX_QUERY_ALIASES,
      maxDirectives: e.MAX_QUERY_DIRECTIVES,
      maxCost: e.MAX_QUERY_COST,
      maxDataDepth: e.MAX_DATA_DEPTH,
      parserCacheBytes: e.PARSER_CACHE_BYTES,
      maxConnectionsPerAddress: e.MAX_CONNECTIONS_PER_ADDRESS,
      maxConnectionsPerCredential: e.MAX_CONNECTIONS_PER_CREDENTIAL,
    },
    corsOrigins: e.CORS_ORIGINS ? e.CORS_ORIGINS.split(",").map((o) => o.trim()) : [],
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    webhookAllowedHosts: e.WEBHOOK_ALLOWED_HOSTS ? e.WEBHOOK_ALLOWED_HOSTS.split(",").map((h) => h.trim().toLowerCase()) : [],
    schedulerMinIntervalMs: e.SCHEDULER_MIN_INTERVAL_MS,
    maxSchedulersPerQueue: e.MAX_SCHEDULERS_PER_QUEUE,
    tracing:
      e.OTEL_EXPORTER_OTLP_ENDPOINT && !e.OTEL_SDK_DISABLED
        ? {
            endpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
            headers: parseOtlpHeaders(e.OTEL_EXPORTER_OTLP_HEADERS ?? "") ?? {},
            serviceName: e.OTEL_SERVICE_NAME,
            sampleRatio: e.OTEL_TRACES_SAMPLER_ARG,
          }
        : undefined,
  };
}

/** What `npm run dev` decides its services from: which URLs were given, and where local data lives. */
export interface DevConfig {
  config: Config;
  /** DATABASE_URL as given; undefined = start the embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** REDIS_URL (or REDIS_CLUSTER_NODES) as given; undefined = find or start a local Redis. */
  redisUrl: string | undefined;
  redisCluster: boolean;
  dataDir: string;
  redisPort: number;
}

/** The dev bootstrap's reading of the environment (same rules and errors as loadConfig). */
export function loadDevConfig(env: Record<string, string | undefined> = process.env): DevConfig {
  const config = loadConfig(env);
  const parsed = envSchema.parse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== "")));
  return {
    config,
    databaseUrl: env.DATABASE_URL || undefined,
    redisUrl: env.REDIS_URL || undefined,
    redisCluster: Boolean(env.REDIS_CLUSTER_NODES),
    dataDir: parsed.DEV_DATA_DIR,
    redisPort: parsed.DEV_REDIS_PORT,
  };
}

/** The API's extra rule: in production it refuses to start with auth open. */
export function apiConfigProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.nodeEnv === "production" && !config.adminApiKey) {
    problems.push("ADMIN_API_KEY: must be set when NODE_ENV=production (the API refuses to run with auth open)");
  }
  if (config.nodeEnv === "production" && !config.jobTokenSecret) {
    problems.push("JOB_TOKEN_SECRET: must be set when NODE_ENV=production (32+ characters, the same on every API instance)");
  }
  return problems;
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
