import { createHmac } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { type Job, Queue, QueueEvents } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import type { ProcessorContext } from "../workers/processor.ts";
import { csvField, reportPath } from "../workers/processors/report-csv.ts";
import webhookProcessor from "../workers/processors/webhook-deliver.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

// webhook.deliver against a local HTTP server, report.csv against a real history table, both run by
// a real worker runtime on real Redis and PostgreSQL.

const SECRET = "test-webhook-secret-0123456789";
const prefix = uniquePrefix();
const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), "reports-"));
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let runtime: WorkerRuntime;
let webhook: Queue;
let report: Queue;
const events: QueueEvents[] = [];

interface Received {
  path: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}
const received: Received[] = [];
const hits = new Map<string, number>();
let server: http.Server;
let base: string;

beforeAll(async () => {
  db = await createTestDatabase();
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      const p = req.url ?? "/";
      received.push({ path: p, body, headers: req.headers });
      const n = (hits.get(p) ?? 0) + 1;
      hits.set(p, n);
      if (p.startsWith("/ok")) res.writeHead(204).end();
      else if (p.startsWith("/flaky")) res.writeHead(n <= 2 ? 500 : 200).end("done");
      else if (p.startsWith("/busy")) res.writeHead(n <= 1 ? 429 : 200).end();
      else if (p.startsWith("/bad")) res.writeHead(400).end("no");
      else if (p.startsWith("/slow")) setTimeout(() => res.writeHead(200).end(), 5_000).unref();
      else res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    WORKER_QUEUES: "webhook,report",
    WEBHOOK_SECRET: SECRET,
    // The receiver below listens on loopback, which the outbound policy refuses by default.
    WEBHOOK_ALLOW_PRIVATE: "true",
    REPORT_DIR: reportDir,
    LOG_LEVEL: "silent",
  });
  runtime = await createWorkerRuntime(config, createLogger("silent"));
  webhook = new Queue("webhook", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "webhook") });
  report = new Queue("report", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "report") });
});

afterAll(async () => {
  await Promise.all(events.map((e) => e.close()));
  await webhook?.close();
  await report?.close();
  await runtime?.stop();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await deletePrefix(prefix);
  await db?.drop();
  fs.rmSync(reportDir, { recursive: true, force: true });
});

/** Adds a job and resolves with it once it is completed or failed for good. */
async function run(queue: Queue, name: string, data: unknown, opts: Record<string, unknown> = {}): Promise<Job> {
  const qe = new QueueEvents(queue.name, { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, queue.name) });
  events.push(qe);
  await qe.waitUntilReady();
  const job = await queue.add(name, data, { attempts: 1, ...opts });
  await job.waitUntilFinished(qe).catch(() => undefined);
  const done = await queue.getJob(String(job.id));
  if (!done) throw new Error("job vanished");
  return done;
}

