import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Prisma } from "../src/generated/prisma/client.ts";
import { createPrisma, type Db, poolOf } from "../src/infra/prisma.ts";
import { createJobLoaders, encodeTimeIdCursor, HistoryQueries, type JobListFilter, SEARCH_WINDOW } from "../src/jobs/history/index.ts";
import type { TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { type RunningProcess, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// The read side of history: jobs / failedJobAudits / operatorActions, keyset pagination, filters,
// batched job lookups, and the live/history merge. Rows are inserted through Prisma (the writers
// belong to the mutations and workers); the last block runs a real worker.

const JOBS = /* GraphQL */ `
  query ($filter: JobFilter, $first: Int, $after: String) {
    jobs(filter: $filter, first: $first, after: $after) {
      edges { cursor node { queue id state } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

interface JobsPage {
  edges: { cursor: string; node: { queue: string; id: string; state: string } }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

let stack: TestStack;
let api: TestApi;
let prisma: Db;
let prefix: string;

beforeAll(async () => {
  stack = await startTestStack({ worker: false });
  ({ api, prefix } = stack);
  prisma = createPrisma(stack.databaseUrl);
});

afterAll(async () => {
  await prisma?.$disconnect();
  // Fails when a process was left running.
  await stack?.stop();
});

const BASE = Date.parse("2026-01-01T00:00:00.000Z");

type Row = Prisma.JobHistoryCreateManyInput;

/** A finished history row; `at` is milliseconds after BASE. */
function row(queue: string, id: string, at: number, extra: Partial<Row> = {}): Row {
  const createdAt = new Date(BASE + at);
  return {
    queue,
    id,
    name: "sleep",
    data: { steps: 1, stepMs: 0 },
    state: "COMPLETED",
    createdAt,
    updatedAt: createdAt,
    finishedAt: createdAt,
    ...extra,
  };
}

async function seed(rows: Row[]): Promise<void> {
  await prisma.jobHistory.createMany({ data: rows });
}

async function truncate(): Promise<void> {
  await prisma.$executeRawUnsafe("TRUNCATE job_history, failed_job_audit, operator_action");
}

async function jobs(variables: Record<string, unknown>) {
  const { status, body } = await gql<{ jobs: JobsPage }>(api.app.fetch, JOBS, variables);
  return { status, body, page: body.data?.jobs as JobsPage };
}

/** Every page of `jobs` for `filter`; `between` runs after each page (to add rows meanwhile). */
async function walk(filter: Record<string, unknown> | null, first: number, between: (page: number) => Promise<void> = async () => {}) {
  const seen: string[] = [];
  let after: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const { body, page: p } = await jobs({ filter, first, after });
    expect(body.errors).toBeUndefined();
    expect(p.edges.length).toBeLessThanOrEqual(first);
    seen.push(...p.edges.map((e) => `${e.node.queue}/${e.node.id}`));
    expect(p.pageInfo.endCursor).toBe(p.edges.at(-1)?.cursor ?? null);
    if (!p.pageInfo.hasNextPage) return seen;
    expect(p.edges).toHaveLength(first);
    after = p.pageInfo.endCursor;
    await between(page);
  }
  throw new Error("pagination did not end");
}

/** The whole history in the API's order, as PostgreSQL sorts it (same collation as the API's queries). */
async function allInOrder(where = "TRUE", params: unknown[] = []): Promise<string[]> {
  const rows = await prisma.$queryRawUnsafe<{ k: string }[]>(
    `SELECT queue || '/' || id AS k FROM job_history WHERE ${where} ORDER BY created_at DESC, id DESC, queue DESC`,
    ...params,
  );
  return rows.map((r) => r.k);
}

/** 60 rows over 15 instants: at each, the same two ids in two queues, so ties need id then queue. */
function tiedRows(): Row[] {
  const rows: Row[] = [];
  for (let t = 0; t < 15; t++) for (const queue of ["alpha", "beta"]) for (const k of ["x", "y"]) rows.push(row(queue, `j${t}-${k}`, t));
  return rows;
}

describe("jobs: keyset pagination", () => {
  beforeEach(truncate);

  it("walks every row exactly once, newest first, ties broken by id then queue, while jobs arrive between pages", async () => {
    await seed(tiedRows());
    const before = await allInOrder();
    let added = 0;
    const seen = await walk(null, 7, async () => {
      // Newer jobs (and one at the very instant of the newest row) land while the client pages.
      await seed([row("alpha", `new-${added}`, 1_000 + added), row("gamma", `j14-x-${added}`, 14)]);
      added++;
    });
    expect(new Set(seen).size).toBe(seen.length);
    // Rows that arrived at or after the first page's rows are not mixed into later pages.
    expect(seen).toEqual(before);
    expect(seen).toHaveLength(60);
    expect(added).toBeGreaterThan(5);
  });

  it("pages one queue the same way (the queue-filtered index path)", async () => {
    await seed(tiedRows());
    const before = await allInOrder("queue = 'beta'");
    const seen = await walk({ queue: "beta" }, 4, async (page) => {
      await seed([row("beta", `late-${page}`, 5_000 + page), row("alpha", `j3-z${page}`, 3)]);
    });
    expect(seen).toEqual(before);
  });

  it("pages with a filter and a cursor together (states + time range)", async () => {
    const rows = tiedRows().map((r, i) => ({ ...r, state: i % 3 === 0 ? ("FAILED" as const) : ("COMPLETED" as const) }));
    await seed(rows);
    const filter = { states: ["FAILED"], createdAfter: new Date(BASE + 2).toISOString(), createdBefore: new Date(BASE + 12).toISOString() };
    const expected = await allInOrder("state = 'FAILED' AND created_at > $1 AND created_at < $2", [
      new Date(BASE + 2),
      new Date(BASE + 12),
    ]);
    expect(expected.length).toBeGreaterThan(6);
    expect(await walk(filter, 3)).toEqual(expected);
  });

  it("answers an empty page with hasNextPage false and a null endCursor", async () => {
    const { body } = await jobs({ filter: { queue: "nothing-here" } });
    expect(body).toEqual({ data: { jobs: { edges: [], pageInfo: { hasNextPage: false, endCursor: null } } } });
  });

  it("gives 20 rows by default and up to 100 when asked", async () => {
    await seed(Array.from({ length: 130 }, (_, i) => row("bulk", `b${String(i).padStart(3, "0")}`, i)));
    expect((await jobs({})).page.edges).toHaveLength(20);
    const { page } = await jobs({ first: 100 });
    expect(page.edges).toHaveLength(100);
    expect(page.pageInfo.hasNextPage).toBe(true);
    expect(page.edges[0]?.node.id).toBe("b129");
  });
});

describe("jobs: filters", () => {
  beforeAll(async () => {
    await truncate();
    await seed([
      row("orders", "order-Alpha-1", 1_000, { name: "sleep", data: { customerId: 42, region: "eu" }, tenant: "acme" }),
      row("orders", "f2", 2_000, {
        name: "fail",
        state: "FAILED",
        failedReason: "Connection REFUSED by upstream",
        data: { customerId: 7 },
        tenant: "acme",
      }),
      row("orders", "f3-100%_done", 3_000, {
        name: "fail",
        state: "FAILED",
        failedReason: "timeout",
        data: { customerId: 42, nested: { tags: ["a", "b"] } },
        tenant: "globex",
      }),
      row("orders", "f4", 4_000, { state: "WAITING", finishedAt: null, data: { customerId: 42 } }),
      row("mail", "m1", 5_000, {
        name: "fail",
        state: "CANCELLED",
        failedReason: "Cancelled: refused by operator",
        data: { customerId: 42 },
        tenant: "acme",
      }),
    ]);
  });

  const at = (ms: number) => new Date(BASE + ms).toISOString();

  it.each([
    ["no filter", {}, ["m1", "f4", "f3-100%_done", "f2", "order-Alpha-1"]],
    ["queue", { queue: "orders" }, ["f4", "f3-100%_done", "f2", "order-Alpha-1"]],
    ["name", { name: "fail" }, ["m1", "f3-100%_done", "f2"]],
    ["one state", { states: ["FAILED"] }, ["f3-100%_done", "f2"]],
    ["several states", { states: ["WAITING", "CANCELLED"] }, ["m1", "f4"]],
    ["createdAfter (exclusive)", { createdAfter: at(3_000) }, ["m1", "f4"]],
    ["createdBefore (exclusive)", { createdBefore: at(3_000) }, ["f2", "order-Alpha-1"]],
    ["search in the id, any case", { search: "alpha" }, ["order-Alpha-1"]],
    ["search in failedReason, any case", { search: "refused" }, ["m1", "f2"]],
    ["search with LIKE wildcards taken literally", { search: "100%_" }, ["f3-100%_done"]],
    ["search that matches nothing", { search: "%%%" }, []],
    ["dataContains a pair", { dataContains: { customerId: 42 } }, ["m1", "f4", "f3-100%_done", "order-Alpha-1"]],
    ["dataContains nested values", { dataContains: { nested: { tags: ["b"] } } }, ["f3-100%_done"]],
    ["dataContains two pairs", { dataContains: { customerId: 42, region: "eu" } }, ["order-Alpha-1"]],
    ["tenant", { tenant: "acme" }, ["m1", "f2", "order-Alpha-1"]],
    [
      "everything combined",
      {
        queue: "orders",
        name: "fail",
        states: ["FAILED", "COMPLETED"],
        createdAfter: at(1_500),
        createdBefore: at(3_500),
        search: "TIMEOUT",
        dataContains: { customerId: 42 },
        tenant: "globex",
      },
      ["f3-100%_done"],
    ],
    ["a combination that excludes everything", { queue: "mail", tenant: "globex" }, []],
  ])("filters by %s", async (_what, filter, ids) => {
    const { body, page } = await jobs({ filter });
    expect(body.errors).toBeUndefined();
    expect(page.edges.map((e) => e.node.id)).toEqual(ids);
  });
});

describe("jobs: search over more history than one search window", () => {
  // 3.25 windows of rows, two per second: at each second the same id in queues alpha and beta. Every
  // third row failed upstream (a common word; one host in 40, i.e. a row in 120, names a rarer term),
  // a few of the oldest rows have a reason of their own, every fourth row has a tenant.
  const rows = Math.floor(3.25 * SEARCH_WINDOW);
  const SEARCH = "(id ILIKE $1 OR failed_reason ILIKE $1)";

  beforeAll(async () => {
    await truncate();
    await prisma.$executeRawUnsafe(
      `INSERT INTO job_history (queue, id, name, data, state, created_at, updated_at, finished_at, failed_reason, tenant)
       SELECT (ARRAY['alpha', 'beta'])[1 + n % 2], 'job-' || n / 2, 'run', '{}',
              (CASE WHEN n % 3 = 0 OR (n < 300 AND n % 7 = 0) THEN 'FAILED' ELSE 'COMPLETED' END)::"JobState", ts, ts, ts,
              CASE WHEN n < 300 AND n % 7 = 0 THEN 'Disk full on vol-9'
                   WHEN n % 3 = 0 THEN 'Upstream 503 from host-' || (n / 3) % 40 || ' after 30 s' END,
              CASE WHEN n % 4 = 0 THEN 't1' END
       FROM generate_series(0, $1 - 1) AS n, LATERAL (SELECT $2::timestamptz + (n / 2) * interval '1 second' AS ts) t`,
      rows,
      new Date(BASE),
    );
    await prisma.$executeRawUnsafe("ANALYZE job_history");
  });

  /**
   * HistoryQueries on a Db that counts the queries of history rows it runs: one when the newest rows
   * fill the page (the planner settings the trigram query runs under are not a query of rows).
   */
  function counted() {
    const count = { queries: 0 };
    const db = {
      $queryRaw: (query: Prisma.Sql) => {
        if (query.sql.includes("job_history")) count.queries++;
        return prisma.$queryRaw(query);
      },
      $transaction: (queries: Prisma.PrismaPromise<unknown>[]) => prisma.$transaction(queries),
    } as unknown as Db;
    return { history: new HistoryQueries(db, { maxPageSize: 100 }), count };
  }

  /** Every page of a search, and how many queries each page took. */
  async function walkSearch(filter: JobListFilter, first: number) {
    const { history, count } = counted();
    const seen: string[] = [];
    const queriesPerPage: number[] = [];
    let after: string | null = null;
    for (let page = 0; page < 1000; page++) {
      const before = count.queries;
      const p = await history.listJobs(filter, { first, after });
      queriesPerPage.push(count.queries - before);
      seen.push(...p.edges.map((e) => `${e.node.queue}/${e.node.id}`));
      if (!p.hasNextPage) return { seen, queriesPerPage };
      expect(p.edges).toHaveLength(first);
      after = p.endCursor;
    }
    throw new Error("pagination did not end");
  }

  it("pages a common word from the newest rows alone, newest first, ties broken by id then queue", async () => {
    const expected = await allInOrder(SEARCH, ["%upstream%"]);
    expect(expected.length).toBeGreaterThan((2 * SEARCH_WINDOW) / 3);
    const { seen, queriesPerPage } = await walkSearch({ search: "UPSTREAM" }, 50);
    expect(seen).toEqual(expected);
    // Every page but the last ones (fewer matches left after the cursor than a page) takes one query.
    expect(queriesPerPage.slice(0, -2).every((n) => n === 1)).toBe(true);
  });

  it("turns to the trigram indexes when the newest rows hold too few matches, with the same result", async () => {
    const expected = await allInOrder(SEARCH, ["%host-7 %"]);
    expect(expected.length).toBeGreaterThan(40);
    // 20 a page: the newest window holds fewer than 21 of them, so the first page takes two queries.
    const wide = await walkSearch({ search: "Host-7 " }, 20);
    expect(wide.queriesPerPage[0]).toBe(2);
    expect(wide.seen).toEqual(expected);
    // 3 a page: the newest window fills the first pages by itself.
    const narrow = await walkSearch({ search: "Host-7 " }, 3);
    expect(narrow.queriesPerPage[0]).toBe(1);
    expect(narrow.seen).toEqual(expected);
  });

  it("pages a term only old rows match, from the trigram indexes and then from the rows after the cursor", async () => {
    const expected = await allInOrder(SEARCH, ["%disk full%"]);
    expect(expected.length).toBeGreaterThan(30);
    const { seen, queriesPerPage } = await walkSearch({ search: "disk FULL" }, 10);
    expect(seen).toEqual(expected);
    // Past the first page the cursor is among those old rows, where one window holds all the rest.
    expect(queriesPerPage[0]).toBe(2);
    expect(queriesPerPage.slice(1, -1).every((n) => n === 1)).toBe(true);
  });

  it.each([
    ["a job id fragment, any case", "JOB-12"],
    ["digits only (BullMQ's own ids are numbers)", "123"],
    ["a whole id", "job-1234"],
  ])("finds %s in the id", async (_what, search) => {
    const expected = await allInOrder(SEARCH, [`%${search}%`]);
    expect(expected.length).toBeGreaterThan(0);
    const { seen } = await walkSearch({ search }, 15);
    expect(seen).toEqual(expected);
  });

  it.each([
    ["a queue", { queue: "beta", search: "upstream" }, "queue = 'beta'"],
    ["one state", { states: ["FAILED"], search: "host-7 " }, "state = 'FAILED'"],
    ["a queue and one state", { queue: "alpha", states: ["FAILED"], search: "host-1" }, "queue = 'alpha' AND state = 'FAILED'"],
    ["several states", { states: ["FAILED", "CANCELLED"], search: "disk" }, "state IN ('FAILED', 'CANCELLED')"],
    ["a tenant", { tenant: "t1", search: "host-2" }, "tenant = 't1'"],
    ["a tenant and one state", { tenant: "t1", states: ["FAILED"], search: "upstream" }, "tenant = 't1' AND state = 'FAILED'"],
    [
      "a createdAt range",
      { createdAfter: new Date(BASE + 100_000), createdBefore: new Date(BASE + 3_000_000), search: "upstream" },
      `created_at > '${new Date(BASE + 100_000).toISOString()}' AND created_at < '${new Date(BASE + 3_000_000).toISOString()}'`,
    ],
  ] as [string, JobListFilter, string][])("combines the search with %s", async (_what, filter, where) => {
    const expected = await allInOrder(`${where} AND ${SEARCH}`, [`%${filter.search}%`]);
    expect(expected.length).toBeGreaterThan(0);
    for (const first of [4, 40]) {
      const { seen } = await walkSearch(filter, first);
      expect(seen).toEqual(expected);
    }
  });

  it("answers the same through the API", async () => {
    expect(await walk({ search: "host-7 " }, 25)).toEqual(await allInOrder(SEARCH, ["%host-7 %"]));
  });

  // At 10M rows one histogram entry of `id` that matched the term made the planner expect 1% of the
  // table (101,000 rows for ~300), and plan the trigram query with two parallel workers and JIT:
  // 873 ms where the scan itself took 14. Here a session whose costs make parallel plans and JIT
  // look free does the same on a small table, and auto_explain reports the plan of every statement
  // the API sends, in the transaction it sends it in.
  it("runs the trigram query without parallel workers or JIT, however cheap the planner thinks they are", async () => {
    const url = new URL(stack.databaseUrl);
    url.searchParams.set(
      "options",
      [
        "parallel_setup_cost=0",
        "parallel_tuple_cost=0",
        "min_parallel_table_scan_size=0",
        "min_parallel_index_scan_size=0",
        "jit_above_cost=0",
        "session_preload_libraries=auto_explain",
        "auto_explain.log_min_duration=0",
        "auto_explain.log_level=notice",
        "auto_explain.log_format=json",
      ]
        .map((s) => `-c ${s}`)
        .join(" "),
    );
    const GATHER = /"Node Type":\s*"Gather/;
    const JIT = /"JIT":/;
    const eager = createPrisma(url.toString(), { max: 1 });
    const plans: string[] = [];
    poolOf(eager).on("connect", (client) => client.on("notice", (n) => plans.push(n.message ?? "")));
    try {
      // The session really plans this query with workers and JIT when nothing else says otherwise.
      const control = await eager.$queryRawUnsafe<{ "QUERY PLAN": unknown }[]>(
        `EXPLAIN (FORMAT JSON) SELECT * FROM job_history WHERE ${SEARCH} ORDER BY created_at DESC`,
        "%disk full%",
      );
      const controlPlan = JSON.stringify(control[0]?.["QUERY PLAN"]);
      expect(controlPlan).toMatch(GATHER);
      expect(controlPlan).toMatch(JIT);

      plans.length = 0;
      const page = await new HistoryQueries(eager, { maxPageSize: 100 }).listJobs({ search: "disk FULL" }, { first: 10 });
      expect(page.edges.map((e) => `${e.node.queue}/${e.node.id}`)).toEqual((await allInOrder(SEARCH, ["%disk full%"])).slice(0, 10));
      // Step 1 (the newest rows) fills no page with this term: step 2, the one that reads every match.
      const trigram = plans.filter((p) => p.includes("WITH matches AS MATERIALIZED"));
      expect(trigram).toHaveLength(1);
      expect(trigram[0]).not.toMatch(GATHER);
      expect(trigram[0]).not.toMatch(/"Parallel Aware":\s*true/);
      expect(trigram[0]).not.toMatch(JIT);
    } finally {
      await eager.$disconnect();
    }
  });
});

describe("jobs: bad input is a VALIDATION error naming the argument", () => {
  const auditCursor = encodeTimeIdCursor("failedJobAudit", { at: new Date(), id: randomUUID() });
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

  it.each([
    ["first 0", { first: 0 }, "first: must be an integer from 1 to 100 (got 0)"],
    ["first over the maximum", { first: 101 }, "first: must be an integer from 1 to 100 (got 101)"],
    ["a negative first", { first: -5 }, "first: must be an integer from 1 to 100 (got -5)"],
    ["a cursor that is not base64", { after: "not a cursor!" }, 'after: "not a cursor!" is not a cursor of this list'],
    ["a cursor of random base64", { after: "AAAA" }, 'after: "AAAA" is not a cursor of this list'],
    ["a cursor of another list", { after: auditCursor }, "is not a cursor of this list"],
    ["a cursor with a bad time", { after: b64(["j", "yesterday", "q", "1"]) }, "is not a cursor of this list"],
    ["a cursor missing a part", { after: b64(["j", 1, "q"]) }, "is not a cursor of this list"],
    [
      "createdAfter later than createdBefore",
      { filter: { createdAfter: "2026-02-01T00:00:00Z", createdBefore: "2026-01-01T00:00:00Z" } },
      "filter.createdAfter: must be earlier than filter.createdBefore",
    ],
    [
      "createdAfter equal to createdBefore",
      { filter: { createdAfter: "2026-01-01T00:00:00Z", createdBefore: "2026-01-01T00:00:00Z" } },
      "filter.createdAfter: must be earlier than filter.createdBefore",
    ],
    ["a two-character search", { filter: { search: "ab" } }, "filter.search: must be 3 to 200 characters (got 2)"],
    ["an empty search", { filter: { search: "" } }, "filter.search: must be 3 to 200 characters (got 0)"],
    ["an overlong search", { filter: { search: "x".repeat(201) } }, "filter.search: must be 3 to 200 characters (got 201)"],
    ["dataContains as an array", { filter: { dataContains: [1] } }, "filter.dataContains: must be a JSON object"],
    ["dataContains as a string", { filter: { dataContains: "customerId" } }, "filter.dataContains: must be a JSON object"],
    ["dataContains as a number", { filter: { dataContains: 42 } }, "filter.dataContains: must be a JSON object"],
    ["an oversized dataContains", { filter: { dataContains: { k: "x".repeat(17_000) } } }, "filter.dataContains: must be at most"],
    ["no states", { filter: { states: [] } }, "filter.states: must list at least one state"],
    ["an empty queue", { filter: { queue: "" } }, "filter.queue: must not be empty"],
    ["an empty name", { filter: { name: "" } }, "filter.name: must not be empty"],
    ["an empty tenant", { filter: { tenant: "" } }, "filter.tenant: must not be empty"],
    ["an overlong queue", { filter: { queue: "q".repeat(257) } }, "filter.queue: must be at most 256 characters"],
  ])("%s", async (_what, variables, message) => {
    const { status, body } = await jobs(variables);
    expect(status).toBe(200);
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors?.[0]?.extensions?.code).toBe("VALIDATION");
    expect(body.errors?.[0]?.message).toContain(message);
  });

  it("lists every problem at once, each with its path", async () => {
    const { body } = await jobs({ first: 500, filter: { search: "a", states: [] } });
    expect(body.errors?.[0]?.extensions?.issues).toEqual([
      { path: ["first"], message: "must be an integer from 1 to 100 (got 500)" },
      { path: ["filter", "states"], message: "must list at least one state (omit it for all)" },
      { path: ["filter", "search"], message: "must be 3 to 200 characters (got 1)" },
    ]);
  });

  it.each([
    ["a createdAfter that is no date", { filter: { createdAfter: "yesterday" } }, 'DateTime must be an ISO-8601 string, got "yesterday"'],
    ["an unknown state", { filter: { states: ["DONE"] } }, 'Value "DONE" does not exist in "JobState" enum'],
    ["a first that is no integer", { first: "ten" }, 'Int cannot represent non-integer value: "ten"'],
    ["an unknown filter field", { filter: { colour: "red" } }, 'Field "colour" is not defined by type "JobFilter"'],
  ])("answers 400 with a GraphQL input error for %s", async (_what, variables, message) => {
    const { status, body } = await jobs(variables);
    expect(status).toBe(400);
    expect(body.errors?.[0]?.message).toContain(message);
  });

  it("honours MAX_PAGE_SIZE", async () => {
    const queries = new HistoryQueries(prisma, { maxPageSize: 5 });
    await expect(queries.listJobs(null, { first: 6 })).rejects.toThrow("first: must be an integer from 1 to 5 (got 6)");
    await expect(queries.listJobs(null, { first: 5 })).resolves.toMatchObject({ edges: expect.any(Array) });
  });
});

const AUDITS = /* GraphQL */ `
  query ($queue: String, $jobId: ID, $first: Int, $after: String) {
    failedJobAudits(queue: $queue, jobId: $jobId, first: $first, after: $after) {
      edges { cursor node { id queue jobId jobName data failedReason stacktrace attemptsMade failedAt workerId } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const ACTIONS = /* GraphQL */ `
  query ($queue: String, $first: Int, $after: String) {
    operatorActions(queue: $queue, first: $first, after: $after) {
      edges { cursor node { id actor action queue jobId at details } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

interface Conn<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

async function walkAll<T>(query: string, field: string, variables: Record<string, unknown>, first: number): Promise<T[]> {
  const nodes: T[] = [];
  let after: string | null = null;
  for (;;) {
    const { body } = await gql<Record<string, Conn<T>>>(api.app.fetch, query, { ...variables, first, after });
    expect(body.errors).toBeUndefined();
    const conn = body.data?.[field] as Conn<T>;
    nodes.push(...conn.edges.map((e) => e.node));
    if (!conn.pageInfo.hasNextPage) return nodes;
    after = conn.pageInfo.endCursor;
  }
}

describe("failedJobAudits and operatorActions", () => {
  beforeAll(async () => {
    await truncate();
    // Three failures at one instant: the uuid breaks the tie.
    await prisma.failedJobAudit.createMany({
      data: Array.from({ length: 9 }, (_, i) => ({
        queue: i % 3 === 0 ? "mail" : "orders",
        jobId: `job-${i % 4}`,
        jobName: "fail",
        data: { i },
        failedReason: `boom ${i}`,
        stacktrace: [`Error: boom ${i}`, "    at run (processor.ts:1:1)"],
        attemptsMade: 3,
        failedAt: new Date(BASE + Math.floor(i / 3)),
        workerId: "host:1",
      })),
    });
    await prisma.operatorAction.createMany({
      data: Array.from({ length: 7 }, (_, i) => ({
        actor: i % 2 ? "admin" : "anonymous",
        action: ["cancelJob", "retryJob", "pauseQueue"][i % 3] as string,
        queue: i < 4 ? "orders" : "mail",
        jobId: i % 3 === 2 ? null : `job-${i}`,
        at: new Date(BASE + Math.floor(i / 2)),
        details: i % 3 === 2 ? undefined : { reason: `r${i}` },
      })),
    });
  });

  async function auditOrder(where = "TRUE", params: unknown[] = []): Promise<string[]> {
    const rows = await prisma.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id::text AS id FROM failed_job_audit WHERE ${where} ORDER BY failed_at DESC, id DESC`,
      ...params,
    );
    return rows.map((r) => r.id);
  }

  it("pages every audit row once, newest first, and shows every field", async () => {
    const nodes = await walkAll<{ id: string; failedAt: string }>(AUDITS, "failedJobAudits", {}, 2);
    expect(nodes.map((n) => n.id)).toEqual(await auditOrder());
    expect(nodes.at(-1)).toMatchObject({
      queue: expect.any(String),
      jobName: "fail",
      stacktrace: [expect.stringMatching(/^Error: boom \d$/), "    at run (processor.ts:1:1)"],
      attemptsMade: 3,
      failedAt: "2026-01-01T00:00:00.000Z",
      workerId: "host:1",
    });
  });

  it("filters audits by queue, by job and by both", async () => {
    const byQueue = await walkAll<{ id: string }>(AUDITS, "failedJobAudits", { queue: "orders" }, 4);
    expect(byQueue.map((n) => n.id)).toEqual(await auditOrder("queue = 'orders'"));
    const byJob = await walkAll<{ id: string }>(AUDITS, "failedJobAudits", { jobId: "job-1" }, 1);
    expect(byJob.map((n) => n.id)).toEqual(await auditOrder("job_id = 'job-1'"));
    const both = await walkAll<{ id: string }>(AUDITS, "failedJobAudits", { queue: "orders", jobId: "job-1" }, 1);
    expect(both.map((n) => n.id)).toEqual(await auditOrder("queue = 'orders' AND job_id = 'job-1'"));
    expect(both.length).toBeGreaterThan(0);
  });

  it("pages operator actions newest first, optionally of one queue", async () => {
    const all = await walkAll<{ id: string; at: string; details: unknown; jobId: string | null }>(ACTIONS, "operatorActions", {}, 3);
    const expected = await prisma.$queryRawUnsafe<{ id: string }[]>("SELECT id::text AS id FROM operator_action ORDER BY at DESC, id DESC");
    expect(all.map((a) => a.id)).toEqual(expected.map((r) => r.id));
    expect(all.find((a) => a.jobId === null)?.details).toBeNull();
    const mail = await walkAll<{ queue: string }>(ACTIONS, "operatorActions", { queue: "mail" }, 2);
    expect(mail).toHaveLength(3);
    expect(mail.every((a) => a.queue === "mail")).toBe(true);
  });

  it.each([
    [AUDITS, { first: 0 }, "first: must be an integer from 1 to 100 (got 0)"],
    [AUDITS, { first: 101 }, "first: must be an integer from 1 to 100 (got 101)"],
    [AUDITS, { after: "garbage" }, 'after: "garbage" is not a cursor of this list'],
    [AUDITS, { after: encodeTimeIdCursor("operatorAction", { at: new Date(), id: randomUUID() }) }, "is not a cursor of this list"],
    [AUDITS, { after: Buffer.from(JSON.stringify(["f", 1, "not-a-uuid"])).toString("base64url") }, "is not a cursor of this list"],
    [AUDITS, { queue: "" }, "queue: must not be empty"],
    [AUDITS, { jobId: "" }, "jobId: must not be empty"],
    [ACTIONS, { first: 1000 }, "first: must be an integer from 1 to 100 (got 1000)"],
    [ACTIONS, { after: encodeTimeIdCursor("failedJobAudit", { at: new Date(), id: randomUUID() }) }, "is not a cursor of this list"],
    [ACTIONS, { queue: "" }, "queue: must not be empty"],
  ])("answers a VALIDATION error for bad input (%#)", async (query, variables, message) => {
    const { status, body } = await gql(api.app.fetch, query, variables);
    expect(status).toBe(200);
    expect(body.errors?.[0]?.extensions?.code).toBe("VALIDATION");
    expect(body.errors?.[0]?.message).toContain(message);
  });
});

describe("replayOf / replays, batched", () => {
  beforeAll(async () => {
    await truncate();
    await seed([
      row("orders", "orig-1", 1_000),
      row("orders", "orig-2", 2_000),
      row("orders", "r1", 3_000, { replayOfId: "orig-1" }),
      row("orders", "r2", 4_000, { replayOfId: "orig-1" }),
      row("orders", "r3", 5_000, { replayOfId: "orig-2" }),
      row("mail", "r4", 6_000, { replayOfId: "orig-1" }), // another queue's orig-1 does not exist
    ]);
  });

  it("resolves replayOf and replays for a whole page", async () => {
    const { body } = await gql<{ jobs: { edges: { node: { id: string; replayOf: { id: string } | null; replays: { id: string }[] } }[] } }>(
      api.app.fetch,
      `{ jobs(filter: { queue: "orders" }) { edges { node { id replayOf { id queue } replays { id } } } } }`,
    );
    expect(body.errors).toBeUndefined();
    expect(body.data?.jobs.edges.map((e) => e.node)).toEqual([
      { id: "r3", replayOf: { id: "orig-2", queue: "orders" }, replays: [] },
      { id: "r2", replayOf: { id: "orig-1", queue: "orders" }, replays: [] },
      { id: "r1", replayOf: { id: "orig-1", queue: "orders" }, replays: [] },
      { id: "orig-2", replayOf: null, replays: [{ id: "r3" }] },
      { id: "orig-1", replayOf: null, replays: [{ id: "r2" }, { id: "r1" }] },
    ]);
    const { body: mail } = await gql(api.app.fetch, `{ job(queue: "mail", id: "r4") { id replayOf { id } } }`);
    expect(mail).toEqual({ data: { job: { id: "r4", replayOf: null } } });
  });

  it("reads many jobs' history rows and replays in one query each", async () => {
    class Counting extends HistoryQueries {
      calls = { getMany: 0, replaysOfMany: 0 };
      override getMany(...args: Parameters<HistoryQueries["getMany"]>) {
        this.calls.getMany++;
        return super.getMany(...args);
      }
      override replaysOfMany(...args: Parameters<HistoryQueries["replaysOfMany"]>) {
        this.calls.replaysOfMany++;
        return super.replaysOfMany(...args);
      }
    }
    const queries = new Counting(prisma, { maxPageSize: 100 });
    // Nothing of this is in Redis: every job comes from history.
    const loaders = createJobLoaders(() => Promise.resolve(null), queries);
    const keys = ["orig-1", "orig-2", "r1", "r2", "nope", "orig-1"].map((id) => ({ queue: "orders", id }));
    const [found, replays] = await Promise.all([
      Promise.all(keys.map((k) => loaders.job.load(k))),
      Promise.all(keys.map((k) => loaders.replays.load(k))),
    ]);
    expect(found.map((j) => j?.id ?? null)).toEqual(["orig-1", "orig-2", "r1", "r2", null, "orig-1"]);
    expect(replays.map((r) => r.map((j) => j.id))).toEqual([["r2", "r1"], ["r3"], [], [], [], ["r2", "r1"]]);
    expect(queries.calls).toEqual({ getMany: 1, replaysOfMany: 1 });
  });
});

describe("a history that stays true (with a real worker)", () => {
  let worker: RunningProcess;
  let queue: Queue;

  beforeAll(async () => {
    await truncate();
    worker = await startWorker({ DATABASE_URL: stack.databaseUrl, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix });
    queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
  });

  afterAll(async () => {
    await queue?.close();
    await worker?.stop();
  });

  const FULL = /* GraphQL */ `
    query ($id: ID!) {
      job(queue: "demo", id: $id) { id queue name data state progress attemptsMade maxAttempts priority createdAt startedAt finishedAt result failedReason tenant }
      jobs(filter: { queue: "demo" }, first: 100) {
        edges { node { id queue name data state progress attemptsMade maxAttempts priority createdAt startedAt finishedAt result failedReason tenant } }
      }
    }
  `;
  type Full = { job: Record<string, unknown> | null; jobs: { edges: { node: Record<string, unknown> }[] } };

  async function enqueueAndFinish(name: string, data: unknown, attempts = 1): Promise<{ id: string; job: Record<string, unknown> }> {
    const { body } = await gql<{ enqueueJob: { job: { id: string } } }>(
      api.app.fetch,
      `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id } } } }`,
      { input: { queue: "demo", name, data, attempts } },
    );
    const id = body.data?.enqueueJob.job.id as string;
    for (let i = 0; i < 200; i++) {
      const { rows } = await query("SELECT state FROM job_history WHERE queue = 'demo' AND id = $1", [id]);
      if (rows[0] && ["COMPLETED", "FAILED"].includes(rows[0].state)) {
        const { body: live } = await gql<Full>(api.app.fetch, FULL, { id });
        return { id, job: live.data?.job as Record<string, unknown> };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`job ${id} did not finish`);
  }

  async function query(sql: string, params: unknown[]) {
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    try {
      return await client.query(sql, params);
    } finally {
      await client.end();
    }
  }

  it("reads a finished job that left Redis from history, every field as it was live", async () => {
    const completed = await enqueueAndFinish("sleep", { steps: 2, stepMs: 5 });
    const failed = await enqueueAndFinish("fail", { message: "card declined" }, 2);
    expect(completed.job).toMatchObject({ state: "COMPLETED", result: { steps: 2 }, progress: 100 });
    expect(failed.job).toMatchObject({ state: "FAILED", failedReason: "card declined", attemptsMade: 2 });

    await queue.remove(completed.id);
    await queue.remove(failed.id);
    expect(await queue.getJob(completed.id)).toBeUndefined();

    for (const live of [completed, failed]) {
      const { body } = await gql<Full>(api.app.fetch, FULL, { id: live.id });
      expect(body.errors).toBeUndefined();
      expect(body.data?.job).toEqual(live.job);
      expect(body.data?.jobs.edges.find((e) => e.node.id === live.id)?.node).toEqual(live.job);
    }
  });

  it("shows the fresher copy: Redis while it holds the job, history once it does not", async () => {
    const { id, job } = await enqueueAndFinish("sleep", { steps: 1, stepMs: 0 });
    // A lost worker write: history still says ACTIVE at 0%, Redis knows the job completed.
    await query(
      "UPDATE job_history SET state = 'ACTIVE', progress = '0', finished_at = NULL, result = NULL WHERE queue = 'demo' AND id = $1",
      [id],
    );
    const { body } = await gql<Full>(api.app.fetch, FULL, { id });
    expect(body.data?.job).toMatchObject({ state: "COMPLETED", progress: 100, result: { steps: 1 } });
    expect(body.data?.jobs.edges.find((e) => e.node.id === id)?.node).toEqual(job);

    await queue.remove(id);
    const { body: after } = await gql<Full>(api.app.fetch, FULL, { id });
    expect(after.data?.job).toMatchObject({ state: "ACTIVE", progress: 0, result: null, finishedAt: null });
    expect(after.data?.jobs.edges.find((e) => e.node.id === id)?.node).toMatchObject({ state: "ACTIVE" });
  });
});
