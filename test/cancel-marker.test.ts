import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enqueueDemo, gql, subscribeWs } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// Whether a job was cancelled is decided by the mark cancelJob puts on it, never by its failure
// reason: a processor whose message looks like a cancellation still FAILED.

let stack: TestStack;
let sql: pg.Client;

beforeAll(async () => {
  stack = await startTestStack();
  sql = new pg.Client({ connectionString: stack.databaseUrl });
  await sql.connect();
});

afterAll(async () => {
  await sql?.end();
  await stack?.stop();
});

async function call<T = Record<string, unknown>>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const { body } = await gql(stack.api.url, query, variables);
  expect(body.errors).toBeUndefined();
  return body.data as T;
}

const JOB = `query ($id: ID!) { job(queue: "demo", id: $id) { state failedReason } }`;
// From the start of the stream: the job's events as the relay translates them, whenever it failed.
const EVENTS = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id, since: "0-0") { type failedReason job { state } } }`;

async function historyRow(id: string) {
  return until(
    `the terminal history row of ${id}`,
    async () => (await sql.query("SELECT state::text AS state, failed_reason FROM job_history WHERE id = $1", [id])).rows[0],
    (row) => row?.state === "FAILED" || row?.state === "CANCELLED",
  );
}

describe("a processor whose failure message starts like a cancellation", () => {
  it.each(["Cancelled order 17", "Cancelled: stop"])(
    "throwing Error(%j) ends FAILED everywhere, with an audit row, and is retried by retryFailedJobs",
    async (message) => {
      const id = await enqueueDemo(stack.api.url, "fail", { message });
      const sub = await subscribeWs(stack.api.url, EVENTS, { id });
      await sub.done;
      const last = sub.results.at(-1)?.data?.jobEvents as { type: string; failedReason: string; job: { state: string } };
      expect(last).toEqual({ type: "FAILED", failedReason: message, job: { state: "FAILED" } });

      expect((await call<{ job: unknown }>(JOB, { id })).job).toEqual({ state: "FAILED", failedReason: message });
      expect(await historyRow(id)).toEqual({ state: "FAILED", failed_reason: message });
      const audits = await until(
        "the audit row",
        async () => (await sql.query("SELECT failed_reason FROM failed_job_audit WHERE job_id = $1", [id])).rows,
        (rows) => rows.length > 0,
      );
      expect(audits).toEqual([{ failed_reason: message }]);

      const retried = await call<{ retryFailedJobs: { count: number } }>(
        `mutation { retryFailedJobs(queue: "demo") { ... on BulkActionSuccess { count } } }`,
      );
      expect(retried.retryFailedJobs.count).toBeGreaterThanOrEqual(1);
      // It ran again and failed again (the demo job always fails): a second audit row.
      await until(
        "a second audit row after the retry",
        async () => (await sql.query("SELECT count(*)::int AS n FROM failed_job_audit WHERE job_id = $1", [id])).rows[0].n,
        (n) => n === 2,
      );
    },
  );
});

describe("a job cancelJob really cancelled", () => {
  it("ends CANCELLED, without an audit row, and retryFailedJobs leaves it alone", async () => {
    const id = await enqueueDemo(stack.api.url, "sleep", { steps: 200, stepMs: 100 });
    await until(
      "the job is active",
      async () => (await stack.queue.getJob(id))?.getState(),
      (s) => s === "active",
    );
    const cancelled = await call<{ cancelJob: { job: { state: string; failedReason: string } } }>(
      `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id, reason: "Cancelled order 17") { ... on JobActionSuccess { job { state failedReason } } } }`,
      { id },
    );
    expect(cancelled.cancelJob.job.state).toMatch(/ACTIVE|CANCELLED/);
    await until(
      "the job ended",
      async () => (await stack.queue.getJob(id))?.getState(),
      (s) => s === "failed",
    );
    expect((await call<{ job: unknown }>(JOB, { id })).job).toEqual({ state: "CANCELLED", failedReason: "Cancelled: Cancelled order 17" });
    expect(await historyRow(id)).toEqual({ state: "CANCELLED", failed_reason: "Cancelled: Cancelled order 17" });
    const retried = await call<{ retryFailedJobs: { count: number } }>(
      `mutation { retryFailedJobs(queue: "demo") { ... on BulkActionSuccess { count } } }`,
    );
    // Other tests' failed jobs may be retried; this one stays as it is.
    expect(retried.retryFailedJobs.count).toBeGreaterThanOrEqual(0);
    expect(await (await stack.queue.getJob(id))?.getState()).toBe("failed");
    expect((await call<{ job: unknown }>(JOB, { id })).job).toEqual({ state: "CANCELLED", failedReason: "Cancelled: Cancelled order 17" });
    expect((await sql.query("SELECT count(*)::int AS n FROM failed_job_audit WHERE job_id = $1", [id])).rows[0].n).toBe(0);
  });
});
