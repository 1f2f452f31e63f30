import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../src/testing/database.ts";
import { gql } from "../src/testing/graphql.ts";
import { killAll, startApi, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "info" };
});

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db?.drop();
});

describe("clean shutdown", () => {
  it("the API process answers until SIGTERM, then closes its connections and exits 0", async () => {
    const api = await startApi(env);
    const url = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "";
    expect((await gql(url, "{ __typename }")).body).toEqual({ data: { __typename: "Query" } });
    expect(await api.stop("SIGTERM")).toBe(0);
    expect(api.stderr()).toContain('"msg":"stopped"');
  });

  it("a worker given SIGTERM with an active job finishes that job, then exits 0", async () => {
    const worker = await startWorker({ ...env, SHUTDOWN_GRACE_MS: "20000" });
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    try {
      const job = await queue.add("sleep", { steps: 10, stepMs: 150 });
      await until(
        "the job active",
        () => job.getState(),
        (s) => s === "active",
      );
      expect(await job.getState()).toBe("active");
      const code = await worker.stop("SIGTERM");
      expect(code).toBe(0);
      expect(await job.getState()).toBe("completed");
      expect((await queue.getJob(String(job.id)))?.returnvalue).toEqual({ steps: 10 });
      expect(worker.stderr()).toContain('"msg":"stopped"');
    } finally {
      await queue.close();
    }
  });

  it("a worker whose grace period runs out exits 1 and leaves the job to stalled-job recovery", async () => {
    const worker = await startWorker({ ...env, SHUTDOWN_GRACE_MS: "300" });
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    try {
      const job = await queue.add("sleep", { steps: 20, stepMs: 200 });
      await until(
        "the job active",
        () => job.getState(),
        (s) => s === "active",
      );
      expect(await worker.stop("SIGTERM")).toBe(1);
      expect(worker.stderr()).toContain("grace period over");
      // Not lost: still active (its lock expires) until another worker picks it up.
      expect(await job.getState()).toBe("active");
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
