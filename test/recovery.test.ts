import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keySpace, keys } from "../src/jobs/bullmq/index.ts";
import type { TestApi } from "../src/testing/api.ts";
import { gql } from "../src/testing/graphql.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { bullPrefix, deletePrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// The recovery reconciler (durable enqueue, issue #18), with the API in this process and no worker,
// so re-added jobs stay where they are put: Redis "loses" the queue's keys (every key under the
// test's prefix deleted, as a FLUSHALL would) and the reconciler puts the jobs back from history.

const ENQUEUE = `mutation($input: EnqueueJobInput!) { enqueueJob(input: $input) {
  __typename ... on EnqueueJobSuccess { job { id state } } ... on UserError { code message } } }`;

let stack: TestStack;
let api: TestApi;
let queue: Queue;
let prefix: string;
const redis = new Redis(testRedisUrl);

beforeAll(async () => {
  stack = await startTestStack({
    worker: false,
    // Pages of 2 rows at 20 rows/s: every pass pages, and is paced (see the pacing test).
    env: {
      RECOVERY_INTERVAL_MS: "0",
      RECOVERY_WATCH_MS: "100",
      RECOVERY_GRACE_MS: "300",
      RECOVERY_PAGE_SIZE: "2",
      RECOVERY_ROWS_PER_SECOND: "20",
      LOG_LEVEL: "silent",
    },
  });
  ({ api, queue, prefix } = stack);
});

afterAll(async () => {
  await stack?.stop();
  redis.disconnect();
});

async function enqueue(input: Record<string, unknown>): Promise<string> {
  const res = await gql(api.url, ENQUEUE, { input: { queue: "demo", name: "noop", data: {}, ...input } });
  const id = (res.body.data?.enqueueJob as { job?: { id: string } } | undefined)?.job?.id;
  if (!id) throw new Error(`enqueue failed: ${JSON.stringify(res.body)}`);
  return id;
}

const rows = <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => queryRows<T>(stack.databaseUrl, sql, params);

/** A pass of our own (a pass the watcher started may hold the lease for a moment: wait for it). */
const pass = () =>
  until(
    "a pass of our own",
    () => api.runtime.recovery.runOnce("test"),
    (p) => p !== null,
  );

async function recoveredMetric(): Promise<number> {
  const text = await (await fetch(api.url.replace(/\/graphql$/, "/metrics"))).text();
  return Number(/^jobs_recovered_total\{queue="demo"\} (\d+)/m.exec(text)?.[1] ?? 0);
}

