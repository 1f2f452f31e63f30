// Scheduler limits (issue 14, point 9): the payload limit, a minimum interval, a per-queue cap, and
// paging, so every scheduler can be listed and removed however many there are.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gql } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

let stack: TestStack;
let url: string;

beforeAll(async () => {
  stack = await startTestStack({
    worker: false,
    env: { MAX_SCHEDULERS_PER_QUEUE: "5", MAX_PAYLOAD_BYTES: "2000", SCHEDULER_MIN_INTERVAL_MS: "2000" },
  });
  url = stack.api.url;
});

afterAll(() => stack?.stop());

type Result = { upsertJobScheduler: { __typename: string; message?: string; scheduler?: { id: string } } };

const UPSERT = `mutation ($input: UpsertJobSchedulerInput!) { upsertJobScheduler(input: $input) {
  __typename ... on JobSchedulerSuccess { scheduler { id } } ... on UserError { message } } }`;

const upsert = (input: Record<string, unknown>) =>
  gql<Result>(url, UPSERT, { input: { queue: "demo", name: "fail", data: { message: "x" }, ...input } });

describe("scheduler limits", () => {
  it("refuses everyMs under SCHEDULER_MIN_INTERVAL_MS", async () => {
    const { body } = await upsert({ id: "fast", everyMs: 1_999 });
    expect(body.data?.upsertJobScheduler).toMatchObject({
      __typename: "ValidationError",
      message: expect.stringContaining("everyMs: must be an integer of at least 2000"),
    });
  });

  it("refuses a cron pattern whose runs come closer than the minimum, anywhere in its cycle", async () => {
    const everySecond = await upsert({ id: "cron-fast", pattern: "* * * * * *" });
    expect(everySecond.body.data?.upsertJobScheduler).toMatchObject({
      __typename: "ValidationError",
      message: expect.stringContaining("runs every 1000 ms, more often than the minimum of 2000 ms"),
    });
    // Seconds 0 and 1 of every minute: mostly a minute apart, but two runs one second apart.
    const pair = await upsert({ id: "cron-pair", pattern: "0,1 * * * * *", tz: "UTC" });
    expect(pair.body.data?.upsertJobScheduler.__typename).toBe("ValidationError");
    const ok = await upsert({ id: "cron-ok", pattern: "*/2 * * * * *" });
    expect(ok.body.data?.upsertJobScheduler.__typename).toBe("JobSchedulerSuccess");
    await gql(url, `mutation { removeJobScheduler(queue: "demo", id: "cron-ok") { __typename } }`);
  });

  it("refuses data over MAX_PAYLOAD_BYTES, nested too deep, or with NUL", async () => {
    const big = await upsert({ id: "big", everyMs: 60_000, data: { message: "x".repeat(3_000) } });
    expect(big.body.data?.upsertJobScheduler).toMatchObject({
      __typename: "ValidationError",
      message: expect.stringContaining("more than the limit of 2000"),
    });
    let deep: unknown = "x";
    for (let i = 0; i < 70; i++) deep = { d: deep };
    const nested = await upsert({ id: "deep", everyMs: 60_000, data: deep });
    expect(nested.status).toBe(400);
    expect(JSON.stringify(nested.body)).toContain("more than 64 levels");
    const nul = await upsert({ id: "nul", everyMs: 60_000, data: { message: "a\u0000b" } });
    expect(nul.body.errors?.[0]?.extensions?.code).toBe("VALIDATION");
  });

  it("caps schedulers per queue (MAX_SCHEDULERS_PER_QUEUE=5), still lets an existing one be replaced", async () => {
    for (let i = 0; i < 5; i++) {
      const { body } = await upsert({ id: `s${i}`, everyMs: 60_000 + i * 1000 });
      expect(body.data?.upsertJobScheduler.__typename).toBe("JobSchedulerSuccess");
    }
    const sixth = await upsert({ id: "s5", everyMs: 60_000 });
    expect(sixth.body.data?.upsertJobScheduler).toMatchObject({
      __typename: "ValidationError",
      message: expect.stringContaining("already has 5 schedulers"),
    });
    const replaced = await upsert({ id: "s2", everyMs: 120_000 });
    expect(replaced.body.data?.upsertJobScheduler.__typename).toBe("JobSchedulerSuccess");
  });

  it("pages the list (offset, limit, schedulerCount) and removes one beyond the first page", async () => {
    const page = (offset: number, limit: number) =>
      gql<{ queue: { schedulerCount: number; schedulers: { id: string }[] } }>(
        url,
        `query ($o: Int, $l: Int) { queue(name: "demo") { schedulerCount schedulers(offset: $o, limit: $l) { id } } }`,
        { o: offset, l: limit },
      );
    const first = await page(0, 2);
    const second = await page(2, 2);
    const third = await page(4, 2);
    expect(first.body.data?.queue.schedulerCount).toBe(5);
    const ids = [first, second, third].flatMap((p) => p.body.data?.queue.schedulers.map((s) => s.id) ?? []);
    expect(ids.sort()).toEqual(["s0", "s1", "s2", "s3", "s4"]);
    const last = third.body.data?.queue.schedulers[0]?.id as string;
    const removed = await gql<{ removeJobScheduler: { __typename: string } }>(
      url,
      `mutation ($id: ID!) { removeJobScheduler(queue: "demo", id: $id) { __typename } }`,
      { id: last },
    );
    expect(removed.body.data?.removeJobScheduler.__typename).toBe("JobSchedulerSuccess");
    const bad = await page(0, 1001);
    expect(bad.body.errors?.[0]?.extensions?.code).toBe("VALIDATION");
  });
});
