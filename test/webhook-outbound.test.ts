// webhook.deliver's outbound policy (issue 14, point 3): no loopback, private, link-local or metadata
// address unless allowed, checked on the address connected to; no redirects; failures that do not
// tell open ports from closed ones. Every listener here is on loopback.
import { createHmac } from "node:crypto";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { type Job, Queue, QueueEvents } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/infra/logger.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { OutboundRefused, postOutbound, refusedAddressReason } from "../workers/outbound.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../workers/worker-runtime.ts";

const SECRET = "outbound-webhook-secret-0123456789";
const prefix = uniquePrefix();
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let runtime: WorkerRuntime;
let webhook: Queue;
let events: QueueEvents;
const hits: { path: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
let server: http.Server;
let port: number;
/** A port nothing listens on (bound, then closed). */
let closedPort: number;
/** A listener that accepts and resets every connection without an HTTP answer. */
let resetter: net.Server;
let resetPort: number;

const DENY = { allowPrivate: false, allowedHosts: [] as string[] };
const ALLOW = { allowPrivate: true, allowedHosts: [] as string[] };
const signal = () => AbortSignal.timeout(5_000);

beforeAll(async () => {
  db = await createTestDatabase();
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      hits.push({ path: req.url ?? "/", headers: req.headers, body });
      if (req.url === "/redirect") res.writeHead(302, { location: `http://127.0.0.1:${port}/elsewhere` }).end();
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  resetter = net.createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve) => resetter.listen(0, "127.0.0.1", resolve));
  resetPort = (resetter.address() as AddressInfo).port;

  // A worker with the default policy (nothing private allowed).
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testRedisUrl,
    QUEUE_PREFIX: prefix,
    WORKER_QUEUES: "webhook",
    WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: "silent",
  });
  runtime = await createWorkerRuntime(config, createLogger("silent"));
  webhook = new Queue("webhook", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "webhook") });
  events = new QueueEvents("webhook", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "webhook") });
  await events.waitUntilReady();
});

afterAll(async () => {
  await events?.close();
  await webhook?.close();
  await runtime?.stop();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await new Promise<void>((resolve) => (resetter ? resetter.close(() => resolve()) : resolve()));
  await deletePrefix(prefix);
  await db?.drop();
});

async function deliver(data: unknown): Promise<Job> {
  const job = await webhook.add("deliver", data, { attempts: 5, backoff: { type: "fixed", delay: 10 } });
  await job.waitUntilFinished(events).catch(() => undefined);
  const done = await webhook.getJob(String(job.id));
  if (!done) throw new Error("job vanished");
  return done;
}

describe("address classes", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.1.2", "loopback"],
    ["::1", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["0:0:0:0:0:ffff:a9fe:a9fe", "link-local (cloud metadata)"],
    ["10.1.2.3", "private"],
    ["172.20.0.1", "private"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "link-local (cloud metadata)"],
    ["100.100.100.200", "carrier-grade NAT"],
    ["fd00:ec2::254", "unique-local"],
    ["fe80::1", "link-local"],
    ["0.0.0.0", "'this' network"],
    ["224.0.0.1", "multicast"],
  ])("refuses %s (%s)", (address, why) => {
    expect(refusedAddressReason(address)).toBe(why);
  });

  it.each(["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"])("allows the public address %s", (address) => {
    expect(refusedAddressReason(address)).toBeNull();
  });
});

