import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GraphQLResponse, gql } from "../src/testing/graphql.ts";
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
});
