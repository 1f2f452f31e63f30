// Fan-out: N graphql-ws subscribers on one API process (or N on each of several: "2x9500"), spread
// over 1,000 jobs of one queue that report 200 progress events/s in all. Per level, on a fresh stack:
//   1. connect all N, each waiting for its SNAPSHOT (timed on its own: "connect s");
//   2. settle for SETTLE_MS, so whatever queued up while connecting is delivered;
//   3. measure over a fixed window of steady 200 events/s: delivery latency (the worker's `at` to
//      client receipt; the clock is explained in load/ws-subscribers.ts), the API's event-loop
//      delay and its resident memory. Gaps and duplicates in each subscription's tick sequence
//      count from its SNAPSHOT on, connecting and settling included.
// Memory per subscriber is the API's RSS (median of the window) minus its RSS before the first
// subscriber, over the subscribers; the marginal figure compares a level with the previous one.
//
// With several API instances, one relays the queue (its subscribers get events in-process) and the
// others get them over Redis pub/sub; every figure is per instance, the targets apply to each.
//
// Diagnosis only: BENCH_FANOUT_LEVELS=10000,2x9500 runs just those levels; BENCH_FANOUT_PROFILE=<dir>
// runs the API with the inspector on and writes a CPU profile and an allocation profile of each
// window and a heap snapshot after it to <dir> (figures then carry the profilers' cost).

import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { type RunningProcess, startApi } from "../../src/testing/processes.ts";
import { enqueueNoops } from "../lib/graphql-client.ts";
import { connectInspector, type Inspector, inspectorUrl } from "../lib/inspector.ts";
import { type Steered, steer } from "../lib/ipc.ts";
import { errorRow, type Row, type Scenario } from "../lib/scenario.ts";
import { rssBytes } from "../lib/stack.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

type Report = Extract<WsSubscribersMessage, { type: "report" }>;
type Subscribed = Extract<WsSubscribersMessage, { type: "subscribed" }>;

const EVENTS_PER_SECOND = 200;
/** After the last SNAPSHOT, before the window: whatever queued up while connecting drains here. */
const SETTLE_MS = 5_000;
/** monitorEventLoopDelay's sampling interval in prom-client's default metrics (recorded delays include it). */
const LAG_RESOLUTION_MS = 10;
/** File descriptors the API needs besides its WebSockets (Redis, PostgreSQL, probes, stdio, epoll). */
const FD_RESERVE = 500;

/**
 * Lag seen from outside: GET /healthz every 20 ms from this process. Its round trip is the loop's
 * lag plus the cost of one HTTP request (the idle figure shows that part).
 */
async function probeLag(healthUrl: string, ms: number): Promise<{ samples: number[]; failures: number }> {
  const samples: number[] = [];
  let failures = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const t = nowMs();
    try {
      await fetch(healthUrl, { signal: AbortSignal.timeout(5_000) }).then((r) => r.arrayBuffer());
      samples.push(nowMs() - t);
    } catch {
      // Refused or timed out (e.g. the API is out of file descriptors): counted, not fatal.
      failures++;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { samples, failures };
}

/**
 * The API's own event-loop delay (prom-client's monitorEventLoopDelay histogram, which /metrics
 * resets on every scrape): scrape once to start a window, again to read it. Percentiles in ms, the
 * 10 ms sampling interval taken out. Also the V8 heap in use at the scrape.
 */
async function scrapeMetrics(metricsUrl: string): Promise<{ lagP50: number; lagP99: number; lagMax: number; heapUsedBytes: number }> {
  const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(10_000) })).text();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  const lag = (name: string) => Math.max(0, value(name) * 1000 - LAG_RESOLUTION_MS);
  return {
    lagP50: lag("nodejs_eventloop_lag_p50_seconds"),
    lagP99: lag("nodejs_eventloop_lag_p99_seconds"),
    lagMax: lag("nodejs_eventloop_lag_max_seconds"),
    heapUsedBytes: value("nodejs_heap_size_used_bytes"),
  };
}

/** The targets per API instance (issue #19, section 2b), at 10,000 subscribers and at 2 x 9,500. */
const TARGET_P99_MS = 20;
const TARGET_KB_PER_SUBSCRIBER = 15;
const TARGET_LAG_P99_MS = 10;

