// Drill: a bulk action over 10,000 jobs, its API process killed (kill -9) in the middle. Another API
// process resumes it where the last written batch ended, and the counts come out exact: every job
// cancelled once, counted once as ACTED, one operator-audit row.
import { Queue } from "bullmq";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { gql } from "../../src/testing/graphql.ts";
import { startProcess } from "../../src/testing/processes.ts";
import { bullPrefix, testRedisUrl } from "../../src/testing/redis.ts";
import { until } from "../../src/testing/until.ts";
import { drillScratch } from "./drill-client.ts";

const JOBS = 10_000;
const LEASE_MS = 3_000;

// Starting a process on the loaded 2-core machine can take longer than startApi's / startWorker's 30 s.
const startApi = (env: Record<string, string>) =>
  startProcess("src/server/main.ts", { PORT: "0", ...env }, /GraphQL API ready at (\S+)/, 180_000);
const startWorker = (env: Record<string, string>) =>
  startProcess("workers/main.ts", { WORKER_PORT: "0", ...env }, /serving queues/, 180_000);

const scratch = drillScratch();
const prefix = scratch.prefix;

interface Run {
  status: string;
  count: number;
  processed: number;
  acted: number;
  skipped: number;
  failed: number;
}

describe("bulk action restart drill", () => {
  it("a bulk CANCEL of 10,000 jobs survives its API being killed mid-action, counts exact", async () => {
    const env = {
      DATABASE_URL: scratch.databaseUrl(),
      QUEUE_PREFIX: prefix,
      LOG_LEVEL: "error",
      RATE_LIMIT_PER_MINUTE: "0",
      BULK_LEASE_MS: String(LEASE_MS),
      REDIS_URL: testRedisUrl,
    };
    const urlOf = (p: { stdout(): string }) => /GraphQL API ready at (\S+)/.exec(p.stdout())?.[1] ?? "";
    let api = await startApi(env);
    let url = urlOf(api);
    // A live worker, as in production; the jobs are delayed an hour, so it leaves them to the action.
    await startWorker(env);

    for (let i = 0; i < JOBS; i += 1_000) {
      const inputs = Array.from({ length: 1_000 }, () => ({ queue: "demo", name: "noop", data: {}, delayMs: 3_600_000 }));
      const r = await gql(url, `mutation ($i: [EnqueueJobInput!]!) { enqueueJobs(inputs: $i) { __typename } }`, { i: inputs });
      expect(r.body.data).toEqual({ enqueueJobs: { __typename: "EnqueueJobsSuccess" } });
    }

    const filter = { queue: "demo", states: ["DELAYED"] };
    const dryStarted = Date.now();
    const dry = await gql(
      url,
      `mutation ($f: JobFilter!) { bulkJobAction(action: CANCEL, filter: $f) { __typename ... on BulkAction { selectionId count status } ... on UserError { message } } }`,
      { f: filter },
    );
    const dryRunMs = Date.now() - dryStarted;
    const selection = (dry.body.data as { bulkJobAction: { selectionId: string; count: number; status: string } }).bulkJobAction;
    expect(selection).toMatchObject({ count: JOBS, status: "PENDING" });
    const id = selection.selectionId;

    const status = async (): Promise<Run | null> => {
      try {
        const r = await gql(url, `query ($id: ID!) { bulkAction(selectionId: $id) { status count processed acted skipped failed } }`, {
          id,
        });
        return (r.body.data as { bulkAction: Run | null } | null)?.bulkAction ?? null;
      } catch {
        return null; // the API is down or not up yet
      }
    };
    const confirmedAt = Date.now();
    const confirm = await gql(
      url,
      `mutation ($id: ID!) { confirmBulkJobAction(selectionId: $id) { __typename ... on BulkAction { status } } }`,
      {
        id,
      },
    );
    expect(confirm.body.data).toEqual({ confirmBulkJobAction: { __typename: "BulkAction", status: "RUNNING" } });

    // Kill the API once a fifth is done, in the middle of a batch: its jobs claimed, not all recorded.
    const db = new pg.Client({ connectionString: env.DATABASE_URL });
    db.on("error", () => {});
    await db.connect();
    try {
      const before = await until("a fifth processed", status, (s) => (s?.processed ?? 0) >= JOBS / 5, { timeoutMs: 240_000, everyMs: 50 });
      expect(before?.processed).toBeLessThan(JOBS);
      await until(
        "a batch under way",
        async () =>
          (
            await db.query(
              `SELECT count(*)::int AS n FROM bulk_selection_job WHERE selection_id = $1 AND outcome IS NULL AND claimed_state IS NOT NULL`,
              [id],
            )
          ).rows[0].n as number,
        (n) => n > 0,
        { timeoutMs: 120_000, everyMs: 10 },
      );
      await api.stop("SIGKILL");
      const killedAt = Date.now();
      const atKill = (await db.query(`SELECT processed FROM bulk_selection WHERE id = $1`, [id])).rows[0].processed as number;
      // Jobs of the batch the kill cut short: claimed (their state noted) but without an outcome, and
      // of those, the ones already cancelled: the resumed action must count them ACTED, once.
      const cut = (
        await db.query(
          `SELECT count(*)::int AS claimed, count(h.id)::int AS cancelled FROM bulk_selection_job j
         LEFT JOIN job_history h ON h.queue = j.queue AND h.id = j.job_id AND h.state = 'CANCELLED'
         WHERE j.selection_id = $1 AND j.outcome IS NULL AND j.claimed_state IS NOT NULL`,
          [id],
        )
      ).rows[0] as { claimed: number; cancelled: number };

      api = await startApi(env);
      url = urlOf(api);
      const resumed = await until("progress after the restart", status, (s) => (s?.processed ?? 0) > atKill, { timeoutMs: 120_000 });
      const resumeMs = Date.now() - killedAt;
      const end = await until("the action done", status, (s) => s?.status === "DONE", { timeoutMs: 600_000, everyMs: 200 });
      const totalMs = Date.now() - confirmedAt;

      const figures = {
        jobs: JOBS,
        dryRunMs,
        processedAtKill: atKill,
        claimedWithoutOutcomeAtKill: cut.claimed,
        cancelledWithoutOutcomeAtKill: cut.cancelled,
        resumedAfterMs: resumeMs,
        firstProgressAfterRestart: resumed?.processed,
        totalMs,
        jobsPerSecond: Math.round((JOBS / totalMs) * 1000),
        end,
      };
      console.log(`bulk-restart drill: ${JSON.stringify(figures)}`);

      expect(end).toEqual({ status: "DONE", count: JOBS, processed: JOBS, acted: JOBS, skipped: 0, failed: 0 });
      const outcomes = await db.query(
        `SELECT outcome, count(*)::int AS n FROM bulk_selection_job WHERE selection_id = $1 GROUP BY outcome`,
        [id],
      );
      expect(outcomes.rows).toEqual([{ outcome: "ACTED", n: JOBS }]);
      const history = await db.query(
        `SELECT state::text AS state, count(*)::int AS n FROM job_history WHERE queue = 'demo' GROUP BY state`,
      );
      expect(history.rows).toEqual([{ state: "CANCELLED", n: JOBS }]);
      const marked = await db.query(`SELECT count(*)::int AS n FROM job_history WHERE failed_reason LIKE $1`, [`%bulk action ${id}%`]);
      expect(marked.rows[0].n).toBe(JOBS);
      const audit = await db.query(`SELECT action, details FROM operator_action WHERE action <> 'RECOVERED'`);
      expect(audit.rows).toHaveLength(1);
      expect(audit.rows[0]).toMatchObject({
        action: "bulkJobAction",
        details: { selectionId: id, total: JOBS, acted: JOBS, skipped: 0, failed: 0 },
      });
    } finally {
      await db.end();
    }
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    expect(await queue.getJobCounts("delayed", "waiting", "active")).toEqual({ delayed: 0, waiting: 0, active: 0 });
    await queue.close();
  });
});
