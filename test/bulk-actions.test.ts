import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GraphQLResponse, gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// Bulk actions (issue #20) against a real API, worker, Redis and PostgreSQL: a dry run freezes a
// selection, confirming acts on exactly it whatever changed since, with tenants, queue limits and
// every limit answering as documented.

const ADMIN = "test-admin-key-0123456789";
let stack: TestStack;
const keys: Record<string, string> = { admin: ADMIN };
let db: pg.Client;
let redis: Redis;

function as(secret: string) {
  return (r: Request) => {
    r.headers.set("authorization", `Bearer ${secret}`);
    return stack.api.app.fetch(r);
  };
}
const call = async (who: string, query: string, variables: Record<string, unknown> = {}) =>
  (await gql(as(keys[who] as string), query, variables)).body;

const FIELDS = `__typename
  ... on BulkAction { selectionId action status count queues processed acted skipped failed expiresAt
    outcomeCounts { outcome state count } sample(first: 5) { id state } }
  ... on UserError { code message }
  ... on SelectionTooLargeError { count max }
  ... on BulkActionRunningError { queue }
  ... on ValidationError { issues { path message } }
  ... on InvalidStateError { state }`;
const BULK = `mutation ($action: BulkJobActionType!, $filter: JobFilter!, $dryRun: Boolean) {
  bulkJobAction(action: $action, filter: $filter, dryRun: $dryRun) { ${FIELDS} } }`;
const CONFIRM = `mutation ($id: ID!) { confirmBulkJobAction(selectionId: $id) { ${FIELDS} } }`;
const STATUS = `query ($id: ID!) { bulkAction(selectionId: $id) { status count processed acted skipped failed
  outcomeCounts { outcome state count } jobs(first: 1000) { position jobId outcome state detail } } }`;
const ENQUEUE = `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { __typename ... on EnqueueJobSuccess { job { id } } ... on UserError { message } } }`;

interface Bulk {
  __typename: string;
  selectionId: string;
  status: string;
  count: number;
  processed: number;
  acted: number;
  skipped: number;
  failed: number;
  message: string;
  code: string;
  sample: { id: string; state: string }[];
  outcomeCounts: { outcome: string; state: string | null; count: number }[];
  [k: string]: unknown;
}
type Status = Bulk & { jobs: { position: number; jobId: string; outcome: string; state: string; detail: string }[] };

async function bulk(who: string, action: string, filter: Record<string, unknown>, dryRun = true): Promise<Bulk> {
  const body = await call(who, BULK, { action, filter, dryRun });
  expect(body.errors).toBeUndefined();
  return (body.data as { bulkJobAction: Bulk }).bulkJobAction;
}
async function confirm(who: string, id: string): Promise<Bulk> {
  const body = await call(who, CONFIRM, { id });
  expect(body.errors).toBeUndefined();
  return (body.data as { confirmBulkJobAction: Bulk }).confirmBulkJobAction;
}
const status = async (id: string, who = "admin") => ((await call(who, STATUS, { id })).data as { bulkAction: Status | null }).bulkAction;
const done = (id: string) =>
  until(
    `bulk action ${id} done`,
    () => status(id),
    (s) => s?.status === "DONE",
  );
const jobState = async (id: string) =>
  ((await call("admin", `query ($id: ID!) { job(queue: "demo", id: $id) { state } }`, { id })).data as { job: { state: string } | null })
    .job?.state;

async function enqueue(input: Record<string, unknown>, who = "admin"): Promise<string> {
  const body = await call(who, ENQUEUE, { input: { queue: "demo", ...input } });
  const r = (body.data as { enqueueJob: { __typename: string; job?: { id: string }; message?: string } }).enqueueJob;
  if (!r.job) throw new Error(`enqueue failed: ${JSON.stringify(r)}`);
  return r.job.id;
}

