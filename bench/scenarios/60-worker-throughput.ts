// Worker throughput on no-op jobs, history and failed-job ledger on, vs the floor (a raw Worker
// writing one history row per job: the target, issue #19) and a raw BullMQ Worker with the same
// concurrency; and ours again with OpenTelemetry tracing on, exporting to an OTLP sink on loopback
// (what tracing costs; off, the worker loads no SDK). Each drains the same number of pre-filled jobs
// (the first tenth is warm-up), in alternating rounds.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Queue } from "bullmq";
import pg from "pg";
import { bullPrefix, deletePrefix } from "../../src/testing/redis.ts";
import { steer } from "../lib/ipc.ts";
import { ratioRow, type Scenario } from "../lib/scenario.ts";
import { cpuMs, machineBusyMs, programCpuMs } from "../lib/stack.ts";
import { median } from "../lib/stats.ts";

const CONCURRENCY = 20;

async function fill(redisUrl: string, prefix: string, count: number): Promise<Queue> {
  const queue = new Queue("demo", { connection: { url: redisUrl }, prefix });
  for (let i = 0; i < count; i += 1_000) {
    // The options the API's QueueSet gives every job, so both workers trim the same way.
    const batch = Array.from({ length: Math.min(1_000, count - i) }, () => ({
      name: "noop",
      data: {},
      opts: { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800 } },
    }));
    await queue.addBulk(batch);
  }
  return queue;
}

interface Drain {
  /** Jobs/s between 10% and 100% done. */
  rate: number;
  /** CPU time of the worker process over that span, per job, in microseconds. */
  cpuUsPerJob: number;
  /** CPU time of the whole machine (worker, Redis, PostgreSQL, the harness) over that span, per job. */
  machineUsPerJob: number;
  /** CPU time of Redis (every redis-server process on the machine) over that span, per job. */
  redisUsPerJob: number;
  /** CPU time of PostgreSQL (every postgres process on the machine) over that span, per job. */
  postgresUsPerJob: number;
}

/**
 * Polls until `done()` reaches `count` (every `everyMs`); jobs/s between 10% and 100% done, and the
 * CPU time per job over the same span of the worker process (`pid`), Redis, PostgreSQL and the machine.
 */
async function drain(count: number, done: () => Promise<number>, pid: number, timeoutMs: number, everyMs = 20): Promise<Drain> {
  const deadline = Date.now() + timeoutMs;
  let t1 = 0;
  let cpu1 = 0;
  let machine1 = 0;
  let redis1 = 0;
  let postgres1 = 0;
  for (;;) {
    const n = await done();
    const now = performance.now();
    if (!t1 && n >= count / 10) {
      t1 = now;
      cpu1 = cpuMs(pid);
      machine1 = machineBusyMs();
      redis1 = programCpuMs("redis-server");
      postgres1 = programCpuMs("postgres");
    }
    if (n >= count) {
      const jobs = count - count / 10;
      return {
        rate: (jobs / (now - t1)) * 1000,
        cpuUsPerJob: ((cpuMs(pid) - cpu1) * 1000) / jobs,
        machineUsPerJob: ((machineBusyMs() - machine1) * 1000) / jobs,
        redisUsPerJob: ((programCpuMs("redis-server") - redis1) * 1000) / jobs,
        postgresUsPerJob: ((programCpuMs("postgres") - postgres1) * 1000) / jobs,
      };
    }
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} jobs done after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Jobs/s at which COMPLETED history rows were committed, between the 10% and the 100% row, by the
 * rows' updated_at (now() of the statement that wrote them: a batch's rows share it).
 */
