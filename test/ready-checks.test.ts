import { describe, expect, it } from "vitest";
import { runReadyChecks } from "../src/infra/health-server.ts";

// The one readiness check the API's and the worker's /readyz run.

describe("runReadyChecks", () => {
  it("is ok when every probe answers", async () => {
    expect(await runReadyChecks({ redis: async () => "PONG", postgres: async () => [{ 1: 1 }] })).toEqual({
      ok: true,
      checks: { redis: "ok", postgres: "ok" },
    });
  });

  it("names each probe that failed or hung, and runs them all", async () => {
    let ran = false;
    const result = await runReadyChecks({
      redis: () => Promise.reject(new Error("connect ECONNREFUSED")),
      postgres: () => new Promise(() => {}),
      other: async () => {
        ran = true;
      },
    });
    expect(result).toEqual({
      ok: false,
      checks: { redis: "failed: connect ECONNREFUSED", postgres: "failed: timed out after 1s", other: "ok" },
    });
    expect(ran).toBe(true);
  });
});