export interface FanOutLevel {
  /** Subscribers asked for (the level), per API instance. */
  level: number;
  /** Which API instance of the level (1-based) and how many ran. */
  instance: number;
  instances: number;
  /** Subscribers attempted: the level, or less when the API's open-files limit can't hold it. */
  subscribers: number;
  subscribed: number;
  failed: number;
  /** From spawning the clients until every subscription had its SNAPSHOT. */
  connectSeconds: number;
  settleMs: number;
  windowMs: number;
  /** Delivery latency of the PROGRESS events received in the window. */
  latency: ReturnType<typeof summarize>;
  /** The same deliveries from the moment the event entered the stream (whole ms): relay and API only. */
  latencyFromStream: ReturnType<typeof summarize>;
  events: number;
  /** Deliveries the window should hold at 200 events/s (each event to each of its job's subscribers). */
  expectedEvents: number;
  /** Ticks missed and ticks received twice, from each subscription's SNAPSHOT to the window's end. */
  gaps: number;
  duplicates: number;
  /** Subscriptions closed by the server after their SNAPSHOT. */
  dropped: number;
  /** The API's resident memory before the first subscriber, and the median through the window. */
  rssBeforeMiB: number;
  rssAfterMiB: number;
  rssWindowMinMiB: number;
  rssWindowMaxMiB: number;
  kbPerSubscriber: number;
  /**
   * Resident memory added per subscriber from the previous level to this one (each level is a fresh
   * API process): what one more subscriber costs, without the fixed part every level pays (code
   * compiled, young generation grown to its working size).
   */
  kbPerSubscriberMarginal: number | null;
  heapBeforeMiB: number;
  heapAfterMiB: number;
  /** The API's own event-loop delay over the window (monitorEventLoopDelay). */
  lag: { p50: number; p99: number; max: number };
  /** GET /healthz round trips during the window, and idle before any subscriber. */
  lagProbe: ReturnType<typeof summarize>;
  lagProbeIdle: ReturnType<typeof summarize>;
  /** /healthz probes that failed during the window (refused or > 5 s). */
  lagProbeFailures: number;
  openFilesLimit: number;
  /** Largest |client clock - Date.now()| seen (ms): the latency clock's own error bound. */
  clockDriftMs: number;
  /** The load processes' own event-loop delay in the window (worst process, ms): their share of the latency tail. */
  clientLoopDelay: { p99: number; max: number };
  firstError: string | null;
}

/** What the harness watches of one API instance. */
interface Instance {
  api: RunningProcess;
  url: string;
  clients: Steered<WsSubscribersMessage>[];
}