async function historyRate(db: pg.Client, count: number, timeoutMs: number, drained: Promise<unknown>): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  // Rows trail Redis by a batch (tens of ms): PostgreSQL is not polled while the worker runs.
  await drained;
  for (;;) {
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM job_history WHERE state = 'COMPLETED'");
    const n = rows[0]?.n ?? 0;
    if (n >= count) break;
    if (Date.now() > deadline) throw new Error(`only ${n} of ${count} history rows after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const { rows } = await db.query<{ span: number }>(
    `SELECT extract(epoch FROM max(updated_at) - (SELECT updated_at FROM job_history WHERE state = 'COMPLETED'
       ORDER BY updated_at OFFSET $1 LIMIT 1)) * 1000 AS span FROM job_history WHERE state = 'COMPLETED'`,
    [count / 10 - 1],
  );
  const spanMs = Number(rows[0]?.span);
  return ((count - count / 10) / spanMs) * 1000;
}

const remaining = async (q: Queue) => {
  const c = await q.getJobCounts("wait", "active", "prioritized", "delayed");
  return Object.values(c).reduce((a, b) => a + b, 0);
};

/** One worker's drain, and for those writing history, the rate at which its rows were committed. */
interface Run {
  drain: Drain;
  /** Jobs/s, history written (the raw Worker writes none: its Redis-drained rate). */
  rate: number;
}

const KINDS = ["raw", "floor", "ours", "traced"] as const;
type Kind = (typeof KINDS)[number];
type Round = Record<Kind, Run>;

/**
 * An OTLP/HTTP sink on loopback: answers every export 200 and counts the spans' bytes (it runs in
 * the harness, not in the worker measured).
 */
async function startOtlpSink(): Promise<{ url: string; bytes: () => number; close(): Promise<void> }> {
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export default {
  name: "worker-throughput",
  async run(ctx) {
    // Enough jobs that a run lasts seconds, not a few polls; several rounds, since one run on this
    // machine is not evidence (its speed drifts by a third within a minute).
    const count = ctx.quick ? 1_000 : 20_000;
    const rounds = ctx.quick ? 1 : 5;
    const timeoutMs = ctx.quick ? 60_000 : 240_000;
    const stack = await ctx.startStack({ noApi: true });
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    const sink = await startOtlpSink();

    // A bench script's worker (the raw Worker, the floor) on a queue of its own, pre-filled.
    const scripted = async (entry: string, prefix: string, writesHistory: boolean): Promise<Run> => {
      const queue = await fill(ctx.redisUrl, prefix, count);
      const worker = steer<{ ready: boolean }>(entry, {
        redisUrl: ctx.redisUrl,
        prefix,
        concurrency: CONCURRENCY,
        databaseUrl: stack.databaseUrl,
      });
      try {
        const drained = drain(count, async () => count - (await remaining(queue)), worker.child.pid as number, timeoutMs);
        const [d, rate] = await Promise.all([
          drained,
          writesHistory ? historyRate(db, count, timeoutMs, drained) : drained.then((x) => x.rate),
        ]);
        return { drain: d, rate };
      } finally {
        worker.kill();
        await queue.close();
        await deletePrefix(prefix, ctx.redisUrl);
      }
    };
    const runners: Record<Kind, () => Promise<Run>> = {
      // Baseline: a raw Worker, no-op processor, no persistence.
      raw: () => scripted("load/raw-worker.ts", `{bench-raw-worker-${process.pid}}`, false),
      // The floor (bench/load/floor-worker.ts): the raw Worker plus one history row per job.
      floor: () => scripted("load/floor-worker.ts", `{bench-floor-worker-${process.pid}}`, true),
      // Ours: workers/main.ts with the same concurrency (history and ledger on), a fresh process and
      // queue each round. Two clocks on the same run: Redis drained (what BullMQ alone would report;
      // also the span CPU is measured over), and every history row committed (the figure the target
      // is about), read from the rows' own commit times once all are in, so the harness does not
      // poll PostgreSQL during the run (a count(*) every 20 ms had taken half a core of it).
      ours: () => ours({}),
      // Ours with tracing on: a span per job, exported in batches to the sink.
      traced: () => ours({ OTEL_EXPORTER_OTLP_ENDPOINT: sink.url }),
    };

    async function ours(env: Record<string, string>): Promise<Run> {
      const queue = await fill(ctx.redisUrl, bullPrefix(stack.prefix, "demo"), count);
      const worker = await stack.startWorker({ WORKER_CONCURRENCY: String(CONCURRENCY), ...env });
      try {
        const drained = drain(count, async () => count - (await remaining(queue)), worker.proc.pid as number, timeoutMs);
        const [d, rate] = await Promise.all([drained, historyRate(db, count, timeoutMs, drained)]);
        return { drain: d, rate };
      } finally {
        // SIGTERM with BENCH_PROFILE_DIR: only a graceful exit writes the CPU profile.
        await worker.stop(process.env.BENCH_PROFILE_DIR ? "SIGTERM" : "SIGKILL");
        await queue.close();
        await deletePrefix(stack.prefix, ctx.redisUrl);
      }
    }

    try {
      const results: Round[] = [];
      for (let r = 0; r < rounds; r++) {
        const round: Partial<Round> = {};
        // Alternating order, so drift within a round does not always favour the same worker.
        for (const kind of r % 2 === 0 ? KINDS : [...KINDS].reverse()) {
          round[kind] = await runners[kind]();
          // Every run starts on an empty table (history rates are read from it).
          await db.query("TRUNCATE job_history");
          await db.query("VACUUM ANALYZE job_history");
        }
        results.push(round as Round);
      }
      // Each figure is the median round's (by that worker's ratio to the raw Worker of the same
      // round), with that round's own numbers, so a row's figures stay consistent with each other.
      const ratios = (kind: Kind) => results.map((r) => r[kind].rate / r.raw.rate);
      const medianRound = (kind: Kind) => results.find((r) => r[kind].rate / r.raw.rate === median(ratios(kind))) ?? (results[0] as Round);
      const oursRound = medianRound("ours");
      const floorRound = medianRound("floor");
      // The target (issue #19): ours against the floor of the same round, median over rounds.
      const vsFloor = results.map((r) => r.ours.rate / r.floor.rate);
      const floorMedianRound = results.find((r) => r.ours.rate / r.floor.rate === median(vsFloor)) ?? (results[0] as Round);
      // Tracing on vs off, same round.
      const tracedRatios = results.map((r) => r.traced.rate / r.ours.rate);
      const tracedRound = results.find((r) => r.traced.rate / r.ours.rate === median(tracedRatios)) ?? (results[0] as Round);
      const scenario = `worker no-op x${count}, c=${CONCURRENCY}, median of ${rounds}`;
      const floorScenario = `floor: raw Worker + 1 row/job, x${count}, median of ${rounds}`;
      const tracedScenario = `ours, tracing on (OTLP sink on loopback), x${count}, median of ${rounds}`;
      const info = (on: string, metric: string, project: number, base: number | null, baselineName = "raw BullMQ Worker") =>
        ratioRow({ scenario: on, metric, project, baseline: base, baselineName: base === null ? "-" : baselineName, target: "-" }, null);
      // Where the CPU goes, for ours and for the floor: the worker process itself, then Redis and
      // PostgreSQL (other processes on the same two cores), then everything on the machine.
      const split = (on: string, d: Drain, raw: Drain) => [
        info(on, "worker CPU µs / job", d.cpuUsPerJob, raw.cpuUsPerJob),
        info(on, "Redis CPU µs / job", d.redisUsPerJob, raw.redisUsPerJob),
        info(on, "PostgreSQL CPU µs / job", d.postgresUsPerJob, null),
        info(on, "machine CPU µs / job", d.machineUsPerJob, raw.machineUsPerJob),
      ];
      return {
        rows: [
          ratioRow(
            {
              scenario,
              metric: "jobs/s, history written",
              project: floorMedianRound.ours.rate,
              baseline: floorMedianRound.floor.rate,
              baselineName: "floor (raw Worker + 1 row/job)",
              target: ">= 0.95x",
            },
            0.95,
          ),
          info(scenario, "jobs/s, history written", oursRound.ours.rate, oursRound.raw.rate),
          info(scenario, "jobs/s, Redis drained", oursRound.ours.drain.rate, oursRound.raw.rate),
          ...split(scenario, oursRound.ours.drain, oursRound.raw.drain),
          // The floor: a raw Worker plus one history row per job and nothing else. Its ratio bounds
          // what any worker that writes history can reach on these cores.
          info(floorScenario, "jobs/s, history written", floorRound.floor.rate, floorRound.raw.rate),
          ...split(floorScenario, floorRound.floor.drain, floorRound.raw.drain),
          // Tracing: on (a CONSUMER span per job, OTLP/HTTP to a loopback sink) vs off, same round.
          info(tracedScenario, "jobs/s, history written", tracedRound.traced.rate, tracedRound.ours.rate, "ours, tracing off"),
          info(
            tracedScenario,
            "worker CPU µs / job",
            tracedRound.traced.drain.cpuUsPerJob,
            tracedRound.ours.drain.cpuUsPerJob,
            "ours, tracing off",
          ),
        ],
        details: {
          count,
          rounds,
          concurrency: CONCURRENCY,
          oursVsFloor: vsFloor,
          oursRatios: ratios("ours"),
          floorRatios: ratios("floor"),
          tracedVsOff: tracedRatios,
          otlpBytesExported: sink.bytes(),
          results,
        },
      };
    } finally {
      await sink.close();
      await db.end();
      await stack.stop();
    }
  },
} satisfies Scenario;
