// The pino logger: JSON lines with the fields the rest of the code passes, secrets redacted, request
// and job context on the lines written on their behalf; pretty lines under `npm run dev`.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withLogContext } from "../src/infra/log-context.ts";
import { createLogger, type LogLevel } from "../src/infra/logger.ts";
import { withRequestId } from "../src/server/request-id.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { killAll, startApi } from "../src/testing/processes.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

/** A logger whose lines are collected, parsed. */
function capture(level: LogLevel = "debug", base: Record<string, unknown> = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger(level, base, { destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { log, lines };
}

describe("log lines", () => {
  it("are JSON with level, time, msg, the base fields and the given fields; errors as objects", () => {
    const { log, lines } = capture("debug", { process: "api" });
    const err = new Error("boom");
    log.child({ workerId: "w1" }).warn("something failed", { queue: "demo", err });
    expect(lines).toHaveLength(1);
    const line = lines[0] as Record<string, unknown>;
    expect(line).toMatchObject({ level: "warn", msg: "something failed", process: "api", workerId: "w1", queue: "demo" });
    expect(new Date(String(line.time)).toISOString()).toBe(line.time);
    expect(line.err).toEqual({ name: "Error", message: "boom", stack: err.stack });
  });

  it("respect the level; silent writes nothing", () => {
    const info = capture("info");
    info.log.debug("hidden");
    info.log.info("shown");
    expect(info.lines.map((l) => l.msg)).toEqual(["shown"]);
    const silent = capture("silent");
    silent.log.error("nothing");
    expect(silent.lines).toEqual([]);
  });

  it("redact secrets: named fields, URL passwords and bearer credentials, in messages, fields and errors", () => {
    const { log, lines } = capture();
    log.info("connecting to redis://:s3cret-pass@redis:6379 with Bearer abc.def-123", {
      authorization: "Bearer abc.def-123",
      headers: { authorization: "Bearer xyz", accept: "*/*" },
      config: { password: "p4ss", webhookSecret: "whsec", port: 1 },
      databaseUrl: "postgresql://postgres:pg-pass@db:5432/jobs",
      err: new Error("cannot reach postgresql://u:err-pass@db/jobs"),
    });
    const text = JSON.stringify(lines);
    for (const secret of ["s3cret-pass", "abc.def-123", "xyz", "p4ss", "whsec", "pg-pass", "err-pass"]) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      msg: "connecting to redis://:[redacted]@redis:6379 with Bearer [redacted]",
      authorization: "[redacted]",
      headers: { authorization: "[redacted]", accept: "*/*" },
      config: { password: "[redacted]", webhookSecret: "[redacted]", port: 1 },
      databaseUrl: "postgresql://postgres:[redacted]@db:5432/jobs",
    });
  });

  it("carry the request's or job's fields while it runs, and only then", async () => {
    const { log, lines } = capture();
    await withLogContext({ queue: "demo", jobId: "42" }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      log.info("inside");
    });
    log.info("outside");
    expect(lines.map((l) => [l.msg, l.queue, l.jobId])).toEqual([
      ["inside", "demo", "42"],
      ["outside", undefined, undefined],
    ]);
  });
});

describe("request ids", () => {
  const { log, lines } = capture();
  const server = http.createServer(
    withRequestId((_req, res) => {
      setTimeout(() => {
        log.info("handled");
        res.end("ok");
      }, 1);
    }),
  );
  let base = "";
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  it("are kept from a plain X-Request-Id, answered in the header and on the request's log lines", async () => {
    const res = await fetch(base, { headers: { "x-request-id": "proxy-7f3a.1" } });
    expect(res.headers.get("x-request-id")).toBe("proxy-7f3a.1");
    expect(lines.at(-1)).toMatchObject({ msg: "handled", requestId: "proxy-7f3a.1" });
  });

  it("are made up when the caller sends none, or something long, odd or with several values", async () => {
    for (const sent of [undefined, "x".repeat(10_000), "a b", "<script>", "é", "", "id,other"]) {
      const res = await fetch(base, { headers: sent === undefined ? {} : { "x-request-id": sent } });
      const id = res.headers.get("x-request-id") ?? "";
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(lines.at(-1)).toMatchObject({ msg: "handled", requestId: id });
    }
  });
});

describe("the API process", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const prefix = uniquePrefix();
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    expect(await killAll()).toEqual([]);
    await deletePrefix(prefix);
    await db?.drop();
  });

  it("logs JSON with the request id of each GraphQL request on stderr", async () => {
    const api = await startApi({ DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "debug" });
    const url = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "";
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "req-from-test" },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    expect(res.headers.get("x-request-id")).toBe("req-from-test");
    expect(await api.stop("SIGTERM")).toBe(0);
    const json = api
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json.some((l) => l.requestId === "req-from-test" && l.process === "api")).toBe(true);
    expect(json.find((l) => l.msg === "stopped")).toMatchObject({ level: "info", process: "api" });
  });

  it("logs pretty lines with LOG_FORMAT=pretty (what npm run dev sets)", async () => {
    const api = await startApi({
      DATABASE_URL: db.url,
      REDIS_URL: testRedisUrl,
      QUEUE_PREFIX: prefix,
      LOG_LEVEL: "info",
      LOG_FORMAT: "pretty",
    });
    expect(await api.stop("SIGTERM")).toBe(0);
    expect(api.stderr()).toMatch(/\[\d\d:\d\d:\d\d\.\d{3}\] INFO: stopped \{"process":"api"\}/);
    expect(api.stderr()).not.toContain('{"level"');
  });
});