async function level(
  ctx: Parameters<Scenario["run"]>[0],
  wanted: number,
  jobs: number,
  windowMs: number,
  profileDir: string | undefined,
  instanceCount = 1,
): Promise<FanOutLevel[]> {
  const tickMs = Math.round((jobs / EVENTS_PER_SECOND) * 1000);
  const stack = await ctx.startStack({
    workers: 1,
    workerEnv: { WORKER_CONCURRENCY: String(jobs) },
    apiEnv: profileDir ? { NODE_OPTIONS: "--inspect=127.0.0.1:0" } : {},
  });
  const instances: Instance[] = [];
  let inspector: Inspector | null = null;
  try {
    if (!stack.api) throw new Error("no API");
    instances.push({ api: stack.api, url: stack.url, clients: [] });
    // More instances: the same configuration (prefix, database), each its own process and relay
    // candidate; one of them relays the queue, the others get its events over pub/sub.
    for (let i = 1; i < instanceCount; i++) {
      const api = await startApi({ ...stack.env });
      instances.push({ api, url: /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "", clients: [] });
    }
    if (profileDir) {
      const url = inspectorUrl(stack.api?.stderr() ?? "");
      if (!url) throw new Error("BENCH_FANOUT_PROFILE: the API printed no inspector URL");
      inspector = await connectInspector(url);
    }
    // Starts spread evenly over one tick period, so the 200 events/s arrive evenly, not in bursts.
    // ticks: far more than the level needs; the jobs die with the worker when the stack stops.
    const ids = await enqueueNoops(
      stack.url,
      ctx.apiKey,
      jobs,
      { ticks: 10_000, tickMs },
      { delayMs: (i) => Math.round((i * tickMs) / jobs) },
    );
    const watched = instances.map((inst) => {
      const pid = inst.api.proc.pid ?? 0;
      // One socket per subscriber. The hard limit can't be raised without CAP_SYS_RESOURCE (the soft
      // one already equals it), so a level past it runs with what fits, and says so.
      const openFilesLimit = Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))?.[1] ?? Number.NaN);
      return {
        inst,
        pid,
        healthUrl: inst.url.replace(/\/graphql$/, "/healthz"),
        metricsUrl: inst.url.replace(/\/graphql$/, "/metrics"),
        openFilesLimit,
        subscribers: Number.isFinite(openFilesLimit) ? Math.min(wanted, openFilesLimit - FD_RESERVE) : wanted,
      };
    });
    const idle = await Promise.all(watched.map((w) => probeLag(w.healthUrl, 2_000)));
    const before = await Promise.all(
      watched.map(async (w) => ({ rss: rssBytes(w.pid), heap: (await scrapeMetrics(w.metricsUrl)).heapUsedBytes })),
    );

    // The load: 4 client processes per 10,000 subscribers (a process holds a few thousand sockets well).
    const t0 = Date.now();
    for (const w of watched) {
      const processes = w.subscribers >= 10_000 ? 4 : w.subscribers >= 5_000 ? 3 : 2;
      for (let p = 0; p < processes; p++) {
        const mine: string[] = [];
        for (let i = p; i < w.subscribers; i += processes) mine.push(ids[i % jobs] as string);
        w.inst.clients.push(
          steer<WsSubscribersMessage>("load/ws-subscribers.ts", {
            wsUrl: w.inst.url.replace(/^http/, "ws"),
            apiKey: ctx.apiKey,
            queue: "demo",
            jobIds: mine,
            openConcurrency: 50,
          }),
        );
      }
    }
    const subs = await Promise.all(watched.map((w) => Promise.all(w.inst.clients.map((c) => c.next<Subscribed>("subscribed", 900_000)))));
    const connectSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, SETTLE_MS));

    // The window: latencies, event counts and the loop-delay histogram start here.
    for (const w of watched) for (const c of w.inst.clients) c.send("reset");
    await Promise.all(watched.map((w) => scrapeMetrics(w.metricsUrl)));
    await inspector?.startProfile();
    await inspector?.startAllocationSampling();
    // Resident memory through the window (every 500 ms): a single reading lands anywhere in a GC cycle.
    const rssSamples: number[][] = watched.map(() => []);
    const rssTimer = setInterval(() => {
      for (const [i, w] of watched.entries()) rssSamples[i]?.push(rssBytes(w.pid));
    }, 500);
    const probes = await Promise.all(watched.map((w) => probeLag(w.healthUrl, windowMs))).finally(() => clearInterval(rssTimer));
    const metrics = await Promise.all(watched.map((w) => scrapeMetrics(w.metricsUrl)));
    for (const w of watched) for (const c of w.inst.clients) c.send("report");
    const reports = await Promise.all(watched.map((w) => Promise.all(w.inst.clients.map((c) => c.next<Report>("report")))));
    if (inspector && profileDir) {
      await inspector.stopProfile(path.join(profileDir, `fan-out-${wanted}.cpuprofile`));
      await inspector.stopAllocationSampling(path.join(profileDir, `fan-out-${wanted}.heapprofile`));
      await inspector.heapSnapshot(path.join(profileDir, `fan-out-${wanted}.heapsnapshot`));
    }
    return watched.map((w, i): FanOutLevel => {
      const mine = reports[i] ?? [];
      const subscribedSet = subs[i] ?? [];
      const samples = rssSamples[i] ?? [];
      const rssBefore = before[i]?.rss ?? Number.NaN;
      const rssAfter = median(samples.length ? samples : [rssBytes(w.pid)]);
      const subscribed = subscribedSet.reduce((a, s) => a + s.subscribed, 0);
      const probe = probes[i] ?? { samples: [], failures: 0 };
      const m = metrics[i] as Awaited<ReturnType<typeof scrapeMetrics>>;
      return {
        level: wanted,
        instance: i + 1,
        instances: instanceCount,
        subscribers: w.subscribers,
        subscribed,
        failed: subscribedSet.reduce((a, s) => a + s.failed, 0),
        connectSeconds,
        settleMs: SETTLE_MS,
        windowMs,
        latency: summarize(mine.flatMap((r) => r.samples)),
        latencyFromStream: summarize(mine.flatMap((r) => r.fromStream ?? [])),
        events: mine.reduce((a, r) => a + r.events, 0),
        expectedEvents: Math.round((subscribed * EVENTS_PER_SECOND * windowMs) / 1000 / jobs),
        gaps: mine.reduce((a, r) => a + r.gaps, 0),
        duplicates: mine.reduce((a, r) => a + (r.duplicates ?? 0), 0),
        dropped: mine.reduce((a, r) => a + r.dropped, 0),
        rssBeforeMiB: rssBefore / 2 ** 20,
        rssAfterMiB: rssAfter / 2 ** 20,
        rssWindowMinMiB: Math.min(...samples) / 2 ** 20,
        rssWindowMaxMiB: Math.max(...samples) / 2 ** 20,
        kbPerSubscriber: (rssAfter - rssBefore) / 1024 / Math.max(1, subscribed),
        kbPerSubscriberMarginal: null,
        heapBeforeMiB: (before[i]?.heap ?? Number.NaN) / 2 ** 20,
        heapAfterMiB: m.heapUsedBytes / 2 ** 20,
        lag: { p50: m.lagP50, p99: m.lagP99, max: m.lagMax },
        lagProbe: summarize(probe.samples),
        lagProbeIdle: summarize(idle[i]?.samples ?? []),
        lagProbeFailures: probe.failures,
        openFilesLimit: w.openFilesLimit,
        clockDriftMs: Math.max(0, ...mine.map((r) => Math.abs(r.clockDriftMs ?? 0))),
        clientLoopDelay: {
          p99: Math.max(0, ...mine.map((r) => r.loopDelay?.p99 ?? 0)),
          max: Math.max(0, ...mine.map((r) => r.loopDelay?.max ?? 0)),
        },
        firstError: subscribedSet.find((s) => s.firstError)?.firstError ?? null,
      };
    });
  } finally {
    inspector?.close();
    for (const inst of instances) for (const c of inst.clients) c.kill();
    // The stack stops its own API; the others are ours to stop.
    await Promise.all(instances.slice(1).map((inst) => inst.api.stop("SIGKILL")));
    await stack.stop();
  }
}

