import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import { startTestApi } from "../src/testing/api.ts";
import { startApi, startWorker } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";

// READYZ_REQUIRE_WORKERS=queue,queue: the API's /readyz answers 503 while a named queue has no worker.

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ worker: false, env: { READYZ_REQUIRE_WORKERS: "demo, report,demo" } });
});

afterAll(async () => {
  await stack?.stop();
});

async function readyz(): Promise<{ status: number; body: { status: string; checks: Record<string, string> } }> {
  const res = await stack.api.app.fetch(new Request("http://test/readyz"));
  return { status: res.status, body: await res.json() };
}

describe("READYZ_REQUIRE_WORKERS", () => {
  it("is 503 naming each queue without a worker, 200 once every one has one, 503 again when one goes", async () => {
    const none = await readyz();
    expect(none.status).toBe(503);
    expect(none.body.checks).toEqual({
      redis: "ok",
      postgres: "ok",
      "workers:demo": "failed",
      "workers:report": "failed",
    });

    const demo = await startWorker({ ...stack.env, WORKER_QUEUES: "demo" });
    const half = await until("demo has a worker", readyz, (r) => r.body.checks["workers:demo"] === "ok");
    expect(half.status).toBe(503);
    expect(half.body.checks["workers:report"]).toBe("failed");

    const report = await startWorker({ ...stack.env, WORKER_QUEUES: "report" });
    const ready = await until("both have workers", readyz, (r) => r.status === 200);
    expect(ready.body).toEqual({
      status: "ready",
      checks: { redis: "ok", postgres: "ok", "workers:demo": "ok", "workers:report": "ok" },
    });

    expect(await report.stop()).toBe(0);
    const gone = await until("report's worker gone", readyz, (r) => r.status === 503);
    expect(gone.body.checks["workers:report"]).toBe("failed");
    expect(await demo.stop()).toBe(0);
  });

  it("refuses a malformed list, and a queue nobody registered (the API process exits 1 naming it)", async () => {
    for (const bad of ["demo,,report", "demo;report", ",", `${"x".repeat(10_000)} y`]) {
      expect(() => loadConfig({ READYZ_REQUIRE_WORKERS: bad })).toThrow(ConfigError);
    }
    await expect(startTestApi({ ...stack.env, READYZ_REQUIRE_WORKERS: "demo,nope" })).rejects.toThrow(
      /READYZ_REQUIRE_WORKERS: unknown queue "nope"/,
    );
    await expect(startApi({ ...stack.env, READYZ_REQUIRE_WORKERS: "nope" })).rejects.toThrow(
      /config error: READYZ_REQUIRE_WORKERS: unknown queue "nope"/,
    );
  });

  it("without it, /readyz checks only Redis and PostgreSQL", async () => {
    expect(loadConfig({}).readyzRequireWorkers).toEqual([]);
    // Empty means unset.
    const api = await startTestApi({ ...stack.env, READYZ_REQUIRE_WORKERS: "" });
    try {
      const res = await api.app.fetch(new Request("http://test/readyz"));
      expect(res.status).toBe(200);
      expect((await res.json()).checks).toEqual({ redis: "ok", postgres: "ok" });
    } finally {
      await api.stop();
    }
  });
});
