import { type Queue, Worker } from "bullmq";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// Control mutations without a worker: what they do to Redis, history and the operator audit trail.

let stack: TestStack;
let api: TestApi;
let sql: pg.Client;
let queue: Queue;
let prefix: string;

beforeAll(async () => {
  stack = await startTestStack({ worker: false, env: { MAX_BULK_ENQUEUE: "5", MAX_BULK_RETRY: "5000" } });
  ({ api, queue, prefix } = stack);
  sql = new pg.Client({ connectionString: stack.databaseUrl });
  await sql.connect();
});

afterAll(async () => {
  await sql?.end();
  await stack?.stop();
});

const JOB = "job { id name data state attemptsMade maxAttempts priority failedReason replayOf { id } replays { id } }";
const ERR = "__typename ... on UserError { code message }";
const ISSUES = "... on ValidationError { issues { path message } }";
const STATE = "... on InvalidStateError { state }";
/** Every member of JobActionResult. */
const RESULT = `${ERR} ${ISSUES} ${STATE}`;

async function mutate<T = Record<string, unknown>>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const { body } = await gql(api.app.fetch, query, variables);
  expect(body.errors).toBeUndefined();
  return Object.values(body.data ?? {})[0] as T;
}

async function enqueue(data: unknown, extra: Record<string, unknown> = {}, name = "sleep"): Promise<string> {
  const r = await mutate<{ job: { id: string } }>(
    `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id } } } }`,
    { input: { queue: "demo", name, data, ...extra } },
  );
  return r.job.id;
}

async function lastAction(action: string) {
  const { rows } = await sql.query(
    "SELECT actor, action, queue, job_id, details FROM operator_action WHERE action = $1 ORDER BY at DESC LIMIT 1",
    [action],
  );
  return rows[0];
}

/**
 * Makes a FAILED job the way a worker would, with BullMQ's manual processing (no processor runs):
 * the queue is drained first so the job fetched is ours.
 */
async function failedJob(): Promise<string> {
  await queue.drain(true);
  const id = await enqueue({ message: "boom" }, {}, "fail");
  const worker = new Worker("demo", null, { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo"), autorun: false });
  try {
    const job = await worker.getNextJob("test-token");
    if (job?.id !== id) throw new Error(`expected job ${id}, fetched ${job?.id}`);
    await job.moveToFailed(new Error("boom"), "test-token", false);
    expect(await job.getState()).toBe("failed");
  } finally {
    await worker.close();
  }
  return id;
}

describe("enqueueJobs", () => {
  const ENQUEUE_JOBS = `mutation ($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { ${ERR} ${ISSUES} ... on EnqueueJobsSuccess { jobs { id name state data } } } }`;

  it("enqueues every input, in order", async () => {
    const r = await mutate<{ jobs: { name: string; data: unknown }[] }>(ENQUEUE_JOBS, {
      inputs: [
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } },
        { queue: "demo", name: "fail", data: { message: "x" }, delayMs: 60_000 },
      ],
    });
    expect(r.jobs.map((j) => [j.name, j.data])).toEqual([
      ["sleep", { steps: 1, stepMs: 1 }],
      ["fail", { message: "x" }],
    ]);
  });

  it("is all or nothing: one bad input enqueues nothing and every issue path starts with its index", async () => {
    const before = await queue.count();
    const r = await mutate<{ __typename: string; issues: { path: string[] }[] }>(ENQUEUE_JOBS, {
      inputs: [
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } },
        { queue: "demo", name: "sleep", data: { steps: 0, stepMs: 1 } },
        { queue: "demo", name: "nope", data: {} },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, attempts: 0 },
      ],
    });
    expect(r.__typename).toBe("ValidationError");
    expect(r.issues.map((i) => i.path)).toEqual([
      ["1", "data", "steps"],
      ["2", "name"],
      ["3", "attempts"],
    ]);
    expect(await queue.count()).toBe(before);
  });

  it("refuses more inputs than MAX_BULK_ENQUEUE", async () => {
    const inputs = Array.from({ length: 6 }, () => ({ queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } }));
    expect(await mutate(ENQUEUE_JOBS, { inputs })).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["inputs"], message: "at most 5 inputs per call (got 6)" }],
    });
  });

  it("answers NotFoundError naming the input for an unknown queue", async () => {
    expect(
      await mutate(ENQUEUE_JOBS, {
        inputs: [
          { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } },
          { queue: "nope", name: "x", data: {} },
        ],
      }),
    ).toEqual({
      __typename: "NotFoundError",
      code: "NOT_FOUND",
      message: 'inputs[1]: No queue named "nope"',
    });
  });

  it("refuses the same jobId twice in one call, and returns known ids unchanged", async () => {
    const dup = await mutate<{ issues: { path: string[] }[] }>(ENQUEUE_JOBS, {
      inputs: [
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "bulk-a" },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "bulk-a" },
      ],
    });
    expect(dup.issues.map((i) => i.path)).toEqual([["1", "jobId"]]);
    const first = await mutate<{ jobs: { id: string; data: unknown }[] }>(ENQUEUE_JOBS, {
      inputs: [{ queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "bulk-b" }],
    });
    const again = await mutate<{ jobs: { id: string; data: unknown }[] }>(ENQUEUE_JOBS, {
      inputs: [
        { queue: "demo", name: "sleep", data: { steps: 2, stepMs: 2 }, jobId: "bulk-b" },
        { queue: "demo", name: "sleep", data: { steps: 3, stepMs: 3 } },
      ],
    });
    expect(again.jobs[0]).toEqual(first.jobs[0]);
    expect(again.jobs[1]?.data).toEqual({ steps: 3, stepMs: 3 });
  });
});

