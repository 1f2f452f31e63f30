import { Queue } from "bullmq";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

const ENQUEUE = /* GraphQL */ `
  mutation ($input: EnqueueJobInput!) {
    enqueueJob(input: $input) {
      __typename
      ... on EnqueueJobSuccess { job { id queue name data state priority maxAttempts attemptsMade } }
      ... on UserError { code message }
      ... on ValidationError { issues { path message } }
    }
  }
`;

let stack: TestStack;
let api: TestApi;
let prefix: string;

beforeAll(async () => {
  stack = await startTestStack({ worker: false, env: { MAX_PAYLOAD_BYTES: "2048" } });
  ({ api, prefix } = stack);
});

afterAll(async () => {
  await stack?.stop();
});

async function enqueue(input: Record<string, unknown>) {
  const { status, body } = await gql<{ enqueueJob: Record<string, unknown> }>(api.app.fetch, ENQUEUE, { input });
  expect(status).toBe(200);
  expect(body.errors).toBeUndefined();
  return body.data?.enqueueJob as Record<string, unknown>;
}

/** What Redis really holds for the demo queue, read with BullMQ itself. */
async function jobCount(): Promise<number> {
  const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
  try {
    return await queue.count();
  } finally {
    await queue.close();
  }
}

describe("enqueueJob", () => {
  it("enqueues a valid demo.sleep job, readable with job(queue, id) and recorded in history", async () => {
    const result = await enqueue({ queue: "demo", name: "sleep", data: { steps: 2, stepMs: 10 }, attempts: 3, priority: 5 });
    expect(result).toMatchObject({
      __typename: "EnqueueJobSuccess",
      job: {
        queue: "demo",
        name: "sleep",
        data: { steps: 2, stepMs: 10 },
        state: "PRIORITIZED",
        priority: 5,
        maxAttempts: 3,
        attemptsMade: 0,
      },
    });
    const id = (result.job as { id: string }).id;
    const { body } = await gql(api.app.fetch, `query ($id: ID!) { job(queue: "demo", id: $id) { id state data } }`, { id });
    expect(body).toEqual({ data: { job: { id, state: "PRIORITIZED", data: { steps: 2, stepMs: 10 } } } });

    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    const { rows } = await client.query("SELECT state, name, max_attempts FROM job_history WHERE queue = 'demo' AND id = $1", [id]);
    await client.end();
    expect(rows).toEqual([{ state: "PRIORITIZED", name: "sleep", max_attempts: 3 }]);
  });

  it("returns the same job for the same jobId, creating nothing new", async () => {
    const first = await enqueue({ queue: "demo", name: "sleep", data: { steps: 1, stepMs: 0 }, jobId: "order-42" });
    const second = await enqueue({ queue: "demo", name: "sleep", data: { steps: 9, stepMs: 9 }, jobId: "order-42" });
    expect(first).toMatchObject({ job: { id: "order-42", data: { steps: 1, stepMs: 0 } } });
    expect(second).toEqual(first);
  });

  it("answers NotFoundError for an unknown queue", async () => {
    expect(await enqueue({ queue: "nope", name: "sleep", data: {} })).toEqual({
      __typename: "NotFoundError",
      code: "NOT_FOUND",
      message: 'No queue named "nope"',
    });
  });

  it("answers a ValidationError on `name` for an unknown job type in a known queue", async () => {
    expect(await enqueue({ queue: "demo", name: "explode", data: {} })).toEqual({
      __typename: "ValidationError",
      code: "VALIDATION",
      message: 'name: unknown job name "explode" in queue "demo" (known: sleep, fail, noop, fanout)',
      issues: [{ path: ["name"], message: 'unknown job name "explode" in queue "demo" (known: sleep, fail, noop, fanout)' }],
    });
  });

  it.each([
    ["steps below 1", { steps: 0, stepMs: 10 }, [["data", "steps"]]],
    ["a string where a number belongs", { steps: 1, stepMs: "fast" }, [["data", "stepMs"]]],
    ["a missing field", { stepMs: 10 }, [["data", "steps"]]],
    ["an unknown field", { steps: 1, stepMs: 1, colour: "red" }, [["data"]]],
    ["not an object", [1, 2], [["data"]]],
    ["a fractional count", { steps: 1.5, stepMs: 0 }, [["data", "steps"]]],
  ])("answers a ValidationError naming the field for demo.sleep data with %s", async (_what, data, paths) => {
    const result = await enqueue({ queue: "demo", name: "sleep", data });
    expect(result.__typename).toBe("ValidationError");
    expect((result.issues as { path: string[] }[]).map((i) => i.path)).toEqual(paths);
    expect(result.message).toMatch(/^Invalid input: data/);
  });

  it("validates demo.fail data too", async () => {
    const result = await enqueue({ queue: "demo", name: "fail", data: { message: 42, failTimes: -1 } });
    expect((result.issues as { path: string[] }[]).map((i) => i.path)).toEqual([
      ["data", "message"],
      ["data", "failTimes"],
    ]);
  });

  it.each([
    ["a negative delay", { delayMs: -1 }, ["delayMs"]],
    ["zero attempts", { attempts: 0 }, ["attempts"]],
    ["priority 0", { priority: 0 }, ["priority"]],
    ["a priority past BullMQ's range", { priority: 2_097_153 }, ["priority"]],
    ["a negative backoff", { backoff: { type: "FIXED", delayMs: -5 } }, ["backoff", "delayMs"]],
    ["a jobId with a colon", { jobId: "a:b" }, ["jobId"]],
    ["an integer jobId", { jobId: "123" }, ["jobId"]],
    ["an empty jobId", { jobId: "" }, ["jobId"]],
  ])("answers a ValidationError for %s, not a BullMQ exception", async (_what, options, path) => {
    const result = await enqueue({ queue: "demo", name: "sleep", data: { steps: 1, stepMs: 0 }, ...options });
    expect(result.__typename).toBe("ValidationError");
    expect((result.issues as { path: string[] }[]).map((i) => i.path)).toEqual([path]);
  });

  it("refuses a payload over MAX_PAYLOAD_BYTES", async () => {
    const result = await enqueue({ queue: "demo", name: "fail", data: { message: "x".repeat(3000) } });
    expect(result).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["data"], message: expect.stringContaining("more than the limit of 2048") }],
    });
  });

  it("lists every problem of one input at once", async () => {
    const result = await enqueue({ queue: "demo", name: "sleep", data: { steps: 0 }, delayMs: -1, attempts: 0 });
    expect((result.issues as { path: string[] }[]).map((i) => i.path.join("."))).toEqual([
      "data.steps",
      "data.stepMs",
      "delayMs",
      "attempts",
    ]);
  });

  it("enqueues nothing for an invalid input", async () => {
    const before = await jobCount();
    expect(await enqueue({ queue: "demo", name: "sleep", data: { steps: -1, stepMs: 0 } })).toMatchObject({
      __typename: "ValidationError",
    });
    expect(await jobCount()).toBe(before);
  });

  it("answers a 400 with a GraphQL error naming the value for a wrongly typed argument", async () => {
    const { status, body } = await gql(api.app.fetch, ENQUEUE, { input: { queue: "demo", name: "sleep", data: {}, priority: "high" } });
    expect(status).toBe(400);
    expect(body.errors?.[0]?.message).toContain('Int cannot represent non-integer value: "high"');
  });

  it("answers 400 with a GraphQL error body for malformed JSON", async () => {
    const response = await api.app.fetch(
      new Request("http://test/graphql", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" }),
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(/JSON/);
  });
});
