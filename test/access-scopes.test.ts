import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requiredScope } from "../src/graphql/access-guard.ts";
import { schema } from "../src/graphql/schema.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { enqueueDemo, type GraphQLResponse, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

// The scope x operation matrix: every root field of the contract, called with every kind of
// credential, over HTTP (queries, mutations) and SSE / WebSocket (subscriptions). What each credential
// may call is written out here from api-contract.graphql ("Access"), not computed by the code under test.

const ADMIN = "test-admin-key-0123456789";
let api: TestApi;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let jobId = "";
const credentials: Record<string, string> = {};

type Root = "Query" | "Mutation" | "Subscription";
interface Operation {
  root: Root;
  field: string;
  doc: () => string;
}

const q = (field: string, doc: () => string): Operation => ({ root: "Query", field, doc });
const m = (field: string, doc: () => string): Operation => ({ root: "Mutation", field, doc });
const s = (field: string, doc: () => string): Operation => ({ root: "Subscription", field, doc });
const union = "__typename ... on UserError { code message }";

const OPERATIONS: Operation[] = [
  q("viewer", () => "{ viewer { kind } }"),
  q("apiKeys", () => "{ apiKeys { id } }"),
  q("queues", () => "{ queues { name } }"),
  q("queue", () => `{ queue(name: "demo") { name } }`),
  q("job", () => `{ job(queue: "demo", id: "${jobId}") { id } }`),
  q("jobs", () => "{ jobs { edges { node { id } } } }"),
  q("failedJobAudits", () => "{ failedJobAudits { edges { node { id } } } }"),
  q("operatorActions", () => "{ operatorActions { edges { node { id } } } }"),
  q("bulkAction", () => `{ bulkAction(selectionId: "${randomUUID()}") { status } }`),
  m("enqueueJob", () => `mutation { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { ${union} } }`),
  m("enqueueJobs", () => `mutation { enqueueJobs(inputs: [{ queue: "demo", name: "noop", data: {} }]) { ${union} } }`),
  m("cancelJob", () => `mutation { cancelJob(queue: "demo", id: "missing-job") { ${union} } }`),
  m("retryJob", () => `mutation { retryJob(queue: "demo", id: "missing-job") { ${union} } }`),
  m("retryFailedJobs", () => `mutation { retryFailedJobs(queue: "demo", limit: 1) { ${union} } }`),
  m("replayJob", () => `mutation { replayJob(queue: "demo", id: "missing-job") { ${union} } }`),
  m("pauseQueue", () => `mutation { pauseQueue(name: "no-such-queue") { ${union} } }`),
  m("resumeQueue", () => `mutation { resumeQueue(name: "no-such-queue") { ${union} } }`),
  m(
    "upsertJobScheduler",
    () =>
      `mutation { upsertJobScheduler(input: { queue: "no-such-queue", id: "s", name: "noop", data: {}, everyMs: 60000 }) { ${union} } }`,
  ),
  m("removeJobScheduler", () => `mutation { removeJobScheduler(queue: "no-such-queue", id: "s") { ${union} } }`),
  m("createApiKey", () => `mutation { createApiKey(input: { name: "k-${randomUUID()}", scopes: [READ] }) { ${union} } }`),
  m("revokeApiKey", () => `mutation { revokeApiKey(id: "${randomUUID()}") { ${union} } }`),
  m("bulkJobAction", () => `mutation { bulkJobAction(action: CANCEL, filter: { queue: "demo", states: [DELAYED] }) { ${union} } }`),
  m("confirmBulkJobAction", () => `mutation { confirmBulkJobAction(selectionId: "${randomUUID()}") { ${union} } }`),
  m("createJobToken", () => `mutation { createJobToken(queue: "demo", id: "${jobId}") { ${union} } }`),
  s("jobEvents", () => `subscription { jobEvents(queue: "demo", id: "${jobId}") { type } }`),
  // From the stream's start: the queue's earlier events come at once.
  s("queueEvents", () => `subscription { queueEvents(queue: "demo", since: "0-0") { type } }`),
  // An unknown selection: NOT_FOUND, which is not FORBIDDEN.
  s("bulkActionEvents", () => `subscription { bulkActionEvents(selectionId: "${randomUUID()}") { type } }`),
];

const BY_SCOPE: Record<string, string[]> = {
  READ: [
    "viewer",
    "queues",
    "queue",
    "job",
    "jobs",
    "failedJobAudits",
    "operatorActions",
    "createJobToken",
    "jobEvents",
    "queueEvents",
    "bulkAction",
    "bulkActionEvents",
  ],
  ENQUEUE: ["viewer", "enqueueJob", "enqueueJobs"],
  CONTROL: [
    "viewer",
    "cancelJob",
    "retryJob",
    "retryFailedJobs",
    "replayJob",
    "pauseQueue",
    "resumeQueue",
    "upsertJobScheduler",
    "removeJobScheduler",
    "bulkJobAction",
    "confirmBulkJobAction",
  ],
  ADMIN: OPERATIONS.map((o) => o.field),
  JOB_TOKEN: ["viewer", "job", "jobEvents"],
  // Tenant-bound CONTROL: everything CONTROL has but the two queue-wide switches.
  TENANT_CONTROL: [
    "viewer",
    "cancelJob",
    "retryJob",
    "retryFailedJobs",
    "replayJob",
    "upsertJobScheduler",
    "removeJobScheduler",
    "bulkJobAction",
    "confirmBulkJobAction",
  ],
};