describe("idempotent enqueue under concurrency", () => {
  it("50 concurrent identical requests with one jobId make one job", async () => {
    const input = { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "concurrent-1" };
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        gql<{ enqueueJob: { job: { id: string; createdAt: string } } }>(
          api.url,
          `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id createdAt } } } }`,
          { input },
        ),
      ),
    );
    const jobs = results.map((r) => r.body.data?.enqueueJob.job);
    expect(new Set(jobs.map((j) => j?.id))).toEqual(new Set(["concurrent-1"]));
    expect(new Set(jobs.map((j) => j?.createdAt)).size).toBe(1);
    const { rows } = await sql.query("SELECT count(*)::int AS n FROM job_history WHERE id = 'concurrent-1'");
    expect(rows[0].n).toBe(1);
  });
});

describe("cancelJob (jobs not running)", () => {
  const CANCEL = `mutation ($id: ID!, $queue: String! = "demo", $reason: String) { cancelJob(queue: $queue, id: $id, reason: $reason) { ${RESULT} ... on JobActionSuccess { ${JOB} } } }`;

  it.each([
    ["WAITING", {}],
    ["DELAYED", { delayMs: 60_000 }],
    ["PRIORITIZED", { priority: 3 }],
  ])("takes a %s job out of the queue and records it CANCELLED, with an operator action", async (state, extra) => {
    const id = await enqueue({ steps: 1, stepMs: 1 }, extra);
    expect((await mutate(`{ job(queue: "demo", id: "${id}") { state } }`)) as unknown).toEqual({ state });
    const r = await mutate<{ job: { state: string; failedReason: string } }>(CANCEL, { id, reason: "customer asked" });
    expect(r).toMatchObject({ __typename: "JobActionSuccess", job: { state: "CANCELLED", failedReason: "Cancelled: customer asked" } });
    expect(await queue.getJob(id)).toBeUndefined();
    expect((await mutate(`{ job(queue: "demo", id: "${id}") { state } }`)) as unknown).toEqual({ state: "CANCELLED" });
    expect(await lastAction("cancelJob")).toMatchObject({
      actor: "anonymous",
      queue: "demo",
      job_id: id,
      details: { reason: "customer asked", previousState: state },
    });
  });

  it("answers InvalidStateError with the state for a finished job, and NotFoundError for an unknown one", async () => {
    const id = await enqueue({ steps: 1, stepMs: 1 });
    await mutate(CANCEL, { id });
    expect(await mutate(CANCEL, { id })).toEqual({
      __typename: "InvalidStateError",
      code: "INVALID_STATE",
      message: `Job "${id}" is already CANCELLED`,
      state: "CANCELLED",
    });
    const failed = await failedJob();
    expect(await mutate(CANCEL, { id: failed })).toMatchObject({ __typename: "InvalidStateError", state: "FAILED" });
    expect(await mutate(CANCEL, { id: "missing" })).toEqual({
      __typename: "NotFoundError",
      code: "NOT_FOUND",
      message: 'No job "missing" in queue "demo"',
    });
    expect(await mutate(CANCEL, { id: "1", queue: "nope" })).toMatchObject({
      __typename: "NotFoundError",
      message: 'No queue named "nope"',
    });
  });

  it("refuses a reason over 1000 characters", async () => {
    const id = await enqueue({ steps: 1, stepMs: 1 });
    expect(await mutate(CANCEL, { id, reason: "x".repeat(1001) })).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["reason"] }],
    });
    expect((await mutate(`{ job(queue: "demo", id: "${id}") { state } }`)) as unknown).toEqual({ state: "WAITING" });
  });
});

