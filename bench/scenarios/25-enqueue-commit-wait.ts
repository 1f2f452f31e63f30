// Durable enqueue (issue #18): what waiting for the history row's commit costs enqueueJob. Two API
// processes of the same build, same Redis and PostgreSQL, 64 connections each in alternating rounds:
// the default (ENQUEUE_ACK=record: row committed, then the job added, then the answer) against
// ENQUEUE_ACK=redis (job added, answer, row written after without waiting).
import { compareHttp, ENQUEUE_NOOP_BODY } from "../lib/http.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";

const CONNECTIONS = 64;

export default {
  name: "enqueue-commit-wait",
  async run(ctx) {
    const durable = await ctx.startStack();
    const early = await ctx.startStack({ apiEnv: { ENQUEUE_ACK: "redis" } });
    try {
      const headers = { "content-type": "application/json", authorization: `Bearer ${ctx.apiKey}` };
      const { project, baseline, ratios } = await compareHttp(
        ctx,
        { url: early.url, method: "POST", headers, body: ENQUEUE_NOOP_BODY, connections: CONNECTIONS },
        { url: durable.url, method: "POST", headers, body: ENQUEUE_NOOP_BODY, connections: CONNECTIONS },
      );
      const bad = [project, baseline]
        .map((r) => (r.non2xx || r.errors ? `${r.non2xx} non-2xx, ${r.errors} errors` : ""))
        .filter(Boolean)
        .join("; ");
      return {
        rows: [
          ratioRow(
            {
              scenario: "enqueueJob, wait for row commit, 64 conns",
              metric: "req/s",
              project: project.rps,
              baseline: baseline.rps,
              baselineName: "ENQUEUE_ACK=redis (answers before the commit)",
              target: ">= 0.9x",
              note: bad || undefined,
            },
            0.9,
          ),
          {
            scenario: "enqueueJob, wait for row commit, 64 conns",
            metric: "p99 ms",
            project: project.p99,
            baseline: baseline.p99,
            baselineName: "ENQUEUE_ACK=redis (answers before the commit)",
            ratio: null,
            target: "<= base + 2 ms",
            pass: project.p99 <= baseline.p99 + 2,
          },
        ],
        details: { connections: CONNECTIONS, durable: project, answersBeforeCommit: baseline, roundRatios: ratios },
      };
    } finally {
      await durable.stop();
      await early.stop();
    }
  },
} satisfies Scenario;
