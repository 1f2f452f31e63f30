import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// A job scheduler with a real worker process: it fires, and once removed nothing of it starts.

let stack: TestStack;
let api: TestApi;
let queue: Queue;

beforeAll(async () => {
  // everyMs 300 below: under the default 1 s minimum (SCHEDULER_MIN_INTERVAL_MS).
  stack = await startTestStack({ env: { SCHEDULER_MIN_INTERVAL_MS: "100" } });
  ({ api, queue } = stack);
});

afterAll(() => stack?.stop());

/** Jobs the scheduler made so far, by state. */
async function jobsOf(schedulerId: string) {
  const jobs = await queue.getJobs(["completed", "active", "waiting", "delayed", "prioritized"]);
  const mine = jobs.filter((j) => String(j.id).startsWith(`repeat:${schedulerId}:`));
  return {
    total: mine.length,
    started: mine.filter((j) => j.processedOn).length,
    delayed: (await queue.getDelayed()).filter((j) => String(j.id).startsWith(`repeat:${schedulerId}:`)).length,
  };
}

describe("job schedulers", () => {
  it("fires every everyMs, and after removeJobScheduler returns no job of it starts, the next delayed one included", async () => {
    const { body } = await gql(
      api.url,
      `mutation { upsertJobScheduler(input: { queue: "demo", id: "tick", name: "sleep", data: { steps: 1, stepMs: 1 }, everyMs: 300 }) {
        __typename ... on JobSchedulerSuccess { scheduler { id everyMs nextRunAt } } } }`,
    );
    expect(body.data).toMatchObject({ upsertJobScheduler: { __typename: "JobSchedulerSuccess", scheduler: { id: "tick", everyMs: 300 } } });
    await until(
      "three tick jobs started",
      () => jobsOf("tick"),
      (j) => j.started >= 3,
    );
    expect((await jobsOf("tick")).started).toBeGreaterThanOrEqual(3);

    const removed = await gql(api.url, `mutation { removeJobScheduler(queue: "demo", id: "tick") { __typename } }`);
    expect(removed.body.data).toEqual({ removeJobScheduler: { __typename: "JobSchedulerSuccess" } });
    const after = await jobsOf("tick");
    expect(after.delayed).toBe(0);
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await jobsOf("tick")).started).toBe(after.started);
    const { body: q } = await gql(api.url, `{ queue(name: "demo") { schedulers { id } } }`);
    expect(q.data).toEqual({ queue: { schedulers: [] } });
  });
});