describe("retryJob and retryFailedJobs", () => {
  const RETRY = `mutation ($id: ID!) { retryJob(queue: "demo", id: $id) { ${RESULT} ... on JobActionSuccess { ${JOB} } } }`;

  it("puts a FAILED job back to WAITING with the same id and attempts back to 0", async () => {
    const id = await failedJob();
    const r = await mutate(RETRY, { id });
    expect(r).toMatchObject({ __typename: "JobActionSuccess", job: { id, state: "WAITING", attemptsMade: 0, failedReason: null } });
    expect(await lastAction("retryJob")).toMatchObject({ job_id: id, details: { previousState: "FAILED" } });
  });

  it("answers InvalidStateError for a waiting job, for a cancelled job no longer held, and NotFoundError for an unknown one", async () => {
    const waiting = await enqueue({ steps: 1, stepMs: 1 });
    expect(await mutate(RETRY, { id: waiting })).toMatchObject({ __typename: "InvalidStateError", state: "WAITING" });
    await mutate(`mutation { cancelJob(queue: "demo", id: "${waiting}") { __typename } }`);
    expect(await mutate(RETRY, { id: waiting })).toMatchObject({
      __typename: "InvalidStateError",
      state: "CANCELLED",
      message: expect.stringContaining("use replayJob"),
    });
    expect(await mutate(RETRY, { id: "missing" })).toMatchObject({ __typename: "NotFoundError" });
  });

  it("retries every failed job up to the limit and counts them", async () => {
    const ids = [await failedJob(), await failedJob(), await failedJob()];
    const before = await queue.getFailedCount();
    const r = await mutate(`mutation { retryFailedJobs(queue: "demo", limit: 2) { ${ERR} ... on BulkActionSuccess { count } } }`);
    expect(r).toEqual({ __typename: "BulkActionSuccess", count: 2 });
    expect(await queue.getFailedCount()).toBe(before - 2);
    const rest = await mutate(`mutation { retryFailedJobs(queue: "demo") { ... on BulkActionSuccess { count } } }`);
    expect(rest).toEqual({ count: before - 2 });
    for (const id of ids) expect(await (await queue.getJob(id))?.getState()).toBe("waiting");
    expect(await lastAction("retryFailedJobs")).toMatchObject({ details: { limit: 1000, count: before - 2 } });
  });

  it.each([0, -1, 5001])("refuses limit %s", async (limit) => {
    expect(await mutate(`mutation { retryFailedJobs(queue: "demo", limit: ${limit}) { ${ERR} ${ISSUES} } }`)).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["limit"], message: "must be an integer from 1 to 5000" }],
    });
  });

  it("answers NotFoundError for an unknown queue", async () => {
    expect(await mutate(`mutation { retryFailedJobs(queue: "nope") { ${ERR} } }`)).toMatchObject({ __typename: "NotFoundError" });
  });
});

