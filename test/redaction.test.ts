import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { redact } from "../src/jobs/job-view.ts";
import { gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// Per-field redaction: webhook.deliver's `headers` are secret. The processor sends the real values;
// every place a payload can surface shows "[redacted]": queries, subscriptions, history, audit rows,
// operator actions, schedulers, logs, the CSV report, and dataContains cannot find them.

const ADMIN = "test-admin-key-0123456789";
const SECRET_VALUE = "Bearer very-secret-downstream-token-1";
const SECRET_PATCH = "Bearer very-secret-downstream-token-2";
const SECRET_SCHED = "Bearer very-secret-downstream-token-3";
const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), "redaction-reports-"));
let stack: TestStack;
let server: http.Server;
let base = "";
const received: { path: string; authorization: string | undefined }[] = [];
const apiOutput: string[] = [];

const admin = (r: Request) => {
  r.headers.set("authorization", `Bearer ${ADMIN}`);
  return stack.api.app.fetch(r);
};
const call = async (query: string, variables: Record<string, unknown> = {}) => (await gql(admin, query, variables)).body;

async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function deliver(urlPath: string, jobId: string): Promise<string> {
  const body = await call(
    `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id data } } ... on UserError { message } } }`,
    {
      input: {
        queue: "webhook",
        name: "deliver",
        jobId,
        data: { url: `${base}${urlPath}`, payload: { n: 1 }, headers: { authorization: SECRET_VALUE, "x-plain": "visible" } },
      },
    },
  );
  const job = (body.data as { enqueueJob: { job?: { id: string; data: unknown } } }).enqueueJob.job;
  if (!job) throw new Error(JSON.stringify(body));
  expect(job.data).toEqual({ url: `${base}${urlPath}`, payload: { n: 1 }, headers: "[redacted]", timeoutMs: 10000 });
  return job.id;
}

const stateOf = async (id: string) =>
  ((await call(`{ job(queue: "webhook", id: "${id}") { state } }`)).data as { job: { state: string } | null }).job?.state;
const finished = (id: string) =>
  until(
    () => stateOf(id),
    (s) => s === "COMPLETED" || s === "FAILED",
  );

