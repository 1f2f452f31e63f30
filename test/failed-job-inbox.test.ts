import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enqueueDemo, gql } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";

// The failed-job inbox: final-failure audit rows get resolvedAt / resolvedBy / resolution, set by
// retryJob / retryFailedJobs (RETRIED), replayJob (REPLAYED) and dismissFailedJobAudits (DISMISSED);
// failedJobAudits(unresolved: true) lists only the rows nobody has acted on.

interface Audit {
  id: string;
  jobId: string;
  failedAt: string;
  resolvedAt: string | null;
  resolvedBy: string | null;
  resolution: string | null;
}

let stack: TestStack;
const url = () => stack.api.url;

beforeAll(async () => {
  stack = await startTestStack({ workerEnv: { WORKER_QUEUES: "demo" } });
});

afterAll(async () => {
  await stack?.stop();
});

async function audits(unresolved?: boolean): Promise<Audit[]> {
  const { body } = await gql<{ failedJobAudits: { edges: { node: Audit }[] } }>(
    url(),
    `query ($unresolved: Boolean) { failedJobAudits(queue: "demo", unresolved: $unresolved, first: 100) {
      edges { node { id jobId failedAt resolvedAt resolvedBy resolution } } } }`,
    unresolved === undefined ? {} : { unresolved },
  );
  if (!body.data) throw new Error(JSON.stringify(body));
  return body.data.failedJobAudits.edges.map((e) => e.node);
}

const ofJob = (list: Audit[], jobId: string) => list.filter((a) => a.jobId === jobId);

async function dismiss(ids: unknown): Promise<Record<string, unknown>> {
  const { body } = await gql<{ dismissFailedJobAudits: Record<string, unknown> }>(
    url(),
    `mutation ($ids: [ID!]!) { dismissFailedJobAudits(ids: $ids) {
      __typename ... on BulkActionSuccess { count } ... on ValidationError { issues { path message } } } }`,
    { ids },
  );
  if (!body.data) throw new Error(JSON.stringify(body));
  return body.data.dismissFailedJobAudits;
}

