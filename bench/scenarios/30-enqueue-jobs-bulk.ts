// enqueueJobs with 1,000 inputs against its floor (bench/load/floor-add-bulk.ts: addBulk of the same
// 1,000 jobs, one multi-row history insert through the same PostgreSQL function, and the jobs' events
// relayed to Redis pub/sub as the API's event relay does), the same floor without the relay, and raw
// Queue.addBulk for reference: one batch of each in turn, the order alternating, median of repeats.
// Each batch's CPU time is measured too (/proc): the process that made it (the API or the baseline
// script), Redis and PostgreSQL (each server's process tree), with a settle pause after the batch so
// the work that trails it (the relay's) counts for it.
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import pg from "pg";
import { deletePrefix } from "../../src/testing/redis.ts";
import { post } from "../lib/graphql-client.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { cpuMs, treeCpuMs } from "../lib/stack.ts";
import { median, nowMs } from "../lib/stats.ts";

const SIZE = 1_000;
const KINDS = ["ours", "floor", "unrelayed", "raw"] as const;
type Kind = (typeof KINDS)[number];
const SETTLE_MS = 150;

/** The pids of the Redis server and of PostgreSQL's postmaster the stack uses (for their CPU time). */
async function serverPids(redisUrl: string, databaseUrl: string): Promise<{ redis: number; postgres: number }> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    const info = await redis.info("server");
    await client.connect();
    const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    // A backend's parent is the postmaster.
    const stat = readFileSync(`/proc/${rows[0]?.pid}/stat`, "utf8");
    const postmaster = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return { redis: Number(/process_id:(\d+)/.exec(info)?.[1]), postgres: postmaster };
  } finally {
    redis.disconnect();
    await client.end();
  }
}

export default {
  name: "enqueue-jobs-bulk",
  async run(ctx) {
    const scenario = `enqueueJobs x${SIZE}`;
    const repeats = ctx.quick ? 2 : 15;
    const stack = await ctx.startStack();
    const prefix = `${stack.prefix}-floor`;
    const baselines = steer<{ type: string; ms?: number; message?: string }>("load/floor-add-bulk.ts", {
      redisUrl: ctx.redisUrl,
      prefix,
      databaseUrl: stack.databaseUrl,
      size: SIZE,
    });
    try {
      await baselines.next("ready");
      const servers = await serverPids(ctx.redisUrl, stack.databaseUrl);
      const callerPid = (kind: Kind) => (kind === "ours" ? stack.api?.proc.pid : baselines.child.pid) as number;
      const inputs = Array.from({ length: SIZE }, () => ({ queue: "demo", name: "noop", data: {} }));
      const query = "mutation($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { __typename } }";
      const once = async (kind: Kind): Promise<number> => {
        if (kind === "ours") {
          const t = nowMs();
          const data = await post<{ enqueueJobs: { __typename: string } }>(stack.url, ctx.apiKey, query, { inputs });
          if (data.enqueueJobs.__typename !== "EnqueueJobsSuccess") throw new Error(`enqueueJobs answered ${data.enqueueJobs.__typename}`);
          return nowMs() - t;
        }
        baselines.send({ kind });
        const m = await baselines.next();
        if (m.type !== "ms") throw new Error(`${kind} batch failed: ${m.message}`);
        return m.ms as number;
      };
      const ms: Record<Kind, number[]> = { ours: [], floor: [], unrelayed: [], raw: [] };
      // CPU ms per kind, summed over the measured rounds: the caller's process, Redis, PostgreSQL.
      const cpu = Object.fromEntries(KINDS.map((k) => [k, { caller: 0, redis: 0, postgres: 0 }])) as Record<
        Kind,
        { caller: number; redis: number; postgres: number }
      >;
      const sample = (kind: Kind) => ({
        caller: cpuMs(callerPid(kind)),
        redis: treeCpuMs(servers.redis),
        postgres: treeCpuMs(servers.postgres),
      });
      // One warm-up batch of each, then rounds in alternating order.
      for (const kind of KINDS) await once(kind);
      for (let r = 0; r < repeats; r++) {
        for (const kind of r % 2 === 0 ? KINDS : [...KINDS].reverse()) {
          const before = sample(kind);
          ms[kind].push(await once(kind));
          await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
          const after = sample(kind);
          for (const k of ["caller", "redis", "postgres"] as const) cpu[kind][k] += after[k] - before[k];
        }
      }
      const rate = (kind: Kind) => (SIZE / median(ms[kind])) * 1000;
      // CPU ms per batch of 1,000 jobs (10 ms /proc ticks, summed over the rounds).
      const cpuMsPerCall = Object.fromEntries(
        KINDS.map((k) => {
          const c = cpu[k];
          return [
            k,
            {
              caller: c.caller / repeats,
              redis: c.redis / repeats,
              postgres: c.postgres / repeats,
              total: (c.caller + c.redis + c.postgres) / repeats,
            },
          ];
        }),
      ) as Record<Kind, { caller: number; redis: number; postgres: number; total: number }>;
      ctx.log(`enqueue-jobs-bulk CPU ms per 1,000-job batch (caller / Redis / PostgreSQL): ${JSON.stringify(cpuMsPerCall)}`);
      const floorName = "floor: addBulk + 1 multi-row insert + event relay";
      return {
        rows: [
          ratioRow(
            { scenario, metric: "jobs/s", project: rate("ours"), baseline: rate("floor"), baselineName: floorName, target: ">= 0.9x" },
            0.9,
          ),
          // Information: the floor without the relay (as issue #19 first named it), and the old ratio.
          ratioRow(
            {
              scenario,
              metric: "jobs/s",
              project: rate("ours"),
              baseline: rate("unrelayed"),
              baselineName: "addBulk + 1 multi-row insert, no relay",
              target: "-",
            },
            null,
          ),
          ratioRow(
            { scenario, metric: "jobs/s", project: rate("ours"), baseline: rate("raw"), baselineName: "raw Queue.addBulk", target: "-" },
            null,
          ),
          // Information: CPU time per 1,000-job batch, all processes (the caller + Redis + PostgreSQL), and the caller's alone.
          ratioRow(
            {
              scenario,
              metric: "CPU ms / batch, all processes",
              project: cpuMsPerCall.ours.total,
              baseline: cpuMsPerCall.floor.total,
              baselineName: floorName,
              target: "-",
            },
            null,
          ),
          ratioRow(
            {
              scenario,
              metric: "CPU ms / batch, API vs floor process",
              project: cpuMsPerCall.ours.caller,
              baseline: cpuMsPerCall.floor.caller,
              baselineName: floorName,
              target: "-",
            },
            null,
          ),
        ],
        details: {
          repeats,
          enqueueJobsMs: ms.ours,
          floorMs: ms.floor,
          unrelayedFloorMs: ms.unrelayed,
          addBulkMs: ms.raw,
          cpuMsPerCall,
        },
      };
    } finally {
      baselines.kill();
      await stack.stop();
      await deletePrefix(prefix, ctx.redisUrl);
    }
  },
} satisfies Scenario;
