// enqueueFlow of a parent with 100 children (demo.fanout over 100 demo.noop, through the API) against
// its floor and raw BullMQ, from a load process of its own (bench/load/raw-flow-add.ts), same run:
// - floor (the target, issue #19's "same work"): one INCRBY reserving the tree's ids, one multi-row
//   insert of its 101 history rows through `job_history_insert` (one commit), then
//   `FlowProducer.add` of the same tree with those ids, answered after all of it; and the flow's
//   ~200 events relayed to pub/sub in the same process, as the API's relay does (as enqueueJobs'
//   floor does, bench/README.md);
// - the REST floor (the target since 2026-12-06, as issue #19 defined enqueueJob's floor): the same
//   floor behind a bare Node `http` server, posted the mutation's own body with the same client as
//   the mutation, so the request both sides must answer (the client's encoding, loopback HTTP, the
//   body's parse) is in both measurements;
// - the same floor without the relay, and raw `FlowProducer.add` of the same tree, nothing else
//   (issue #20's original baseline), and the floor without HTTP: information rows.
// Rounds of `perRound` flows of each, one flow at a time, the order rotating round by round; the
// ratios are the medians of the rounds' flows/s ratios. Beside them, CPU time per flow of every
// process that does the work (the API or the load process, Redis, PostgreSQL), each read 100 ms
// after its batch (so a relay's trailing work counts for the batch that caused it) and summed over
// all rounds, which is what decides on a loaded machine. All sides write under the same per-queue
// prefixes (REDIS_KEY_LAYOUT=per-queue), the baselines in queues of their own, and no worker runs, so
// nothing consumes any side's jobs during the measurement.
import { readdirSync, readFileSync } from "node:fs";
import { Redis } from "ioredis";
import pg from "pg";
import { post } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { cpuMs } from "../lib/stack.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";

const CHILDREN = 100;
const KINDS = ["ours", "rest", "floor", "unrelayed", "raw"] as const;
type Kind = (typeof KINDS)[number];

const ENQUEUE_FLOW = `mutation($input: FlowInput!) {
  enqueueFlow(input: $input) { __typename ... on EnqueueFlowSuccess { job { id } } }
}`;

/** The parent pid of a process, from `/proc` (Linux). */
function ppidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/** CPU time, in ms, of a PostgreSQL server: its postmaster and every live child (backends, WAL writer, checkpointer...). */
function postgresCpuMs(postmaster: number): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      if (pid === postmaster || ppidOf(pid) === postmaster) total += cpuMs(pid);
    } catch {
      // exited since the listing
    }
  }
  return total;
}

/** CPU time, in ms, the Redis server has used (`INFO cpu`: its main thread and its own threads). */
async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? 0);
  return (field("used_cpu_sys") + field("used_cpu_user")) * 1000;
}

