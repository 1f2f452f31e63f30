import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GraphQLResponse, gql, subscribeSse } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// Flows (issue #20) end to end: enqueueFlow through the API, a real worker process running the
// children in two queues (demo and the fixture's `shards`), history rows, events, cancel and replay.

const ADMIN = "test-admin-key-0123456789";
const SHARDS = "./test/fixtures/jobs-modules/flow-shards.ts";
let stack: TestStack;
const keys: Record<string, string> = {};

async function sql<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: stack.databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function as(secret: string) {
  return (r: Request) => {
    r.headers.set("authorization", `Bearer ${secret}`);
    return stack.api.app.fetch(r);
  };
}
async function call<T = Record<string, unknown>>(who: string, query: string, variables: Record<string, unknown> = {}) {
  const { body } = await gql<T>(as(keys[who] as string), query, variables);
  return body as GraphQLResponse<T>;
}

async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ENQUEUE_FLOW = /* GraphQL */ `
  mutation ($input: FlowInput!) {
    enqueueFlow(input: $input) {
      __typename
      ... on EnqueueFlowSuccess { job { id queue state tenant } jobs { id queue name state tenant parent { id queue } } }
      ... on UserError { code message }
      ... on ValidationError { issues { path message } }
    }
  }
`;

const JOB = /* GraphQL */ `
  query ($queue: String!, $id: ID!) {
    job(queue: $queue, id: $id) {
      id queue state result failedReason tenant replayOf { id }
      parent { id queue }
      childrenCounts { processed pending failed ignored }
      childrenValues
      children(first: 50) { edges { node { id queue name state parent { id } } } pageInfo { hasNextPage } }
    }
  }
`;

type Flow = {
  __typename: string;
  job?: { id: string; queue: string; state: string };
  jobs?: { id: string; queue: string; state: string }[];
  issues?: { path: string[]; message: string }[];
  code?: string;
  message?: string;
};

async function enqueueFlow(who: string, input: Record<string, unknown>): Promise<Flow> {
  const body = await call<{ enqueueFlow: Flow }>(who, ENQUEUE_FLOW, { input });
  expect(body.errors).toBeUndefined();
  return body.data?.enqueueFlow as Flow;
}

type JobAnswer = {
  id: string;
  state: string;
  result: unknown;
  failedReason: string | null;
  tenant: string | null;
  parent: { id: string; queue: string } | null;
  childrenCounts: { processed: number; pending: number; failed: number; ignored: number };
  childrenValues: Record<string, unknown>;
  children: { edges: { node: { id: string; queue: string; name: string; state: string } }[] };
  replayOf: { id: string } | null;
};
async function job(who: string, queue: string, id: string): Promise<JobAnswer | null> {
  const body = await call<{ job: JobAnswer | null }>(who, JOB, { queue, id });
  expect(body.errors).toBeUndefined();
  return body.data?.job ?? null;
}
const finished = (j: JobAnswer | null) => j !== null && ["COMPLETED", "FAILED", "CANCELLED"].includes(j.state);

beforeAll(async () => {
  stack = await startTestStack({
    env: {
      ADMIN_API_KEY: ADMIN,
      JOB_TOKEN_SECRET: "job-token-secret-of-at-least-32-characters",
      JOBS_MODULE: SHARDS,
      MAX_FLOW_NODES: "50",
      MAX_FLOW_DEPTH: "4",
    },
  });
  keys.admin = ADMIN;
  for (const t of ["a", "b"]) {
    keys[t] = (await stack.api.runtime.access.createKey({ name: `tenant-${t}`, scopes: ["READ", "ENQUEUE", "CONTROL"], tenant: t })).secret;
  }
  keys.demoOnly = (await stack.api.runtime.access.createKey({ name: "demo-only", scopes: ["READ", "ENQUEUE"], queues: ["demo"] })).secret;
  keys.readOnly = (await stack.api.runtime.access.createKey({ name: "read-only", scopes: ["READ"] })).secret;
});

afterAll(async () => {
  await stack?.stop();
});

