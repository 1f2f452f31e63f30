import { Queue } from "bullmq";
import { type GraphQLObjectType, getNamedType } from "graphql";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema } from "../src/graphql/schema.ts";
import { createPrisma, type Db } from "../src/infra/prisma.ts";
import { HistoryStore } from "../src/jobs/history/index.ts";
import { ENQUEUE_OPTION_FIELDS, JOB_FIELDS, type JobView, viewFromBull } from "../src/jobs/job-view.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

// JOB_FIELDS (src/jobs/job-view.ts) lists a job's persisted fields once; every other place that
// spells them must agree with it. Each test names the place that drifted.

const fields = Object.keys(JOB_FIELDS).sort();
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;
let prisma: Db;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  prisma = createPrisma(db.url, { max: 2 });
});

afterAll(async () => {
  await prisma?.$disconnect();
  await sql?.end();
  await db?.drop();
});

/** A JobView with every field set (none null), each value telling its field apart. */
function fullView(): JobView {
  return {
    id: "job-1",
    queue: "orders",
    name: "ship",
    data: { order: 17 },
    state: "FAILED",
    progress: { step: 3 },
    attemptsMade: 2,
    maxAttempts: 5,
    priority: 7,
    createdAt: new Date(1_700_000_000_001),
    startedAt: new Date(1_700_000_000_002),
    finishedAt: new Date(1_700_000_000_003),
    result: { partial: true },
    failedReason: "carrier down",
    replayOfId: "job-0",
    tenant: "acme",
    parentQueue: "reports",
    parentId: "job-p",
  };
}

describe("a job's persisted fields (JOB_FIELDS)", () => {
  it("the job_history_write SQL type (migration history_write_functions) has exactly them, plus the enqueue options", async () => {
    const { rows } = await sql.query<{ attname: string }>(
      `SELECT attname FROM pg_attribute WHERE attrelid = 'job_history_write'::regclass AND attnum > 0 AND NOT attisdropped`,
    );
    expect(rows.map((r) => r.attname).sort()).toEqual([...fields, ...Object.keys(ENQUEUE_OPTION_FIELDS)].sort());
  });

  it("the job_history table has their columns, plus the enqueue options and updated_at", async () => {
    const { rows } = await sql.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'job_history' AND table_schema = current_schema()`,
    );
    const expected = [
      ...Object.values(JOB_FIELDS).map((f) => f.column),
      ...Object.values(ENQUEUE_OPTION_FIELDS).map((f) => f.column),
      "updated_at",
    ];
    expect(rows.map((r) => r.column_name).sort()).toEqual(expected.sort());
  });

  it("the GraphQL Job type shows each of them, and adds only fields computed on request", () => {
    const job = schema.getType("Job") as GraphQLObjectType;
    const shown = Object.keys(job.getFields());
    const computed = ["logs", "replays", "children", "childrenCounts", "childrenValues"];
    // parentQueue and parentId are both shown by `parent`.
    expect(shown.sort()).toEqual([...new Set(Object.values(JOB_FIELDS).map((f) => f.graphql)), ...computed].sort());
    expect(getNamedType(job.getFields().replayOf?.type)?.name).toBe("Job");
    expect(getNamedType(job.getFields().parent?.type)?.name).toBe("Job");
  });

  it("a history write and read carries every one of them (rowOf, the SQL functions, viewFromRow)", async () => {
    const history = new HistoryStore(prisma);
    const view = fullView();
    expect(Object.keys(view).sort()).toEqual(fields);
    await history.upsert(view);
    expect(await history.get(view.queue, view.id)).toEqual(view);
    // The enqueue-time insert of a fresh job too.
    const other = { ...view, id: "job-2" };
    await history.recordEnqueued([{ view: other, delayMs: 0, backoff: null }]);
    expect(await history.get(other.queue, other.id)).toEqual(other);
  });

  it("viewFromBull gives each of them for a job read from Redis", async () => {
    const prefix = uniquePrefix();
    const queue = new Queue("orders", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "orders") });
    try {
      const job = await queue.add("ship", { order: 17, __meta: { replayOf: "job-0", tenant: "acme" } });
      const view = viewFromBull(job, "WAITING");
      expect(Object.keys(view).sort()).toEqual(fields);
      expect(view).toMatchObject({ data: { order: 17 }, replayOfId: "job-0", tenant: "acme", parentQueue: null, parentId: null });
      const child = await queue.add(
        "pack",
        { order: 17 },
        { parent: { id: String(job.id), queue: `${bullPrefix(prefix, "orders")}:orders` } },
      );
      expect(viewFromBull(child, "WAITING")).toMatchObject({ parentQueue: "orders", parentId: String(job.id) });
    } finally {
      await queue.close();
      await deletePrefix(prefix);
    }
  });
});