describe("replayJob", () => {
  const REPLAY = `mutation ($id: ID!, $data: JSON, $dataPatch: JSON) { replayJob(queue: "demo", id: $id, data: $data, dataPatch: $dataPatch) { ${RESULT} ... on JobActionSuccess { ${JOB} } } }`;

  it("enqueues a new job with the original's name and options, and links both ways", async () => {
    const id = await enqueue(
      { steps: 2, stepMs: 5 },
      { attempts: 4, priority: 7, delayMs: 60_000, backoff: { type: "EXPONENTIAL", delayMs: 100 } },
    );
    const r = await mutate<{ job: { id: string } }>(REPLAY, { id });
    expect(r).toMatchObject({
      __typename: "JobActionSuccess",
      job: { name: "sleep", data: { steps: 2, stepMs: 5 }, maxAttempts: 4, priority: 7, state: "PRIORITIZED", replayOf: { id } },
    });
    expect(r.job.id).not.toBe(id);
    const copy = await queue.getJob(r.job.id);
    expect(copy?.opts).toMatchObject({ attempts: 4, priority: 7, backoff: { type: "exponential", delay: 100 } });
    expect(copy?.opts.delay ?? 0).toBe(0);
    expect((await mutate(`{ job(queue: "demo", id: "${id}") { replays { id } } }`)) as unknown).toEqual({ replays: [{ id: r.job.id }] });
  });

  it("replaces the payload with `data` and merges `dataPatch` (RFC 7386), validating the result", async () => {
    const id = await enqueue({ message: "a", failTimes: 2 }, {}, "fail");
    expect(await mutate(REPLAY, { id, data: { message: "b" } })).toMatchObject({ job: { data: { message: "b" } } });
    expect(await mutate(REPLAY, { id, dataPatch: { failTimes: null, message: "c" } })).toMatchObject({ job: { data: { message: "c" } } });
    expect(await mutate(REPLAY, { id, dataPatch: { failTimes: -3 } })).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["data", "failTimes"] }],
    });
    expect(await mutate(REPLAY, { id, data: { message: "x" }, dataPatch: {} })).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["dataPatch"] }],
    });
  });

  it("works from history once the original has left Redis", async () => {
    const id = await enqueue({ steps: 3, stepMs: 1 }, { attempts: 2, backoff: { type: "FIXED", delayMs: 50 } });
    await (await queue.getJob(id))?.remove();
    expect(await queue.getJob(id)).toBeUndefined();
    const r = await mutate<{ job: { id: string } }>(REPLAY, { id });
    expect(r).toMatchObject({ job: { name: "sleep", data: { steps: 3, stepMs: 1 }, maxAttempts: 2, replayOf: { id } } });
    expect((await queue.getJob(r.job.id))?.opts.backoff).toEqual({ type: "fixed", delay: 50 });
    expect(await lastAction("replayJob")).toMatchObject({ job_id: id, details: { replayJobId: r.job.id } });
  });

  it("answers NotFoundError for an unknown job", async () => {
    expect(await mutate(REPLAY, { id: "missing" })).toMatchObject({ __typename: "NotFoundError" });
  });
});

describe("pauseQueue / resumeQueue and the queue query", () => {
  it("pauses and resumes, answering with the queue", async () => {
    expect(await mutate(`mutation { pauseQueue(name: "demo") { ${ERR} ... on QueueActionSuccess { queue { name paused } } } }`)).toEqual({
      __typename: "QueueActionSuccess",
      queue: { name: "demo", paused: true },
    });
    expect(await queue.isPaused()).toBe(true);
    expect(await mutate(`mutation { resumeQueue(name: "demo") { ... on QueueActionSuccess { queue { paused } } } }`)).toEqual({
      queue: { paused: false },
    });
    expect(await lastAction("pauseQueue")).toMatchObject({ queue: "demo", job_id: null });
    expect(await lastAction("resumeQueue")).toMatchObject({ queue: "demo" });
  });

  it("answers NotFoundError for an unknown queue", async () => {
    expect(await mutate(`mutation { pauseQueue(name: "nope") { ${ERR} } }`)).toEqual({
      __typename: "NotFoundError",
      code: "NOT_FOUND",
      message: 'No queue named "nope"',
    });
    expect(await mutate(`mutation { resumeQueue(name: "nope") { ${ERR} } }`)).toMatchObject({ __typename: "NotFoundError" });
  });

  it("reads live counts and each job type's JSON Schema", async () => {
    const { body } = await gql(
      api.app.fetch,
      `{ queue(name: "demo") { name counts { waiting delayed failed } jobTypes { name payloadSchema } } nope: queue(name: "nope") { name } }`,
    );
    const q = (
      body.data as { queue: { counts: Record<string, number>; jobTypes: { name: string; payloadSchema: Record<string, unknown> }[] } }
    ).queue;
    const counts = await queue.getJobCounts("waiting", "delayed", "failed");
    expect(q.counts).toEqual(counts);
    const sleep = q.jobTypes.find((t) => t.name === "sleep");
    expect(sleep?.payloadSchema).toMatchObject({
      type: "object",
      required: ["steps", "stepMs"],
      properties: { steps: { type: "integer", minimum: 1 } },
    });
    expect((body.data as { nope: unknown }).nope).toBeNull();
  });
});