beforeAll(async () => {
  stack = await startTestStack({ env: { ADMIN_API_KEY: ADMIN, BULK_MAX_SELECTION: "40", BULK_BATCH_SIZE: "3", BULK_LEASE_MS: "2000" } });
  for (const t of ["a", "b"]) {
    keys[t] = (await stack.api.runtime.access.createKey({ name: `tenant-${t}`, scopes: ["READ", "ENQUEUE", "CONTROL"], tenant: t })).secret;
  }
  keys.reader = (await stack.api.runtime.access.createKey({ name: "reader", scopes: ["READ"] })).secret;
  keys.reportOnly = (
    await stack.api.runtime.access.createKey({ name: "report-only", scopes: ["CONTROL", "READ"], queues: ["report"] })
  ).secret;
  keys.demoOnly = (await stack.api.runtime.access.createKey({ name: "demo-only", scopes: ["CONTROL", "READ"], queues: ["demo"] })).secret;
  keys.aDemo = (
    await stack.api.runtime.access.createKey({ name: "a-demo", scopes: ["CONTROL", "READ"], tenant: "a", queues: ["demo"] })
  ).secret;
  db = new pg.Client({ connectionString: stack.databaseUrl });
  await db.connect();
  redis = new Redis(testRedisUrl);
}, 60_000);

afterAll(async () => {
  await db?.end();
  redis?.disconnect();
  await stack?.stop();
});

