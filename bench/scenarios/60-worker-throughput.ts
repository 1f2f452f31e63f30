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
import { cpuMs, machineBusyMs, serverCpuMs } from "../lib/stack.ts";
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
  /** CPU time of the bench's Redis over that span, per job (`serverCpuMs`: not the machine's other Redis servers). */
  redisUsPerJob: number;
  /** CPU time of the bench's PostgreSQL (postmaster, backends, autovacuum) over that span, per job. */
  postgresUsPerJob: number;
}

/** The servers whose CPU time a drain counts (URLs: `serverCpuMs` finds each by its port). */
interface Servers {
  redisUrl: string;
  databaseUrl: string;
}

/**
 * Polls until `done()` reaches `count` (every `everyMs`); jobs/s between 10% and 100% done, and the
 * CPU time per job over the same span of the worker process (`pid`), Redis, PostgreSQL and the machine.
 */
async function drain(
  count: number,
  done: () => Promise<number>,
  pid: number,
  servers: Servers,
  timeoutMs: number,
  everyMs = 20,
): Promise<Drain> {
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
      redis1 = serverCpuMs(servers.redisUrl);
      postgres1 = serverCpuMs(servers.databaseUrl);
    }
    if (n >= count) {
      const jobs = count - count / 10;
      return {
        rate: (jobs / (now - t1)) * 1000,
        cpuUsPerJob: ((cpuMs(pid) - cpu1) * 1000) / jobs,
        machineUsPerJob: ((machineBusyMs() - machine1) * 1000) / jobs,
        redisUsPerJob: ((serverCpuMs(servers.redisUrl) - redis1) * 1000) / jobs,
        postgresUsPerJob: ((serverCpuMs(servers.databaseUrl) - postgres1) * 1000) / jobs,
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

const KINDS = ["raw", "floor", "ours", "traced", "base"] as const;
type Kind = (typeof KINDS)[number];
type Round = Partial<Record<Kind, Run>>;

/**
 * Which workers run in each round: `BENCH_WORKER_KINDS` (comma-separated, default
 * `raw,floor,ours,traced`), plus `base` when `BENCH_WORKER_BASE` names another checkout (its
 * workers/main.ts, same environment: an A/B of two versions of our worker in the same rounds).
 */
function kindsToRun(): Kind[] {
  const named = (process.env.BENCH_WORKER_KINDS ?? "raw,floor,ours,traced").split(",").map((k) => k.trim());
  const kinds = KINDS.filter((k) => named.includes(k) && k !== "base");
  if (process.env.BENCH_WORKER_BASE) kinds.push("base");
  if (kinds.length === 0) throw new Error(`BENCH_WORKER_KINDS names none of ${KINDS.join(", ")}`);
  return kinds;
}

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
    const rounds = Number(process.env.BENCH_WORKER_ROUNDS) || (ctx.quick ? 1 : 5);
    const timeoutMs = ctx.quick ? 60_000 : 240_000;
    const stack = await ctx.startStack({ noApi: true });
    const db = new pg.Client({ connectionString: stack.databaseUrl });
    await db.connect();
    const sink = await startOtlpSink();
    const servers: Servers = { redisUrl: ctx.redisUrl, databaseUrl: stack.databaseUrl };

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
        const drained = drain(count, async () => count - (await remaining(queue)), worker.child.pid as number, servers, timeoutMs);
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
    const base = process.env.BENCH_WORKER_BASE;
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
      // Another checkout's worker (BENCH_WORKER_BASE), same environment: before / after a change.
      base: () => ours({}, base),
    };

    async function ours(env: Record<string, string>, from?: string): Promise<Run> {
      const queue = await fill(ctx.redisUrl, bullPrefix(stack.prefix, "demo"), count);
      const worker = await stack.startWorker({ WORKER_CONCURRENCY: String(CONCURRENCY), ...env }, from);
      try {
        const drained = drain(count, async () => count - (await remaining(queue)), worker.proc.pid as number, servers, timeoutMs);
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
      const kinds = kindsToRun();
      const results: Round[] = [];
      for (let r = 0; r < rounds; r++) {
        const round: Round = {};
        // Alternating order, so drift within a round does not always favour the same worker.
        for (const kind of r % 2 === 0 ? kinds : [...kinds].reverse()) {
          const run = await runners[kind]();
          round[kind] = run;
          const d = run.drain;
          ctx.log(
            `round ${r + 1} ${kind}: ${run.rate.toFixed(0)} jobs/s; CPU µs/job worker ${d.cpuUsPerJob.toFixed(1)}, Redis ${d.redisUsPerJob.toFixed(1)}, PostgreSQL ${d.postgresUsPerJob.toFixed(1)}, machine ${d.machineUsPerJob.toFixed(1)}`,
          );
          // Every run starts on empty tables: history rates are read from job_history, and a worker's
          // stats fold (workers/stats-folder.ts) must fold its own rows' contributions, not the last run's.
          await db.query("TRUNCATE job_history, job_stats_pending");
          await db.query("VACUUM ANALYZE job_history");
        }
        results.push(round);
      }
      const has = (kind: Kind) => kinds.includes(kind);
      const run = (r: Round, kind: Kind) => r[kind] as Run;
      /** The round whose a/b rate ratio is the median one (its own figures stay consistent with each other). */
      const medianOf = (a: Kind, b: Kind) => {
        const ratios = results.map((r) => run(r, a).rate / run(r, b).rate);
        const round = results.find((r) => run(r, a).rate / run(r, b).rate === median(ratios)) ?? (results[0] as Round);
        return { ratios, round };
      };
      const scenario = `worker no-op x${count}, c=${CONCURRENCY}, median of ${rounds}`;
      const floorScenario = `floor: raw Worker + 1 row/job, x${count}, median of ${rounds}`;
      const tracedScenario = `ours, tracing on (OTLP sink on loopback), x${count}, median of ${rounds}`;
      const baseScenario = `ours vs BENCH_WORKER_BASE (another checkout), x${count}, median of ${rounds}`;
      const info = (on: string, metric: string, project: number, baseline: number | null, baselineName = "raw BullMQ Worker") =>
        ratioRow({ scenario: on, metric, project, baseline, baselineName: baseline === null ? "-" : baselineName, target: "-" }, null);
      // Where the CPU goes: the worker process itself, then Redis and PostgreSQL (other processes on
      // the same two cores), then everything on the machine.
      const split = (on: string, d: Drain, than: Drain | null, thanName = "raw BullMQ Worker") => [
        info(on, "worker CPU µs / job", d.cpuUsPerJob, than?.cpuUsPerJob ?? null, thanName),
        info(on, "Redis CPU µs / job", d.redisUsPerJob, than?.redisUsPerJob ?? null, thanName),
        info(
          on,
          "PostgreSQL CPU µs / job",
          d.postgresUsPerJob,
          than && thanName !== "raw BullMQ Worker" ? than.postgresUsPerJob : null,
          thanName,
        ),
        info(on, "machine CPU µs / job", d.machineUsPerJob, than?.machineUsPerJob ?? null, thanName),
      ];
      // Per kind, the median over rounds of each CPU figure (the steadiest comparison on a loaded machine).
      const cpuMedians = Object.fromEntries(
        kinds.map((k) => [
          k,
          Object.fromEntries(
            (["cpuUsPerJob", "redisUsPerJob", "postgresUsPerJob", "machineUsPerJob"] as const).map((f) => [
              f,
              median(results.map((r) => run(r, k).drain[f])),
            ]),
          ),
        ]),
      );
      const rows = [];
      const details: Record<string, unknown> = { count, rounds, concurrency: CONCURRENCY, kinds, cpuMedians };
      if (has("ours") && has("floor")) {
        // The target (issue #19): ours against the floor of the same round, median over rounds.
        const { ratios, round } = medianOf("ours", "floor");
        details.oursVsFloor = ratios;
        rows.push(
          ratioRow(
            {
              scenario,
              metric: "jobs/s, history written",
              project: run(round, "ours").rate,
              baseline: run(round, "floor").rate,
              baselineName: "floor (raw Worker + 1 row/job)",
              target: ">= 0.95x",
            },
            0.95,
          ),
          ...split(scenario, run(round, "ours").drain, run(round, "floor").drain, "floor, same round"),
        );
      }
      if (has("raw")) {
        for (const kind of ["ours", "floor"] as const) {
          if (!has(kind)) continue;
          const { ratios, round } = medianOf(kind, "raw");
          details[kind === "ours" ? "oursRatios" : "floorRatios"] = ratios;
          const on = kind === "ours" ? scenario : floorScenario;
          rows.push(info(on, "jobs/s, history written", run(round, kind).rate, run(round, "raw").rate));
          if (kind === "ours") rows.push(info(on, "jobs/s, Redis drained", run(round, kind).drain.rate, run(round, "raw").rate));
          // The floor: a raw Worker plus one history row per job and nothing else. Its ratio bounds
          // what any worker that writes history can reach on these cores.
          rows.push(...split(on, run(round, kind).drain, run(round, "raw").drain));
        }
      }
      if (has("traced") && has("ours")) {
        // Tracing: on (a CONSUMER span per job, OTLP/HTTP to a loopback sink) vs off, same round.
        const { ratios, round } = medianOf("traced", "ours");
        details.tracedVsOff = ratios;
        details.otlpBytesExported = sink.bytes();
        rows.push(
          info(tracedScenario, "jobs/s, history written", run(round, "traced").rate, run(round, "ours").rate, "ours, tracing off"),
          info(
            tracedScenario,
            "worker CPU µs / job",
            run(round, "traced").drain.cpuUsPerJob,
            run(round, "ours").drain.cpuUsPerJob,
            "ours, tracing off",
          ),
        );
      }
      if (has("base") && has("ours")) {
        const { ratios, round } = medianOf("ours", "base");
        details.oursVsBase = ratios;
        rows.push(
          info(baseScenario, "jobs/s, history written", run(round, "ours").rate, run(round, "base").rate, "base checkout"),
          ...split(baseScenario, run(round, "ours").drain, run(round, "base").drain, "base checkout"),
        );
      }
      details.results = results;
      return { rows, details };
    } finally {
      await sink.close();
      await db.end();
      await stack.stop();
    }
  },
} satisfies Scenario;
