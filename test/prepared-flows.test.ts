import type { Socket } from "node:net";
import type { FlowJob, JobNode } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PreparedFlows } from "../src/jobs/bullmq/index.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// A flow's transaction built, encoded and held in a corked socket while its gate is pending (the
// commit of its history rows, in the API), sent when the gate resolves. The guarantee under test:
// nothing of the flow reaches Redis unless the gate resolved, whatever happens to the connection.

const redis = new Redis(testRedisUrl);
const prefixes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
  redis.disconnect();
});

/**
 * A PreparedFlows on a connection of its own (named, so the test finds its connections in CLIENT
 * LIST), and trees of its queue with ids of their own. `sockets`: the sockets of the connections it
 * made (its connections are duplicates of the base).
 */
function setup(): {
  flows: PreparedFlows;
  base: Redis;
  name: string;
  sockets: Socket[];
  tree: (label: string, children: number) => FlowJob;
} {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const name = `prepared-${prefix.replace(/[^a-z0-9]/gi, "")}`;
  const base = new Redis(testRedisUrl, { connectionName: name });
  const sockets: Socket[] = [];
  const duplicate = base.duplicate.bind(base);
  (base as { duplicate: typeof base.duplicate }).duplicate = (...args) => {
    const connection = duplicate(...args);
    connection.on("ready", () => sockets.push(connection.stream as Socket));
    return connection;
  };
  const flows = new PreparedFlows(base, prefix);
  cleanups.push(async () => {
    await flows.close();
    base.disconnect();
  });
  const queuePrefix = bullPrefix(prefix, "q");
  let next = 1;
  const tree = (label: string, children: number): FlowJob => {
    const id = () => String(next++);
    return {
      name: "parent",
      queueName: "q",
      prefix: queuePrefix,
      data: { label },
      opts: { jobId: id() },
      children: Array.from({ length: children }, () => ({
        name: "child",
        queueName: "q",
        prefix: queuePrefix,
        data: {},
        opts: { jobId: id() },
      })),
    };
  };
  return { flows, base, name, sockets, tree };
}

/** How many of the tree's jobs Redis holds (their job hashes). */
async function jobsOf(tree: FlowJob): Promise<number> {
  let jobs = 0;
  for (const node of [tree, ...(tree.children ?? [])]) jobs += await redis.exists(`${node.prefix}:q:${node.opts?.jobId}`);
  return jobs;
}

const OPTS = { queuesOptions: {} };

/**
 * The add, once a connection is free and warm (a new PreparedFlows falls back while it connects).
 * In an object: a promise returned from an async function would be adopted, i.e. waited for.
 */
async function addWhenReady(flows: PreparedFlows, tree: FlowJob, gate: Promise<unknown>): Promise<{ sent: Promise<JobNode> }> {
  const { sent } = await until(
    "a prepared connection",
    () => ({ sent: flows.add(tree, OPTS, gate) }),
    ({ sent }) => sent !== null,
  );
  return { sent: sent as Promise<JobNode> };
}

/** A promise and its resolve / reject. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** The ids of this test's prepared connections, as Redis lists them (not the base connection). */
async function preparedClientIds(name: string, base: Redis): Promise<string[]> {
  const own = String(await base.client("ID"));
  const list = String(await redis.client("LIST"));
  return list
    .split("\n")
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /id=(\d+)/.exec(line)?.[1] as string)
    .filter((id) => id !== own);
}

describe("PreparedFlows", () => {
  it("holds the encoded transaction until the gate resolves, then sends it: the whole tree arrives", async () => {
    const { flows, tree } = setup();
    const flow = tree("held", 20);
    const gate = deferred();
    const { sent } = await addWhenReady(flows, flow, gate.promise);
    // Long past the moment BullMQ built and "sent" it: Redis has nothing, Node holds the bytes.
    await new Promise((r) => setTimeout(r, 150));
    expect(await jobsOf(flow)).toBe(0);
    gate.resolve();
    const node = await sent;
    expect(node.job.id).toBe(flow.opts?.jobId);
    expect(await jobsOf(flow)).toBe(21);
    expect(await redis.scard(`${flow.prefix}:q:${flow.opts?.jobId}:dependencies`)).toBe(20);
  });

  it("the bytes are encoded before the gate (held in the socket), so resolving it only writes them", async () => {
    const { flows, sockets, tree } = setup();
    const flow = tree("encoded", 50);
    const gate = deferred();
    const { sent } = await addWhenReady(flows, flow, gate.promise);
    await until(
      "the transaction encoded into the held socket",
      async () => Math.max(0, ...sockets.map((s) => s.writableLength)),
      (bytes) => bytes > 10_000,
    );
    expect(await jobsOf(flow)).toBe(0);
    gate.resolve();
    await sent;
    expect(await jobsOf(flow)).toBe(51);
    expect(Math.max(0, ...sockets.map((s) => s.writableLength))).toBe(0);
  });

  it("a gate that rejects: the add fails, nothing ever reaches Redis, and the next flow goes through on a new connection", async () => {
    const { flows, tree } = setup();
    const flow = tree("refused", 10);
    const gate = deferred();
    const { sent } = await addWhenReady(flows, flow, gate.promise);
    gate.reject(new Error("the rows did not commit"));
    await expect(sent).rejects.toThrow();
    // Past ioredis' first reconnect (50 ms): had it resent the held commands, they would be here.
    await new Promise((r) => setTimeout(r, 300));
    expect(await jobsOf(flow)).toBe(0);
    const next = tree("after", 3);
    const open = deferred();
    open.resolve();
    await (await addWhenReady(flows, next, open.promise)).sent;
    expect(await jobsOf(next)).toBe(4);
    expect(await jobsOf(flow)).toBe(0);
  });

  it("the connection dropped while the transaction is held: the add fails, and nothing reaches Redis even once the gate resolves", async () => {
    const { flows, base, name, tree } = setup();
    const flow = tree("dropped", 10);
    const gate = deferred();
    const { sent } = await addWhenReady(flows, flow, gate.promise);
    const ids = await preparedClientIds(name, base);
    expect(ids.length).toBeGreaterThan(0);
    for (const id of ids) await redis.client("KILL", "ID", id);
    await expect(sent).rejects.toThrow();
    gate.resolve();
    await new Promise((r) => setTimeout(r, 300));
    expect(await jobsOf(flow)).toBe(0);
    const next = tree("after", 2);
    await (await addWhenReady(flows, next, Promise.resolve())).sent;
    expect(await jobsOf(next)).toBe(3);
  });

  it("answers null (the caller's plain gated path) while its only connection holds another flow, and opens one more", async () => {
    const { flows, tree } = setup();
    const first = deferred();
    const { sent: holding } = await addWhenReady(flows, tree("first", 2), first.promise);
    expect(flows.add(tree("second", 2), OPTS, Promise.resolve())).toBeNull();
    // The connection opened for the second one serves the third while the first still holds.
    const third = tree("third", 2);
    await (await addWhenReady(flows, third, Promise.resolve())).sent;
    expect(await jobsOf(third)).toBe(3);
    first.resolve();
    await holding;
  });
});