describe("bulk actions", () => {
  it("CANCEL acts on the frozen selection only, each job per its state at confirm, and the counts say which", async () => {
    const tag = `bk1-${randomUUID().slice(0, 8)}`;
    // Two that will have run by the confirm, four that stay delayed.
    const soon = [
      await enqueue({ name: "noop", data: {}, delayMs: 1500, jobId: `${tag}-soon-0` }),
      await enqueue({ name: "noop", data: {}, delayMs: 1500, jobId: `${tag}-soon-1` }),
    ];
    const later: string[] = [];
    for (let i = 0; i < 4; i++) later.push(await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-later-${i}` }));

    const dry = await bulk("admin", "CANCEL", { queue: "demo", search: tag });
    expect(dry).toMatchObject({ __typename: "BulkAction", status: "PENDING", count: 6, processed: 0, queues: ["demo"] });
    expect(dry.sample).toHaveLength(5);
    // Newest first, as `jobs` lists them: the four long-delayed ones come before the short ones.
    expect(dry.sample.slice(0, 4).map((j) => j.id)).toEqual([...later].reverse());

    // Between the dry run and the confirm: two complete, one is cancelled by hand, one more matches the filter.
    await until(
      "the short delays ran",
      async () => Promise.all(soon.map(jobState)),
      (s) => s.every((x) => x === "COMPLETED"),
    );
    const byHand = (await call("admin", `mutation { cancelJob(queue: "demo", id: "${later[0]}") { __typename } }`)).data;
    expect(byHand).toEqual({ cancelJob: { __typename: "JobActionSuccess" } });
    const newcomer = await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-new` });

    const run = await confirm("admin", dry.selectionId);
    expect(run).toMatchObject({ __typename: "BulkAction", status: "RUNNING", count: 6 });
    const end = await done(dry.selectionId);
    expect(end).toMatchObject({ count: 6, processed: 6, acted: 3, skipped: 3, failed: 0 });
    expect(end?.outcomeCounts).toEqual([
      { outcome: "ACTED", state: "DELAYED", count: 3 },
      { outcome: "SKIPPED", state: "CANCELLED", count: 1 },
      { outcome: "SKIPPED", state: "COMPLETED", count: 2 },
    ]);
    for (const id of later) expect(await jobState(id)).toBe("CANCELLED");
    for (const id of soon) expect(await jobState(id)).toBe("COMPLETED");
    expect(await jobState(newcomer)).toBe("DELAYED");
    // One operator action for the whole, with its counts; no per-job cancelJob rows (only the one by hand).
    const { rows } = await db.query(`SELECT action, queue, details FROM operator_action WHERE details->>'selectionId' = $1`, [
      dry.selectionId,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: "bulkJobAction",
      queue: "demo",
      details: { bulkAction: "CANCEL", total: 6, acted: 3, skipped: 3, failed: 0, skippedByState: { CANCELLED: 1, COMPLETED: 2 } },
    });
    const cancels = await db.query(`SELECT job_id FROM operator_action WHERE action = 'cancelJob' AND job_id LIKE $1`, [`${tag}%`]);
    expect(cancels.rows).toEqual([{ job_id: later[0] }]);
  });

  it("RETRY, REPLAY and DISMISS_AUDIT through the single-job paths; dryRun: false confirms at once", async () => {
    const tag = `bk2-${randomUUID().slice(0, 8)}`;
    const failing: string[] = [];
    for (let i = 0; i < 3; i++) failing.push(await enqueue({ name: "fail", data: { message: `boom ${i}` }, jobId: `${tag}-${i}` }));
    await until(
      "the jobs failed",
      async () => Promise.all(failing.map(jobState)),
      (s) => s.every((x) => x === "FAILED"),
    );
    await until(
      "their audit rows",
      async () => (await db.query(`SELECT count(*)::int AS n FROM failed_job_audit WHERE job_id LIKE $1`, [`${tag}%`])).rows[0].n,
      (n) => n === 3,
    );

    const dismiss = await bulk("admin", "DISMISS_AUDIT", { queue: "demo", search: tag }, false);
    expect(dismiss).toMatchObject({ status: "RUNNING", count: 3 });
    expect(await done(dismiss.selectionId)).toMatchObject({ acted: 3, skipped: 0 });
    const open = await db.query(`SELECT count(*)::int AS n FROM failed_job_audit WHERE job_id LIKE $1 AND resolved_at IS NULL`, [
      `${tag}%`,
    ]);
    expect(open.rows[0].n).toBe(0);
    // Again: nothing left to dismiss, so each is skipped with its state.
    const again = await bulk("admin", "DISMISS_AUDIT", { queue: "demo", search: tag }, false);
    expect(await done(again.selectionId)).toMatchObject({
      acted: 0,
      skipped: 3,
      outcomeCounts: [{ outcome: "SKIPPED", state: "FAILED", count: 3 }],
    });

    const replay = await bulk("admin", "REPLAY", { queue: "demo", search: tag, states: ["FAILED"] }, false);
    const replayed = await done(replay.selectionId);
    expect(replayed).toMatchObject({ count: 3, acted: 3 });
    const replayIds = replayed?.jobs.map((j) => j.detail.replace("replayed as ", "")) ?? [];
    expect(replayIds).toEqual([1, 2, 3].map((n) => `bulk-${replay.selectionId}-${n}`));
    for (const id of replayIds) {
      const job = (await call("admin", `query ($id: ID!) { job(queue: "demo", id: $id) { replayOf { id } } }`, { id })).data as {
        job: { replayOf: { id: string } };
      };
      expect(failing).toContain(job.job.replayOf.id);
    }

    const retry = await bulk("admin", "RETRY", { queue: "demo", search: `${tag}-`, states: ["FAILED"] });
    expect(retry.count).toBe(3);
    await confirm("admin", retry.selectionId);
    const retried = await done(retry.selectionId);
    expect(retried?.acted).toBe(retry.count);
  });

  it("events over SSE and WebSocket: SNAPSHOT, PROGRESS per batch, DONE, then the stream ends", async () => {
    const tag = `bk3-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 7; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-${i}` });
    const dry = await bulk("admin", "CANCEL", { search: tag });
    const q = `subscription ($id: ID!) { bulkActionEvents(selectionId: $id) { id type status count processed acted skipped failed } }`;
    const sse = await subscribeSse(stack.api.url, q, { id: dry.selectionId }, { authorization: `Bearer ${ADMIN}` });
    const ws = await subscribeWs(stack.api.url, q, { id: dry.selectionId }, { authorization: `Bearer ${ADMIN}` });
    await sse.waitFor(1);
    await ws.waitFor(1);
    await confirm("admin", dry.selectionId);
    await Promise.all([sse.done, ws.done]);
    for (const sub of [sse, ws]) {
      const events = sub.results.map((r: GraphQLResponse) => (r.data as { bulkActionEvents: Record<string, unknown> }).bulkActionEvents);
      expect(events[0]).toMatchObject({ type: "SNAPSHOT", status: "PENDING", count: 7, processed: 0 });
      expect(events.at(-1)).toMatchObject({ type: "DONE", status: "DONE", processed: 7, acted: 7 });
      const processed = events.map((e) => e.processed as number);
      expect(processed).toEqual([...processed].sort((x, y) => x - y));
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    }
    // A finished action: its SNAPSHOT (DONE), then the end.
    const late = await subscribeSse(stack.api.url, q, { id: dry.selectionId }, { authorization: `Bearer ${ADMIN}` });
    await late.done;
    expect(late.results.map((r) => (r.data as { bulkActionEvents: { type: string; status: string } }).bulkActionEvents)).toMatchObject([
      { type: "SNAPSHOT", status: "DONE" },
    ]);
  });
});

