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
  SUBSCRIBER_MAX_BUFFER: positiveInt("SUBSCRIBER_MAX_BUFFER").default(1_000),
  ADMIN_API_KEY: z.string().min(16, "ADMIN_API_KEY must be at least 16 characters").optional(),
  LOG_LEVEL: z
    .enum(["debug", "info", "warn", "error", "silent"], { error: "LOG_LEVEL must be debug, info, warn, error or silent" })
    .default("info"),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  nodeEnv: "development" | "production" | "test";
  port: number;
  host: string;
  workerPort: number;
  redisUrl: string;
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
  /** Events held for a subscriber that is not reading before it is cut off. */
  subscriberMaxBuffer: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

/** Parses an environment; throws a ConfigError listing every bad variable at once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable means "unset": `PORT= npm start` should get the default, not an error.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? "environment");
      return `${name}: ${issue.message} (got ${JSON.stringify(present[name])})`;
    });
    throw new ConfigError([...new Set(problems)]);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === "production";

  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    workerPort: e.WORKER_PORT,
    redisUrl: e.REDIS_URL,
    databaseUrl: e.DATABASE_URL,
    demoQueue: e.DEMO_QUEUE ?? !production,
    migrateOnStart: e.MIGRATE_ON_START,
    introspection: e.INTROSPECTION ?? !production,
    queuePrefix: e.QUEUE_PREFIX,
    workerConcurrency: e.WORKER_CONCURRENCY,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    logLevel: e.LOG_LEVEL,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    subscriberMaxBuffer: e.SUBSCRIBER_MAX_BUFFER,
    adminApiKey: e.ADMIN_API_KEY,
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
