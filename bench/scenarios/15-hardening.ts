// Hardening (issue 14): the API with every request protection on (early auth, CSRF, body, token,
// depth, alias, directive and cost limits, input checks, bounded errors, byte-bounded parser cache,
// SSE connection limits) against the same build with them off (bench/load/api-unprotected.ts), same
// database, same Redis, same run, in alternating rounds. Target: on >= 0.90x of off.

import { startApi, startProcess } from "../../src/testing/processes.ts";
import { compareHttp, TRIVIAL_BODY } from "../lib/http.ts";
import { type Row, ratioRow, type Scenario } from "../lib/scenario.ts";

const CONNECTIONS = 64;
/** A realistic read: a queue's counts (Redis) with a few fields and a variable. */
const QUEUE_BODY = JSON.stringify({
  query: "query ($q: String!) { queue(name: $q) { name paused counts { waiting active completed failed } } }",
  variables: { q: "demo" },
});

export default {
  name: "hardening",
  async run(ctx) {
    // The first API process takes the event relay's lease and then reads the queues' event streams
    // (measured: whichever of the two held it came out slower, 0.45x vs 1.50x). A third API process,
    // started first and sent nothing, holds the lease, so neither measured side does. The connection
    // limits are back at their defaults on the protected one (the bench stack turns them off for
    // fan-out).
    const stack = await ctx.startStack({ noApi: true });
    const leaseHolder = await startApi({ ...stack.env });
    const off = await startProcess("bench/load/api-unprotected.ts", { ...stack.env, PORT: "0" }, /GraphQL API ready at (\S+)/);
    const offUrl = /GraphQL API ready at (\S+)/.exec(off.stdout())?.[1] ?? "";
    const on = await startApi({ ...stack.env, MAX_CONNECTIONS_PER_ADDRESS: "100", MAX_CONNECTIONS_PER_CREDENTIAL: "500" });
    const onUrl = /GraphQL API ready at (\S+)/.exec(on.stdout())?.[1] ?? "";
    const headers = { "content-type": "application/json", authorization: `Bearer ${ctx.apiKey}` };
    try {
      const rows: Row[] = [];
      const details: Record<string, unknown> = { connections: CONNECTIONS };
      for (const [label, body] of [
        ["trivial query", TRIVIAL_BODY],
        ["queue counts query", QUEUE_BODY],
      ] as const) {
        const target = (url: string) => ({ url, method: "POST" as const, headers, body, connections: CONNECTIONS });
        const { project, baseline, ratios } = await compareHttp(ctx, target(offUrl), target(onUrl));
        details[label] = { on: project, off: baseline, roundRatios: ratios };
        rows.push(
          ratioRow(
            {
              scenario: `Protections on vs off, ${label}`,
              metric: "req/s",
              project: project.rps,
              baseline: baseline.rps,
              baselineName: "same API, protections off",
              target: ">= 0.90x",
              note: project.non2xx || project.errors ? `${project.non2xx} non-2xx, ${project.errors} errors` : undefined,
            },
            0.9,
          ),
        );
      }
      return { rows, details };
    } finally {
      await Promise.all([off.stop("SIGKILL"), on.stop("SIGKILL"), leaseHolder.stop("SIGKILL")]);
      await stack.stop();
    }
  },
} satisfies Scenario;