describe("bulk actions resumed after a batch was cut short", () => {
  /** A confirmed selection no instance runs yet (its lease held as by an instance that is about to die). */
  async function heldRun(action: string, filter: Record<string, unknown>) {
    const dry = await bulk("admin", action, filter);
    const lease = `${stack.prefix}:bulk:${dry.selectionId}:runner`;
    await redis.set(lease, "a-dying-instance", "PX", 60_000);
    expect(await confirm("admin", dry.selectionId)).toMatchObject({ status: "RUNNING" });
    const claim = (position: number, state: string) =>
      db.query(`UPDATE bulk_selection_job SET claimed_state = $3 WHERE selection_id = $1 AND seq = $2`, [dry.selectionId, position, state]);
    return { dry, claim, die: () => redis.del(lease) };
  }

  it("CANCEL: a job cancelled before the crash counts ACTED (its reason names the action), a claimed one not yet cancelled is cancelled", async () => {
    const tag = `bk9-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 3; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-${i}` });
    const { dry, claim, die } = await heldRun("CANCEL", { search: tag });
    // The dying instance's batch: position 1 (newest, -2) claimed and cancelled, position 2 claimed only.
    await claim(1, "DELAYED");
    await claim(2, "DELAYED");
    const r = await call("admin", `mutation ($id: ID!, $why: String) { cancelJob(queue: "demo", id: $id, reason: $why) { __typename } }`, {
      id: `${tag}-2`,
      why: `bulk action ${dry.selectionId} by admin`,
    });
    expect(r.data).toEqual({ cancelJob: { __typename: "JobActionSuccess" } });
    await die();
    const end = await done(dry.selectionId);
    expect(end).toMatchObject({ processed: 3, acted: 3, skipped: 0, failed: 0 });
    expect(end?.jobs.map((j) => [j.jobId, j.outcome, j.detail ?? null])).toEqual([
      [`${tag}-2`, "ACTED", "done before a restart"],
      [`${tag}-1`, "ACTED", null],
      [`${tag}-0`, "ACTED", null],
    ]);
  });

  it("CANCEL: a claimed job the dying instance took out of Redis before writing its row is recorded CANCELLED and counts ACTED", async () => {
    const tag = `bk12-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 2; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-${i}` });
    const { dry, claim, die } = await heldRun("CANCEL", { search: tag });
    // The dying instance's cancelOne: the job left Redis, then the process died before the row.
    await claim(1, "DELAYED");
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(stack.prefix, "demo") });
    try {
      expect(await queue.remove(`${tag}-1`)).toBe(1);
    } finally {
      await queue.close();
    }
    await die();
    const end = await done(dry.selectionId);
    expect(end).toMatchObject({ processed: 2, acted: 2, skipped: 0, failed: 0 });
    expect(end?.jobs.map((j) => [j.jobId, j.outcome, j.detail ?? null])).toEqual([
      [`${tag}-1`, "ACTED", "done before a restart"],
      [`${tag}-0`, "ACTED", null],
    ]);
    const rows = await db.query(`SELECT id, state::text AS state, failed_reason AS reason FROM job_history WHERE id LIKE $1 ORDER BY id`, [
      `${tag}-%`,
    ]);
    expect(rows.rows.map((r) => [r.id, r.state])).toEqual([
      [`${tag}-0`, "CANCELLED"],
      [`${tag}-1`, "CANCELLED"],
    ]);
    expect(rows.rows[1].reason).toContain(dry.selectionId);
  });

  it("CANCEL: a job someone else cancelled meanwhile is SKIPPED even when claimed", async () => {
    const tag = `bk10-${randomUUID().slice(0, 8)}`;
    await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-0` });
    const { dry, claim, die } = await heldRun("CANCEL", { search: tag });
    await claim(1, "DELAYED");
    await call("admin", `mutation { cancelJob(queue: "demo", id: "${tag}-0", reason: "by hand") { __typename } }`);
    await die();
    expect(await done(dry.selectionId)).toMatchObject({
      acted: 0,
      skipped: 1,
      outcomeCounts: [{ outcome: "SKIPPED", state: "CANCELLED", count: 1 }],
    });
  });

  it("REPLAY: a replay made before the crash is found by its fixed id, not made twice", async () => {
    const tag = `bk11-${randomUUID().slice(0, 8)}`;
    const id = await enqueue({ name: "noop", data: {}, jobId: `${tag}-0` });
    await until(
      "the job completed",
      () => jobState(id),
      (s) => s === "COMPLETED",
    );
    const { dry, claim, die } = await heldRun("REPLAY", { search: tag, states: ["COMPLETED"] });
    await claim(1, "COMPLETED");
    const replayId = `bulk-${dry.selectionId}-1`;
    // The dying instance had enqueued the replay under its fixed id.
    await enqueue({ name: "noop", data: {}, jobId: replayId });
    await die();
    expect(await done(dry.selectionId)).toMatchObject({ acted: 1, skipped: 0 });
    const replays = await db.query(`SELECT id FROM job_history WHERE id LIKE $1`, [`bulk-${dry.selectionId}-%`]);
    expect(replays.rows).toEqual([{ id: replayId }]);
  });
});

describe("bulk action limits", () => {
  it("over BULK_MAX_SELECTION: SelectionTooLargeError with the exact count, nothing selected", async () => {
    const tag = `bk4-${randomUUID().slice(0, 8)}`;
    const inputs = Array.from({ length: 45 }, (_, i) => ({
      queue: "demo",
      name: "noop",
      data: {},
      delayMs: 600_000,
      jobId: `${tag}-${i}`,
    }));
    const r = await call("admin", `mutation ($i: [EnqueueJobInput!]!) { enqueueJobs(inputs: $i) { __typename } }`, { i: inputs });
    expect(r.errors).toBeUndefined();
    const before = (await db.query(`SELECT count(*)::int AS n FROM bulk_selection`)).rows[0].n;
    expect(await bulk("admin", "CANCEL", { search: tag })).toMatchObject({
      __typename: "SelectionTooLargeError",
      code: "VALIDATION",
      count: 45,
      max: 40,
    });
    expect((await db.query(`SELECT count(*)::int AS n FROM bulk_selection`)).rows[0].n).toBe(before);
  });

  it("one running bulk action per queue: BulkActionRunningError while another runs there", async () => {
    const tag = `bk5-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 2; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-${i}` });
    const first = await bulk("admin", "CANCEL", { queue: "demo", search: `${tag}-0` });
    const second = await bulk("admin", "CANCEL", { queue: "demo", search: `${tag}-1` });
    // Stand in for another API instance holding the first action (its lease taken), so it stays RUNNING.
    const lease = `${stack.prefix}:bulk:${first.selectionId}:runner`;
    await redis.set(lease, "another-instance", "PX", 60_000);
    expect(await confirm("admin", first.selectionId)).toMatchObject({ status: "RUNNING" });
    expect(await confirm("admin", second.selectionId)).toMatchObject({
      __typename: "BulkActionRunningError",
      code: "CONFLICT",
      queue: "demo",
    });
    expect((await status(first.selectionId))?.status).toBe("RUNNING");
    // That instance "dies": its lease goes, this API resumes the action, then the queue is free.
    await redis.del(lease);
    expect(await done(first.selectionId)).toMatchObject({ acted: 1 });
    expect(await confirm("admin", second.selectionId)).toMatchObject({ status: "RUNNING" });
    expect(await done(second.selectionId)).toMatchObject({ acted: 1 });
  });

  it("hostile input: malformed, unknown, expired and twice-confirmed selections; huge filter values", async () => {
    for (const id of ["nope", "x".repeat(100_000), "00000000-0000-0000-0000-00000000000g"]) {
      expect(await confirm("admin", id)).toMatchObject({ __typename: "ValidationError", code: "VALIDATION" });
    }
    const unknownId = randomUUID();
    const unknown = await confirm("admin", unknownId);
    expect(unknown).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND" });

    const tag = `bk6-${randomUUID().slice(0, 8)}`;
    await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-0` });
    const expired = await bulk("admin", "CANCEL", { search: tag });
    await db.query(`UPDATE bulk_selection SET expires_at = now() - interval '1 second' WHERE id = $1`, [expired.selectionId]);
    const late = await confirm("admin", expired.selectionId);
    expect(JSON.stringify(late).split(expired.selectionId).join("<id>")).toBe(JSON.stringify(unknown).split(unknownId).join("<id>"));
    expect(await status(expired.selectionId)).toBeNull();

    const twice = await bulk("admin", "CANCEL", { search: tag });
    expect(await confirm("admin", twice.selectionId)).toMatchObject({ status: "RUNNING" });
    expect(await confirm("admin", twice.selectionId)).toMatchObject({ __typename: "InvalidStateError", code: "INVALID_STATE" });
    expect(await done(twice.selectionId)).toMatchObject({ count: 1, processed: 1, acted: 1 });
    expect(await confirm("admin", twice.selectionId)).toMatchObject({ __typename: "InvalidStateError" });
    expect((await status(twice.selectionId))?.processed).toBe(1);

    // Huge and malformed filter values: the `jobs` filter's own checks, as a ValidationError.
    const huge = await bulk("admin", "CANCEL", { name: "n".repeat(10_000), search: "s".repeat(5_000), dataContains: [1, 2] });
    expect(huge.__typename).toBe("ValidationError");
    expect((huge.issues as { path: string[] }[]).map((i) => i.path.join("."))).toEqual([
      "filter.name",
      "filter.search",
      "filter.dataContains",
    ]);
    const inverted = await bulk("admin", "RETRY", { createdAfter: "2030-01-01T00:00:00Z", createdBefore: "2020-01-01T00:00:00Z" });
    expect(inverted).toMatchObject({ __typename: "ValidationError" });
    const badEnum = await call("admin", BULK, { action: "DELETE_EVERYTHING", filter: {} });
    expect(badEnum.errors?.[0]?.message).toMatch(/DELETE_EVERYTHING/);
    const pageBounds = await call("admin", `query ($id: ID!) { bulkAction(selectionId: $id) { jobs(first: 100000) { jobId } } }`, {
      id: twice.selectionId,
    });
    expect(pageBounds.errors?.[0]?.extensions?.code).toBe("VALIDATION");
  });
});