describe("enqueueFlow with a real worker", () => {
  it("runs children across two queues, then the parent, which reads their results", async () => {
    const flow = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: { label: "two queues" },
      children: [
        { queue: "demo", name: "sleep", data: { steps: 2, stepMs: 20 } },
        { queue: "shards", name: "square", data: { n: 3 } },
        { queue: "shards", name: "square", data: { n: 4 } },
      ],
    });
    expect(flow.__typename).toBe("EnqueueFlowSuccess");
    const [root, ...children] = flow.jobs ?? [];
    expect(root?.state).toBe("WAITING_CHILDREN");
    expect(children.map((c) => c.queue)).toEqual(["demo", "shards", "shards"]);
    const parent = await until(() => job("admin", "demo", root?.id as string), finished);
    expect(parent).toMatchObject({
      state: "COMPLETED",
      result: { label: "two queues", children: 3, steps: 2 },
      childrenCounts: { processed: 3, pending: 0, failed: 0, ignored: 0 },
      parent: null,
    });
    expect(parent?.childrenValues).toEqual({
      [`demo:${children[0]?.id}`]: { steps: 2 },
      [`shards:${children[1]?.id}`]: { square: 9 },
      [`shards:${children[2]?.id}`]: { square: 16 },
    });
    expect(parent?.children.edges.map((e) => `${e.node.queue}:${e.node.id}`).sort()).toEqual(
      children.map((c) => `${c.queue}:${c.id}`).sort(),
    );
    const child = await job("admin", "shards", children[1]?.id as string);
    expect(child?.parent).toEqual({ id: root?.id, queue: "demo" });
    // History knows the tree too: parent_queue / parent_id on the child rows.
    const rows = await sql<{ id: string; parent_queue: string; parent_id: string }>(
      `SELECT id, parent_queue, parent_id FROM job_history WHERE parent_queue = 'demo' AND parent_id = $1 ORDER BY queue, id`,
      [root?.id],
    );
    expect(rows).toHaveLength(3);
    expect(new Set(rows.map((r) => `${r.parent_queue}/${r.parent_id}`))).toEqual(new Set([`demo/${root?.id}`]));
  });

  it("reports each child's end on the parent's jobEvents with the counts (one progress bar: k of N), live and resumed", async () => {
    const flow = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: {},
      // Delayed, so the live subscription below is in place before the first child ends, however loaded the machine.
      children: [1, 2, 3, 4].map((n) => ({ queue: "shards", name: "square", data: { n, ms: 100 }, delayMs: 2_000 })),
    });
    const root = flow.job as { id: string };
    // Live: subscribed before the children run.
    const live = await subscribeSse<{ jobEvents: { type: string } }>(
      stack.api.url,
      `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`,
      { id: root.id },
      { authorization: `Bearer ${ADMIN}` },
    );
    await live.done;
    const liveTypes = live.results.map((r) => r.data?.jobEvents.type);
    expect(liveTypes[0]).toBe("SNAPSHOT");
    expect(liveTypes.filter((t) => t === "CHILD_COMPLETED")).toHaveLength(4);
    const sub = await subscribeSse<{
      jobEvents: { type: string; child: { id: string } | null; childrenCounts: Record<string, number> | null };
    }>(
      stack.api.url,
      // From the stream's start (`since`), so a flow that finished before the subscription still reports every child.
      `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id, since: "0-0") { type child { id queue } childrenCounts { processed pending failed ignored } } }`,
      { id: root.id },
      { authorization: `Bearer ${ADMIN}` },
    );
    await sub.done;
    expect(sub.results.flatMap((r) => r.errors ?? [])).toEqual([]);
    const events = sub.results.map((r) => r.data?.jobEvents);
    const children = events.filter((e) => e?.type === "CHILD_COMPLETED");
    expect(children).toHaveLength(4);
    // One more child counted per event ("k of 4"), and every child's event comes before the parent
    // runs (its ACTIVE event).
    expect(children.map((e) => e?.childrenCounts)).toEqual(
      [1, 2, 3, 4].map((processed) => ({ processed, pending: 4 - processed, failed: 0, ignored: 0 })),
    );
    const types = events.map((e) => e?.type);
    expect(types.lastIndexOf("CHILD_COMPLETED")).toBeLessThan(types.indexOf("ACTIVE"));
    expect(children.every((e) => (e?.childrenCounts?.processed ?? 0) + (e?.childrenCounts?.pending ?? 0) === 4)).toBe(true);
    expect(new Set(children.map((e) => e?.child?.id))).toEqual(new Set(flow.jobs?.slice(1).map((j) => j.id)));
    expect(events.at(-1)?.type).toBe("COMPLETED");
  });

  it("applies each child's failure policy: fail, ignore, remove, and none (the parent waits)", async () => {
    const bad = { queue: "shards", name: "square", data: { n: -1 } };
    const good = { queue: "shards", name: "square", data: { n: 2, ms: 300 } };
    const start = async (policy: Record<string, boolean>) =>
      (await enqueueFlow("admin", { queue: "demo", name: "fanout", data: {}, children: [{ ...bad, ...policy }, good] })).job?.id as string;
    const [fail, ignore, remove, none] = await Promise.all([
      start({ failParentOnFailure: true }),
      start({ ignoreDependencyOnFailure: true }),
      start({ removeDependencyOnFailure: true }),
      start({}),
    ]);
    const failed = await until(() => job("admin", "demo", fail), finished);
    expect(failed?.state).toBe("FAILED");
    expect(failed?.failedReason).toMatch(/child .* failed/);
    const ignored = await until(() => job("admin", "demo", ignore), finished);
    expect(ignored).toMatchObject({ state: "COMPLETED", result: { children: 1 } });
    expect(ignored?.childrenCounts).toMatchObject({ processed: 1, ignored: 1, pending: 0 });
    const removed = await until(() => job("admin", "demo", remove), finished);
    expect(removed).toMatchObject({
      state: "COMPLETED",
      result: { children: 1 },
      childrenCounts: { processed: 1, pending: 0, ignored: 0 },
    });
    // Without a policy the parent keeps waiting for the failed child (a retry of it lets the flow go on).
    const waiting = await until(
      () => job("admin", "demo", none),
      (j) => j?.childrenCounts.processed === 1,
    );
    expect(waiting?.state).toBe("WAITING_CHILDREN");
    expect(waiting?.childrenCounts).toMatchObject({ processed: 1, pending: 1 });
    const failedChild = waiting?.children.edges.find((e) => e.node.state === "FAILED")?.node;
    expect(failedChild).toBeDefined();
    // The ended children's history rows carry their parent and policy.
    const rows = await sql<{ parent_id: string; parent_policy: string | null }>(
      `SELECT parent_id, parent_policy FROM job_history WHERE parent_queue = 'demo' AND parent_id = ANY($1) AND state = 'FAILED' ORDER BY parent_id`,
      [[fail, ignore, remove, none]],
    );
    expect(new Set(rows.map((r) => r.parent_policy))).toEqual(
      new Set(["failParentOnFailure", "ignoreDependencyOnFailure", "removeDependencyOnFailure", null]),
    );
  });

  it("cancel on a parent cancels its unfinished children and says so in the operator audit; replay replays the tree with new ids and lineage", async () => {
    const flow = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: { label: "to cancel" },
      children: [
        { queue: "shards", name: "square", data: { n: 5 } },
        { queue: "demo", name: "sleep", data: { steps: 100, stepMs: 100 } },
        {
          queue: "demo",
          name: "fanout",
          data: {},
          ignoreDependencyOnFailure: true,
          children: [{ queue: "demo", name: "sleep", data: { steps: 100, stepMs: 100 }, delayMs: 60_000 }],
        },
      ],
    });
    const [root, quick, slow, sub, grandchild] = flow.jobs ?? [];
    await until(() => job("admin", "shards", quick?.id as string), finished);
    await until(
      () => job("admin", "demo", slow?.id as string),
      (j) => j?.state === "ACTIVE",
    );
    const cancel = await call<{ cancelJob: { __typename: string; job?: { state: string } } }>(
      "admin",
      `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id, reason: "flow off") { __typename ... on JobActionSuccess { job { state } } } }`,
      { id: root?.id },
    );
    expect(cancel.errors).toBeUndefined();
    expect(cancel.data?.cancelJob).toEqual({ __typename: "JobActionSuccess", job: { state: "CANCELLED" } });
    for (const j of [slow, sub, grandchild]) {
      expect((await until(() => job("admin", j?.queue as string, j?.id as string), finished))?.state).toBe("CANCELLED");
    }
    expect((await job("admin", "shards", quick?.id as string))?.state).toBe("COMPLETED");
    const audit = await call<{
      operatorActions: { edges: { node: { action: string; jobId: string; details: Record<string, unknown> } }[] };
    }>("admin", `{ operatorActions(first: 5) { edges { node { action jobId details } } } }`);
    const row = audit.data?.operatorActions.edges.find((e) => e.node.action === "cancelJob" && e.node.jobId === root?.id)?.node;
    expect(row?.details).toMatchObject({
      reason: "flow off",
      previousState: "WAITING_CHILDREN",
      cancelledChildren: [`demo:${slow?.id}`, `demo:${sub?.id}`, `demo:${grandchild?.id}`].sort(),
    });

    // Replay the cancelled parent: the whole tree again, every job new and a replay of its original.
    const replay = await call<{ replayJob: { __typename: string; job?: { id: string; state: string; replayOf: { id: string } } } }>(
      "admin",
      `mutation ($id: ID!) { replayJob(queue: "demo", id: $id) { __typename ... on JobActionSuccess { job { id state replayOf { id } } } } }`,
      { id: root?.id },
    );
    expect(replay.data?.replayJob).toMatchObject({
      __typename: "JobActionSuccess",
      job: { state: "WAITING_CHILDREN", replayOf: { id: root?.id } },
    });
    const newRoot = replay.data?.replayJob.job?.id as string;
    expect(newRoot).not.toBe(root?.id);
    const copy = await job("admin", "demo", newRoot);
    const kids = copy?.children.edges.map((e) => e.node) ?? [];
    expect(kids.map((k) => `${k.queue}.${k.name}`).sort()).toEqual(["demo.fanout", "demo.sleep", "shards.square"]);
    const lineage = await sql<{ queue: string; id: string; replay_of_id: string; parent_id: string; parent_policy: string | null }>(
      `WITH RECURSIVE t AS (SELECT queue, id FROM job_history WHERE parent_queue = 'demo' AND parent_id = $1
         UNION ALL SELECT h.queue, h.id FROM t JOIN job_history h ON h.parent_queue = t.queue AND h.parent_id = t.id)
       SELECT h.queue, h.id, h.replay_of_id, h.parent_id, h.parent_policy FROM t JOIN job_history h USING (queue, id)`,
      [newRoot],
    );
    expect(lineage).toHaveLength(4);
    const originals = new Set([quick, slow, sub, grandchild].map((j) => `${j?.queue}:${j?.id}`));
    expect(new Set(lineage.map((r) => `${r.queue}:${r.replay_of_id}`))).toEqual(originals);
    expect(lineage.every((r) => !originals.has(`${r.queue}:${r.id}`))).toBe(true);
    expect(lineage.find((r) => r.replay_of_id === sub?.id)?.parent_policy).toBe("ignoreDependencyOnFailure");
    await call("admin", `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id) { __typename } }`, { id: newRoot });
  });
});

