import type { Queue } from "bullmq";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { demoSleep } from "../src/jobs/definitions/demo-sleep.ts";
import type { TestApi } from "../src/testing/api.ts";
import { enqueueDemo, gql, subscribeWs } from "../src/testing/graphql.ts";
import { startWorker } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";
import { defineProcessor, type Processor } from "../workers/processor.ts";
import { processors } from "../workers/processors/index.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

// cancelJob on running jobs, with the API in this process and workers elsewhere: the request
// reaches the worker that holds the job through Redis.

const CANCEL = `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id, reason: "stop") {
  __typename ... on JobActionSuccess { job { id state failedReason } } ... on InvalidStateError { state } ... on UserError { message } } }`;
const EVENTS = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { id type failedReason job { state } } }`;

/** The stack of the describe block running now (each has its own database and prefix), and a client on its database. */
let stack: TestStack;
let sql: pg.Client;

async function startStack(options: Parameters<typeof startTestStack>[0]): Promise<TestStack> {
  stack = await startTestStack(options);
  sql = new pg.Client({ connectionString: stack.databaseUrl });
  await sql.connect();
  return stack;
}

async function stopStack(): Promise<void> {
  await sql?.end();
  await stack?.stop();
}

const enqueue = (api: TestApi, data: unknown, extra: Record<string, unknown> = {}) => enqueueDemo(api.url, "sleep", data, extra);

async function waitForState(queue: Queue, id: string, state: string) {
  await until(
    `job ${id} ${state}`,
    async () => (await queue.getJob(id))?.getState(),
    (s) => s === state,
  );
}

async function historyState(id: string, settled: (s: string | undefined) => boolean): Promise<string | undefined> {
  return until(
    `history of ${id}`,
    async () => (await sql.query("SELECT state FROM job_history WHERE id = $1", [id])).rows[0]?.state,
    settled,
  );
}

describe("cancelling an active job in a worker process whose processor honours the signal", () => {
  let api: TestApi;
  let queue: Queue;

  beforeAll(async () => {
    ({ api, queue } = await startStack({}));
  });

  afterAll(stopStack);

  it("aborts it at once: CANCELLED with no further attempts, the subscription ends with CANCELLED, no audit row", async () => {
    const id = await enqueue(api, { steps: 200, stepMs: 100 }, { attempts: 3 });
    const sub = await subscribeWs(api.url, EVENTS, { id });
    await sub.waitFor(1);
    await waitForState(queue, id, "active");
    const { body } = await gql(api.url, CANCEL, { id });
    expect(body.data?.cancelJob).toEqual({
      __typename: "JobActionSuccess",
      job: { id, state: "CANCELLED", failedReason: "Cancelled: stop" },
    });
    await sub.done;
    const events = sub.results.map((r) => (r.data as { jobEvents: { type: string; job: { state: string } | null } }).jobEvents);
    expect(events.at(-1)).toMatchObject({ type: "CANCELLED", job: { state: "CANCELLED" } });
    expect(events.map((e) => e.type)).not.toContain("RETRYING");
    const job = await queue.getJob(id);
    expect(job?.attemptsMade).toBe(1);
    expect(await historyState(id, (s) => s === "CANCELLED")).toBe("CANCELLED");
    const { rowCount } = await sql.query("SELECT 1 FROM failed_job_audit WHERE job_id = $1", [id]);
    expect(rowCount).toBe(0);
    await sub.close();
  });

  it("a job cancelled in the race with its completion ends in exactly one terminal state, and history agrees", async () => {
    const outcomes = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const id = await enqueue(api, { steps: 1, stepMs: 40 });
      await new Promise((r) => setTimeout(r, 20 + (i % 4) * 15));
      const { body } = await gql<{ cancelJob: { __typename: string; job?: { state: string }; state?: string } }>(api.url, CANCEL, { id });
      const answer = body.data?.cancelJob;
      for (let k = 0; k < 100 && !["completed", "failed"].includes(String(await (await queue.getJob(id))?.getState())); k++) {
        if (!(await queue.getJob(id))) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const live = await queue.getJob(id);
      const redisState = live ? await live.getState() : "removed";
      const final = redisState === "completed" ? "COMPLETED" : "CANCELLED";
      expect(redisState === "completed" || redisState === "failed" || redisState === "removed").toBe(true);
      if (redisState === "failed") expect(live?.failedReason).toBe("Cancelled: stop");
      expect(await historyState(id, (s) => s === final)).toBe(final);
      // The answer never contradicts the outcome.
      if (answer?.__typename === "JobActionSuccess" && answer.job?.state !== "ACTIVE") expect(answer.job?.state).toBe(final);
      if (answer?.__typename === "InvalidStateError") expect([answer.state, live?.failedReason]).toEqual(["COMPLETED", undefined]);
      outcomes.set(id, final);
    }
    expect(outcomes.size).toBe(12);
  });
});

describe("cancelling an active job whose processor ignores the signal", () => {
  let api: TestApi;
  let runtime: WorkerRuntime;
  let queue: Queue;
  const stubborn = defineProcessor(demoSleep, async ({ steps, stepMs }, { progress }) => {
    // Deliberately never looks at its AbortSignal.
    for (let i = 1; i <= steps; i++) {
      await new Promise((r) => setTimeout(r, stepMs));
      await progress(Math.round((100 * i) / steps));
    }
    return { steps };
  });

  beforeAll(async () => {
    // The worker runs in this process, with a processor of the test's own.
    const { env } = await startStack({ worker: false, env: { CANCEL_GRACE_MS: "600", CANCEL_WAIT_MS: "3000", LOG_LEVEL: "warn" } });
    ({ api, queue } = stack);
    const own = processors.filter((p) => p.definition !== demoSleep);
    runtime = await createWorkerRuntime(loadConfig(env), createLogger("warn"), [stubborn as Processor, ...own]);
  });

  afterAll(async () => {
    await runtime?.stop();
    await stopStack();
  });

  it("still ends CANCELLED once the grace period is over, although the processor keeps going", async () => {
    const id = await enqueue(api, { steps: 100, stepMs: 100 }, { attempts: 2 });
    await waitForState(queue, id, "active");
    const started = Date.now();
    const { body } = await gql(api.url, CANCEL, { id });
    expect(body.data?.cancelJob).toMatchObject({ __typename: "JobActionSuccess", job: { state: "CANCELLED" } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect((await queue.getJob(id))?.attemptsMade).toBe(1);
    expect(await historyState(id, (s) => s === "CANCELLED")).toBe("CANCELLED");
  });

  it("ends CANCELLED, not COMPLETED, when the processor ignores the signal and returns within the grace period", async () => {
    const id = await enqueue(api, { steps: 4, stepMs: 100 });
    await waitForState(queue, id, "active");
    const { body } = await gql(api.url, CANCEL, { id });
    expect(body.data?.cancelJob).toMatchObject({ job: { state: "CANCELLED" } });
    const job = await queue.getJob(id);
    expect(job?.failedReason).toBe("Cancelled: stop");
    expect(job?.returnvalue ?? null).toBeNull();
  });
});

describe("cancelling a job while no worker holds it (its worker died)", () => {
  let api: TestApi;
  let queue: Queue;
  const fast = { WORKER_LOCK_DURATION_MS: "1000", WORKER_STALLED_INTERVAL_MS: "500" };

  beforeAll(async () => {
    ({ api, queue } = await startStack({ worker: false, env: { CANCEL_WAIT_MS: "300" } }));
  });

  afterAll(stopStack);

  it("the worker that takes it after the stall fails it CANCELLED without running it; retryJob then runs it", async () => {
    const env = { ...stack.env, ...fast };
    const first = await startWorker(env);
    const id = await enqueue(api, { steps: 10, stepMs: 100 });
    await waitForState(queue, id, "active");
    expect(await first.stop("SIGKILL")).toBe("SIGKILL");

    // Nobody aborts it: the answer is the state when the wait ran out.
    const { body } = await gql(api.url, CANCEL, { id });
    expect(body.data?.cancelJob).toMatchObject({ __typename: "JobActionSuccess", job: { state: "ACTIVE" } });
    const progressAtCancel = Number((await queue.getJob(id))?.progress ?? 0);

    const second = await startWorker(env);
    try {
      await waitForState(queue, id, "failed");
      const job = await queue.getJob(id);
      expect(job?.failedReason).toBe("Cancelled: stop");
      expect(Number(job?.progress ?? 0)).toBe(progressAtCancel);
      expect(await historyState(id, (s) => s === "CANCELLED")).toBe("CANCELLED");

      const RETRY = `mutation ($id: ID!) { retryJob(queue: "demo", id: $id) { __typename } }`;
      expect((await gql(api.url, RETRY, { id })).body.data?.retryJob).toEqual({ __typename: "JobActionSuccess" });
      await until(
        `job ${id} completed`,
        () => queue.getJobState(id),
        (s) => s === "completed",
      );
      expect((await queue.getJob(id))?.returnvalue).toEqual({ steps: 10 });
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