describe("bulk actions and access", () => {
  it("needs CONTROL: a READ key gets ForbiddenError", async () => {
    expect(await bulk("reader", "CANCEL", {})).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
    expect(await confirm("reader", randomUUID())).toMatchObject({ __typename: "ForbiddenError" });
  });

  it("a tenant-bound key selects within its tenant; another tenant's selection answers as an unknown one everywhere", async () => {
    const tag = `bk7-${randomUUID().slice(0, 8)}`;
    for (const t of ["a", "b"])
      for (let i = 0; i < 2; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-${t}-${i}` }, t);
    const mine = await bulk("a", "CANCEL", { search: tag });
    expect(mine.count).toBe(2);
    expect(mine.sample.map((j) => j.id).sort()).toEqual([`${tag}-a-0`, `${tag}-a-1`]);
    // Naming the other tenant selects what an unknown tenant selects: nothing.
    expect((await bulk("a", "CANCEL", { search: tag, tenant: "b" })).count).toBe(0);

    const unknownId = randomUUID();
    const blind = (body: unknown, id: string) => JSON.stringify(body).split(id).join("<id>");
    expect(blind(await confirm("b", mine.selectionId), mine.selectionId)).toBe(blind(await confirm("b", unknownId), unknownId));
    expect(await status(mine.selectionId, "b")).toBeNull();
    const q = `subscription ($id: ID!) { bulkActionEvents(selectionId: $id) { type } }`;
    const theirs = await subscribeWs(stack.api.url, q, { id: mine.selectionId }, { authorization: `Bearer ${keys.b}` });
    const none = await subscribeWs(stack.api.url, q, { id: unknownId }, { authorization: `Bearer ${keys.b}` });
    await Promise.all([theirs.done, none.done]);
    expect(theirs.results[0]?.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    expect(blind(theirs.results, mine.selectionId)).toBe(blind(none.results, unknownId));

    // An unbound key's selection over every tenant cannot be confirmed by a tenant-bound key (it could not have made it)...
    const wide = await bulk("admin", "CANCEL", { search: tag });
    expect(wide.count).toBe(4);
    expect(await confirm("a", wide.selectionId)).toMatchObject({ __typename: "NotFoundError" });
    // ...but one the unbound key confined to tenant a can, and it touches a's jobs only.
    const forA = await bulk("admin", "CANCEL", { search: tag, tenant: "a" });
    expect(await confirm("a", forA.selectionId)).toMatchObject({ status: "RUNNING" });
    expect(await done(forA.selectionId)).toMatchObject({ acted: 2 });
    expect(await jobState(`${tag}-a-0`)).toBe("CANCELLED");
    expect(await jobState(`${tag}-b-0`)).toBe("DELAYED");
    // The owner's own selection then finds them cancelled.
    await confirm("a", mine.selectionId);
    expect(await done(mine.selectionId)).toMatchObject({ acted: 0, skipped: 2 });
  });

  it("a queue-limited key selects within its queues and cannot confirm a selection beyond them", async () => {
    const tag = `bk8-${randomUUID().slice(0, 8)}`;
    await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-0` });
    // The demo queue does not exist for a key limited to report.
    expect(await bulk("reportOnly", "CANCEL", { queue: "demo", search: tag })).toMatchObject({ __typename: "NotFoundError" });
    expect((await bulk("reportOnly", "CANCEL", { search: tag })).count).toBe(0);
    const wide = await bulk("admin", "CANCEL", { search: tag });
    const unknownId = randomUUID();
    const blind = (body: unknown, id: string) => JSON.stringify(body).split(id).join("<id>");
    expect(blind(await confirm("reportOnly", wide.selectionId), wide.selectionId)).toBe(
      blind(await confirm("reportOnly", unknownId), unknownId),
    );
    // A selection over every queue is beyond a demo-only key too; one confined to demo is not.
    expect(await confirm("demoOnly", wide.selectionId)).toMatchObject({ __typename: "NotFoundError" });
    const demo = await bulk("admin", "CANCEL", { queue: "demo", search: tag });
    expect(await confirm("demoOnly", demo.selectionId)).toMatchObject({ status: "RUNNING" });
    expect(await done(demo.selectionId)).toMatchObject({ acted: 1 });
  });
});

