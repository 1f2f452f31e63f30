// enqueueJob under 64 connections against its floor (bench/load/floor-enqueue-server.ts: a bare Node
// `http` server doing the same durable work per request, what a hand-rolled REST enqueue does), in the
// same alternating rounds as the trivial query on the same server; raw Queue.add for reference.
import { deletePrefix } from "../../src/testing/redis.ts";
import { runScript } from "../lib/child.ts";
import { ENQUEUE_NOOP_BODY, FLOOR_ENQUEUE_BODY, httpRounds, pick, TRIVIAL_BODY } from "../lib/http.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import type { Summary } from "../lib/stats.ts";

const CONNECTIONS = 64;
const SCENARIO = "enqueueJob, 64 conns";

export default {
  name: "enqueue-job",
  async run(ctx) {
    const stack = await ctx.startStack();
    // The floor's jobs live under a prefix and a queue name ("floor") of their own, so its ids never
    // meet the API's in the shared history table.
    const floorPrefix = `${stack.prefix}-floor`;
    const floor = steer<{ port: number }>("load/floor-enqueue-server.ts", {
      redisUrl: ctx.redisUrl,
      prefix: floorPrefix,
      databaseUrl: stack.databaseUrl,
    });
    try {
      const { port } = await floor.next();
      const json = { "content-type": "application/json" };
      const headers = { ...json, authorization: `Bearer ${ctx.apiKey}` };
      const rounds = await httpRounds(ctx, {
        floor: {
          url: `http://127.0.0.1:${port}/enqueue`,
          method: "POST",
          headers: json,
          body: FLOOR_ENQUEUE_BODY,
          connections: CONNECTIONS,
        },
        enqueue: { url: stack.url, method: "POST", headers, body: ENQUEUE_NOOP_BODY, connections: CONNECTIONS },
        trivial: { url: stack.url, method: "POST", headers, body: TRIVIAL_BODY, connections: CONNECTIONS },
      });
      const vsFloor = pick(rounds, "enqueue", "floor");
      const vsTrivial = pick(rounds, "enqueue", "trivial");
      const raw = await runScript<Summary & { rps: number }>(
        "load/raw-queue-add.ts",
        {
          redisUrl: ctx.redisUrl,
          prefix: `${stack.prefix}-raw`,
          concurrency: CONNECTIONS,
          warmupSec: ctx.quick ? 1 : 2,
          durationSec: ctx.quick ? 2 : 5,
        },
        60_000,
      );
      const bad = (r: { non2xx: number; errors: number }) => (r.non2xx || r.errors ? `${r.non2xx} non-2xx, ${r.errors} errors` : undefined);
      const enqueue = vsFloor.project;
      const info = { target: "-" };
      return {
        rows: [
          ratioRow(
            {
              scenario: SCENARIO,
              metric: "req/s",
              project: enqueue.rps,
              baseline: vsFloor.baseline.rps,
              baselineName: "floor: bare http + Queue.add + 1 row/request",
              target: ">= 1.0x",
              note: bad(enqueue) ?? bad(vsFloor.baseline),
            },
            1.0,
          ),
          {
            scenario: SCENARIO,
            metric: "p99 ms",
            project: enqueue.p99,
            baseline: vsFloor.baseline.p99,
            baselineName: "floor: bare http + Queue.add + 1 row/request",
            ratio: enqueue.p99 / vsFloor.baseline.p99,
            ...info,
            pass: null,
          },
          // Information: the old ratios (the targets the floors replaced, issue #19).
          ratioRow(
            {
              scenario: SCENARIO,
              metric: "req/s",
              project: vsTrivial.project.rps,
              baseline: vsTrivial.baseline.rps,
              baselineName: "trivial query, same server",
              ...info,
            },
            null,
          ),
          ratioRow(
            { scenario: SCENARIO, metric: "req/s", project: enqueue.rps, baseline: raw.rps, baselineName: "raw Queue.add x64", ...info },
            null,
          ),
          {
            scenario: SCENARIO,
            metric: "p99 ms",
            project: enqueue.p99,
            baseline: raw.p99,
            baselineName: "raw Queue.add x64",
            ratio: enqueue.p99 / raw.p99,
            ...info,
            pass: null,
          },
        ],
        details: {
          connections: CONNECTIONS,
          enqueue,
          floor: vsFloor.baseline,
          floorRatios: vsFloor.ratios,
          trivialSameServer: vsTrivial.baseline,
          trivialRatios: vsTrivial.ratios,
          rounds,
          rawQueueAdd: raw,
        },
      };
    } finally {
      floor.kill();
      await stack.stop();
      // The floor's and the raw baseline's keys live under their own prefixes.
      await deletePrefix(floorPrefix, ctx.redisUrl);
      await deletePrefix(`${stack.prefix}-raw`, ctx.redisUrl);
    }
  },
} satisfies Scenario;
