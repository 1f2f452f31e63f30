import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GraphQLResponse, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// The tenant matrix: two tenant-bound keys, each trying the other's jobs by id, by filter, by
// subscription, by replay. The answer about another tenant's job must equal, byte for byte apart from
// the ids, the answer about a job that does not exist.

const ADMIN = "test-admin-key-0123456789";
const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), "tenant-reports-"));
let stack: TestStack;
const keys: Record<string, string> = {};
/** Ids of tenant a's jobs, and ids no job has, of the same length. */
const ids = { aFail: `afail-${randomUUID()}`, aSleep: `aslep-${randomUUID()}`, missing: `zzzzz-${randomUUID()}` };

function as(secret: string) {
  return (r: Request) => {
    r.headers.set("authorization", `Bearer ${secret}`);
    return stack.api.app.fetch(r);
  };
}
const call = async (who: string, query: string, variables: Record<string, unknown> = {}) =>
  (await gql(as(keys[who] as string), query, variables)).body;

/** The response with `id` replaced by a placeholder. */
const blind = (body: unknown, id: string) => JSON.stringify(body).split(id).join("<id>");

async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ENQUEUE = `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { __typename ... on EnqueueJobSuccess { job { id tenant } } ... on UserError { code message } } }`;

beforeAll(async () => {
  stack = await startTestStack({
    env: { ADMIN_API_KEY: ADMIN, JOB_TOKEN_SECRET: "job-token-secret-of-at-least-32-characters", REPORT_DIR: reportDir },
  });
  for (const t of ["a", "b"]) {
    keys[t] = (await stack.api.runtime.access.createKey({ name: `tenant-${t}`, scopes: ["READ", "ENQUEUE", "CONTROL"], tenant: t })).secret;
  }
  keys.admin = ADMIN;
  keys.reportOnly = (await stack.api.runtime.access.createKey({ name: "report-only", scopes: ["ADMIN"], queues: ["report"] })).secret;
  // Tenant a: one job that fails for good (an audit row), one that runs a long time.
  await call("a", ENQUEUE, { input: { queue: "demo", name: "fail", data: { message: "a-secret-failure" }, jobId: ids.aFail } });
  await call("a", ENQUEUE, { input: { queue: "demo", name: "sleep", data: { steps: 600, stepMs: 100 }, jobId: ids.aSleep } });
  await until(
    () => call("admin", `{ job(queue: "demo", id: "${ids.aFail}") { state } }`),
    (b) => (b.data as { job: { state: string } | null })?.job?.state === "FAILED",
  );
  await until(
    () => call("admin", `{ failedJobAudits(jobId: "${ids.aFail}") { edges { node { id } } } }`),
    (b) => (b.data as { failedJobAudits: { edges: unknown[] } }).failedJobAudits.edges.length > 0,
  );
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(reportDir, { recursive: true, force: true });
});

/** Operations naming one job, each run by tenant b against a's job and against a missing one. */
const BY_ID: [string, string][] = [
  ["job", `query ($id: ID!) { job(queue: "demo", id: $id) { id state tenant } }`],
  [
    "failedJobAudits",
    `query ($id: ID!) { failedJobAudits(jobId: $id) { edges { node { id jobId } } pageInfo { hasNextPage endCursor } } }`,
  ],
  ["cancelJob", `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id) { __typename ... on UserError { code message } } }`],
  ["retryJob", `mutation ($id: ID!) { retryJob(queue: "demo", id: $id) { __typename ... on UserError { code message } } }`],
  ["replayJob", `mutation ($id: ID!) { replayJob(queue: "demo", id: $id) { __typename ... on UserError { code message } } }`],
  [
    "replayJob with data",
    `mutation ($id: ID!) { replayJob(queue: "demo", id: $id, dataPatch: { message: "x" }) { __typename ... on UserError { code message } } }`,
  ],
  ["createJobToken", `mutation ($id: ID!) { createJobToken(queue: "demo", id: $id) { __typename ... on UserError { code message } } }`],
];

