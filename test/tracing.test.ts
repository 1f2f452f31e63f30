// OpenTelemetry traces across real processes: the API and a worker export OTLP/HTTP (JSON) to a
// small receiver this test runs on loopback; one trace links the enqueue request, BullMQ's add and
// the processor's run. With OTEL_EXPORTER_OTLP_ENDPOINT unset, nothing connects to any exporter.
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseOtlpHeaders } from "../src/config.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { killAll, type RunningProcess, startApi, startProcess, startWorker } from "../src/testing/processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

/** One span as OTLP/JSON carries it, with its service and attributes flattened. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: {
      spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: OtlpAttribute[] }[];
    }[];
  }[];
}

const attributeValue = (v: OtlpValue) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue));
const flatten = (attrs: OtlpAttribute[] = []) => Object.fromEntries(attrs.map((a) => [a.key, attributeValue(a.value)]));

/** A minimal OTLP/HTTP receiver: takes JSON exports on /v1/traces, counts every connection. */
async function startReceiver() {
  const spans: ReceivedSpan[] = [];
  const requests: { path: string; headers: http.IncomingHttpHeaders }[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      requests.push({ path: req.url ?? "", headers: req.headers });
      const parsed = JSON.parse(body) as OtlpExport;
      for (const rs of parsed.resourceSpans ?? []) {
        const service = String(flatten(rs.resource?.attributes)["service.name"]);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              service,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? "",
              name: s.name,
              kind: s.kind,
              attributes: flatten(s.attributes),
            });
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  server.on("connection", () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    spans,
    requests,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const ENQUEUE = `mutation {
  enqueueJob(input: { queue: "demo", name: "noop", data: {} }) {
    __typename
    ... on EnqueueJobSuccess { job { id } }
  }
}`;

/** Enqueues a demo.noop job over HTTP (with `traceparent` when given); returns its id. */
async function enqueue(apiUrl: string, traceparent?: string): Promise<string> {
  const response = await fetch(apiUrl, {
    method: "POST",
    headers: { "content-type": "application/json", ...(traceparent ? { traceparent } : {}) },
    body: JSON.stringify({ query: ENQUEUE }),
  });
  const body = (await response.json()) as { data?: { enqueueJob?: { job?: { id: string } } } };
  const id = body.data?.enqueueJob?.job?.id;
  if (!id) throw new Error(`enqueue failed: ${JSON.stringify(body)}`);
  return id;
}

const apiUrlOf = (api: RunningProcess) => /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = uniquePrefix();
let env: Record<string, string>;
let queue: Queue;

beforeAll(async () => {
  db = await createTestDatabase();
  env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "warn" };
  queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
});

afterEach(async () => {
  expect(await killAll()).toEqual([]);
});

afterAll(async () => {
  await queue?.close();
  await deletePrefix(prefix);
  await db?.drop();
});

const completed = (id: string) =>
  until(
    `job ${id} completed`,
    () => queue.getJobState(id),
    (s) => s === "completed",
  );

describe("traces over OTLP", () => {
  it("one trace links the enqueue request, Queue.add and the processor's run, across the API and the worker", async () => {
    const receiver = await startReceiver();
    try {
      const otel = {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20collector-token,x-tenant=t1",
      };
      const api = await startApi({ ...env, ...otel });
      const worker = await startWorker({ ...env, ...otel, OTEL_SERVICE_NAME: "jobs-worker-under-test" });
      // The caller's trace is continued: every span below carries this trace id.
      const traceId = randomBytes(16).toString("hex");
      const callerSpan = randomBytes(8).toString("hex");
      const id = await enqueue(apiUrlOf(api), `00-${traceId}-${callerSpan}-01`);
      // A second job without a traceparent starts a trace of its own, still linked end to end.
      const id2 = await enqueue(apiUrlOf(api));
      await completed(id);
      await completed(id2);
      // Graceful shutdown flushes what is still queued.
      expect(await worker.stop("SIGTERM")).toBe(0);
      expect(await api.stop("SIGTERM")).toBe(0);

      const trace = receiver.spans.filter((s) => s.traceId === traceId);
      const request = trace.find((s) => s.service === "job-control-api" && s.kind === 2 /* SERVER */);
      const add = trace.find((s) => s.name === "add demo.noop");
      const run = trace.find((s) => s.name === "process demo");
      expect(request).toMatchObject({
        name: "POST /graphql",
        parentSpanId: callerSpan,
        attributes: { "http.request.method": "POST", "http.response.status_code": 200, "graphql.operation.type": "mutation" },
      });
      expect(add).toMatchObject({
        service: "job-control-api",
        kind: 4 /* PRODUCER */,
        parentSpanId: request?.spanId,
        attributes: { "bullmq.queue.name": "demo", "bullmq.job.id": id, "bullmq.job.name": "noop" },
      });
      expect(run).toMatchObject({
        service: "jobs-worker-under-test",
        kind: 5 /* CONSUMER */,
        parentSpanId: add?.spanId,
        attributes: { "bullmq.queue.name": "demo", "bullmq.job.id": id, "bullmq.job.name": "noop" },
      });

      const add2 = receiver.spans.find((s) => s.name === "add demo.noop" && s.attributes["bullmq.job.id"] === id2);
      const run2 = receiver.spans.find((s) => s.name === "process demo" && s.attributes["bullmq.job.id"] === id2);
      const request2 = receiver.spans.find((s) => s.spanId === add2?.parentSpanId);
      expect(add2?.traceId).not.toBe(traceId);
      expect(request2).toMatchObject({ name: "POST /graphql", parentSpanId: "", traceId: add2?.traceId });
      expect(run2).toMatchObject({ traceId: add2?.traceId, parentSpanId: add2?.spanId });

      // OTLP/HTTP to <endpoint>/v1/traces, with the configured headers.
      expect(receiver.requests.length).toBeGreaterThan(0);
      for (const r of receiver.requests) {
        expect(r.path).toBe("/v1/traces");
        expect(r.headers).toMatchObject({ authorization: "Bearer collector-token", "x-tenant": "t1" });
      }
      // Probes are not traced.
      expect(receiver.spans.some((s) => s.name.includes("/healthz") || s.name.includes("/readyz"))).toBe(false);
    } finally {
      await receiver.close();
    }
  });

  it("with OTEL_EXPORTER_OTLP_ENDPOINT unset (or OTEL_SDK_DISABLED=true) no exporter connection is attempted", async () => {
    const receiver = await startReceiver();
    try {
      // A trap: OpenTelemetry's exporter would send here if any exporter were built.
      const trap = {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
        OTEL_SERVICE_NAME: "should-not-export",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20unused",
      };
      const api = await startApi({ ...env, ...trap });
      const worker = await startWorker({ ...env, ...trap, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SDK_DISABLED: "true" });
      const ids = [await enqueue(apiUrlOf(api)), await enqueue(apiUrlOf(api))];
      for (const id of ids) await completed(id);
      // No telemetry option reached BullMQ: the job carries no trace context.
      expect((await queue.getJob(ids[0] as string))?.opts.telemetry).toBeUndefined();
      expect(await worker.stop("SIGTERM")).toBe(0);
      expect(await api.stop("SIGTERM")).toBe(0);
      expect(receiver.connections()).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it("an unreachable collector does not hold up enqueue, job processing or shutdown; the failure is logged", async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const api = await startApi({ ...env, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint });
    const worker = await startWorker({ ...env, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint });
    const ids: string[] = [];
    for (let n = 0; n < 20; n++) ids.push(await enqueue(apiUrlOf(api)));
    for (const id of ids) await completed(id);
    // The job carried its trace context all the same.
    expect((await queue.getJob(ids[0] as string))?.opts.telemetry?.metadata).toContain("traceparent");
    await until(
      "the worker logs the failed export",
      () => worker.stderr(),
      (s) => s.includes("trace export failed"),
    );
    expect(await worker.stop("SIGTERM")).toBe(0);
    expect(await api.stop("SIGTERM")).toBe(0);
  });

  it("a malformed OTEL_EXPORTER_OTLP_ENDPOINT stops the API and the worker at start with a config error", async () => {
    // Both at once (each loads its modules first, which is slow on a busy machine).
    const bad = { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" };
    const started = await Promise.all([
      startProcess("src/server/main.ts", { PORT: "0", ...bad }, null),
      startProcess("workers/main.ts", { WORKER_PORT: "0", ...bad }, null),
    ]);
    for (const p of started) {
      expect(await p.exited).toBe(1);
      expect(p.stderr()).toContain(
        'config error: OTEL_EXPORTER_OTLP_ENDPOINT: OTEL_EXPORTER_OTLP_ENDPOINT must be a URL starting with http:// or https:// (got "collector:4318")',
      );
    }
  });
});

describe("tracing configuration", () => {
  const problems = (vars: Record<string, string>) => {
    try {
      loadConfig(vars);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };

  it("is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set, and OTEL_SDK_DISABLED=true turns it off", () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_SERVICE_NAME: "x", OTEL_EXPORTER_OTLP_HEADERS: "a=b" }).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }).tracing).toBeUndefined();
    expect(
      loadConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: "https://c:4318/otlp",
        OTEL_EXPORTER_OTLP_HEADERS: "Authorization=Basic%20YTpi , x-scope=a%3Db",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
      }).tracing,
    ).toEqual({
      endpoint: "https://c:4318/otlp",
      headers: { authorization: "Basic YTpi", "x-scope": "a=b" },
      serviceName: undefined,
      sampleRatio: 0.25,
    });
  });

  it("refuses hostile values, never echoing the headers (they carry credentials)", () => {
    expect(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://c:21" })[0]).toMatch(/^OTEL_EXPORTER_OTLP_ENDPOINT: .*http:\/\/ or https:\/\//);
    expect(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/?x=1" })[0]).toMatch(/without \? or #/);
    expect(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://${"a".repeat(70_000)}` })[0]).toMatch(/at most 2048 characters/);
    expect(problems({ OTEL_TRACES_SAMPLER_ARG: "2" })).toEqual([
      'OTEL_TRACES_SAMPLER_ARG: OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 (got "2")',
    ]);
    expect(problems({ OTEL_SERVICE_NAME: "s".repeat(300) })[0]).toMatch(/at most 255/);
    for (const bad of [
      "Bearer secret-token-value",
      "authorization=%ZZsecret-token-value",
      "bad name=secret-token-value",
      "a=secret-token-value%0d%0aX: y",
    ]) {
      const [line, ...more] = problems({ OTEL_EXPORTER_OTLP_HEADERS: bad });
      expect(more).toEqual([]);
      expect(line).toBe(
        "OTEL_EXPORTER_OTLP_HEADERS: OTEL_EXPORTER_OTLP_HEADERS must be comma-separated key=value pairs, values URL-encoded",
      );
    }
    expect(parseOtlpHeaders("")).toEqual({});
  });
});