beforeAll(async () => {
  // The API runs in this process: keep what it logs.
  const write = process.stderr.write.bind(process.stderr);
  vi.spyOn(process.stderr, "write").mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
    apiOutput.push(String(chunk));
    return write(chunk as string, ...(rest as []));
  }) as typeof process.stderr.write);
  server = http.createServer((req, res) => {
    received.push({ path: req.url ?? "", authorization: req.headers.authorization });
    req.resume();
    req.on("end", () => res.writeHead(req.url?.startsWith("/bad") ? 400 : 204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stack = await startTestStack({
    env: {
      ADMIN_API_KEY: ADMIN,
      WEBHOOK_SECRET: "webhook-secret-0123456789",
      WEBHOOK_ALLOW_PRIVATE: "true",
      REPORT_DIR: reportDir,
      LOG_LEVEL: "debug",
      // Real values kept encrypted for replays (job_secret): they must not surface anywhere either.
      PAYLOAD_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 7).toString("base64")}`,
    },
  });
}, 60_000);

afterAll(async () => {
  vi.restoreAllMocks();
  await stack?.stop();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  fs.rmSync(reportDir, { recursive: true, force: true });
});

describe("redaction of secret payload paths", () => {
  it("redact() masks the value at each path and leaves the rest alone", () => {
    const data = { a: { b: "s", c: 1 }, d: "keep", e: null };
    expect(redact(data, ["a.b", "e", "missing.path", "d.x"])).toEqual({ a: { b: "[redacted]", c: 1 }, d: "keep", e: null });
    expect(redact(data, ["a"])).toEqual({ a: "[redacted]", d: "keep", e: null });
    expect(data.a.b).toBe("s");
    expect(redact([1, 2], ["0"])).toEqual([1, 2]);
    expect(redact("text", ["a"])).toBe("text");
  });

  it("shows nothing of the secret anywhere a payload surfaces, while the processor sends the real value", async () => {
    const ok = await deliver("/ok/1", "wh-ok-1");
    const bad = await deliver("/bad/1", "wh-bad-1");
    expect(await finished(ok)).toBe("COMPLETED");
    expect(await finished(bad)).toBe("FAILED");
    expect(received.find((r) => r.path === "/ok/1")?.authorization).toBe(SECRET_VALUE);

    // Queries.
    const job = await call(`{ job(queue: "webhook", id: "${ok}") { data } }`);
    expect(job).toEqual({ data: { job: { data: { url: `${base}/ok/1`, payload: { n: 1 }, headers: "[redacted]", timeoutMs: 10000 } } } });
    const jobs = await call(`{ jobs(filter: { queue: "webhook" }) { edges { node { id data } } } }`);
    const audits = await until(
      () => call(`{ failedJobAudits(queue: "webhook") { edges { node { data } } } }`),
      (b) => (b.data as { failedJobAudits: { edges: unknown[] } }).failedJobAudits.edges.length > 0,
    );
    // dataContains cannot find a job by its secret.
    const found = await call(`query ($c: JSON) { jobs(filter: { dataContains: $c }) { edges { node { id } } } }`, {
      c: { headers: { authorization: SECRET_VALUE } },
    });
    expect(found).toEqual({ data: { jobs: { edges: [] } } });

    // Subscriptions, over SSE and WebSocket.
    const q = `subscription ($id: ID!) { jobEvents(queue: "webhook", id: $id) { type job { data } } }`;
    const sse = await subscribeSse(stack.api.url, q, { id: ok }, { authorization: `Bearer ${ADMIN}` });
    const ws = await subscribeWs(stack.api.url, q, { id: bad }, { authorization: `Bearer ${ADMIN}` });
    await sse.done;
    await ws.done;
    const qe = await subscribeSse(
      stack.api.url,
      `subscription { queueEvents(queue: "webhook", since: "0-0") { type job { data } } }`,
      {},
      {
        authorization: `Bearer ${ADMIN}`,
      },
    );
    await qe.waitFor(4);
    await qe.close();
    expect(JSON.stringify(sse.results)).toContain('"headers":"[redacted]"');

    // Replays: from Redis the real value travels on; a patch's secret is masked in the audit.
    const replay = await call(
      `mutation ($p: JSON) { replayJob(queue: "webhook", id: "${ok}", dataPatch: $p) { ... on JobActionSuccess { job { id data } } ... on UserError { message } } }`,
      { p: { url: `${base}/ok/2`, headers: { authorization: SECRET_PATCH } } },
    );
    const replayed = (replay.data as { replayJob: { job: { id: string; data: { headers: unknown } } } }).replayJob.job;
    expect(replayed.data.headers).toBe("[redacted]");
    expect(await finished(replayed.id)).toBe("COMPLETED");
    expect(received.find((r) => r.path === "/ok/2")?.authorization).toBe(SECRET_PATCH);
    const plain = await call(`mutation { replayJob(queue: "webhook", id: "${ok}") { ... on JobActionSuccess { job { id } } } }`);
    const plainId = (plain.data as { replayJob: { job: { id: string } } }).replayJob.job.id;
    expect(await finished(plainId)).toBe("COMPLETED");
    expect(received.filter((r) => r.path === "/ok/1").map((r) => r.authorization)).toEqual([SECRET_VALUE, SECRET_VALUE]);
    const actions = await call("{ operatorActions { edges { node { action details } } } }");

    // Schedulers.
    const sched = await call(
      `mutation ($d: JSON!) { upsertJobScheduler(input: { queue: "webhook", id: "wh-sched", name: "deliver", data: $d, everyMs: 3600000 }) { ... on JobSchedulerSuccess { scheduler { data } } ... on UserError { message } } }`,
      { d: { url: `${base}/ok/3`, payload: {}, headers: { authorization: SECRET_SCHED } } },
    );
    expect(sched).toEqual({
      data: { upsertJobScheduler: { scheduler: { data: { url: `${base}/ok/3`, payload: {}, headers: "[redacted]", timeoutMs: 10000 } } } },
    });
    const schedulers = await call(`{ queue(name: "webhook") { schedulers { data } } }`);
    await call(`mutation { removeJobScheduler(queue: "webhook", id: "wh-sched") { __typename } }`);

    // The CSV report.
    const report = await call(
      `mutation { enqueueJob(input: { queue: "report", name: "csv", data: { fileName: "all.csv" } }) { ... on EnqueueJobSuccess { job { id } } } }`,
    );
    const reportId = (report.data as { enqueueJob: { job: { id: string } } }).enqueueJob.job.id;
    await until(
      async () => ((await call(`{ job(queue: "report", id: "${reportId}") { state } }`)).data as { job: { state: string } }).job.state,
      (s) => s === "COMPLETED" || s === "FAILED",
    );
    const csv = fs.readFileSync(path.join(reportDir, "all.csv"), "utf8");

    // The tables themselves.
    const rows = await queryRows<{ t: string }>(
      stack.databaseUrl,
      "SELECT data::text AS t FROM job_history UNION ALL SELECT data::text FROM failed_job_audit UNION ALL SELECT coalesce(details::text, '') FROM operator_action UNION ALL SELECT sealed FROM job_secret",
    );

    const everything = JSON.stringify({
      job,
      jobs,
      audits,
      sse: sse.results,
      ws: ws.results,
      qe: qe.results,
      actions,
      sched,
      schedulers,
      csv,
      rows,
      workerLogs: `${stack.worker?.stdout()}${stack.worker?.stderr()}`,
      apiLogs: apiOutput.join(""),
    });
    for (const secret of [SECRET_VALUE, SECRET_PATCH, SECRET_SCHED]) expect(everything).not.toContain(secret.slice(7));
    expect(everything).toContain("[redacted]");
    // What is not secret stays readable.
    expect(JSON.stringify(rows)).toContain('\\"payload\\": {\\"n\\": 1}');
  });
});
