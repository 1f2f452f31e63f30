import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import type { DeclaredSchedule } from "../src/jobs/define-job.ts";
import { demoNoop } from "../src/jobs/definitions/demo-noop.ts";
import { gql } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { defineProcessor, type Processor } from "../workers/processor.ts";
import { processors } from "../workers/processors/index.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

// Schedules declared in code: workers upsert them at start (three at once leave one of each), remove
// the declared ones the code no longer declares, and leave API-created schedulers alone; the API shows
// which is which and cannot change declared ones. limit / startDate / endDate through the API.

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ worker: false });
});

afterAll(async () => {
  await stack?.stop();
});

interface Scheduler {
  id: string;
  pattern: string | null;
  everyMs: number | null;
  declaredInCode: boolean;
  limit: number | null;
  startDate: string | null;
  endDate: string | null;
}

async function schedulers(): Promise<Scheduler[]> {
  const { body } = await gql<{ queue: { schedulers: Scheduler[] } }>(
    stack.api.url,
    `{ queue(name: "demo") { schedulers { id pattern everyMs declaredInCode limit startDate endDate } } }`,
  );
  if (!body.data) throw new Error(JSON.stringify(body));
  return [...body.data.queue.schedulers].sort((a, b) => a.id.localeCompare(b.id));
}

/** A worker whose demo.noop definition declares `schedules` (the other demo types as shipped). */
function startWorker(schedules: DeclaredSchedule[]): Promise<WorkerRuntime> {
  const definition = { ...demoNoop, schedules };
  const real = processors.find((p) => p.definition === demoNoop) as Processor;
  const own = processors.filter((p) => p.definition !== demoNoop);
  const config = loadConfig({ ...stack.env, WORKER_QUEUES: "demo", LOG_LEVEL: "silent" });
  return createWorkerRuntime(config, createLogger("silent"), [defineProcessor(definition, real.run) as unknown as Processor, ...own]);
}

const UPSERT = `mutation ($input: UpsertJobSchedulerInput!) { upsertJobScheduler(input: $input) {
  __typename ... on JobSchedulerSuccess { scheduler { id limit startDate endDate declaredInCode } } ... on ValidationError { issues { path message } } } }`;

