import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keySpace, keys } from "../src/jobs/bullmq/index.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { enqueueDemo, gql } from "../src/testing/graphql.ts";
import { killAll, startProcess } from "../src/testing/processes.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// Upgrading a deployment of the single-tag layout (every key under `{jobs}`) to the per-queue one:
// the processes refuse to start while jobs wait under the old layout, `npm run redis:migrate-layout`
// moves them, and they run afterwards.

const prefix = uniquePrefix();
const redis = new Redis(testRedisUrl);
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ENQUEUE_ACK: "record" };
});

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db.drop();
  redis.disconnect();
});

async function keysUnder(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, page] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    found.push(...page);
  } while (cursor !== "0");
  return found;
}

// Ready within 2 minutes: this file starts eight processes, and on a loaded machine one takes over 30 s.
const startApi = (e: Record<string, string>) =>
  startProcess("src/server/main.ts", { PORT: "0", ...e }, /GraphQL API ready at (\S+)/, 120_000);
const startWorker = (e: Record<string, string>) => startProcess("workers/main.ts", { WORKER_PORT: "0", ...e }, /serving queues/, 120_000);

const STATE = `query ($id: ID!) { job(queue: "demo", id: $id) { state result } }`;

describe("REDIS_KEY_LAYOUT single -> per-queue", () => {
  it("refuses to start over jobs of the old layout, the script moves them, and they run", async () => {
    // A deployment of the old layout with three jobs waiting (no worker), one of them delayed.
    const old = await startApi({ ...env, REDIS_KEY_LAYOUT: "single" });
    const url = /GraphQL API ready at (\S+)/.exec(old.stdout())?.[1] as string;
    const ids = [
      await enqueueDemo(url, "noop", {}),
      await enqueueDemo(url, "sleep", { steps: 2, stepMs: 10 }),
      await enqueueDemo(url, "noop", {}, { delayMs: 1_500 }),
    ];
    expect(await old.stop()).toBe(0);
    expect(await redis.exists(keys.job(keySpace(prefix, "single"), "demo", ids[0] as string))).toBe(1);

    // The new default layout would not see them: both processes refuse, naming the queue and the way out.
    const refusals = await Promise.all(
      ["src/server/main.ts", "workers/main.ts"].map((entry) => startProcess(entry, { ...env, PORT: "0", WORKER_PORT: "0" }, null)),
    );
    for (const refused of refusals) {
      expect(await refused.exited).toBe(1);
      expect(refused.stderr()).toContain(
        `config error: REDIS_KEY_LAYOUT: queue "demo" has unfinished jobs under the single layout (keys ${prefix}:demo:*)`,
      );
    }

    const dry = await startProcess("scripts/redis-migrate-layout.ts", env, null, 30_000, ["--dry-run"]);
    expect(await dry.exited).toBe(0);
    expect(dry.stdout()).toMatch(/^demo: \d+ key\(s\) .* \(dry run\)$/m);
    expect(await redis.exists(keys.job(keySpace(prefix, "single"), "demo", ids[0] as string))).toBe(1);

    const migrate = await startProcess("scripts/redis-migrate-layout.ts", env, null);
    expect(await migrate.exited).toBe(0);
    expect(migrate.stdout()).toMatch(/moved \d+ key\(s\); REDIS_KEY_LAYOUT=per-queue/);
    // Nothing of the queue is left under the old layout; the job hashes are under the queue's own tag.
    expect(await keysUnder(`${prefix}:demo:*`)).toEqual([]);
    for (const id of ids) expect(await redis.exists(keys.job(keySpace(prefix), "demo", id))).toBe(1);

    const [api, worker] = await Promise.all([startApi(env), startWorker(env)]);
    const apiUrl = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] as string;
    for (const id of ids) {
      await until(
        `job ${id} completed`,
        async () => (await gql<{ job: { state: string } | null }>(apiUrl, STATE, { id })).body.data?.job?.state,
        (state) => state === "COMPLETED",
        { timeoutMs: 20_000 },
      );
    }
    // New jobs continue the id sequence (the counter moved with the jobs).
    const next = await enqueueDemo(apiUrl, "noop", {});
    expect(Number(next)).toBe(Math.max(...ids.map(Number)) + 1);
    await worker.stop();
    await api.stop();
  }, 600_000); // eight process starts, most one after another: minutes on a loaded machine

  it("the script refuses while a worker still serves the old layout", async () => {
    const worker = await startWorker({ ...env, REDIS_KEY_LAYOUT: "single" });
    const old = await startApi({ ...env, REDIS_KEY_LAYOUT: "single" });
    const url = /GraphQL API ready at (\S+)/.exec(old.stdout())?.[1] as string;
    await enqueueDemo(url, "sleep", { steps: 1, stepMs: 60_000 });
    await old.stop();
    const migrate = await startProcess("scripts/redis-migrate-layout.ts", env, null);
    expect(await migrate.exited).toBe(1);
    expect(migrate.stderr()).toMatch(/queue "demo": \d+ worker connection\(s\) still use the single layout/);
    await worker.stop("SIGKILL");
  }, 300_000);
});