describe("postOutbound", () => {
  it.each([
    [`http://127.0.0.1:PORT/x`, "127.0.0.1: loopback"],
    [`http://[::1]:PORT/x`, "::1: loopback"],
    [`http://[::ffff:127.0.0.1]:PORT/x`, "loopback"],
    ["http://169.254.169.254/latest/meta-data/", "169.254.169.254: link-local (cloud metadata)"],
    ["http://10.0.0.1/x", "10.0.0.1: private"],
  ])("refuses %s before connecting, naming the address and why", async (url, named) => {
    const before = hits.length;
    const attempt = postOutbound(url.replace("PORT", String(port)), "{}", {}, DENY, signal());
    await expect(attempt).rejects.toBeInstanceOf(OutboundRefused);
    await expect(attempt).rejects.toThrow(named);
    expect(hits.length).toBe(before);
  });

  it("refuses a host name that resolves to loopback (checked on the resolved address)", async () => {
    const before = hits.length;
    const attempt = postOutbound(`http://localhost:${port}/x`, "{}", {}, DENY, signal());
    await expect(attempt).rejects.toBeInstanceOf(OutboundRefused);
    await expect(attempt).rejects.toThrow(/localhost: it resolves only to addresses webhooks may not reach: .*loopback/);
    expect(hits.length).toBe(before);
  });

  it("reaches loopback with WEBHOOK_ALLOW_PRIVATE, and a host in WEBHOOK_ALLOWED_HOSTS", async () => {
    expect(await postOutbound(`http://127.0.0.1:${port}/allowed`, "{}", {}, ALLOW, signal())).toEqual({ status: 204 });
    expect(
      await postOutbound(`http://localhost:${port}/allowed-host`, "{}", {}, { allowPrivate: false, allowedHosts: ["localhost"] }, signal()),
    ).toEqual({
      status: 204,
    });
    expect(hits.map((h) => h.path)).toEqual(expect.arrayContaining(["/allowed", "/allowed-host"]));
  });

  it("does not follow a redirect", async () => {
    expect(await postOutbound(`http://127.0.0.1:${port}/redirect`, "{}", {}, ALLOW, signal())).toEqual({ status: 302 });
    expect(hits.some((h) => h.path === "/elsewhere")).toBe(false);
  });

  it("fails alike on a closed port and on a listener that resets: no open/closed oracle in the text", async () => {
    const closed = await postOutbound(`http://127.0.0.1:${closedPort}/x`, "{}", {}, ALLOW, signal()).catch((e: Error) => e);
    const reset = await postOutbound(`http://127.0.0.1:${resetPort}/x`, "{}", {}, ALLOW, signal()).catch((e: Error) => e);
    expect(closed).toBeInstanceOf(Error);
    expect(reset).toBeInstanceOf(Error);
    const shape = (e: unknown) => String((e as Error).message).replace(/:\d+/, ":PORT");
    expect(shape(closed)).toBe("No HTTP answer from http://127.0.0.1:PORT");
    expect(shape(reset)).toBe(shape(closed));
  });
});

describe("webhook.deliver under the default policy", () => {
  it("fails a loopback URL for good (no retries), naming the refused address", async () => {
    const before = hits.length;
    const job = await deliver({ url: `http://127.0.0.1:${port}/hook`, payload: { a: 1 }, headers: { authorization: "Bearer x" } });
    expect(await job.getState()).toBe("failed");
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toContain("Refused to connect to 127.0.0.1: loopback address");
    expect(hits.length).toBe(before);
  });

  it("fails the metadata address for good", async () => {
    const job = await deliver({ url: "http://169.254.169.254/latest/meta-data/iam", payload: {} });
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toContain("169.254.169.254: link-local (cloud metadata)");
  });
});

describe("signatures", () => {
  it("cover `<timestamp>.<body>` with the timestamp in X-Webhook-Timestamp", async () => {
    const { default: processor } = await import("../workers/processors/webhook-deliver.ts");
    const config = loadConfig({ WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" });
    const ctx = {
      config,
      signal: new AbortController().signal,
      job: { queueName: "webhook", id: "sig-1" },
      idempotencyKey: "webhook:sig-1",
      attempt: 1,
    };
    await processor.run({ url: `http://127.0.0.1:${port}/signed`, payload: { n: 1 }, timeoutMs: 5_000 }, ctx as never);
    const got = hits.find((h) => h.path === "/signed");
    const timestamp = String(got?.headers["x-webhook-timestamp"]);
    expect(timestamp).toMatch(/^\d{10}$/);
    const expected = `sha256=${createHmac("sha256", SECRET).update(`${timestamp}.${got?.body}`).digest("hex")}`;
    expect(got?.headers["x-signature-256"]).toBe(expected);
    // The body alone no longer verifies: a captured delivery cannot be re-dated.
    expect(got?.headers["x-signature-256"]).not.toBe(`sha256=${createHmac("sha256", SECRET).update(String(got?.body)).digest("hex")}`);
  });
});