describe("tenant matrix", () => {
  for (const target of ["aFail", "aSleep"] as const) {
    for (const [name, query] of BY_ID) {
      it(`${name} on another tenant's ${target} job answers as a missing job`, async () => {
        const theirs = await call("b", query, { id: ids[target] });
        const missing = await call("b", query, { id: ids.missing });
        expect(blind(theirs, ids[target])).toBe(blind(missing, ids.missing));
        // ...and the owner gets a real answer (a running job has no audit rows to show).
        if (name === "failedJobAudits" && target === "aSleep") return;
        expect(blind(await call("a", query, { id: ids[target] }), ids[target])).not.toBe(blind(missing, ids.missing));
      });
    }
  }

  it("jobEvents on another tenant's job: NOT_FOUND as for a missing job, over SSE and WebSocket", async () => {
    const query = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`;
    for (const open of [
      (id: string) => subscribeSse(stack.api.url, query, { id }, { authorization: `Bearer ${keys.b}` }),
      (id: string) => subscribeWs(stack.api.url, query, { id }, { authorization: `Bearer ${keys.b}` }),
    ]) {
      const theirs = await open(ids.aSleep);
      await theirs.waitFor(1);
      const missing = await open(ids.missing);
      await missing.waitFor(1);
      expect(theirs.results[0]?.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      expect(blind(theirs.results, ids.aSleep)).toBe(blind(missing.results, ids.missing));
      await theirs.close();
      await missing.close();
    }
  });

  it("jobs: by filter, b finds none of a's jobs; naming tenant a finds what an unknown tenant finds", async () => {
    const q = `query ($f: JobFilter) { jobs(filter: $f) { edges { node { id tenant } } pageInfo { hasNextPage endCursor } } }`;
    const bodyOf = (who: string, f: unknown) => call(who, q, { f });
    const contains = { dataContains: { message: "a-secret-failure" } };
    expect(await bodyOf("b", contains)).toEqual({ data: { jobs: { edges: [], pageInfo: { hasNextPage: false, endCursor: null } } } });
    // The owner finds it (and the replays the matrix above made of it).
    const mine = (await bodyOf("a", contains)).data as { jobs: { edges: unknown[] } };
    expect(mine.jobs.edges).toContainEqual({ node: { id: ids.aFail, tenant: "a" } });
    expect(await bodyOf("b", { tenant: "a" })).toEqual(await bodyOf("b", { tenant: "no-such-tenant" }));
    expect(await bodyOf("b", { search: "afail" })).toEqual(await bodyOf("b", { search: "zzzzz" }));
    const all = (await bodyOf("b", null)).data as { jobs: { edges: { node: { tenant: string } }[] } };
    expect(all.jobs.edges.every((e) => e.node.tenant === "b")).toBe(true);
  });

  it("queueEvents: each tenant gets its own jobs' events only, filtered at the fan-out", async () => {
    const q = `subscription { queueEvents(queue: "demo", since: "0-0") { jobId type } }`;
    const subA = await subscribeSse(stack.api.url, q, {}, { authorization: `Bearer ${keys.a}` });
    const subB = await subscribeWs(stack.api.url, q, {}, { authorization: `Bearer ${keys.b}` });
    const bJob = `bjob-${randomUUID()}`;
    await call("b", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, jobId: bJob } });
    await subB.waitFor(2);
    await subA.waitFor(3);
    const idsOf = (s: { results: GraphQLResponse[] }) =>
      s.results.map((r) => (r.data as { queueEvents: { jobId: string } }).queueEvents.jobId);
    await until(
      async () => idsOf(subB),
      (seen) => seen.filter((id) => id === bJob).length >= 2,
    );
    expect(new Set(idsOf(subB))).toEqual(new Set([bJob]));
    expect(idsOf(subA)).not.toContain(bJob);
    expect(idsOf(subA)).toContain(ids.aFail);
    await subA.close();
    await subB.close();
  });

  it("retryFailedJobs retries only the caller's tenant's failed jobs", async () => {
    const q = `mutation { retryFailedJobs(queue: "demo", limit: 100) { __typename ... on BulkActionSuccess { count } } }`;
    expect(await call("b", q)).toEqual({ data: { retryFailedJobs: { __typename: "BulkActionSuccess", count: 0 } } });
  });

  it("Queue.counts counts the tenant's own jobs", async () => {
    const q = `{ queue(name: "demo") { counts { failed completed waiting active delayed prioritized } } }`;
    const b = (await call("b", q)).data as { queue: { counts: Record<string, number> } };
    expect(b.queue.counts.failed).toBe(0);
    const a = (await call("a", q)).data as { queue: { counts: Record<string, number> } };
    expect(a.queue.counts.failed).toBeGreaterThanOrEqual(1);
  });

  it("operatorActions: a tenant sees only its own", async () => {
    const pending = `aqueued-${randomUUID()}`;
    await call("a", ENQUEUE, { input: { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: pending, delayMs: 600_000 } });
    const cancelled = await call("a", `mutation { cancelJob(queue: "demo", id: "${pending}") { __typename } }`);
    expect(cancelled).toEqual({ data: { cancelJob: { __typename: "JobActionSuccess" } } });
    const q = `{ operatorActions { edges { node { actor action jobId } } } }`;
    const b = (await call("b", q)).data as { operatorActions: { edges: { node: { actor: string } }[] } };
    expect(b.operatorActions.edges.filter((e) => e.node.actor !== "tenant-b")).toEqual([]);
    const a = (await call("a", q)).data as { operatorActions: { edges: { node: { actor: string; jobId: string } }[] } };
    expect(a.operatorActions.edges).toContainEqual({ node: { actor: "tenant-a", action: "cancelJob", jobId: pending } });
  });

  it("schedulers carry their tenant: invisible to the other tenant, whose remove answers as for a missing one", async () => {
    const upsert = `mutation ($id: ID!) { upsertJobScheduler(input: { queue: "demo", id: $id, name: "noop", data: {}, everyMs: 3600000 }) { __typename ... on JobSchedulerSuccess { scheduler { id tenant } } ... on UserError { code message } } }`;
    const remove = `mutation ($id: ID!) { removeJobScheduler(queue: "demo", id: $id) { __typename ... on UserError { code message } } }`;
    const sid = `sched-${randomUUID()}`;
    expect(await call("a", upsert, { id: sid })).toEqual({
      data: { upsertJobScheduler: { __typename: "JobSchedulerSuccess", scheduler: { id: sid, tenant: "a" } } },
    });
    const listed = (await call("b", `{ queue(name: "demo") { schedulers { id } } }`)).data as { queue: { schedulers: { id: string }[] } };
    expect(listed.queue.schedulers.map((s) => s.id)).not.toContain(sid);
    const missing = `sched-${randomUUID()}`;
    expect(blind(await call("b", remove, { id: sid }), sid)).toBe(blind(await call("b", remove, { id: missing }), missing));
    expect(await call("b", upsert, { id: sid })).toMatchObject({ data: { upsertJobScheduler: { __typename: "ValidationError" } } });
    expect(await call("a", remove, { id: sid })).toEqual({ data: { removeJobScheduler: { __typename: "JobSchedulerSuccess" } } });
  });

  it("enqueue: a tenant-bound key's jobs carry its tenant; naming another is refused; an unbound key may name one", async () => {
    expect(await call("a", ENQUEUE, { input: { queue: "demo", name: "noop", data: {} } })).toMatchObject({
      data: { enqueueJob: { job: { tenant: "a" } } },
    });
    expect(await call("a", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, tenant: "b" } })).toEqual({
      data: {
        enqueueJob: {
          __typename: "ForbiddenError",
          code: "FORBIDDEN",
          message: "tenant: a tenant-bound key enqueues for its own tenant only",
        },
      },
    });
    expect(await call("admin", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, tenant: "b" } })).toMatchObject({
      data: { enqueueJob: { job: { tenant: "b" } } },
    });
    for (const tenant of ["", "a/b", "x".repeat(201)]) {
      expect(await call("admin", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, tenant } })).toMatchObject({
        data: { enqueueJob: { __typename: "ValidationError" } },
      });
    }
    // Another tenant's jobId is taken, and that is all the answer tells.
    expect(await call("b", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, jobId: ids.aSleep } })).toEqual({
      data: {
        enqueueJob: { __typename: "ValidationError", code: "VALIDATION", message: "jobId: is already used by another job; choose another" },
      },
    });
  });

  it("a replay keeps the original's tenant, and Job.replays shows only visible jobs", async () => {
    const replay = (
      await call("admin", `mutation { replayJob(queue: "demo", id: "${ids.aFail}") { ... on JobActionSuccess { job { id tenant } } } }`)
    ).data as {
      replayJob: { job: { id: string; tenant: string } };
    };
    expect(replay.replayJob.job.tenant).toBe("a");
    const seen = (await call("a", `{ job(queue: "demo", id: "${ids.aFail}") { replays { id } } }`)).data as {
      job: { replays: { id: string }[] };
    };
    expect(seen.job.replays.map((r) => r.id)).toContain(replay.replayJob.job.id);
  });

  it("a tenant's report.csv holds its tenant's rows only", async () => {
    await call("admin", ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, tenant: "b" } });
    const enq = (await call("a", ENQUEUE, { input: { queue: "report", name: "csv", data: { fileName: "a.csv", queue: "demo" } } }))
      .data as {
      enqueueJob: { job: { id: string } };
    };
    await until(
      () => call("a", `{ job(queue: "report", id: "${enq.enqueueJob.job.id}") { state } }`),
      (b) => ["COMPLETED", "FAILED"].includes((b.data as { job: { state: string } }).job.state),
    );
    const lines = fs.readFileSync(path.join(reportDir, "a.csv"), "utf8").trim().split("\r\n");
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.slice(1).every((l) => l.endsWith(",a"))).toBe(true);
  });

  it("a queue-limited key: another queue answers as one that does not exist", async () => {
    const nope = "no-such-queue";
    expect(blind(await call("reportOnly", `{ queue(name: "demo") { name } }`), "demo")).toBe(
      blind(await call("reportOnly", `{ queue(name: "${nope}") { name } }`), nope),
    );
    expect(((await call("reportOnly", "{ queues { name } }")).data as { queues: { name: string }[] }).queues.map((q) => q.name)).toEqual([
      "report",
    ]);
    expect(await call("reportOnly", `{ job(queue: "demo", id: "${ids.aFail}") { id } }`)).toEqual({ data: { job: null } });
    const enqueue = (queue: string) => call("reportOnly", ENQUEUE, { input: { queue, name: "noop", data: {} } });
    expect(blind(await enqueue("demo"), "demo")).toBe(blind(await enqueue(nope), nope));
    const pause = (queue: string) =>
      call("reportOnly", `mutation { pauseQueue(name: "${queue}") { __typename ... on UserError { message } } }`);
    expect(blind(await pause("demo"), "demo")).toBe(blind(await pause(nope), nope));
    const jobs = (await call("reportOnly", "{ jobs { edges { node { queue } } } }")).data as {
      jobs: { edges: { node: { queue: string } }[] };
    };
    expect(jobs.jobs.edges.map((e) => e.node.queue)).toEqual(["report"]);
  });
});
