import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { TestApi } from "../src/testing/api.ts";
import { type Collected, enqueueDemo, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// One job from enqueue to live progress, through a real listening API and a real worker process.

const JOB_EVENTS = /* GraphQL */ `
  subscription ($queue: String!, $id: ID!, $since: String) {
    jobEvents(queue: $queue, id: $id, since: $since) {
      id type queue jobId at progress failedReason resync
      job { id state progress result failedReason attemptsMade }
    }
  }
`;

interface Event {
  id: string;
  type: string;
  jobId: string;
  progress: unknown;
  failedReason: string | null;
  job: { state: string; progress: unknown; result: unknown; failedReason: string | null; attemptsMade: number } | null;
}

let stack: TestStack;
let api: TestApi;
const open: Collected<unknown>[] = [];

beforeAll(async () => {
  stack = await startTestStack();
  api = stack.api;
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(() => stack?.stop());

const enqueue = (name: string, data: unknown, extra: Record<string, unknown> = {}) => enqueueDemo(api.url, name, data, extra);

function eventsOf(sub: Collected<unknown>): Event[] {
  return sub.results.map((r) => {
    expect(r.errors).toBeUndefined();
    return (r.data as { jobEvents: Event }).jobEvents;
  });
}

async function historyRow(id: string, until: (row: Record<string, unknown> | undefined) => boolean) {
  const client = new pg.Client({ connectionString: stack.databaseUrl });
  await client.connect();
  try {
    for (let i = 0; i < 100; i++) {
      const { rows } = await client.query("SELECT * FROM job_history WHERE queue = 'demo' AND id = $1", [id]);
      if (until(rows[0])) return rows[0] as Record<string, unknown>;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`history row of ${id} never matched`);
  } finally {
    await client.end();
  }
}

/** The checks both transports must pass for a 5-step demo.sleep job. */
function expectSleepRun(events: Event[], id: string) {
  const [snapshot, ...rest] = events;
  expect(snapshot?.type).toBe("SNAPSHOT");
  expect(snapshot?.jobId).toBe(id);
  const last = rest.at(-1);
  expect(last?.type).toBe("COMPLETED");
  expect(last?.job).toMatchObject({ state: "COMPLETED", result: { steps: 5 }, progress: 100 });
  // No gap: every step after the snapshot's progress arrives, in order, exactly once.
  const seen = typeof snapshot?.job?.progress === "number" ? snapshot.job.progress : 0;
  const progress = rest.filter((e) => e.type === "PROGRESS").map((e) => e.progress);
  expect(progress).toEqual([20, 40, 60, 80, 100].filter((p) => p > seen));
  // Ids increase along the stream.
  for (let i = 1; i < events.length; i++) {
    expect(BigInt((events[i]?.id ?? "0").split("-")[0] ?? 0) >= BigInt((events[i - 1]?.id ?? "0").split("-")[0] ?? 0)).toBe(true);
  }
}

describe("a demo.sleep job end to end", () => {
  it("streams SNAPSHOT, every PROGRESS step and COMPLETED over graphql-ws, then completes", async () => {
    const id = await enqueue("sleep", { steps: 5, stepMs: 150 });
    const sub = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await sub.done;
    expectSleepRun(eventsOf(sub), id);
    const row = await historyRow(id, (r) => r?.state === "COMPLETED");
    expect(row).toMatchObject({ state: "COMPLETED", result: { steps: 5 }, progress: 100, attempts_made: 1 });
    expect(row.finished_at).toBeInstanceOf(Date);
  });

  it("streams the same sequence over SSE", async () => {
    const id = await enqueue("sleep", { steps: 5, stepMs: 150 });
    const sub = await subscribeSse(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    expect(sub.status).toBe(200);
    await sub.done;
    expectSleepRun(eventsOf(sub), id);
  });

  it("resumes with `since`: the events after that id and no SNAPSHOT", async () => {
    const id = await enqueue("sleep", { steps: 5, stepMs: 150 });
    const first = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(first);
    await first.waitFor(3);
    await first.close();
    const seen = eventsOf(first).slice(0, 3);
    const since = seen.at(-1)?.id;
    const resumed = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id, since });
    open.push(resumed);
    await resumed.done;
    const rest = eventsOf(resumed);
    expect(rest.map((e) => e.type)).not.toContain("SNAPSHOT");
    expect(rest.at(-1)?.type).toBe("COMPLETED");
    const ids = [...seen, ...rest].filter((e) => e.type !== "SNAPSHOT").map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    const progress = [...seen, ...rest].filter((e) => e.type === "PROGRESS").map((e) => e.progress);
    expect(progress.slice(-1)).toEqual([100]);
  });

  it("gives a finished job's SNAPSHOT and then completes", async () => {
    const id = await enqueue("sleep", { steps: 1, stepMs: 0 });
    await historyRow(id, (r) => r?.state === "COMPLETED");
    const sub = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await sub.done;
    expect(eventsOf(sub)).toEqual([expect.objectContaining({ type: "SNAPSHOT", job: expect.objectContaining({ state: "COMPLETED" }) })]);
  });
});

describe("a failing demo job end to end", () => {
  it("ends in FAILED with its reason, writes history and one audit row", async () => {
    // The queue is paused until the subscription is live, so it sees the whole run.
    await stack.queue.pause();
    const id = await enqueue("fail", { message: "card declined" });
    const sub = await subscribeSse(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await sub.waitFor(1);
    await stack.queue.resume();
    await sub.done;
    const events = eventsOf(sub);
    expect(events.map((e) => e.type)).toEqual(["SNAPSHOT", "ACTIVE", "FAILED"]);
    expect(events.at(-1)).toMatchObject({
      type: "FAILED",
      failedReason: "card declined",
      job: { state: "FAILED", failedReason: "card declined" },
    });
    await historyRow(id, (r) => r?.state === "FAILED");
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    for (let i = 0; i < 50; i++) {
      const { rowCount } = await client.query("SELECT 1 FROM failed_job_audit WHERE job_id = $1", [id]);
      if (rowCount) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const { rows } = await client.query(
      "SELECT queue, job_name, failed_reason, attempts_made, data, worker_id FROM failed_job_audit WHERE job_id = $1",
      [id],
    );
    await client.end();
    expect(rows).toEqual([
      {
        queue: "demo",
        job_name: "fail",
        failed_reason: "card declined",
        attempts_made: 1,
        data: { message: "card declined" },
        worker_id: expect.stringMatching(/:\d+$/),
      },
    ]);
  });

  it("shows a failed attempt with attempts left as RETRYING, not FAILED", async () => {
    await stack.queue.pause();
    const id = await enqueue("fail", { message: "flaky", failTimes: 1 }, { attempts: 2 });
    const sub = await subscribeWs(api.url, JOB_EVENTS, { queue: "demo", id });
    open.push(sub);
    await sub.waitFor(1);
    await stack.queue.resume();
    await sub.done;
    const types = eventsOf(sub).map((e) => e.type);
    expect(types).toContain("RETRYING");
    expect(types).not.toContain("FAILED");
    expect(types.at(-1)).toBe("COMPLETED");
    expect(eventsOf(sub).find((e) => e.type === "RETRYING")?.failedReason).toBe("flaky");
  });
});

describe("subscription errors", () => {
  it.each([
    ["an unknown job", { queue: "demo", id: "no-such-job" }, "NOT_FOUND", 'No job "no-such-job" in queue "demo"'],
    ["an unknown queue", { queue: "nope", id: "1" }, "NOT_FOUND", 'No queue named "nope"'],
    ["a malformed since", { queue: "demo", id: "1", since: "yesterday" }, "VALIDATION", 'since: "yesterday" is not an event id'],
  ])("answers %s with a GraphQL error carrying its code, over WebSocket and SSE", async (_what, variables, code, message) => {
    for (const subscribe of [subscribeWs, subscribeSse]) {
      const sub = await subscribe(api.url, JOB_EVENTS, variables);
      open.push(sub);
      await sub.done;
      expect(sub.results).toHaveLength(1);
      expect(sub.results[0]?.errors?.[0]).toMatchObject({
        message: expect.stringContaining(message),
        extensions: expect.objectContaining({ code }),
      });
    }
    // The server is still healthy afterwards.
    expect((await fetch(api.url.replace("/graphql", "/readyz"))).status).toBe(200);
  });
});

describe("replay after the worker ran the job and it left Redis", () => {
  it("copies the original's options from history, which the worker's writes left intact", async () => {
    const id = await enqueue(
      "sleep",
      { steps: 1, stepMs: 0 },
      { attempts: 3, priority: 4, backoff: { type: "EXPONENTIAL", delayMs: 250 } },
    );
    await historyRow(id, (r) => r?.state === "COMPLETED");
    await (await stack.queue.getJob(id))?.remove();
    const { body } = await gql<{ replayJob: { job: { id: string; maxAttempts: number; priority: number; replayOf: { id: string } } } }>(
      api.url,
      `mutation ($id: ID!) { replayJob(queue: "demo", id: $id) { ... on JobActionSuccess { job { id maxAttempts priority replayOf { id } } } } }`,
      { id },
    );
    const replay = body.data?.replayJob.job;
    expect(replay).toMatchObject({ maxAttempts: 3, priority: 4, replayOf: { id } });
    expect((await stack.queue.getJob(String(replay?.id)))?.opts.backoff).toEqual({ type: "exponential", delay: 250 });
  });
});
