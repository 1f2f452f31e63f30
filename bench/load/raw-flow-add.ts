// Baselines for enqueueFlow, steered over IPC so the scenario can alternate them with the API's
// mutation: {kind, count} adds `count` flows one after the other and answers each one's duration in
// ms, and this process' CPU time over them.
// - "raw": BullMQ `FlowProducer.add` of the same tree (a `fanout` parent with `children` `noop`
//   children, one queue), nothing else.
// - "floor": the least code that does the mutation's work, in the order durability needs (issue
//   #18: a job's row is committed before the job is in Redis, so its id is known first): one INCRBY
//   reserving the tree's ids, one multi-row insert of the tree's history rows through the same
//   PostgreSQL function as the API's history writes (`job_history_insert`: one statement, one
//   commit; children carry their parent), then the same `FlowProducer.add` with those ids; and, as
//   the API's event relay does for every job it enqueues (bench/README.md, enqueueJobs' floor), the
//   flow's events read back from its queue's events stream and published on Redis pub/sub, each on
//   its job's channel and its queue's, in batches that also record the last event relayed.
// - "unrelayed": the floor without the relay (the floor as first named: ids, rows, add).
// - "rest": the floor's work behind a bare Node `http` server, as a hand-rolled REST endpoint would do
//   it (issue #19's floor for enqueueJob): per POST it parses the JSON body (the mutation's own body,
//   `{query, variables: {input}}`: the tree), does the floor's work for that tree in the floor's
//   queue (its events relayed by the same relay) and answers the root's id once the flow is added.
//   No GraphQL, authentication, validation or limits. Its port is in the "ready" message; the
//   scenario posts to it with the same client as the mutation's, and reads this process' CPU time.
// Every node carries its queue's per-queue prefix (REDIS_KEY_LAYOUT=per-queue, the `prefix` the API's
// own flows get) and the options the API's flows get (finished jobs kept as long, events stream
// trimmed the same), so all sides write the same keys the same way. Queues of their own ("rawflow",
// "floorflow", "unrelayedflow"), which nothing consumes, so their jobs and ids never meet the API's
// or each other's.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { FlowJob } from "bullmq";
import { FlowProducer } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { KEEP_COMPLETED, KEEP_FAILED, ReservedIdFlowProducer } from "../../src/jobs/bullmq/index.ts";
import { bullPrefix } from "../../src/testing/redis.ts";
import { scriptInput } from "../lib/child.ts";
import { nowMs } from "../lib/stats.ts";
import { startFloorRelay } from "./floor-relay.ts";

const input = scriptInput<{
  redisUrl: string;
  basePrefix: string;
  databaseUrl: string;
  rawQueue: string;
  floorQueue: string;
  unrelayedQueue: string;
  children: number;
}>();
const connection = { url: input.redisUrl };
const raw = new FlowProducer({ connection, prefix: input.basePrefix });
// The floor's ids are numbers from a counter of its own, as the API's are: BullMQ refuses integer
// custom ids unless told they were reserved (the API's ReservedIdFlowProducer; nothing else differs).
const floor = new ReservedIdFlowProducer({ connection, prefix: input.basePrefix });
const redis = new Redis(input.redisUrl);
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 1 });
await Promise.all([raw.waitUntilReady(), floor.waitUntilReady(), pool.query("SELECT 1")]);
const opts = { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED };
const queuesOptions = (queue: string) => ({ [queue]: { streams: { events: { maxLen: 10_000 } } } });
const counterOf = (queue: string) => `${bullPrefix(input.basePrefix, queue)}:${queue}:floor-seq`;

const floorPrefix = bullPrefix(input.basePrefix, input.floorQueue);
const events = await startFloorRelay({
  redisUrl: input.redisUrl,
  publisher: redis,
  queue: input.floorQueue,
  prefix: floorPrefix,
  channelBase: `${floorPrefix}:ev:${input.floorQueue}`,
  positionKey: `${floorPrefix}:${input.floorQueue}:relay-position`,
});