describe("schedules declared in code", () => {
  it("three workers starting at once leave one of each; a restart with fewer removes the rest; API-made ones stay", async () => {
    const made = await gql(stack.api.url, UPSERT, { input: { queue: "demo", id: "manual", name: "noop", data: {}, pattern: "0 5 * * *" } });
    expect(made.body.data).toMatchObject({ upsertJobScheduler: { __typename: "JobSchedulerSuccess" } });

    const v1: DeclaredSchedule[] = [
      { id: "nightly", pattern: "0 3 * * *", data: {} },
      { id: "hourly", everyMs: 3_600_000, data: { ticks: 0 }, limit: 5 },
    ];
    const three = await Promise.all([startWorker(v1), startWorker(v1), startWorker(v1)]);
    await Promise.all(three.map((r) => r.stop()));
    expect(await schedulers()).toEqual([
      { id: "hourly", pattern: null, everyMs: 3_600_000, declaredInCode: true, limit: 5, startDate: null, endDate: null },
      { id: "manual", pattern: "0 5 * * *", everyMs: null, declaredInCode: false, limit: null, startDate: null, endDate: null },
      { id: "nightly", pattern: "0 3 * * *", everyMs: null, declaredInCode: true, limit: null, startDate: null, endDate: null },
    ]);

    // The code changes: "hourly" goes, "nightly" moves to 4 o'clock.
    const v2 = await startWorker([{ id: "nightly", pattern: "0 4 * * *", data: {} }]);
    await v2.stop();
    expect((await schedulers()).map((s) => [s.id, s.pattern, s.declaredInCode])).toEqual([
      ["manual", "0 5 * * *", false],
      ["nightly", "0 4 * * *", true],
    ]);

    // No schedules declared any more: only the API-made one is left.
    const v3 = await startWorker([]);
    await v3.stop();
    expect((await schedulers()).map((s) => s.id)).toEqual(["manual"]);
  });

  it("the API cannot change or remove a declared scheduler", async () => {
    const w = await startWorker([{ id: "nightly", pattern: "0 3 * * *", data: {} }]);
    await w.stop();
    const upsert = await gql(stack.api.url, UPSERT, { input: { queue: "demo", id: "nightly", name: "noop", data: {}, everyMs: 1000 } });
    expect(upsert.body.data).toMatchObject({ upsertJobScheduler: { __typename: "ValidationError", issues: [{ path: ["id"] }] } });
    const remove = await gql(
      stack.api.url,
      `mutation { removeJobScheduler(queue: "demo", id: "nightly") { __typename ... on ValidationError { issues { path message } } } }`,
    );
    expect(remove.body.data).toMatchObject({ removeJobScheduler: { __typename: "ValidationError" } });
    expect((await schedulers()).find((s) => s.id === "nightly")?.pattern).toBe("0 3 * * *");
  });

  it("a bad declared schedule stops the worker at start, naming it", async () => {
    await expect(
      startWorker([
        { id: "broken", pattern: "not a cron", data: {} },
        { id: "bad-data", everyMs: 60_000, data: { ticks: -1 } },
        { id: "twice", everyMs: 60_000, data: {} },
        { id: "twice", everyMs: 60_000, data: {} },
      ]),
    ).rejects.toSatisfy((err: unknown) => {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).toHaveLength(3);
      expect(problems[0]).toMatch(/^schedules of demo\.noop, "broken": pattern: not a valid cron pattern/);
      expect(problems[1]).toMatch(/^schedules of demo\.noop, "bad-data": data\.ticks: /);
      expect(problems[2]).toBe('schedules of demo.noop, "twice": declared twice in queue "demo"');
      return true;
    });
  });
});

describe("limit, startDate and endDate through the API", () => {
  it("are stored and shown", async () => {
    const startDate = new Date(Date.now() + 3_600_000).toISOString();
    const endDate = new Date(Date.now() + 86_400_000).toISOString();
    const { body } = await gql(stack.api.url, UPSERT, {
      input: { queue: "demo", id: "limited", name: "noop", data: {}, everyMs: 60_000, limit: 3, startDate, endDate },
    });
    expect(body.data).toEqual({
      upsertJobScheduler: {
        __typename: "JobSchedulerSuccess",
        scheduler: { id: "limited", limit: 3, startDate, endDate, declaredInCode: false },
      },
    });
  });

  it("refuses a limit below 1 or huge, an end before the start, an end in the past", async () => {
    const base = { queue: "demo", id: "bad", name: "noop", data: {}, everyMs: 60_000 };
    const issues = async (extra: Record<string, unknown>) =>
      ((await gql(stack.api.url, UPSERT, { input: { ...base, ...extra } })).body.data as { upsertJobScheduler: { issues?: unknown } })
        ?.upsertJobScheduler.issues;
    expect(await issues({ limit: 0 })).toEqual([{ path: ["limit"], message: "must be an integer from 1 to 1000000000" }]);
    expect(await issues({ limit: 2_000_000_000 })).toEqual([{ path: ["limit"], message: "must be an integer from 1 to 1000000000" }]);
    expect(
      await issues({ startDate: new Date(Date.now() + 7_200_000).toISOString(), endDate: new Date(Date.now() + 3_600_000).toISOString() }),
    ).toEqual([{ path: ["endDate"], message: "must be after startDate" }]);
    expect(await issues({ endDate: "2020-01-01T00:00:00Z" })).toEqual([{ path: ["endDate"], message: "must be in the future" }]);
    const malformed = await gql(stack.api.url, UPSERT, { input: { ...base, startDate: "soon" } });
    expect(malformed.body.errors?.[0]?.message).toMatch(/DateTime/);
  });
});