export default {
  name: "enqueue-flow",
  async run(ctx) {
    const scenario = `enqueueFlow 1+${CHILDREN}`;
    const rounds = ctx.quick ? 2 : 12;
    const perRound = ctx.quick ? 5 : 20;
    const stack = await ctx.startStack();
    const apiPid = stack.api?.proc.pid;
    if (!apiPid) throw new Error("no API process");
    const baselines = steer<{ type: string; ms?: number[]; cpuMs?: number; message?: string }>("load/raw-flow-add.ts", {
      redisUrl: ctx.redisUrl,
      basePrefix: stack.prefix,
      databaseUrl: stack.databaseUrl,
      rawQueue: "rawflow",
      floorQueue: "floorflow",
      unrelayedQueue: "unrelayedflow",
      children: CHILDREN,
    });
    const redis = new Redis(ctx.redisUrl);
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    try {
      const backend = (await db.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid as number;
      const postmaster = ppidOf(backend);
      const ready = await baselines.next<{ type: string; port?: number }>("ready");
      const restUrl = `http://127.0.0.1:${ready.port}/flow`;
      const baselinePid = baselines.child.pid as number;
      const input = {
        queue: "demo",
        name: "fanout",
        data: { label: "bench" },
        children: Array.from({ length: CHILDREN }, () => ({ queue: "demo", name: "noop", data: {} })),
      };
      /** `count` flows of one kind: each one's ms, and the CPU ms of the process that made them. */
      const batch = async (kind: Kind, count: number): Promise<{ ms: number[]; ownCpuMs: number }> => {
        if (kind === "ours" || kind === "rest") {
          // The same client and body for both: the mutation, and the REST floor (which reads only the tree).
          const [url, pid] = kind === "ours" ? [stack.url, apiPid] : [restUrl, baselinePid];
          const ms: number[] = [];
          const cpu0 = cpuMs(pid);
          for (let i = 0; i < count; i++) {
            const t = nowMs();
            const data = await post<{ enqueueFlow: { __typename: string } }>(url, ctx.apiKey, ENQUEUE_FLOW, { input });
            ms.push(nowMs() - t);
            if (data.enqueueFlow.__typename !== "EnqueueFlowSuccess")
              throw new Error(`${kind === "ours" ? "enqueueFlow" : "the REST floor"} answered ${data.enqueueFlow.__typename}`);
          }
          return { ms, ownCpuMs: cpuMs(pid) - cpu0 };
        }
        baselines.send({ kind, count });
        const m = await baselines.next();
        if (m.type !== "ms") throw new Error(`${kind} flows failed: ${m.message}`);
        return { ms: m.ms as number[], ownCpuMs: m.cpuMs as number };
      };
      // Warm-up (connections, scripts loaded, JIT), not counted.
      for (const kind of KINDS) await batch(kind, 2);
      const ms = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
      const cpu = Object.fromEntries(KINDS.map((k) => [k, { own: 0, redis: 0, postgres: 0 }])) as Record<
        Kind,
        { own: number; redis: number; postgres: number }
      >;
      const rates: Record<Kind, number>[] = [];
      const rate = (d: number[]) => (d.length / d.reduce((a, b) => a + b, 0)) * 1000;
      for (let r = 0; r < rounds; r++) {
        const round = {} as Record<Kind, number>;
        // Rotated: each side runs first, second, third and last in turn.
        for (let k = 0; k < KINDS.length; k++) {
          const kind = KINDS[(r + k) % KINDS.length] as Kind;
          const redis0 = await redisCpuMs(redis);
          const postgres0 = postgresCpuMs(postmaster);
          const b = await batch(kind, perRound);
          cpu[kind].redis += (await redisCpuMs(redis)) - redis0;
          cpu[kind].postgres += postgresCpuMs(postmaster) - postgres0;
          cpu[kind].own += b.ownCpuMs;
          ms[kind].push(...b.ms);
          round[kind] = rate(b.ms);
        }
        rates.push(round);
      }
      const ratios = {
        rest: rates.map((r) => r.ours / r.rest),
        floor: rates.map((r) => r.ours / r.floor),
        unrelayed: rates.map((r) => r.ours / r.unrelayed),
        raw: rates.map((r) => r.ours / r.raw),
      };
      const mid = (k: "rest" | "floor" | "unrelayed" | "raw") =>
        rates[ratios[k].indexOf(median(ratios[k]))] ?? (rates[0] as Record<Kind, number>);
      const flowsMeasured = rounds * perRound;
      const perFlow = (kind: Kind) => {
        const c = cpu[kind];
        return { own: c.own / flowsMeasured, redis: c.redis / flowsMeasured, postgres: c.postgres / flowsMeasured };
      };
      const total = (kind: Kind) => {
        const c = perFlow(kind);
        return c.own + c.redis + c.postgres;
      };
      const lat = {
        ours: summarize(ms.ours),
        rest: summarize(ms.rest),
        floor: summarize(ms.floor),
        unrelayed: summarize(ms.unrelayed),
        raw: summarize(ms.raw),
      };
      const restName = "REST floor: bare http + INCRBY ids + 1 multi-row insert + FlowProducer.add + relay";
      const floorName = "floor: INCRBY ids + 1 multi-row insert + FlowProducer.add + relay";
      const unrelayedName = "floor without the relay";
      const rawName = "raw FlowProducer.add, same tree";
      const info = (metric: string, project: number, baseline: number, baselineName: string) =>
        ratioRow({ scenario, metric, project, baseline, baselineName, target: "-" }, null);
      const [ours, rest, floor, unrelayed, raw] = [
        perFlow("ours"),
        perFlow("rest"),
        perFlow("floor"),
        perFlow("unrelayed"),
        perFlow("raw"),
      ];
      return {
        rows: [
          ratioRow(
            {
              scenario,
              metric: "flows/s",
              project: mid("rest").ours,
              baseline: mid("rest").rest,
              baselineName: restName,
              target: ">= 0.8x",
            },
            0.8,
          ),
          // Information: the floor without its HTTP request (the target until 2026-12-06), without the
          // relay too (the floor as first named), and issue #20's original baseline, which writes no
          // history (bench/README.md says why).
          info("flows/s", mid("floor").ours, mid("floor").floor, floorName),
          info("flows/s", mid("unrelayed").ours, mid("unrelayed").unrelayed, unrelayedName),
          info("flows/s", mid("raw").ours, mid("raw").raw, rawName),
          info("p50 ms per flow", lat.ours.p50, lat.rest.p50, restName),
          info("p99 ms per flow", lat.ours.p99, lat.rest.p99, restName),
          info("p50 ms per flow", lat.ours.p50, lat.floor.p50, floorName),
          info("p99 ms per flow", lat.ours.p99, lat.floor.p99, floorName),
          info("p50 ms per flow", lat.ours.p50, lat.raw.p50, rawName),
          // CPU per flow: what decides on a loaded machine (the API vs the load process that does the floor's work).
          info("CPU ms / flow: API vs floor process", ours.own, rest.own, restName),
          info("CPU ms / flow: all three", total("ours"), total("rest"), restName),
          info("CPU ms / flow: API vs floor process", ours.own, floor.own, floorName),
          info("CPU ms / flow: Redis", ours.redis, floor.redis, floorName),
          info("CPU ms / flow: PostgreSQL", ours.postgres, floor.postgres, floorName),
          info("CPU ms / flow: all three", total("ours"), total("floor"), floorName),
          info("CPU ms / flow: all three", total("ours"), total("unrelayed"), unrelayedName),
          info("CPU ms / flow: all three", total("ours"), total("raw"), rawName),
        ],
        details: {
          rounds,
          perRound,
          children: CHILDREN,
          ratios,
          rates,
          cpuMsPerFlow: { ours, rest, floor, unrelayed, raw },
          enqueueFlowMs: ms.ours,
          restFlowMs: ms.rest,
          floorFlowMs: ms.floor,
          unrelayedFlowMs: ms.unrelayed,
          rawFlowMs: ms.raw,
          latency: lat,
        },
      };
    } finally {
      baselines.kill();
      redis.disconnect();
      await db.end();
      // The baselines' keys are under the stack's prefix (their per-queue `{bench-…:rawflow}`): stop() removes them.
      await stack.stop();
    }
  },
} satisfies Scenario;
