// Durable enqueue (issue #18): the recovery reconciler over 1M history rows of which 100k are pending.
// 1. Redis "loses" them (they were never in this Redis) and the watcher's pass re-adds all 100k: its
//    duration (target <= 60 s).
// 2. A pass with all 100k present (what a periodic pass does): its duration.
// 3. enqueueJob p99 (16 connections) while a steady pass runs, against the same server with no pass
//    running, alternating rounds (target <= 1.2x).
import { Redis } from "ioredis";
import pg from "pg";
import { keySpace, keys } from "../../src/jobs/bullmq/index.ts";
import { ENQUEUE_NOOP_BODY, httpLoad } from "../lib/http.ts";
import type { Row, Scenario } from "../lib/scenario.ts";
import { median } from "../lib/stats.ts";
import type { HttpLoadResult } from "../load/http-load.ts";

const CONNECTIONS = 16;

/** Rows [from, to) of queue demo, ids are the row numbers + 1; every tenth WAITING, the rest COMPLETED, a second apart. */
async function seed(client: pg.Client, from: number, to: number, start: number): Promise<void> {
  await client.query(
    `INSERT INTO job_history (queue, id, name, data, state, attempts_made, max_attempts, created_at, updated_at, finished_at)
     SELECT 'demo', (n + 1)::text, 'noop', jsonb_build_object('ticks', n % 3),
            (CASE WHEN n % 10 = 0 THEN 'WAITING' ELSE 'COMPLETED' END)::"JobState",
            0, 1, ts, ts, CASE WHEN n % 10 = 0 THEN NULL ELSE ts END
     FROM generate_series($1::int, $2::int - 1) AS n,
          LATERAL (SELECT to_timestamp(($3::bigint + n::bigint * 1000) / 1000.0) AS ts) t`,
    [from, to, start],
  );
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url.replace(/\/graphql$/, "/metrics"))).text();
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text)?.[1] ?? 0);
}

async function waitPasses(url: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await metric(url, "recovery_passes_total")) < count) {
    if (Date.now() > deadline) throw new Error(`recovery pass ${count} not done within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export default {
  name: "recovery-pass",
  async run(ctx) {
    const total = ctx.quick ? 100_000 : 1_000_000;
    const stack = await ctx.startStack({
      apiEnv: { RECOVERY_INTERVAL_MS: "0", RECOVERY_WATCH_MS: "200", RECOVERY_GRACE_MS: "1000", LOG_LEVEL: "warn" },
    });
    const client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    const redis = new Redis(ctx.redisUrl);
    const epochKey = keys.recoveryEpoch(keySpace(stack.prefix), "demo");
    try {
      await waitPasses(stack.url, 1, 60_000); // the start pass, over an empty table
      const t0 = Date.now();
      const start = Date.now() - total * 1000 - 60_000;
      for (let from = 0; from < total; from += 250_000) await seed(client, from, Math.min(total, from + 250_000), start);
      await client.query("ANALYZE job_history");
      ctx.log(`recovery-pass: ${total} rows seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

      // 1. Redis has none of the pending jobs: the pass the watcher starts re-adds them all.
      const passes = await metric(stack.url, "recovery_passes_total");
      await redis.del(epochKey);
      await waitPasses(stack.url, passes + 1, 600_000);
      const lossSeconds = await metric(stack.url, "recovery_last_pass_seconds");
      const recovered = await metric(stack.url, "recovery_last_pass_recovered");
      // 2. Its follow-up pass finds every one present.
      await waitPasses(stack.url, passes + 2, 600_000);
      const steadySeconds = await metric(stack.url, "recovery_last_pass_seconds");
      // The API logs each pass that re-added jobs, with where its time went.
      const logged = (stack.api?.stderr() ?? "").split("\n").filter((l) => l.includes("recovery pass re-added"));
      const phases = (JSON.parse(logged.at(-1) ?? "{}") as { phases?: Record<string, number> }).phases ?? {};
      ctx.log(
        `recovery-pass: re-added ${recovered} in ${lossSeconds.toFixed(1)} s (ms by phase ${JSON.stringify(phases)}); steady pass ${steadySeconds.toFixed(1)} s`,
      );

      // 3. enqueueJob p99 while a steady pass runs vs none.
      const headers = { "content-type": "application/json", authorization: `Bearer ${ctx.apiKey}` };
      const target = { url: stack.url, method: "POST" as const, headers, body: ENQUEUE_NOOP_BODY, connections: CONNECTIONS };
      const rounds = ctx.quick ? 1 : 3;
      const pairs: { quiet: HttpLoadResult; busy: HttpLoadResult; ratio: number }[] = [];
      for (let r = 0; r < rounds; r++) {
        const quiet = await httpLoad(ctx, target);
        // One pass starts at once (the watcher finds the epoch key gone) and outlasts the window;
        // its follow-up runs after it. Both are over before the next quiet window.
        const passesBefore = await metric(stack.url, "recovery_passes_total");
        await redis.del(epochKey);
        await new Promise((res) => setTimeout(res, 500));
        const busy = await httpLoad(ctx, target);
        const endedDuring = (await metric(stack.url, "recovery_passes_total")) - passesBefore;
        await waitPasses(stack.url, passesBefore + 2, 600_000);
        ctx.log(
          `recovery-pass: round ${r + 1}: p99 ${quiet.p99.toFixed(2)} ms quiet, ${busy.p99.toFixed(2)} ms during a pass (${endedDuring} ended within the window)`,
        );
        pairs.push({ quiet, busy, ratio: busy.p99 / quiet.p99 });
      }
      const mid = pairs.find((p) => p.ratio === median(pairs.map((x) => x.ratio))) ?? pairs[0];
      if (!mid) throw new Error("no rounds");
      const label = `${total / 1000}k rows, ${total / 10_000}k pending`;
      const rows: Row[] = [
        {
          scenario: `recovery pass after Redis lost them, ${label}`,
          metric: "seconds",
          project: lossSeconds,
          baseline: null,
          baselineName: `${recovered} jobs re-added`,
          ratio: null,
          target: "<= 60 s",
          pass: lossSeconds <= 60,
        },
        {
          scenario: `recovery pass, all present, ${label}`,
          metric: "seconds",
          project: steadySeconds,
          baseline: null,
          baselineName: "-",
          ratio: null,
          target: "-",
          pass: null,
        },
        {
          scenario: "enqueueJob during recovery passes, 16 conns",
          metric: "p99 ms",
          project: mid.busy.p99,
          baseline: mid.quiet.p99,
          baselineName: "same server, no pass running",
          ratio: mid.ratio,
          target: "<= 1.2x",
          pass: mid.ratio <= 1.2,
        },
      ];
      return {
        rows,
        details: { total, pending: total / 10, recovered, lossSeconds, lossPhasesMs: phases, steadySeconds, rounds: pairs },
      };
    } finally {
      redis.disconnect();
      await client.end();
      await stack.stop();
    }
  },
} satisfies Scenario;
