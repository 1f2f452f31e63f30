import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { configProblems } from "../src/testing/config.ts";
import { startProcess } from "../src/testing/processes.ts";

describe("config", () => {
  it("has the runtime contract's defaults", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      nodeEnv: "development",
      port: 4000,
      host: "127.0.0.1",
      workerPort: 4001,
      redisUrl: "redis://127.0.0.1:6379",
      databaseUrl: "postgresql://postgres@127.0.0.1:5432/jobs",
      demoQueue: true,
      migrateOnStart: true,
      introspection: true,
      maxPayloadBytes: 512 * 1024,
    });
  });

  it("turns the demo queue and introspection off in production unless asked", () => {
    expect(loadConfig({ NODE_ENV: "production" })).toMatchObject({ demoQueue: false, introspection: false });
    expect(loadConfig({ NODE_ENV: "production", DEMO_QUEUE: "true", INTROSPECTION: "true" })).toMatchObject({
      demoQueue: true,
      introspection: true,
    });
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ PORT: "" }).port).toBe(4000);
  });

  it("reports every bad variable at once, one line each, naming it and what was expected", () => {
    const lines = configProblems({
      PORT: "eighty",
      WORKER_PORT: "70000",
      REDIS_URL: "localhost:6379",
      DATABASE_URL: "mysql://x@y/z",
      DEMO_QUEUE: "yes",
      NODE_ENV: "staging",
      MAX_PAYLOAD_BYTES: "-1",
    });
    expect(lines).toEqual([
      'NODE_ENV: NODE_ENV must be development, production or test (got "staging")',
      'PORT: PORT must be a port number (0-65535) (got "eighty")',
      'WORKER_PORT: WORKER_PORT must be a port number (0-65535) (got "70000")',
      'REDIS_URL: REDIS_URL must be a URL starting with redis:// or rediss:// (got "localhost:6379")',
      'DATABASE_URL: DATABASE_URL must be a URL starting with postgresql:// or postgres:// (got "mysql://x@y/z")',
      'DEMO_QUEUE: DEMO_QUEUE must be true or false (got "yes")',
      'MAX_PAYLOAD_BYTES: MAX_PAYLOAD_BYTES must be a positive integer (got "-1")',
    ]);
  });

  it("never quotes a secret's value in a config error, and masks a URL's password", () => {
    const secret = "hunter2-not-long";
    const lines = configProblems({
      ADMIN_API_KEY: "short-secret",
      WEBHOOK_SECRET: "short-secret",
      METRICS_TOKEN: "short-secret",
      JOB_TOKEN_SECRET: "short-secret",
      DATABASE_URL: `mysql://app:${secret}@db/jobs`,
      REDIS_URL: `http://app:${secret}@cache:6379`,
    });
    expect(lines.join("\n")).not.toContain("short-secret");
    expect(lines.join("\n")).not.toContain(secret);
    expect(lines).toContain(
      'DATABASE_URL: DATABASE_URL must be a URL starting with postgresql:// or postgres:// (got "mysql://app:***@db/jobs")',
    );
    expect(lines.filter((l) => l.startsWith("ADMIN_API_KEY:") || l.startsWith("JOB_TOKEN_SECRET:"))).toHaveLength(2);
  });

  it.each([
    ["src/server/main.ts", "API"],
    ["workers/main.ts", "worker"],
  ])("stops the %s process at start with one clear line per bad variable and no stack trace", async (entry) => {
    const proc = await startProcess(entry, { PORT: "abc", REDIS_URL: "nope" }, null);
    expect(await proc.exited).toBe(1);
    expect(proc.stderr().trim().split("\n")).toEqual([
      'config error: PORT: PORT must be a port number (0-65535) (got "abc")',
      'config error: REDIS_URL: REDIS_URL must be a URL starting with redis:// or rediss:// (got "nope")',
    ]);
  });
});