beforeAll(async () => {
  db = await createTestDatabase();
  api = await startTestApi({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ADMIN_API_KEY: ADMIN });
  const admin = (r: Request) => {
    r.headers.set("authorization", `Bearer ${ADMIN}`);
    return api.app.fetch(r);
  };
  jobId = await enqueueDemo(admin, "sleep", { steps: 1, stepMs: 0 });
  for (const scope of ["READ", "ENQUEUE", "CONTROL", "ADMIN"]) {
    credentials[scope] = (await api.runtime.access.createKey({ name: `only-${scope.toLowerCase()}`, scopes: [scope] })).secret;
  }
  credentials.TENANT_CONTROL = (await api.runtime.access.createKey({ name: "tenant-control", scopes: ["CONTROL"], tenant: "acme" })).secret;
  const token = await gql<{ createJobToken: { jobToken: { token: string } } }>(
    admin,
    `mutation ($id: ID!) { createJobToken(queue: "demo", id: $id) { ... on CreateJobTokenSuccess { jobToken { token } } } }`,
    { id: jobId },
  );
  credentials.JOB_TOKEN = token.body.data?.createJobToken.jobToken.token as string;
});

afterAll(async () => {
  await api?.stop();
  await deletePrefix(prefix);
  await db?.drop();
});

/** FORBIDDEN, as the field answers it: the union's ForbiddenError, or a GraphQL error with that code. */
function forbidden(op: Operation, body: GraphQLResponse): boolean {
  if (body.errors?.some((e) => e.extensions?.code === "FORBIDDEN")) return true;
  const value = (body.data as Record<string, { __typename?: string } | undefined> | null | undefined)?.[op.field];
  return value?.__typename === "ForbiddenError";
}

async function call(op: Operation, credential: string): Promise<GraphQLResponse> {
  if (op.root !== "Subscription") {
    const response = await fetch(api.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${credential}` },
      body: JSON.stringify({ query: op.doc() }),
    });
    return (await response.json()) as GraphQLResponse;
  }
  const sub = await subscribeSse(api.url, op.doc(), {}, { authorization: `Bearer ${credential}` });
  await sub.waitFor(1);
  await sub.close();
  return sub.results[0] as GraphQLResponse;
}

describe("scope x operation matrix", () => {
  it("lists every operation of the contract", () => {
    const fields = (root: Root) =>
      Object.keys(schema.getType(root) ? (schema.getType(root) as never as { getFields(): object }).getFields() : {});
    for (const root of ["Query", "Mutation", "Subscription"] as Root[]) {
      for (const op of OPERATIONS.filter((o) => o.root === root)) expect(fields(root)).toContain(op.field);
    }
  });

  for (const who of ["READ", "ENQUEUE", "CONTROL", "ADMIN", "TENANT_CONTROL", "JOB_TOKEN"]) {
    it(`${who}: allowed exactly the contract's operations`, async () => {
      const refused: string[] = [];
      for (const op of OPERATIONS) {
        const body = await call(op, credentials[who] as string);
        if (forbidden(op, body)) refused.push(op.field);
        else
          expect(body.errors?.map((e) => e.extensions?.code) ?? [], `${who} ${op.field}: ${JSON.stringify(body)}`).not.toContain(
            "UNAUTHENTICATED",
          );
      }
      const expected = OPERATIONS.map((o) => o.field).filter((f) => !(BY_SCOPE[who] as string[]).includes(f));
      expect(refused.sort()).toEqual(expected.sort());
    });
  }

  it("answers FORBIDDEN with the missing scope in the message, as union member and as error", async () => {
    const enqueue = await call(OPERATIONS.find((o) => o.field === "enqueueJob") as Operation, credentials.READ as string);
    expect(enqueue).toEqual({
      data: { enqueueJob: { __typename: "ForbiddenError", code: "FORBIDDEN", message: "enqueueJob needs the ENQUEUE scope" } },
    });
    const jobs = await call(OPERATIONS.find((o) => o.field === "jobs") as Operation, credentials.ENQUEUE as string);
    expect(jobs).toMatchObject({ data: null, errors: [{ message: "jobs needs the READ scope", extensions: { code: "FORBIDDEN" } }] });
    const pause = await call(OPERATIONS.find((o) => o.field === "pauseQueue") as Operation, credentials.TENANT_CONTROL as string);
    expect(pause).toEqual({
      data: {
        pauseQueue: {
          __typename: "ForbiddenError",
          code: "FORBIDDEN",
          message: "pauseQueue affects every tenant: it needs a key that is not bound to a tenant",
        },
      },
    });
  });

  it("refuses a subscription without READ over WebSocket too", async () => {
    const sub = await subscribeWs(
      api.url,
      `subscription { queueEvents(queue: "demo") { type } }`,
      {},
      { authorization: `Bearer ${credentials.ENQUEUE}` },
    );
    await sub.done;
    expect(sub.results[0]?.errors?.[0]).toMatchObject({ message: "queueEvents needs the READ scope", extensions: { code: "FORBIDDEN" } });
  });

  it("a query over WebSocket gets the same check", async () => {
    const sub = await subscribeWs(api.url, "{ jobs { edges { cursor } } }", {}, { authorization: `Bearer ${credentials.ENQUEUE}` });
    await sub.done;
    expect(JSON.stringify(sub.results)).toContain("FORBIDDEN");
  });

  it("fields added later get their root type's default scope, never none", () => {
    expect(requiredScope("Query", "someNewQuery")).toBe("READ");
    expect(requiredScope("Subscription", "someNewSubscription")).toBe("READ");
    expect(requiredScope("Mutation", "someNewMutation")).toBe("CONTROL");
    expect(requiredScope("Query", "viewer")).toBeNull();
  });
});
