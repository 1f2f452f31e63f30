// Drill (durable enqueue, issue #18): Redis without persistence (no AOF, no snapshots) is shut down
// under a steady stream of enqueues through the API and comes back EMPTY. PostgreSQL is the record:
// every acknowledged job ends COMPLETED or is still pending (none missing, counted against the
// client's acknowledged ids); a job delayed for an hour comes back delayed to its original due time;
// a job that was ACTIVE runs again and completes; the recovery count in /metrics equals the jobs
// re-added. Once with one API and one worker, once with two APIs and three workers (recovery runs
// once per lost job however many APIs notice the loss).
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { type PrivateRedis, startPrivateRedis } from "../../bench/lib/private-redis.ts";
import { queryRows } from "../../src/testing/private-postgres.ts";
import { type RunningProcess, startApi, startWorker } from "../../src/testing/processes.ts";
import { bullPrefix, uniquePrefix } from "../../src/testing/redis.ts";
import { until } from "../../src/testing/until.ts";
import { drillScratch, type EnqueueAttempt, sleep, timedEnqueue } from "./drill-client.ts";

// Each drill uses a private Redis and a prefix of its own; the scratch gives the database.
const scratch = drillScratch();

const rows = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => queryRows<T>(scratch.databaseUrl(), sql, params);

async function enqueueWith(url: string, input: Record<string, unknown>): Promise<string> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: `mutation($input: EnqueueJobInput!) { enqueueJob(input: $input) { __typename ... on EnqueueJobSuccess { job { id } } } }`,
      variables: { input: { queue: "demo", ...input } },
    }),
  });
  const body = (await res.json()) as { data?: { enqueueJob?: { job?: { id: string } } } };
  const id = body.data?.enqueueJob?.job?.id;
  if (!id) throw new Error(`enqueue failed: ${JSON.stringify(body)}`);
  return id;
}

async function recoveredOn(url: string): Promise<number> {
  const text = await (await fetch(url.replace(/\/graphql$/, "/metrics"))).text();
  return Number(/^jobs_recovered_total\{queue="demo"\} (\d+)/m.exec(text)?.[1] ?? 0);
}

