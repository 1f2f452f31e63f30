// Auth cost: `{ __typename }` on the same API process, sent with a database-backed API key (looked up
// once, then served from the per-instance key cache) against the same query with ADMIN_API_KEY (a
// constant-time compare). Alternating rounds, median ratio; the rate limiter runs for both.
import { compareHttp, TRIVIAL_BODY } from "../lib/http.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";

const CONNECTIONS = 64;

export default {
  name: "key-auth",
  async run(ctx) {
    const stack = await ctx.startStack();
    try {
      const created = await fetch(stack.url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ctx.apiKey}` },
        body: JSON.stringify({
          query: `mutation { createApiKey(input: { name: "bench-reader", scopes: [READ] }) { ... on CreateApiKeySuccess { secret } } }`,
        }),
      });
      const secret = ((await created.json()) as { data?: { createApiKey?: { secret?: string } } }).data?.createApiKey?.secret;
      if (!secret) throw new Error("createApiKey gave no secret");
      const target = (key: string) => ({
        url: stack.url,
        method: "POST" as const,
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: TRIVIAL_BODY,
        connections: CONNECTIONS,
      });
      const { project, baseline, ratios } = await compareHttp(ctx, target(ctx.apiKey), target(secret));
      return {
        rows: [
          ratioRow(
            {
              scenario: "auth: database-backed API key",
              metric: "req/s, 64 conns",
              project: project.rps,
              baseline: baseline.rps,
              baselineName: "ADMIN_API_KEY, same server",
              target: ">= 0.95x",
              note:
                project.non2xx || project.errors || baseline.non2xx
                  ? `${project.non2xx} non-2xx, ${project.errors} errors (baseline ${baseline.non2xx} non-2xx)`
                  : undefined,
            },
            0.95,
          ),
        ],
        details: { connections: CONNECTIONS, apiKey: project, adminKey: baseline, roundRatios: ratios },
      };
    } finally {
      await stack.stop();
    }
  },
} satisfies Scenario;