describe("webhook.deliver", () => {
  it("POSTs the JSON payload with an HMAC-SHA256 signature of the body and a delivery id", async () => {
    const job = await run(webhook, "deliver", {
      url: `${base}/ok/1`,
      payload: { hello: "wörld", n: [1, 2] },
      headers: { "X-Tenant": "t1" },
    });
    expect(job.returnvalue).toEqual({ status: 204 });
    const got = received.find((r) => r.path === "/ok/1");
    expect(got?.body).toBe(JSON.stringify({ hello: "wörld", n: [1, 2] }));
    const timestamp = String(got?.headers["x-webhook-timestamp"]);
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(600);
    const expected = `sha256=${createHmac("sha256", SECRET)
      .update(`${timestamp}.${got?.body ?? ""}`)
      .digest("hex")}`;
    expect(got?.headers).toMatchObject({
      "content-type": "application/json",
      "x-signature-256": expected,
      "x-webhook-id": `webhook:${job.id}`,
      "x-tenant": "t1",
    });
  });

  it("retries a 500 and a 429 with backoff until the receiver accepts", async () => {
    const flaky = await run(
      webhook,
      "deliver",
      { url: `${base}/flaky/1`, payload: {} },
      { attempts: 5, backoff: { type: "fixed", delay: 10 } },
    );
    expect(flaky.returnvalue).toEqual({ status: 200 });
    expect(flaky.attemptsMade).toBe(3);
    expect(hits.get("/flaky/1")).toBe(3);
    const busy = await run(
      webhook,
      "deliver",
      { url: `${base}/busy/1`, payload: {} },
      { attempts: 5, backoff: { type: "fixed", delay: 10 } },
    );
    expect(busy.returnvalue).toEqual({ status: 200 });
    expect(hits.get("/busy/1")).toBe(2);
  });

  it("does not retry a 400: one request, then failed for good with the status in the reason", async () => {
    const job = await run(
      webhook,
      "deliver",
      { url: `${base}/bad/1`, payload: {} },
      { attempts: 5, backoff: { type: "fixed", delay: 10 } },
    );
    expect(await job.getState()).toBe("failed");
    expect(job.failedReason).toBe(`${base} answered HTTP 400`);
    expect(job.attemptsMade).toBe(1);
    expect(hits.get("/bad/1")).toBe(1);
  });

  it("gives up on a receiver that does not answer within timeoutMs", async () => {
    const job = await run(webhook, "deliver", { url: `${base}/slow/1`, payload: {}, timeoutMs: 200 });
    expect(await job.getState()).toBe("failed");
    expect(job.failedReason).toBe(`Timed out after 200 ms waiting for ${base}`);
  });

  it("refuses bad input without retries, naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ url: "ftp://example.com/x", payload: {} }, "url: must be an http:// or https:// URL"],
      [{ url: `${base}/ok`, payload: {}, timeoutMs: 5 }, "timeoutMs: Too small: expected number to be >=100"],
      [
        { url: `${base}/ok`, payload: {}, headers: { "bad header": "x" } },
        `headers: header name "bad header" may only have letters, digits and -`,
      ],
      [{ url: `${base}/ok` }, "payload:"],
    ];
    for (const [data, message] of cases) {
      const job = await run(webhook, "deliver", data, { attempts: 3 });
      expect(job.failedReason).toContain(`Invalid payload: ${message}`);
      expect(job.attemptsMade).toBe(1);
    }
  });

  it("never sends unsigned: without WEBHOOK_SECRET the job fails for good, naming the variable", async () => {
    const ctx = {
      config: loadConfig({}),
      signal: new AbortController().signal,
      job: { queueName: "webhook", id: "1" },
    } as unknown as ProcessorContext;
    await expect(webhookProcessor.run({ url: `${base}/ok/unsigned`, payload: {}, timeoutMs: 1000 }, ctx)).rejects.toThrow(
      "WEBHOOK_SECRET is not set on this worker",
    );
    expect(hits.get("/ok/unsigned")).toBeUndefined();
  });
});

