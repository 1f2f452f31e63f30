// GraphQL layer: `{ __typename }` on our API vs a bare Node HTTP server answering the same JSON.
import { compareHttp, TRIVIAL_BODY } from "../lib/http.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";

const CONNECTIONS = 64;

export default {
  name: "graphql-layer",
  async run(ctx) {
    const bare = steer<{ port: number }>("load/bare-http-server.ts", {});
    const { port } = await bare.next();
    const headers = { "content-type": "application/json" };
    const stack = await ctx.startStack();
    try {
      const {
        project: trivial,
        baseline,
        ratios,
      } = await compareHttp(
        ctx,
        { url: `http://127.0.0.1:${port}/graphql`, method: "POST", headers, body: TRIVIAL_BODY, connections: CONNECTIONS },
        {
          url: stack.url,
          method: "POST",
          headers: { ...headers, authorization: `Bearer ${ctx.apiKey}` },
          body: TRIVIAL_BODY,
          connections: CONNECTIONS,
        },
      );
      ctx.memo.set("trivial.rps", trivial.rps);
      return {
        rows: [
          ratioRow(
            {
              scenario: "GraphQL trivial query",
              metric: "req/s",
              project: trivial.rps,
              baseline: baseline.rps,
              baselineName: "bare Node http",
              target: ">= 0.25x",
              note: trivial.non2xx || trivial.errors ? `${trivial.non2xx} non-2xx, ${trivial.errors} errors` : undefined,
            },
            0.25,
          ),
          {
            scenario: "GraphQL trivial query",
            metric: "p99 ms",
            project: trivial.p99,
            baseline: baseline.p99,
            baselineName: "bare Node http",
            ratio: trivial.p99 / baseline.p99,
            target: "-",
            pass: null,
          },
        ],
        details: { connections: CONNECTIONS, trivial, bareHttp: baseline, roundRatios: ratios },
      };
    } finally {
      bare.kill();
      await stack.stop();
    }
  },
} satisfies Scenario;