describe("failed-job inbox", () => {
  it("retry, replay and dismiss resolve audit rows once; the unresolved view drops them; a new failure comes back", async () => {
    const [a, b, c] = [
      await enqueueDemo(url(), "fail", { message: "a" }),
      await enqueueDemo(url(), "fail", { message: "b" }),
      await enqueueDemo(url(), "fail", { message: "c" }),
    ];
    await until(
      "three unresolved rows",
      () => audits(true),
      (l) => l.length === 3,
    );
    const all = await audits();
    expect(all.every((x) => x.resolvedAt === null && x.resolvedBy === null && x.resolution === null)).toBe(true);

    // retryJob: a's row is RETRIED, and a fails again: a new, unresolved row.
    const retried = await gql(url(), `mutation { retryJob(queue: "demo", id: "${a}") { __typename } }`);
    expect(retried.body.data).toEqual({ retryJob: { __typename: "JobActionSuccess" } });
    const afterRetry = await until(
      "a failed again",
      () => audits(),
      (l) => ofJob(l, a).length === 2,
    );
    const [newA, oldA] = ofJob(afterRetry, a) as [Audit, Audit];
    expect(oldA.resolution).toBe("RETRIED");
    expect(oldA.resolvedBy).toBe("anonymous");
    expect(Date.parse(oldA.resolvedAt as string)).toBeGreaterThanOrEqual(Date.parse(oldA.failedAt));
    expect(newA.resolution).toBeNull();

    // replayJob: b's row is REPLAYED (the replay is a new job that fails with its own row).
    const replayed = await gql(url(), `mutation { replayJob(queue: "demo", id: "${b}") { __typename } }`);
    expect(replayed.body.data).toEqual({ replayJob: { __typename: "JobActionSuccess" } });
    expect(ofJob(await audits(), b)[0]?.resolution).toBe("REPLAYED");

    // dismissFailedJobAudits: c's row, plus an id that matches nothing.
    const cRow = ofJob(await audits(), c)[0] as Audit;
    expect(await dismiss([cRow.id, "00000000-0000-4000-8000-000000000000"])).toEqual({ __typename: "BulkActionSuccess", count: 1 });
    const dismissed = ofJob(await audits(), c)[0] as Audit;
    expect(dismissed.resolution).toBe("DISMISSED");
    // Already resolved: nothing changes, the first resolution stays.
    expect(await dismiss([cRow.id, oldA.id])).toEqual({ __typename: "BulkActionSuccess", count: 0 });
    expect(ofJob(await audits(), c)[0]).toEqual(dismissed);
    expect(ofJob(await audits(), a)[1]?.resolution).toBe("RETRIED");

    // The inbox: a's new row and the replay's row, nothing of the resolved ones.
    const inbox = await until(
      "the replay's failure in the inbox",
      () => audits(true),
      (l) => l.length === 2,
    );
    expect(inbox.map((x) => x.jobId)).toContain(a);
    expect(inbox.map((x) => x.jobId)).not.toContain(b);
    expect(inbox.map((x) => x.jobId)).not.toContain(c);
    expect(inbox.every((x) => x.resolution === null)).toBe(true);
    const resolved = await audits(false);
    expect(resolved.map((x) => x.resolution).sort()).toEqual(["DISMISSED", "REPLAYED", "RETRIED"]);

    // Dismissing is an operator action of the queue, naming the rows.
    const { body } = await gql<{ operatorActions: { edges: { node: { action: string; details: { ids: string[] } } }[] } }>(
      url(),
      `{ operatorActions(queue: "demo", first: 5) { edges { node { action details } } } }`,
    );
    const action = body.data?.operatorActions.edges.find((e) => e.node.action === "dismissFailedJobAudits");
    expect(action?.node.details).toEqual({ ids: [cRow.id] });
  });

  it("retryFailedJobs resolves the rows of every job it retried", async () => {
    const before = new Set((await audits(true)).map((x) => x.id));
    const d = await enqueueDemo(url(), "fail", { message: "d", failTimes: 1 });
    const e = await enqueueDemo(url(), "fail", { message: "e", failTimes: 1 });
    const inbox = await until(
      "d and e failed",
      () => audits(true),
      (l) => ofJob(l, d).length === 1 && ofJob(l, e).length === 1,
    );
    expect(inbox.length).toBe(before.size + 2);
    const { body } = await gql<{ retryFailedJobs: { count: number } }>(
      url(),
      `mutation { retryFailedJobs(queue: "demo", limit: 100) { ... on BulkActionSuccess { count } } }`,
    );
    expect(body.data?.retryFailedJobs.count).toBeGreaterThanOrEqual(2);
    // The rows of the failures retried are resolved; d and e fail again at once (their attempts
    // started over, failTimes: 1), and those new failures are back in the inbox, unresolved.
    const after = await until(
      "d and e failed again",
      () => audits(),
      (l) => ofJob(l, d).length === 2 && ofJob(l, e).length === 2,
    );
    const original = new Set(inbox.filter((x) => x.jobId === d || x.jobId === e).map((x) => x.id));
    for (const row of after.filter((x) => x.jobId === d || x.jobId === e)) {
      expect(row.resolution).toBe(original.has(row.id) ? "RETRIED" : null);
    }
  });

  it("refuses an empty list, too many ids, ids that are not audit ids and huge ones, naming each", async () => {
    expect(await dismiss([])).toEqual({ __typename: "ValidationError", issues: [{ path: ["ids"], message: "give at least one id" }] });
    expect(await dismiss(["not-a-uuid", "00000000-0000-4000-8000-000000000000", "x".repeat(100_000)])).toEqual({
      __typename: "ValidationError",
      issues: [
        { path: ["ids", "0"], message: "not an audit id (a UUID)" },
        { path: ["ids", "2"], message: "not an audit id (a UUID)" },
      ],
    });
    const many = Array.from({ length: 1_001 }, () => "00000000-0000-4000-8000-000000000000");
    expect(await dismiss(many)).toEqual({
      __typename: "ValidationError",
      issues: [{ path: ["ids"], message: "at most 1000 ids per call" }],
    });
    // Not a list of IDs at all: GraphQL refuses it before the resolver.
    const { body } = await gql(url(), `mutation ($ids: [ID!]!) { dismissFailedJobAudits(ids: $ids) { __typename } }`, {
      ids: [{ deep: { deeper: [1, 2, 3] } }],
    });
    expect(body.errors?.[0]?.message).toMatch(/ID/);
  });
});