/** A level: subscribers per API instance, and how many instances ("10000", or "2x9500"). */
function parseLevel(spec: string): { perInstance: number; instances: number } {
  const [a, b] = spec.split("x");
  return b === undefined ? { perInstance: Number(a), instances: 1 } : { perInstance: Number(b), instances: Number(a) };
}

/** Levels judged against the targets: 10,000 on one instance, 9,500 on each of two. */
const judgedLevel = (perInstance: number, instances: number) =>
  (instances === 1 && perInstance === 10_000) || (instances === 2 && perInstance === 9_500);

export default {
  name: "fan-out",
  async run(ctx) {
    const levels = (
      process.env.BENCH_FANOUT_LEVELS
        ? process.env.BENCH_FANOUT_LEVELS.split(",")
        : ctx.quick
          ? ["500", "2x250"]
          : ["1000", "5000", "10000", "20000", "2x9500"]
    ).map(parseLevel);
    const jobs = ctx.quick ? 100 : 1_000;
    const windowMs = ctx.quick ? 3_000 : 20_000;
    const profileDir = process.env.BENCH_FANOUT_PROFILE || undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const results: FanOutLevel[] = [];
    const rows: Row[] = [];
    for (const { perInstance: n, instances } of levels) {
      const judged = judgedLevel(n, instances);
      const label = instances === 1 ? `${n.toLocaleString("en")} subs` : `${instances} APIs x ${n.toLocaleString("en")} subs`;
      ctx.log(`fan-out: ${label}`);
      let measured: FanOutLevel[];
      try {
        measured = await level(ctx, n, jobs, windowMs, profileDir, instances);
      } catch (err) {
        // One level failing must not lose the others.
        rows.push(errorRow(`fan-out ${label}`, err, judged ? false : null));
        continue;
      }
      for (const r of measured) {
        const previous = instances === 1 ? results.filter((x) => x.instances === 1).at(-1) : undefined;
        if (previous && r.subscribed > previous.subscribed) {
          r.kbPerSubscriberMarginal = ((r.rssAfterMiB - previous.rssAfterMiB) * 1024) / (r.subscribed - previous.subscribed);
        }
        results.push(r);
        const scenario = instances === 1 ? `fan-out ${label}` : `fan-out ${label}, API ${r.instance}`;
        ctx.log(
          `${scenario} ${r.subscribed}/${n}: connect ${r.connectSeconds.toFixed(1)} s, delivery p50 ${r.latency.p50.toFixed(1)} / p99 ${r.latency.p99.toFixed(1)} ms ` +
            `(from stream ${r.latencyFromStream.p50.toFixed(0)} / ${r.latencyFromStream.p99.toFixed(0)}), ` +
            `${r.events}/${r.expectedEvents} events, gaps ${r.gaps}, dup ${r.duplicates}, ${r.kbPerSubscriber.toFixed(1)} KB/sub, ` +
            `lag p99 ${r.lag.p99.toFixed(1)} ms (probe ${r.lagProbe.p99.toFixed(1)}, clients ${r.clientLoopDelay.p99.toFixed(1)} / max ${r.clientLoopDelay.max.toFixed(0)}), ` +
            `clock drift ${r.clockDriftMs.toFixed(1)} ms`,
        );
        const base = { scenario, baseline: null, baselineName: "absolute target", ratio: null };
        const capped =
          r.subscribers < n ? `${r.subscribers.toLocaleString("en")} attempted (API open-files limit ${r.openFilesLimit})` : null;
        const failed = r.subscribed < r.subscribers ? `${r.subscribed} subscribed: ${r.firstError}` : null;
        const short = [capped, failed].filter(Boolean).join("; ") || undefined;
        const at = "@10k and 2x9.5k";
        rows.push(
          {
            ...base,
            metric: "delivery p99 ms",
            project: r.latency.p99,
            baseline: r.latency.p50,
            baselineName: "delivery p50 ms",
            target: `<= ${TARGET_P99_MS} ms ${at}`,
            pass: judged ? r.latency.p99 <= TARGET_P99_MS && !short : null,
            note: short,
          },
          {
            ...base,
            metric: "gaps",
            project: r.gaps,
            target: `0 ${at}`,
            pass: judged ? r.gaps === 0 && r.duplicates === 0 && r.dropped === 0 : null,
            note:
              [r.duplicates ? `${r.duplicates} duplicates` : "", r.dropped ? `${r.dropped} dropped` : ""].filter(Boolean).join(", ") ||
              undefined,
          },
          {
            ...base,
            metric: "KB / subscriber",
            project: r.kbPerSubscriber,
            target: `<= ${TARGET_KB_PER_SUBSCRIBER} ${at}`,
            pass: judged ? r.kbPerSubscriber <= TARGET_KB_PER_SUBSCRIBER : null,
            note:
              r.kbPerSubscriberMarginal !== null && previous
                ? `${r.kbPerSubscriberMarginal.toFixed(1)} KB/sub from ${previous.subscribed.toLocaleString("en")} to here`
                : undefined,
          },
          {
            ...base,
            metric: "loop lag p99 ms",
            project: r.lag.p99,
            baseline: r.lagProbe.p99,
            baselineName: "GET /healthz p99 ms",
            target: `<= ${TARGET_LAG_P99_MS} ms ${at}`,
            pass: judged ? r.lag.p99 <= TARGET_LAG_P99_MS : null,
            note: r.lagProbeFailures ? `${r.lagProbeFailures} /healthz probes failed` : undefined,
          },
          {
            ...base,
            metric: "connect s",
            project: r.connectSeconds,
            target: "-",
            pass: null,
          },
        );
      }
    }
    return { rows, details: { jobs, eventsPerSecond: EVENTS_PER_SECOND, settleMs: SETTLE_MS, windowMs, levels: results } };
  },
} satisfies Scenario;