describe("report.csv", () => {
  beforeAll(async () => {
    await queryRows(
      db.url,
      `INSERT INTO job_history (queue, id, name, data, state, attempts_made, created_at, started_at, finished_at, failed_reason, tenant, updated_at) VALUES
       ('demo', 'a', 'fail', '{}', 'FAILED', 2, '2030-01-01T10:00:00Z', '2030-01-01T10:00:01Z', '2030-01-01T10:00:02Z', 'bad, "quoted"', 't1', now()),
       ('demo', 'b', 'sleep', '{}', 'COMPLETED', 1, '2030-01-01T11:00:00Z', '2030-01-01T11:00:01Z', '2030-01-01T11:00:05Z', NULL, NULL, now()),
       ('demo', 'c', 'fail', '{}', 'FAILED', 1, '2030-01-01T12:00:00Z', NULL, NULL, '=HYPERLINK("x")', NULL, now()),
       ('demo', 'd', 'sleep', '{}', 'WAITING', 0, '2030-01-01T13:00:00Z', NULL, NULL, NULL, NULL, now()),
       ('demo', 'e', 'sleep', '{}', 'COMPLETED', 1, '2030-01-02T13:00:00Z', NULL, NULL, NULL, NULL, now()),
       ('other', 'f', 'sleep', '{}', 'FAILED', 1, '2030-01-01T11:30:00Z', NULL, NULL, NULL, NULL, now())`,
    );
    await queryRows(
      db.url,
      `INSERT INTO job_history (queue, id, name, data, state, created_at, updated_at)
       SELECT 'bulk', 'j' || lpad(i::text, 5, '0'), 'sleep', '{}', 'COMPLETED', '2031-01-01T00:00:00Z'::timestamptz + (i / 3) * interval '1 second', now()
       FROM generate_series(1, 2500) AS i`,
    );
  });

  it("writes the matching history rows as CSV, newest first, escaped, and reports rows written", async () => {
    const job = await run(report, "csv", {
      fileName: "demo-failures.csv",
      queue: "demo",
      states: ["FAILED", "COMPLETED"],
      createdFrom: "2030-01-01T00:00:00Z",
      createdTo: "2030-01-01T23:59:59Z",
    });
    expect(job.returnvalue).toEqual({ file: "demo-failures.csv", rows: 3 });
    expect(job.progress).toEqual({ rows: 3 });
    expect(fs.readFileSync(path.join(reportDir, "demo-failures.csv"), "utf8")).toBe(
      [
        "queue,id,name,state,attempts_made,created_at,started_at,finished_at,failed_reason,tenant",
        `demo,c,fail,FAILED,1,2030-01-01T12:00:00.000Z,,,"'=HYPERLINK(""x"")",`,
        "demo,b,sleep,COMPLETED,1,2030-01-01T11:00:00.000Z,2030-01-01T11:00:01.000Z,2030-01-01T11:00:05.000Z,,",
        `demo,a,fail,FAILED,2,2030-01-01T10:00:00.000Z,2030-01-01T10:00:01.000Z,2030-01-01T10:00:02.000Z,"bad, ""quoted""",t1`,
        "",
      ].join("\r\n"),
    );
    expect(fs.readdirSync(reportDir).filter((f) => f.endsWith(".partial"))).toEqual([]);
  });

  it("pages through thousands of rows: every row once, in order", async () => {
    const job = await run(report, "csv", { fileName: "bulk.csv", queue: "bulk" });
    expect(job.returnvalue).toEqual({ file: "bulk.csv", rows: 2500 });
    const lines = fs.readFileSync(path.join(reportDir, "bulk.csv"), "utf8").trimEnd().split("\r\n").slice(1);
    const ids = lines.map((l) => l.split(",")[1]);
    expect(new Set(ids).size).toBe(2500);
    expect(ids[0]).toBe("j02500");
    expect(ids.at(-1)).toBe("j00001");
  });

  it("refuses bad filters and file names that would leave REPORT_DIR, naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ fileName: "../escape.csv" }, "fileName: must be a plain file name ending in .csv"],
      [{ fileName: "sub/dir.csv" }, "fileName: must be a plain file name ending in .csv"],
      [{ fileName: ".hidden.csv" }, "fileName: must be a plain file name ending in .csv"],
      [{ fileName: "r.txt" }, "fileName: must be a plain file name ending in .csv"],
      [{ fileName: "r.csv", states: ["NOPE"] }, "states.0: Invalid option"],
      [{ fileName: "r.csv", createdFrom: "yesterday" }, "createdFrom: Invalid ISO datetime"],
      [
        { fileName: "r.csv", createdFrom: "2030-02-01T00:00:00Z", createdTo: "2030-01-01T00:00:00Z" },
        "createdFrom: createdFrom must not be after createdTo",
      ],
    ];
    for (const [data, message] of cases) {
      const job = await run(report, "csv", data, { attempts: 3 });
      expect(job.failedReason).toContain(`Invalid payload: ${message}`);
      expect(job.attemptsMade).toBe(1);
    }
    expect(fs.existsSync(path.join(reportDir, "..", "escape.csv"))).toBe(false);
    expect(() => reportPath(reportDir, "../escape.csv")).toThrow("would leave the report directory");
  });

  it("escapes CSV fields", () => {
    expect([
      csvField("plain"),
      csvField("a,b"),
      csvField('say "hi"'),
      csvField("line\nbreak"),
      csvField("-1+1"),
      csvField(-1),
      csvField(null),
    ]).toEqual(["plain", '"a,b"', '"say ""hi"""', '"line\nbreak"', "'-1+1", "-1", ""]);
  });
});

describe("history of these jobs", () => {
  it("every finished job above has its terminal history row", async () => {
    const finished = [...(await webhook.getJobs(["completed", "failed"])), ...(await report.getJobs(["completed", "failed"]))];
    const wanted = finished.map((j) => `${j.queueName}:${j.id}:${j.returnvalue != null ? "COMPLETED" : "FAILED"}`).sort();
    // The history write follows BullMQ's acknowledgement, so the last one may still be on its way.
    let rows: string[] = [];
    for (let i = 0; i < 100; i++) {
      rows = (
        await queryRows<{ key: string }>(
          db.url,
          "SELECT queue || ':' || id || ':' || state AS key FROM job_history WHERE queue IN ('webhook', 'report')",
        )
      )
        .map((r) => r.key)
        .sort();
      if (rows.length === wanted.length && rows.every((r, k) => r === wanted[k])) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(rows).toEqual(wanted);
  });
});