describe("enqueueFlow: hostile input, all or nothing", () => {
  const leaf = (n: number) => ({ queue: "shards", name: "square", data: { n } });
  const countJobs = async () => (await sql<{ n: number }>(`SELECT count(*)::int AS n FROM job_history`))[0]?.n ?? 0;

  it("refuses a tree deeper than MAX_FLOW_DEPTH, naming the path", async () => {
    let node: Record<string, unknown> = leaf(1);
    for (let i = 0; i < 4; i++) node = { queue: "demo", name: "fanout", data: {}, children: [node] };
    const before = await countJobs();
    const answer = await enqueueFlow("admin", node);
    expect(answer).toMatchObject({
      __typename: "ValidationError",
      issues: [
        {
          path: ["children", "0", "children", "0", "children", "0", "children", "0"],
          message: expect.stringMatching(/level 5 .* at most 4 levels/),
        },
      ],
    });
    expect(await countJobs()).toBe(before);
  });

  it("refuses a tree of more than MAX_FLOW_NODES jobs, and a hugely deep one before any work", async () => {
    const wide = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: {},
      children: Array.from({ length: 50 }, (_, i) => leaf(i)),
    });
    expect(wide).toMatchObject({
      __typename: "ValidationError",
      issues: [{ path: ["children"], message: expect.stringMatching(/at most 50 jobs/) }],
    });
    let deep: Record<string, unknown> = leaf(1);
    for (let i = 0; i < 2_000; i++) deep = { queue: "demo", name: "fanout", data: {}, children: [deep] };
    const { status, body } = await gql(as(ADMIN), ENQUEUE_FLOW, { input: deep });
    expect(status).toBe(400);
    expect(body.errors?.[0]?.extensions?.code).toBe("VALIDATION");
  });

  it("an unknown queue in a leaf is a NotFoundError with its path; nothing is enqueued", async () => {
    const before = await countJobs();
    const answer = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: {},
      children: [leaf(1), { queue: "demo", name: "fanout", data: {}, children: [leaf(2), { queue: "nope", name: "x", data: {} }] }],
    });
    expect(answer).toMatchObject({ __typename: "NotFoundError", message: 'children.1.children.1: No queue named "nope"' });
    expect(await countJobs()).toBe(before);
  });

  it("invalid data in one child fails the whole flow with every issue's path into the tree", async () => {
    const before = await countJobs();
    const answer = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: {},
      failParentOnFailure: true,
      children: [
        leaf(1),
        { queue: "shards", name: "square", data: { n: "two" } },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, ignoreDependencyOnFailure: true, removeDependencyOnFailure: true },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "flow-dup" },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, jobId: "flow-dup" },
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 }, tenant: "other" },
        { queue: "demo", name: "fanout", data: {}, children: [] },
      ],
    });
    expect(answer.__typename).toBe("ValidationError");
    expect(answer.issues?.map((i) => i.path.join(".")).sort()).toEqual([
      "children.1.data.n",
      "children.2.removeDependencyOnFailure",
      "children.4.jobId",
      "children.5.tenant",
      "children.6.children",
      "failParentOnFailure",
    ]);
    expect(await countJobs()).toBe(before);
  });

  it("a root jobId makes the flow idempotent; a child's known jobId is refused", async () => {
    const input = { queue: "demo", name: "fanout", data: {}, jobId: "flow-once", children: [leaf(7)] };
    const first = await enqueueFlow("admin", input);
    const again = await enqueueFlow("admin", input);
    expect(again.job?.id).toBe("flow-once");
    expect(again.jobs).toHaveLength(1);
    expect(first.jobs).toHaveLength(2);
    const taken = await enqueueFlow("admin", {
      queue: "demo",
      name: "fanout",
      data: {},
      children: [
        { ...leaf(1), jobId: "flow-once-x" },
        { queue: "demo", name: "fanout", data: {}, jobId: "flow-once" },
      ],
    });
    expect(taken).toMatchObject({ __typename: "ValidationError", issues: [{ path: ["children", "1", "jobId"] }] });
  });
});