/** A flow as the mutation's input gives it (the bench's tree: a root and one level of children). */
interface TreeInput {
  name: string;
  data: unknown;
  children?: { name: string; data: unknown }[];
}

/** The bench's tree: a `fanout` parent with `children` `noop` children. */
const benchTree: TreeInput = {
  name: "fanout",
  data: { label: "bench" },
  children: Array.from({ length: input.children }, () => ({ name: "noop", data: {} })),
};

function tree(queue: string, spec: TreeInput, ids?: string[]): FlowJob {
  const prefix = bullPrefix(input.basePrefix, queue);
  return {
    queueName: queue,
    name: spec.name,
    data: spec.data,
    prefix,
    opts: ids ? { ...opts, jobId: ids[0] } : opts,
    children: (spec.children ?? []).map((child, i) => ({
      queueName: queue,
      name: child.name,
      data: child.data,
      prefix,
      opts: ids ? { ...opts, jobId: ids[i + 1] } : opts,
    })),
  };
}

/** The floor's work for one tree: ids, the rows in one statement, then the flow; the root's id. */
async function floorFlow(queue: string, spec: TreeInput): Promise<string> {
  const children = spec.children ?? [];
  const nodes = children.length + 1;
  const last = await redis.incrby(counterOf(queue), nodes);
  const ids = Array.from({ length: nodes }, (_, i) => String(last - nodes + 1 + i));
  const createdAt = Date.now();
  const row = (id: string, name: string, data: unknown, state: string, parentId?: string) => ({
    queue,
    id,
    name,
    data,
    state,
    attemptsMade: 0,
    maxAttempts: 1,
    priority: 0,
    createdAt,
    ...(parentId ? { parentQueue: queue, parentId } : {}),
  });
  const rows = ids.map((id, i) => {
    if (i === 0) return row(id, spec.name, spec.data, children.length > 0 ? "WAITING_CHILDREN" : "WAITING");
    const child = children[i - 1] as { name: string; data: unknown };
    return row(id, child.name, child.data, "WAITING", ids[0]);
  });
  await pool.query("SELECT job_history_insert($1::jsonb)", [JSON.stringify(rows)]);
  const flow = tree(queue, spec, ids);
  for (const node of [flow, ...(flow.children ?? [])]) node.opts = { ...node.opts, timestamp: createdAt };
  await floor.add(flow, { queuesOptions: queuesOptions(queue) });
  return ids[0] as string;
}

// The REST floor: the mutation's body in, the root's id out (shaped like the mutation's answer).
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { variables: { input: TreeInput } };
    floorFlow(input.floorQueue, body.variables.input).then(
      (id) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ data: { enqueueFlow: { __typename: "EnqueueFlowSuccess", job: { id } } } }));
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ errors: [{ message: String(err) }] }));
      },
    );
  });
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));

type Kind = "raw" | "floor" | "unrelayed";

async function flows(kind: Kind, count: number): Promise<{ ms: number[]; cpuMs: number }> {
  const ms: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const t = nowMs();
    if (kind === "raw") await raw.add(tree(input.rawQueue, benchTree), { queuesOptions: queuesOptions(input.rawQueue) });
    else await floorFlow(kind === "floor" ? input.floorQueue : input.unrelayedQueue, benchTree);
    ms.push(nowMs() - t);
  }
  // The relay's trailing work counts for the batch that caused it, as the API's does.
  await new Promise((r) => setTimeout(r, 100));
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000 };
}

process.on("message", (m: { kind: Kind; count: number } | { kind: "stop" }) => {
  if (m.kind === "stop") {
    server.close();
    void Promise.all([raw.close(), floor.close(), events.close(), redis.quit(), pool.end()]).then(() => process.exit(0));
    return;
  }
  flows(m.kind, m.count).then(
    (r) => process.send?.({ type: "ms", ...r }),
    (err: unknown) => process.send?.({ type: "error", message: String(err) }),
  );
});
process.send?.({ type: "ready", port: (server.address() as AddressInfo).port });
process.on("disconnect", () => process.exit(0));
