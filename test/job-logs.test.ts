import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { demoSleep } from "../src/jobs/definitions/demo-sleep.ts";
import { enqueueDemo, gql, subscribeWs } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";
import { defineProcessor, type Processor } from "../workers/processor.ts";
import { processors } from "../workers/processors/index.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

// Logs that last: `ctx.log` lines go to Redis (job.log), to jobEvents / queueEvents subscribers as LOG
// events, and to history (job_log: the first 1,000 lines / 64 KiB of a job), so Job.logs still answers
// after Redis drops the job.

let stack: TestStack;
let runtime: WorkerRuntime;
let sql: pg.Client;
let release: () => void = () => {};
const released = new Promise<void>((resolve) => {
  release = resolve;
});

// demo.sleep, reused as a logger: steps = 2 waits for the test, then writes two lines; otherwise it
// writes `steps` lines of `stepMs` filler characters each.
const logging = defineProcessor(demoSleep, async ({ steps, stepMs }, { log }) => {
  if (steps === 2) {
    await released;
    await log("first line");
    await log("second line");
  } else {
    for (let i = 1; i <= steps; i++) await log(`${i}:${"x".repeat(stepMs)}`);
  }
  return { steps };
});

beforeAll(async () => {
  stack = await startTestStack({ worker: false });
  sql = new pg.Client({ connectionString: stack.databaseUrl });
  await sql.connect();
  const config = loadConfig({ ...stack.env, WORKER_QUEUES: "demo", LOG_LEVEL: "silent" });
  const own = processors.filter((p) => p.definition !== demoSleep);
  runtime = await createWorkerRuntime(config, createLogger("silent"), [logging as unknown as Processor, ...own]);
});

afterAll(async () => {
  release();
  await runtime?.stop();
  await sql?.end();
  await stack?.stop();
});

const LOGS = `query ($id: ID!) { job(queue: "demo", id: $id) { state logs } }`;

async function logsOf(id: string): Promise<{ state: string; logs: string[] } | null> {
  const { body } = await gql<{ job: { state: string; logs: string[] } | null }>(stack.api.url, LOGS, { id });
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data?.job ?? null;
}

const keptLines = async (id: string) =>
  (await sql.query<{ seq: number; line: string }>(`SELECT seq, line FROM job_log WHERE queue = 'demo' AND job_id = $1 ORDER BY seq`, [id]))
    .rows;

describe("job logs", () => {
  it("reach a jobEvents subscriber live as LOG events, and survive the job's removal from Redis", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 2, stepMs: 0 });
    const sub = await subscribeWs<{ jobEvents: { type: string; log: string | null } }>(
      stack.api.url,
      `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { id type log } }`,
      { id },
    );
    await sub.waitFor(1);
    release();
    await sub.done;
    const events = sub.results.map((r) => r.data?.jobEvents);
    expect(events.filter((e) => e?.type === "LOG").map((e) => ({ type: e?.type, log: e?.log }))).toEqual([
      { type: "LOG", log: "first line" },
      { type: "LOG", log: "second line" },
    ]);
    // In order with the job's other events: both lines before COMPLETED.
    const types = events.map((e) => e?.type);
    expect(types.indexOf("LOG")).toBeGreaterThan(types.indexOf("ACTIVE"));
    expect(types.at(-1)).toBe("COMPLETED");
    expect(events.filter((e) => e?.type !== "LOG").every((e) => e?.log === null)).toBe(true);

    expect(await logsOf(id)).toEqual({ state: "COMPLETED", logs: ["first line", "second line"] });
    await until(
      "the lines in history",
      () => keptLines(id),
      (rows) => rows.length === 2,
    );
    // The worker writes the final row after the fact (group commit): wait for it before Redis forgets the job.
    await until(
      "the COMPLETED row in history",
      async () =>
        (await sql.query<{ state: string }>(`SELECT state FROM job_history WHERE queue = 'demo' AND id = $1`, [id])).rows[0]?.state,
      (state) => state === "COMPLETED",
    );
    await (await stack.queue.getJob(id))?.remove();
    expect(await stack.queue.getJob(id)).toBeUndefined();
    // From history now.
    expect(await logsOf(id)).toEqual({ state: "COMPLETED", logs: ["first line", "second line"] });
  });

  it("keeps the first 1,000 lines of a job in history (Redis has them all)", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 1_005, stepMs: 0 });
    await until(
      "the job completed",
      async () => (await logsOf(id))?.state,
      (s) => s === "COMPLETED",
    );
    expect((await logsOf(id))?.logs).toHaveLength(1_000); // Job.logs reads at most 1,000 from Redis too
    const { logs, count } = await stack.queue.getJobLogs(id);
    expect(count).toBe(1_005);
    expect(logs.at(-1)).toBe("1005:");
    const kept = await until(
      "1,000 lines in history",
      () => keptLines(id),
      (rows) => rows.length >= 1_000,
    );
    expect(kept).toHaveLength(1_000);
    expect(kept.at(-1)).toEqual({ seq: 1_000, line: "1000:" });
    await (await stack.queue.getJob(id))?.remove();
    const fromHistory = (await logsOf(id))?.logs ?? [];
    expect(fromHistory).toHaveLength(1_000);
    expect(fromHistory[0]).toBe("1:");
    expect(fromHistory.at(-1)).toBe("1000:");
  });

  it("keeps at most 64 KiB of a job's lines, the first ones, and deletes them with the history row", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 100, stepMs: 1_020 });
    await until(
      "the job completed",
      async () => (await logsOf(id))?.state,
      (s) => s === "COMPLETED",
    );
    // Lines are ~1,024 bytes: 64 fit; the flush after the last line decides nothing more.
    await new Promise((r) => setTimeout(r, 200));
    const kept = await until(
      "lines in history",
      () => keptLines(id),
      (rows) => rows.length > 0,
    );
    const bytes = kept.reduce((n, r) => n + Buffer.byteLength(r.line), 0);
    expect(bytes).toBeLessThanOrEqual(65_536);
    expect(bytes).toBeGreaterThan(65_536 - 1_100);
    expect(kept.map((r) => r.seq)).toEqual(Array.from({ length: kept.length }, (_, i) => i + 1));
    // Retention deletes the history row: its lines go too.
    await sql.query(`DELETE FROM job_history WHERE queue = 'demo' AND id = $1`, [id]);
    expect(await keptLines(id)).toEqual([]);
  });
});