describe("recovery reconciler", () => {
  it("puts back every pending job Redis lost: id, name, data, priority, remaining delay, attempts; records it; counts it", async () => {
    // The start pass has run (the epoch key is there): nothing to recover yet.
    await until(
      "first pass",
      () => redis.exists(keys.recoveryEpoch(keySpace(prefix), "demo")),
      (n) => n === 1,
    );
    const waiting = await enqueue({ data: { ticks: 3 } });
    const delayed = await enqueue({ delayMs: 3_600_000, attempts: 4, backoff: { type: "FIXED", delayMs: 1_000 } });
    const prioritized = await enqueue({ name: "sleep", data: { steps: 2, stepMs: 5 }, priority: 5 });
    const custom = await enqueue({ jobId: "order-42", data: { ticks: 1 } });
    const enqueuedAt = Date.now();
    // A job that finished: its row is final, so it is not re-added.
    await rows(`UPDATE job_history SET state = 'COMPLETED', finished_at = now() WHERE id = $1`, [waiting]);
    const finished = waiting;
    const stillWaiting = await enqueue({ data: { ticks: 2 } });
    const before = await recoveredMetric();

    // Redis loses everything of this deployment.
    await deletePrefix(prefix);
    expect(await queue.getJob(delayed)).toBeUndefined();

    // The watcher notices (no epoch key) and a pass runs; rows younger than the grace come in the follow-up.
    await until(
      "jobs back",
      async () => (await Promise.all([delayed, prioritized, custom, stillWaiting].map((id) => queue.getJob(id)))).every(Boolean),
      (ok) => ok,
    );
    // The pass that re-added the last of them has recorded them and counted them.
    await until(
      "recoveries counted",
      async () => (await recoveredMetric()) - before,
      (n) => n >= 4,
    );
    expect(await queue.getJob(finished)).toBeUndefined();

    const d = await queue.getJob(delayed);
    expect(await d?.getState()).toBe("delayed");
    expect(d?.opts.attempts).toBe(4);
    expect(d?.opts.backoff).toEqual({ type: "fixed", delay: 1_000 });
    // Due when it was due before the loss: one hour after its enqueue.
    const score = Number(await redis.zscore(`${bullPrefix(prefix, "demo")}:demo:delayed`, delayed));
    const dueAt = Math.floor(score / 0x1000);
    expect(dueAt).toBeGreaterThanOrEqual(enqueuedAt - 5_000 + 3_600_000);
    expect(dueAt).toBeLessThanOrEqual(enqueuedAt + 3_600_000);

    const p = await queue.getJob(prioritized);
    expect(await p?.getState()).toBe("prioritized");
    expect(p?.priority).toBe(5);
    expect(p?.name).toBe("sleep");
    expect(p?.data).toEqual({ steps: 2, stepMs: 5 });
    expect((await queue.getJob(custom))?.data).toEqual({ ticks: 1 });
    expect(await (await queue.getJob(stillWaiting))?.getState()).toBe("waiting");

    const recoveries = await rows<{ job_id: string; state: string }>("SELECT job_id, state::text FROM job_recovery ORDER BY job_id");
    expect(recoveries.map((r) => r.job_id).sort()).toEqual([delayed, prioritized, custom, stillWaiting].sort());
    const audit = await rows<{ job_id: string; actor: string }>(`SELECT job_id, actor FROM operator_action WHERE action = 'RECOVERED'`);
    expect(audit.map((a) => a.job_id).sort()).toEqual([delayed, prioritized, custom, stillWaiting].sort());
    expect(new Set(audit.map((a) => a.actor))).toEqual(new Set(["system:recovery"]));
    // Operators read them where they read every other action.
    const trail = await gql(api.url, `{ operatorActions(queue: "demo", first: 50) { edges { node { actor action jobId details } } } }`);
    type Action = { action: string; jobId: string; details: { state: string } };
    const edges = (trail.body.data?.operatorActions as { edges?: { node: Action }[] } | undefined)?.edges ?? [];
    const nodes = edges.map((e) => e.node).filter((n) => n.action === "RECOVERED");
    expect(nodes.map((n) => n.jobId).sort()).toEqual([delayed, prioritized, custom, stillWaiting].sort());
    expect(nodes.find((n) => n.jobId === delayed)?.details.state).toBe("DELAYED");
    expect((await recoveredMetric()) - before).toBe(4);

    // A new enqueue gets a fresh id: the counter was seeded past every id history holds.
    const next = await enqueue({});
    expect(Number(next)).toBeGreaterThan(Math.max(...[delayed, prioritized, stillWaiting].map(Number)));

    // Nothing more to do: another pass re-adds nothing.
    const again = await pass();
    expect(again?.recovered).toBe(0);
    // The four re-added (the job enqueued just now is younger than the grace).
    expect(again?.checked).toBe(4);
  });

  it("re-adds a job with the attempts it had made, and leaves a job whose final record waits in the ledger", async () => {
    const old = new Date(Date.now() - 60_000);
    await rows(
      `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at)
       VALUES ('demo', 'tried-twice', 'fail', '{"message":"x","failTimes":9}', 'ACTIVE', 2, 3, $1, now()),
              ('demo', 'in-ledger', 'noop', '{}', 'ACTIVE', 0, 1, $1, now())`,
      [old],
    );
    await redis.hset(`${bullPrefix(prefix, "demo")}:demo:ledger:pending`, `in-ledger:${Date.now()}`, "{}");
    const result = await pass();
    expect(result?.recovered).toBe(1);
    expect(result?.inLedger).toBe(1);
    const job = await queue.getJob("tried-twice");
    expect(job?.attemptsMade).toBe(2);
    expect(job?.opts.attempts).toBe(3);
    expect(await job?.getState()).toBe("waiting");
    expect(await queue.getJob("in-ledger")).toBeUndefined();
    const [row] = await rows<{ state: string }>(`SELECT state::text FROM job_history WHERE id = 'tried-twice'`);
    expect(row?.state).toBe("WAITING");
  });

  it("paces a pass (RECOVERY_ROWS_PER_SECOND) and still re-adds every job, page after page", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `paced-${i}`);
    await rows(
      `INSERT INTO job_history (queue, id, name, data, state, created_at, updated_at)
       SELECT 'demo', id, 'noop', '{}', 'WAITING', now() - interval '1 minute', now() FROM unnest($1::text[]) AS id`,
      [ids],
    );
    const result = await pass();
    expect(result?.recovered).toBe(40);
    // 40 rows and more (earlier tests' jobs, present) at 20 rows/s: at least two seconds, not one burst.
    expect(result?.checked).toBeGreaterThanOrEqual(40);
    expect(result?.ms).toBeGreaterThanOrEqual(((result?.checked ?? 0) / 20) * 1000 - 10);
    const back = await Promise.all(ids.map((id) => queue.getJob(id)));
    expect(back.filter(Boolean)).toHaveLength(40);
  });

  it("runs one pass at a time across instances: while another holds the lease, a pass does nothing", async () => {
    await rows(
      `INSERT INTO job_history (queue, id, name, data, state, created_at, updated_at)
       VALUES ('demo', 'leased', 'noop', '{}', 'WAITING', now() - interval '1 minute', now())`,
    );
    await redis.set(keys.recoveryLease(keySpace(prefix)), "another-instance", "PX", 60_000);
    try {
      expect(await api.runtime.recovery.runOnce("test")).toBeNull();
      expect(await queue.getJob("leased")).toBeUndefined();
    } finally {
      await redis.del(keys.recoveryLease(keySpace(prefix)));
    }
    expect((await pass())?.recovered).toBe(1);
    expect(await queue.getJob("leased")).toBeDefined();
  });
});
