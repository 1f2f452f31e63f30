// enqueueJob under 64 connections vs the trivial query on the same server, and vs raw Queue.add.
import { deletePrefix } from "../../src/testing/redis.ts";
import { runScript } from "../lib/child.ts";
import { compareHttp, ENQUEUE_NOOP_BODY, TRIVIAL_BODY } from "../lib/http.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import type { Summary } from "../lib/stats.ts";

const CONNECTIONS = 64;

export default {
  name: "enqueue-job",
  async run(ctx) {
    const stack = await ctx.startStack();
    try {
      const headers = { "content-type": "application/json", authorization: `Bearer ${ctx.apiKey}` };
      // Both on this same API process, one after the other.
      const {
        project: enqueue,
        baseline: trivial,
        ratios,
      } = await compareHttp(
        ctx,
        { url: stack.url, method: "POST", headers, body: TRIVIAL_BODY, connections: CONNECTIONS },
        { url: stack.url, method: "POST", headers, body: ENQUEUE_NOOP_BODY, connections: CONNECTIONS },
      );
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
      const bad = enqueue.non2xx || enqueue.errors ? `${enqueue.non2xx} non-2xx, ${enqueue.errors} errors` : undefined;
      return {
        rows: [
          ratioRow(
            {
              scenario: "enqueueJob, 64 conns",
              metric: "req/s",
              project: enqueue.rps,
              baseline: trivial.rps,
              baselineName: "trivial query, same server",
              target: ">= 0.9x",
              note: bad,
            },
            0.9,
          ),
          ratioRow(
            {
              scenario: "enqueueJob, 64 conns",
              metric: "req/s",
              project: enqueue.rps,
              baseline: raw.rps,
              baselineName: "raw Queue.add x64",
              target: "-",
            },
            null,
          ),
          {
            scenario: "enqueueJob, 64 conns",
            metric: "p99 ms",
            project: enqueue.p99,
            baseline: raw.p99,
            baselineName: "raw Queue.add x64",
            ratio: enqueue.p99 / raw.p99,
            target: "-",
            pass: null,
          },
        ],
        details: { connections: CONNECTIONS, enqueue, trivialSameServer: trivial, roundRatios: ratios, rawQueueAdd: raw },
      };
    } finally {
      await stack.stop();
      // The raw baseline's keys live under their own prefix.
      await deletePrefix(`${stack.prefix}-raw`, ctx.redisUrl);
    }
  },
} satisfies Scenario;
