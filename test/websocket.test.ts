import { RedisPubSub } from "graphql-redis-subscriptions";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { createLogger } from "../src/infra/logger.ts";
import { keySpace } from "../src/jobs/bullmq/index.ts";
import { channels as channelNames, compareEventIds, EventChannels, type JobEvent } from "../src/jobs/events/index.ts";
import type { TestApi } from "../src/testing/api.ts";
import { type Collected, enqueueDemo, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// The subscription transport: one Redis subscription per channel shared by a process's
// subscriptions, and the graphql-ws glue's limits, shared timers and error masking.

const log = createLogger("silent");

const event = (id: string, jobId = "1"): JobEvent => ({
  id,
  type: "PROGRESS",
  queue: "demo",
  jobId,
  at: new Date(Number(id.split("-")[0])),
  progress: { id },
  failedReason: null,
  job: null,
});

describe("compareEventIds", () => {
  it("orders stream ids numerically, whatever their length or leading zeros", () => {
    const ids = [
      "0-0",
      "0",
      "1",
      "1-1",
      "01-1",
      "1-02",
      "9-99",
      "10-0",
      "1700000000000-9",
      "1700000000000-10",
      "18446744073709551615-0",
      "18446744073709551616-0",
    ];
    const numeric = (id: string) => {
      const [ms = "0", seq = "0"] = id.split("-");
      return [BigInt(ms), BigInt(seq || "0")] as const;
    };
    for (const a of ids) {
      for (const b of ids) {
        const [am, as] = numeric(a);
        const [bm, bs] = numeric(b);
        const expected = am !== bm ? (am < bm ? -1 : 1) : as !== bs ? (as < bs ? -1 : 1) : 0;
        expect([a, b, compareEventIds(a, b)]).toEqual([a, b, expected]);
      }
    }
  });
});

describe("EventChannels", () => {
  let subscriber: Redis;
  let publisher: Redis;
  let hub: EventChannels;
  const prefix = uniquePrefix();
  const channel = channelNames.job(keySpace(prefix), "demo", "1");
  const subscribers = async () => ((await publisher.pubsub("NUMSUB", channel)) as [string, number])[1];

  beforeAll(() => {
    subscriber = new Redis(testRedisUrl);
    publisher = new Redis(testRedisUrl);
    hub = new EventChannels(new RedisPubSub({ publisher, subscriber, deserializer: (m) => m.toString() }), log);
  });
  afterAll(() => {
    subscriber.disconnect();
    publisher.disconnect();
  });

  it("subscribes to Redis once per channel, hands each event once to every listener, and unsubscribes after the last", async () => {
    const a: string[] = [];
    const b: string[] = [];
    const leaveA = await hub.join(channel, { push: (e) => a.push(e.id) });
    const leaveB = await hub.join(channel, { push: (e) => b.push(e.id) });
    expect(hub.listenerCount(channel)).toBe(2);
    expect(await subscribers()).toBe(1);

    // From pub/sub, from this process's relay, and the pub/sub echo of the relay's event.
    await publisher.publish(channel, JSON.stringify(event("100-0")));
    await until("the published event arrived", () => a.length === 1 && b.length === 1);
    hub.emit(channel, event("100-1"));
    await publisher.publish(channel, JSON.stringify(event("100-1")));
    await publisher.publish(channel, JSON.stringify(event("100-0")));
    await publisher.publish(channel, "not json");
    await publisher.publish(channel, JSON.stringify({ id: "100-2", type: "NOPE" }));
    await publisher.publish(channel, JSON.stringify(event("100-3")));
    await until("the next published event arrived", () => a.length === 3 && b.length === 3);
    expect(a).toEqual(["100-0", "100-1", "100-3"]);
    expect(b).toEqual(a);

    leaveA();
    expect(hub.listenerCount(channel)).toBe(1);
    await publisher.publish(channel, JSON.stringify(event("100-4")));
    await until("the remaining listener got the next event", () => b.length === 4);
    expect(a).toHaveLength(3);
    expect(await subscribers()).toBe(1);

    leaveB();
    leaveB(); // twice: harmless
    expect(hub.listenerCount(channel)).toBe(0);
    await until("Redis no longer has the channel subscribed", async () => (await subscribers()) === 0);
  });

  it("subscribes again when a channel is joined after its last listener left", async () => {
    const got: string[] = [];
    const leave = await hub.join(channel, { push: (e) => got.push(e.id) });
    expect(await subscribers()).toBe(1);
    await publisher.publish(channel, JSON.stringify(event("200-0")));
    await until("the event arrived", () => got.length === 1);
    leave();
    // Left and joined again at once: UNSUBSCRIBE then SUBSCRIBE, in that order, on one connection.
    const again = await hub.join(channel, { push: (e) => got.push(e.id) });
    expect(await subscribers()).toBe(1);
    await publisher.publish(channel, JSON.stringify(event("200-1")));
    await until("the event after rejoining arrived", () => got.length === 2);
    again();
  });

  it("gives a local event only to the listeners of its channel", async () => {
    const other = channelNames.job(keySpace(prefix), "demo", "2");
    const got: string[] = [];
    const leave = await hub.join(channel, { push: (e) => got.push(e.id) });
    hub.emit(other, event("300-0", "2"));
    hub.emit(channel, event("300-1"));
    expect(got).toEqual(["300-1"]);
    leave();
  });

  it("hands tenant-bound listeners only their tenant's events, in order while tenants are being read", async () => {
    // Tenants read slowly for job "slow", at once for the others; "unknown" fails; "gone" has none.
    const reads: string[] = [];
    let releaseSlow: (tenant: string) => void = () => undefined;
    const tenantOf = ({ jobId, job }: JobEvent): string | null | Promise<string | null> => {
      if (job) return job.tenant;
      reads.push(jobId);
      if (jobId === "slow")
        return new Promise<string | null>((resolve) => {
          releaseSlow = resolve;
        });
      if (jobId === "unknown") return Promise.reject(new Error("Redis is down"));
      if (jobId === "gone") return null;
      return jobId.startsWith("a") ? "a" : "b";
    };
    const tenanted = new EventChannels(new RedisPubSub({ publisher, subscriber, deserializer: (m) => m.toString() }), log, null, tenantOf);
    const queueChannel = channelNames.queue(keySpace(prefix), "tenants");
    const got = { a: [] as string[], b: [] as string[], all: [] as string[] };
    const leaveA = await tenanted.join(queueChannel, { tenant: "a", push: (e) => got.a.push(`${e.jobId}:${e.id}`) });
    const leaveB = await tenanted.join(queueChannel, { tenant: "b", push: (e) => got.b.push(`${e.jobId}:${e.id}`) });
    const leaveAll = await tenanted.join(queueChannel, { push: (e) => got.all.push(`${e.jobId}:${e.id}`) });
    expect(tenanted.listenerCount(queueChannel)).toBe(3);

    tenanted.emit(queueChannel, event("400-0", "a1"));
    tenanted.emit(queueChannel, event("400-1", "slow"));
    // Behind the slow read: these wait, in order, even though their tenants are known.
    tenanted.emit(queueChannel, event("400-2", "b1"));
    tenanted.emit(queueChannel, event("400-3", "a1"));
    tenanted.emit(queueChannel, event("400-4", "unknown"));
    tenanted.emit(queueChannel, event("400-5", "gone"));
    // A terminal event carries its job: its tenant is read from there, not looked up.
    tenanted.emit(queueChannel, { ...event("400-6", "c1"), job: { tenant: "b" } as JobEvent["job"] });
    expect(got.a).toEqual(["a1:400-0"]);
    expect(got.b).toEqual([]);
    releaseSlow("b");
    await until("the waiting events went out", () => got.all.length === 7);
    expect(got.a).toEqual(["a1:400-0", "a1:400-3"]);
    expect(got.b).toEqual(["slow:400-1", "b1:400-2", "c1:400-6"]);
    // The unbound listener gets everything, in order; failed and tenantless reads reach no bound listener.
    expect(got.all).toEqual(["a1:400-0", "slow:400-1", "b1:400-2", "a1:400-3", "unknown:400-4", "gone:400-5", "c1:400-6"]);
    expect(reads).not.toContain("c1");

    // With only unbound listeners left, no tenant is read at all.
    leaveA();
    leaveB();
    expect(tenanted.listenerCount(queueChannel)).toBe(1);
    reads.length = 0;
    tenanted.emit(queueChannel, event("400-7", "a2"));
    expect(got.all.at(-1)).toBe("a2:400-7");
    expect(reads).toEqual([]);
    leaveAll();
  });
});

describe("graphql-ws transport", () => {
  let stack: TestStack;
  let prefix: string;
  let api: TestApi;
  const open: Collected<unknown>[] = [];
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    stack = await startTestStack({
      worker: false,
      env: {
        // The masking test's errors are logged as errors: expected, not worth printing.
        LOG_LEVEL: "silent",
        WS_MAX_SUBSCRIPTIONS: "2",
        WS_KEEPALIVE_MS: "300",
        WS_INIT_TIMEOUT_MS: "300",
      },
    });
    ({ api, prefix } = stack);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(open.splice(0).map((s) => s.close()));
    for (const s of sockets.splice(0)) s.terminate();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** A raw graphql-transport-ws socket; resolves with it once open. */
  async function rawSocket(
    options: WebSocket.ClientOptions = {},
  ): Promise<{ ws: WebSocket; messages: unknown[]; closed: Promise<number> }> {
    const ws = new WebSocket(api.url.replace(/^http/, "ws"), "graphql-transport-ws", options);
    sockets.push(ws);
    const messages: unknown[] = [];
    ws.on("message", (m) => messages.push(JSON.parse(String(m))));
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    return { ws, messages, closed };
  }

  it("closes a connection that runs one subscription more than WS_MAX_SUBSCRIPTIONS with 4029", async () => {
    const id = await enqueueDemo(api.url, "sleep", { steps: 1, stepMs: 60_000 });
    const { ws, messages, closed } = await rawSocket();
    ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    await until("connection_ack", () => messages.length === 1);
    const subscribe = (n: number) =>
      ws.send(
        JSON.stringify({
          id: String(n),
          type: "subscribe",
          payload: { query: `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`, variables: { id } },
        }),
      );
    subscribe(1);
    subscribe(2);
    await until("both SNAPSHOTs", () => messages.length === 3);
    // Completing one frees its place.
    ws.send(JSON.stringify({ id: "1", type: "complete" }));
    subscribe(3);
    await until("the third SNAPSHOT", () => messages.length === 4);
    subscribe(4);
    expect(await closed).toBe(4029);
  });

  it("speaks graphql-transport-ws as graphql-ws does: pong, 4401 before the ack, 4409, 4429, 4400, query over the socket", async () => {
    // A subscribe before connection_init: 4401.
    const early = await rawSocket();
    early.ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: "{ __typename }" } }));
    expect(await early.closed).toBe(4401);
    // Not JSON, or not a protocol message: 4400.
    const garbled = await rawSocket();
    garbled.ws.send("{not json");
    expect(await garbled.closed).toBe(4400);

    const { ws, messages, closed } = await rawSocket();
    ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    await until("connection_ack", () => messages.length >= 1);
    expect(messages[0]).toEqual({ type: "connection_ack" });
    ws.send(JSON.stringify({ type: "ping", payload: { n: 1 } }));
    ws.send(JSON.stringify({ type: "ping" }));
    await until("two pongs", () => messages.length >= 3);
    expect(messages.slice(1)).toEqual([{ type: "pong", payload: { n: 1 } }, { type: "pong" }]);
    // A query runs once: next, then complete.
    ws.send(JSON.stringify({ id: "q", type: "subscribe", payload: { query: "{ __typename }" } }));
    await until("the query's next and complete", () => messages.length >= 5);
    expect(messages.slice(3)).toEqual([
      { id: "q", type: "next", payload: { data: { __typename: "Query" } } },
      { id: "q", type: "complete" },
    ]);
    // A subscription refused at its start: its errors, and no complete.
    ws.send(
      JSON.stringify({
        id: "gone",
        type: "subscribe",
        payload: { query: `subscription { jobEvents(queue: "demo", id: "no-such-job") { type } }` },
      }),
    );
    await until("the refusal and its complete", () => messages.length >= 7);
    expect(messages[5]).toMatchObject({
      id: "gone",
      type: "next",
      payload: { errors: [expect.objectContaining({ message: expect.any(String) })] },
    });
    expect(messages[6]).toEqual({ id: "gone", type: "complete" });
    // Two running operations under one id: 4409.
    const id = await enqueueDemo(api.url, "sleep", { steps: 1, stepMs: 60_000 });
    const subscribe = JSON.stringify({
      id: "same",
      type: "subscribe",
      payload: { query: `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`, variables: { id } },
    });
    ws.send(subscribe);
    ws.send(subscribe);
    expect(await closed).toBe(4409);
    // A second connection_init: 4429.
    const twice = await rawSocket();
    twice.ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    twice.ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    expect(await twice.closed).toBe(4429);
  });

  it("closes a connection that sends no connection_init in WS_INIT_TIMEOUT_MS with 4408", async () => {
    const { closed } = await rawSocket();
    expect(await closed).toBe(4408);
  });

  it("pings every WS_KEEPALIVE_MS, keeps a client that answers and drops one that doesn't", async () => {
    const answering = await rawSocket();
    const silent = await rawSocket({ autoPong: false });
    for (const { ws } of [answering, silent]) ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    let pings = 0;
    answering.ws.on("ping", () => pings++);
    const started = Date.now();
    // The silent one: terminated (no close frame: 1006) at most two intervals after the first ping.
    expect(await silent.closed).toBe(1006);
    expect(Date.now() - started).toBeLessThan(2_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(answering.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("leaves the job's channel when the client completes the subscription or disconnects", async () => {
    const id = await enqueueDemo(api.url, "sleep", { steps: 1, stepMs: 60_000 });
    const channel = channelNames.job(keySpace(prefix), "demo", id);
    const query = `subscription ($id: ID!) { jobEvents(queue: "demo", id: $id) { type } }`;
    const first = await subscribeWs(api.url, query, { id });
    const second = await subscribeWs(api.url, query, { id });
    await Promise.all([first.waitFor(1), second.waitFor(1)]);
    expect(api.runtime.channels.listenerCount(channel)).toBe(2);
    await first.close();
    await until("one listener left", () => api.runtime.channels.listenerCount(channel) === 1);
    const { ws } = await rawSocket();
    ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
    await new Promise((r) => setTimeout(r, 100));
    ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables: { id } } }));
    await until("the raw client subscribed", () => api.runtime.channels.listenerCount(channel) === 2);
    ws.terminate();
    await second.close();
    await until("no listener left", () => api.runtime.channels.listenerCount(channel) === 0);
  });

  it.each([
    ["when it starts", "start"],
    ["in the middle of the stream", "stream"],
  ])("masks an unexpected error %s, over WebSocket as over SSE", async (_what, when) => {
    const secret = "connect ECONNREFUSED 10.1.2.3:6379 (internal detail)";
    vi.spyOn(api.runtime.feeds, "queue").mockImplementation(async () => {
      if (when === "start") throw new Error(secret);
      return (async function* () {
        yield event("1-0");
        throw new Error(secret);
      })();
    });
    const query = `subscription { queueEvents(queue: "demo") { id } }`;
    for (const subscribe of [subscribeWs, subscribeSse]) {
      const sub = await subscribe(api.url, query);
      open.push(sub);
      await sub.done.catch(() => undefined);
      const errors = sub.results.flatMap((r) => r.errors ?? []);
      expect(sub.results.filter((r) => r.data).length).toBe(when === "stream" ? 1 : 0);
      expect(errors).toEqual([expect.objectContaining({ message: "Unexpected error." })]);
      expect(JSON.stringify(sub.results)).not.toContain("ECONNREFUSED");
    }
  });
});