describe("enqueueFlow: tenants and scopes", () => {
  it("a tenant-bound key's flow carries its tenant on every node; another tenant's parent and children answer as jobs that do not exist", async () => {
    const flow = await enqueueFlow("a", {
      queue: "demo",
      name: "fanout",
      data: {},
      children: [{ queue: "shards", name: "square", data: { n: 1, ms: 2000 } }],
    });
    expect(flow.jobs?.map((j) => (j as unknown as { tenant: string }).tenant)).toEqual(["a", "a"]);
    const [root, child] = flow.jobs ?? [];
    expect(await job("b", "demo", root?.id as string)).toBeNull();
    expect(await job("b", "shards", child?.id as string)).toBeNull();
    const childOfA = await job("a", "shards", child?.id as string);
    expect(childOfA?.parent).toEqual({ id: root?.id, queue: "demo" });
    const missing = await call("b", `mutation { cancelJob(queue: "demo", id: "999999") { __typename ... on UserError { message } } }`);
    const other = await call("b", `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id) { __typename ... on UserError { message } } }`, {
      id: root?.id,
    });
    expect(JSON.stringify(other).replace(root?.id as string, "<id>")).toBe(JSON.stringify(missing).replace("999999", "<id>"));
    const replay = await call("b", `mutation ($id: ID!) { replayJob(queue: "demo", id: $id) { __typename } }`, { id: root?.id });
    expect(replay.data).toEqual({ replayJob: { __typename: "NotFoundError" } });
    // Naming another tenant on the root is refused.
    expect(
      await enqueueFlow("a", {
        queue: "demo",
        name: "fanout",
        data: {},
        tenant: "b",
        children: [{ queue: "shards", name: "square", data: { n: 1 } }],
      }),
    ).toMatchObject({
      __typename: "ForbiddenError",
    });
    await call("a", `mutation ($id: ID!) { cancelJob(queue: "demo", id: $id) { __typename } }`, { id: root?.id });
  });

  it("a queue-limited key may use its queues only, in every node; a key without ENQUEUE may not enqueue a flow", async () => {
    const answer = await enqueueFlow("demoOnly", {
      queue: "demo",
      name: "fanout",
      data: {},
      children: [
        { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } },
        { queue: "shards", name: "square", data: { n: 1 } },
      ],
    });
    expect(answer).toMatchObject({ __typename: "NotFoundError", message: 'children.1: No queue named "shards"' });
    expect(
      await enqueueFlow("readOnly", {
        queue: "demo",
        name: "fanout",
        data: {},
        children: [{ queue: "demo", name: "sleep", data: { steps: 1, stepMs: 1 } }],
      }),
    ).toMatchObject({
      __typename: "ForbiddenError",
    });
  });
});