async function drill(apiCount: number, workerCount: number) {
  const redis: PrivateRedis = await startPrivateRedis({ aof: false });
  const prefix = uniquePrefix();
  await rows("TRUNCATE job_history, job_recovery, operator_action");
  const env = {
    REDIS_URL: redis.url,
    DATABASE_URL: scratch.databaseUrl(),
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: "error",
    RECOVERY_INTERVAL_MS: "0",
    RECOVERY_WATCH_MS: "200",
    RECOVERY_GRACE_MS: "1000",
    RATE_LIMIT_PER_MINUTE: "0",
  };
  const apis: RunningProcess[] = [];
  const workers: RunningProcess[] = [];
  const queue = new Queue("demo", { connection: { url: redis.url, maxRetriesPerRequest: null }, prefix: bullPrefix(prefix, "demo") });
  queue.on("error", () => {});
  try {
    for (let i = 0; i < apiCount; i++) apis.push(await startApi(env));
    // One job at a time per worker, 100 ms each: a backlog of WAITING jobs builds up before the loss.
    for (let i = 0; i < workerCount; i++) workers.push(await startWorker({ ...env, WORKER_CONCURRENCY: "1" }));
    const urls = apis.map((a) => /GraphQL API ready at (\S+)/.exec(a.stdout())?.[1] ?? "");

    // A job delayed for an hour, and one that runs for 4 s and is ACTIVE when Redis goes.
    const delayed = await enqueueWith(urls[0] as string, { name: "noop", data: {}, delayMs: 3_600_000 });
    const delayedEnqueuedAt = Date.now();
    const long = await enqueueWith(urls[0] as string, { name: "sleep", data: { steps: 40, stepMs: 100 } });
    await until(
      "long job active",
      async () => (await queue.getJob(long))?.getState(),
      (s) => s === "active",
    );

    // A steady stream: 4 loops, one enqueue every ~10 ms each, spread over the API instances.
    const attempts: EnqueueAttempt[] = [];
    let streaming = true;
    let turn = 0;
    const loops = Array.from({ length: 4 }, async () => {
      while (streaming) {
        attempts.push(await timedEnqueue(urls[turn++ % urls.length] as string, { steps: 1, stepMs: 100 }, "sleep"));
        await sleep(10);
      }
    });
    await sleep(2_500);
    // No AOF and `--save ""`: SHUTDOWN writes nothing, as SHUTDOWN NOSAVE; Redis comes back empty.
    const downAt = Date.now();
    await redis.shutdown();
    await sleep(1_000);
    await redis.restart();
    const restartedAt = Date.now();
    await until("an enqueue succeeds again", async () => attempts.some((a) => a.id && a.startedAt >= restartedAt), Boolean);
    await sleep(2_000);
    streaming = false;
    await Promise.all(loops);

    const acked = attempts.filter((a) => a.id).map((a) => a.id as string);
    expect(new Set(acked).size).toBe(acked.length); // no id handed out twice
    const ackedBefore = attempts.filter((a) => a.id && a.startedAt < downAt).length;

    // Every acknowledged job ends COMPLETED (the long one too); none is missing.
    const everyone = [...acked, long];
    const settled = await until(
      "every acknowledged job COMPLETED",
      async () =>
        Number(
          (await rows<{ n: string }>(`SELECT count(*) AS n FROM job_history WHERE id = ANY($1) AND state = 'COMPLETED'`, [everyone]))[0]?.n,
        ),
      (n) => n === everyone.length,
      // The backlog drains at 10 jobs/s per worker (one at a time, 100 ms each), and how many jobs were
      // acknowledged depends on how fast the API answered: fail when completions stop, not at a fixed time.
      { timeoutMs: 60_000, everyMs: 500, whileChanging: true },
    );
    const missing = await rows<{ id: string }>(
      `SELECT f.id FROM unnest($1::text[]) AS f(id) LEFT JOIN job_history h ON h.queue = 'demo' AND h.id = f.id WHERE h.id IS NULL`,
      [everyone],
    );
    expect(missing).toEqual([]);

    // The delayed job is back, delayed to when it was due.
    const d = await until("delayed job back", () => queue.getJob(delayed), Boolean);
    expect(await d?.getState()).toBe("delayed");
    const probe = new Redis(redis.url);
    const score = await probe.zscore(`${bullPrefix(prefix, "demo")}:demo:delayed`, delayed).finally(() => probe.disconnect());
    const dueAt = Math.floor(Number(score) / 0x1000);
    expect(Math.abs(dueAt - (delayedEnqueuedAt + 3_600_000))).toBeLessThan(5_000);

    // Each lost job re-added once; the ACTIVE one among them; the metric says as many.
    const recoveries = await rows<{ job_id: string; state: string }>("SELECT job_id, state::text AS state FROM job_recovery");
    const recoveredIds = recoveries.map((r) => r.job_id);
    const metric = (await Promise.all(urls.map(recoveredOn))).reduce((a, b) => a + b, 0);
    console.log(
      `redis-loss drill: ${JSON.stringify({
        apis: apiCount,
        workers: workerCount,
        acked: acked.length,
        ackedBeforeLoss: ackedBefore,
        completed: settled,
        recovered: recoveries.length,
        recoveredByState: Object.fromEntries(
          ["WAITING", "DELAYED", "ACTIVE"].map((s) => [s, recoveries.filter((r) => r.state === s).length]),
        ),
        metric,
      })}`,
    );
    expect(new Set(recoveredIds).size).toBe(recoveredIds.length);
    expect(recoveries).toContainEqual({ job_id: long, state: "ACTIVE" });
    expect(recoveries.filter((r) => r.state === "WAITING").length).toBeGreaterThan(0);
    expect(recoveredIds).toContain(delayed);
    expect(metric).toBe(recoveries.length);
    const audits = await rows<{ n: string }>(`SELECT count(*) AS n FROM operator_action WHERE action = 'RECOVERED'`);
    expect(Number(audits[0]?.n)).toBe(recoveries.length);
  } finally {
    await queue.close().catch(() => {});
    await Promise.all([...apis, ...workers].map((p) => p.stop("SIGKILL")));
    await redis.destroy();
  }
}

describe("Redis loses everything (no persistence): PostgreSQL is the record", () => {
  it("one API, one worker: no acknowledged job missing; delayed and active jobs come back", () => drill(1, 1));
  it("two APIs, three workers: the same, each lost job re-added once", () => drill(2, 3));
});