describe("a bulk action's operator audit: one row per queue it touched", () => {
  const AUDIT = `query ($id: ID!) { operatorActions(selectionId: $id, first: 50) { edges { node { action queue selectionId details } } } }`;
  type Row = { action: string; queue: string; selectionId: string; details: Record<string, unknown> };
  /** The rows `who` sees of one action, by queue; and the whole answer, to look for what must not be in it. */
  async function audit(who: string, id: string): Promise<{ rows: Row[]; text: string }> {
    const body = await call(who, AUDIT, { id });
    expect(body.errors).toBeUndefined();
    const rows = (body.data as { operatorActions: { edges: { node: Row }[] } }).operatorActions.edges.map((e) => e.node);
    // Every key's plain list (no selectionId argument) shows the same rows of this action.
    const all = await call(who, `{ operatorActions(first: 50) { edges { node { action queue selectionId details } } } }`);
    const listed = (all.data as { operatorActions: { edges: { node: Row }[] } }).operatorActions.edges
      .map((e) => e.node)
      .filter((r) => r.selectionId === id);
    expect(listed).toEqual(rows);
    return { rows: rows.sort((a, b) => a.queue.localeCompare(b.queue)), text: JSON.stringify(body) };
  }
  const report = (tag: string, i: number) => ({ queue: "report", name: "csv", data: { fileName: `${tag}-${i}.csv` }, delayMs: 600_000 });

  it("each queue's row holds that queue's counts; a key limited to one queue sees its row only, nothing of the other", async () => {
    const tag = `bk9-${randomUUID().slice(0, 8)}`;
    const finished = await enqueue({ name: "noop", data: {}, jobId: `${tag}-d-done` });
    await until(
      `${finished} completed`,
      () => jobState(finished),
      (s) => s === "COMPLETED",
    );
    for (let i = 0; i < 3; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-d-${i}` });
    for (let i = 0; i < 2; i++) await enqueue({ ...report(tag, i), jobId: `${tag}-r-${i}` });
    const dry = await bulk("admin", "CANCEL", { search: tag });
    expect(dry).toMatchObject({ count: 6, queues: ["demo", "report"] });
    await confirm("admin", dry.selectionId);
    expect(await done(dry.selectionId)).toMatchObject({ acted: 5, skipped: 1 });

    const common = { action: "bulkJobAction", selectionId: dry.selectionId };
    const details = { selectionId: dry.selectionId, bulkAction: "CANCEL", selectedBy: "admin", filter: { search: tag } };
    const demoRow = {
      ...common,
      queue: "demo",
      details: { ...details, total: 4, acted: 3, skipped: 1, failed: 0, skippedByState: { COMPLETED: 1 } },
    };
    const reportRow = {
      ...common,
      queue: "report",
      details: { ...details, total: 2, acted: 2, skipped: 0, failed: 0, skippedByState: {} },
    };
    expect((await audit("admin", dry.selectionId)).rows).toEqual([demoRow, reportRow]);
    // Limited to demo: the demo row, and neither the report row nor a count or id of report's jobs.
    const demoOnly = await audit("demoOnly", dry.selectionId);
    expect(demoOnly.rows).toEqual([demoRow]);
    expect(demoOnly.text).not.toContain("report");
    expect(demoOnly.text).not.toContain(`${tag}-r`);
    expect((await audit("reportOnly", dry.selectionId)).rows).toEqual([reportRow]);
    // No more rows than the queues it touched, and no comma-joined queue.
    const { rows } = await db.query(`SELECT queue FROM operator_action WHERE selection_id = $1 ORDER BY queue`, [dry.selectionId]);
    expect(rows).toEqual([{ queue: "demo" }, { queue: "report" }]);
  });

  it("a tenant-bound key's action: its rows carry its tenant, seen by it (per its queue limit too) and by unbound keys, never by another tenant", async () => {
    const tag = `bk10-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 2; i++) await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-a-d-${i}` }, "a");
    await enqueue({ ...report(tag, 0), jobId: `${tag}-a-r-0` }, "a");
    await enqueue({ name: "noop", data: {}, delayMs: 600_000, jobId: `${tag}-b-d-0` }, "b");
    await enqueue({ ...report(tag, 1), jobId: `${tag}-b-r-0` }, "b");
    const action = await bulk("a", "CANCEL", { search: tag }, false);
    expect(action).toMatchObject({ count: 3, status: "RUNNING" });
    expect(await done(action.selectionId)).toMatchObject({ acted: 3 });
    expect(await jobState(`${tag}-b-d-0`)).toBe("DELAYED");

    const mine = await audit("a", action.selectionId);
    expect(mine.rows.map((r) => [r.queue, r.details.total, r.details.acted])).toEqual([
      ["demo", 2, 2],
      ["report", 1, 1],
    ]);
    expect((await audit("admin", action.selectionId)).rows).toEqual(mine.rows);
    // Bound to tenant a and limited to demo: a's demo row only.
    const aDemo = await audit("aDemo", action.selectionId);
    expect(aDemo.rows).toEqual(mine.rows.filter((r) => r.queue === "demo"));
    expect(aDemo.text).not.toContain("report");
    // Another tenant sees none of them; the rows carry the acting key's tenant.
    expect((await audit("b", action.selectionId)).rows).toEqual([]);
    const { rows } = await db.query(`SELECT DISTINCT tenant FROM operator_action WHERE selection_id = $1`, [action.selectionId]);
    expect(rows).toEqual([{ tenant: "a" }]);
  });
});