describe("job schedulers", () => {
  const UPSERT = `mutation ($input: UpsertJobSchedulerInput!) { upsertJobScheduler(input: $input) { ${ERR} ${ISSUES} ... on JobSchedulerSuccess { scheduler { id queue name data pattern everyMs tz nextRunAt } } } }`;

  it("creates a cron scheduler with a time zone, lists it on the queue, and removes it", async () => {
    const r = await mutate(UPSERT, {
      input: { queue: "demo", id: "nightly", name: "sleep", data: { steps: 1, stepMs: 1 }, pattern: "0 3 * * *", tz: "Europe/Paris" },
    });
    expect(r).toMatchObject({
      __typename: "JobSchedulerSuccess",
      scheduler: { id: "nightly", queue: "demo", name: "sleep", pattern: "0 3 * * *", tz: "Europe/Paris", everyMs: null },
    });
    const { body } = await gql(api.app.fetch, `{ queue(name: "demo") { schedulers { id pattern } } }`);
    expect((body.data as { queue: { schedulers: unknown[] } }).queue.schedulers).toContainEqual({ id: "nightly", pattern: "0 3 * * *" });
    expect(await lastAction("upsertJobScheduler")).toMatchObject({ details: { id: "nightly", pattern: "0 3 * * *" } });
    expect(
      await mutate(
        `mutation { removeJobScheduler(queue: "demo", id: "nightly") { ${ERR} ... on JobSchedulerSuccess { scheduler { id } } } }`,
      ),
    ).toEqual({
      __typename: "JobSchedulerSuccess",
      scheduler: { id: "nightly" },
    });
    expect(await mutate(`mutation { removeJobScheduler(queue: "demo", id: "nightly") { ${ERR} } }`)).toMatchObject({
      __typename: "NotFoundError",
    });
  });

  it.each([
    ["neither pattern nor everyMs", {}, ["pattern"]],
    ["both pattern and everyMs", { pattern: "* * * * *", everyMs: 1000 }, ["everyMs"]],
    ["a malformed cron pattern", { pattern: "every day" }, ["pattern"]],
    ["an unknown time zone", { pattern: "* * * * *", tz: "Mars/Olympus" }, ["tz"]],
    ["a time zone without a pattern", { everyMs: 1000, tz: "UTC" }, ["tz"]],
    ["everyMs below 100", { everyMs: 5 }, ["everyMs"]],
    ["an invalid payload", { everyMs: 1000, data: { steps: 0, stepMs: 1 } }, ["data", "steps"]],
    ["an id with a colon", { everyMs: 1000, id: "a:b" }, ["id"]],
  ])("refuses %s with a ValidationError", async (_what, extra, path) => {
    const r = await mutate<{ __typename: string; issues: { path: string[] }[] }>(UPSERT, {
      input: { queue: "demo", id: "bad", name: "sleep", data: { steps: 1, stepMs: 1 }, ...extra },
    });
    expect(r.__typename).toBe("ValidationError");
    expect(r.issues.map((i) => i.path)).toContainEqual(path);
  });

  it("answers NotFoundError for an unknown queue and ValidationError for an unknown job name", async () => {
    expect(await mutate(UPSERT, { input: { queue: "nope", id: "x", name: "sleep", data: {}, everyMs: 1000 } })).toMatchObject({
      __typename: "NotFoundError",
    });
    expect(await mutate(UPSERT, { input: { queue: "demo", id: "x", name: "nope", data: {}, everyMs: 1000 } })).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["name"] }],
    });
  });
});
