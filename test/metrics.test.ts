import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { killAll, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

// /metrics on the API and on the worker's WORKER_PORT: Prometheus text, open unless METRICS_TOKEN is set.

const TOKEN = "metrics-token-0123456789";
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix };
});

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  await db?.drop();
});

describe("API /metrics", () => {
  it("serves the process metrics as Prometheus text, with no key", async () => {
    const api = await startTestApi(env);
    try {
      const res = await api.app.fetch(new Request("http://test/metrics"));
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
      const text = await res.text();
      expect(text).toContain("# TYPE process_cpu_user_seconds_total counter");
      expect(text).toContain("# TYPE nodejs_eventloop_lag_seconds gauge");
    } finally {
      await api.stop();
    }
  });

  it("with METRICS_TOKEN set, refuses a missing or wrong token with 401 and accepts the right one", async () => {
    const api = await startTestApi({ ...env, METRICS_TOKEN: TOKEN });
    try {
      const get = (authorization?: string) =>
        api.app.fetch(new Request("http://test/metrics", { headers: authorization ? { authorization } : {} }));
      const missing = await get();
      expect(missing.status).toBe(401);
      expect(await missing.json()).toEqual({ errors: [{ message: "Unauthorized", extensions: { code: "UNAUTHENTICATED" } }] });
      expect((await get("Bearer wrong-token-0123456789")).status).toBe(401);
      expect((await get(`Bearer ${TOKEN}`)).status).toBe(200);
    } finally {
      await api.stop();
    }
  });
});

describe("worker /metrics", () => {
  it("counts jobs completed, failed and retried by queue and name, with durations, active jobs, ledger backlog and event-loop lag", async () => {
    const worker = await startWorker({ ...env, WORKER_QUEUES: "demo" });
    const port = /health on port (\d+)/.exec(worker.stdout())?.[1];
    const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
    try {
      await queue.add("sleep", { steps: 1, stepMs: 1 });
      await queue.add("fail", { message: "once", failTimes: 1 }, { attempts: 2 });
      await queue.add("fail", { message: "always" }, { attempts: 1 });
      let text = "";
      for (let i = 0; i < 200; i++) {
        text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        if (
          text.includes('jobs_completed_total{queue="demo",name="fail"} 1') &&
          text.includes('jobs_failed_total{queue="demo",name="fail"} 1')
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(text).toContain('jobs_completed_total{queue="demo",name="sleep"} 1');
      expect(text).toContain('jobs_completed_total{queue="demo",name="fail"} 1');
      expect(text).toContain('jobs_failed_total{queue="demo",name="fail"} 1');
      expect(text).toContain('jobs_retried_total{queue="demo",name="fail"} 1');
      expect(text).toContain('job_processing_duration_seconds_count{queue="demo",name="fail"} 3');
      expect(text).toContain('jobs_active{queue="demo"} 0');
      expect(text).toMatch(/ledger_backlog\{queue="demo"\} \d+/);
      expect(text).toContain("# TYPE nodejs_eventloop_lag_seconds gauge");
      expect(await worker.stop()).toBe(0);
    } finally {
      await queue.close();
    }
  });

  it("with METRICS_TOKEN set, the worker answers 401 without it", async () => {
    const worker = await startWorker({ ...env, WORKER_QUEUES: "demo", METRICS_TOKEN: TOKEN });
    const url = `http://127.0.0.1:${/health on port (\d+)/.exec(worker.stdout())?.[1]}/metrics`;
    expect((await fetch(url)).status).toBe(401);
    const ok = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("# TYPE jobs_completed_total counter");
    expect(await worker.stop()).toBe(0);
  });
});
