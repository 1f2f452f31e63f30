// Fan-out: N graphql-ws subscribers on one API process, spread over 1,000 jobs that report 200
// progress events/s in all. Per level, on a fresh stack:
//   1. connect all N, each waiting for its SNAPSHOT (timed on its own: "connect s");
//   2. settle for SETTLE_MS, so whatever queued up while connecting is delivered;
//   3. measure over a fixed window of steady 200 events/s: delivery latency (the worker's `at` to
//      client receipt; the clock is explained in load/ws-subscribers.ts), the API's event-loop
//      delay and its resident memory. Gaps and duplicates in each subscription's tick sequence
//      count from its SNAPSHOT on, connecting and settling included.
// Memory per subscriber is the API's RSS (median of the window) minus its RSS before the first
// subscriber, over the subscribers; the marginal figure compares a level with the previous one.
//
// Diagnosis only: BENCH_FANOUT_LEVELS=10000,20000 runs just those levels; BENCH_FANOUT_PROFILE=<dir>
// runs the API with the inspector on and writes a CPU profile and an allocation profile of each
// window and a heap snapshot after it to <dir> (figures then carry the profilers' cost).

import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
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

export interface FanOutLevel {
  /** Subscribers asked for (the level). */
  level: number;
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

async function level(
  ctx: Parameters<Scenario["run"]>[0],
  wanted: number,
  jobs: number,
  windowMs: number,
  profileDir: string | undefined,
): Promise<FanOutLevel> {
  const tickMs = Math.round((jobs / EVENTS_PER_SECOND) * 1000);
  const stack = await ctx.startStack({
    workers: 1,
    workerEnv: { WORKER_CONCURRENCY: String(jobs) },
    apiEnv: profileDir ? { NODE_OPTIONS: "--inspect=127.0.0.1:0" } : {},
  });
  const clients: Steered<WsSubscribersMessage>[] = [];
  let inspector: Inspector | null = null;
  try {
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
    const healthUrl = stack.url.replace(/\/graphql$/, "/healthz");
    const metricsUrl = stack.url.replace(/\/graphql$/, "/metrics");
    const lagProbeIdle = summarize((await probeLag(healthUrl, 2_000)).samples);
    const pid = stack.api?.proc.pid ?? 0;
    const rssBefore = rssBytes(pid);
    const heapBefore = (await scrapeMetrics(metricsUrl)).heapUsedBytes;
    // One socket per subscriber. The hard limit can't be raised without CAP_SYS_RESOURCE (the soft
    // one already equals it), so a level past it runs with what fits, and says so.
    const openFilesLimit = Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))?.[1] ?? Number.NaN);
    const subscribers = Number.isFinite(openFilesLimit) ? Math.min(wanted, openFilesLimit - FD_RESERVE) : wanted;

    const processes = subscribers >= 10_000 ? 4 : 2;
    const t0 = Date.now();
    for (let p = 0; p < processes; p++) {
      const mine: string[] = [];
      for (let i = p; i < subscribers; i += processes) mine.push(ids[i % jobs] as string);
      clients.push(
        steer<WsSubscribersMessage>("load/ws-subscribers.ts", {
          wsUrl: stack.url.replace(/^http/, "ws"),
          apiKey: ctx.apiKey,
          queue: "demo",
          jobIds: mine,
          openConcurrency: 50,
        }),
      );
    }
    const subs = await Promise.all(clients.map((c) => c.next<Subscribed>("subscribed", 600_000)));
    const connectSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, SETTLE_MS));

    // The window: latencies, event counts and the loop-delay histogram start here.
    for (const c of clients) c.send("reset");
    await scrapeMetrics(metricsUrl);
    await inspector?.startProfile();
    await inspector?.startAllocationSampling();
    // Resident memory through the window (every 500 ms): a single reading lands anywhere in a GC cycle.
    const rssSamples: number[] = [];
    const rssTimer = setInterval(() => rssSamples.push(rssBytes(pid)), 500);
    const probe = await probeLag(healthUrl, windowMs).finally(() => clearInterval(rssTimer));
    const metrics = await scrapeMetrics(metricsUrl);
    for (const c of clients) c.send("report");
    const rssAfter = median(rssSamples.length ? rssSamples : [rssBytes(pid)]);
    const reports = await Promise.all(clients.map((c) => c.next<Report>("report")));
    if (inspector && profileDir) {
      await inspector.stopProfile(path.join(profileDir, `fan-out-${wanted}.cpuprofile`));
      await inspector.stopAllocationSampling(path.join(profileDir, `fan-out-${wanted}.heapprofile`));
      await inspector.heapSnapshot(path.join(profileDir, `fan-out-${wanted}.heapsnapshot`));
    }
    const subscribed = subs.reduce((a, s) => a + s.subscribed, 0);
    return {
      level: wanted,
      subscribers,
      subscribed,
      failed: subs.reduce((a, s) => a + s.failed, 0),
      connectSeconds,
      settleMs: SETTLE_MS,
      windowMs,
      latency: summarize(reports.flatMap((r) => r.samples)),
      latencyFromStream: summarize(reports.flatMap((r) => r.fromStream ?? [])),
      events: reports.reduce((a, r) => a + r.events, 0),
      expectedEvents: Math.round((subscribed * EVENTS_PER_SECOND * windowMs) / 1000 / jobs),
      gaps: reports.reduce((a, r) => a + r.gaps, 0),
      duplicates: reports.reduce((a, r) => a + (r.duplicates ?? 0), 0),
      dropped: reports.reduce((a, r) => a + r.dropped, 0),
      rssBeforeMiB: rssBefore / 2 ** 20,
      rssAfterMiB: rssAfter / 2 ** 20,
      rssWindowMinMiB: Math.min(...rssSamples) / 2 ** 20,
      rssWindowMaxMiB: Math.max(...rssSamples) / 2 ** 20,
      kbPerSubscriber: (rssAfter - rssBefore) / 1024 / Math.max(1, subscribed),
      kbPerSubscriberMarginal: null,
      heapBeforeMiB: heapBefore / 2 ** 20,
      heapAfterMiB: metrics.heapUsedBytes / 2 ** 20,
      lag: { p50: metrics.lagP50, p99: metrics.lagP99, max: metrics.lagMax },
      lagProbe: summarize(probe.samples),
      lagProbeIdle,
      lagProbeFailures: probe.failures,
      openFilesLimit,
      clockDriftMs: Math.max(0, ...reports.map((r) => Math.abs(r.clockDriftMs ?? 0))),
      clientLoopDelay: {
        p99: Math.max(0, ...reports.map((r) => r.loopDelay?.p99 ?? 0)),
        max: Math.max(0, ...reports.map((r) => r.loopDelay?.max ?? 0)),
      },
      firstError: subs.find((s) => s.firstError)?.firstError ?? null,
    };
  } finally {
    inspector?.close();
    for (const c of clients) c.kill();
    await stack.stop();
  }
}

export default {
  name: "fan-out",
  async run(ctx) {
    const levels = process.env.BENCH_FANOUT_LEVELS
      ? process.env.BENCH_FANOUT_LEVELS.split(",").map(Number)
      : ctx.quick
        ? [500]
        : [1_000, 5_000, 10_000, 20_000];
    const jobs = ctx.quick ? 100 : 1_000;
    const windowMs = ctx.quick ? 3_000 : 20_000;
    const profileDir = process.env.BENCH_FANOUT_PROFILE || undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const results: FanOutLevel[] = [];
    const rows: Row[] = [];
    for (const n of levels) {
      ctx.log(`fan-out: ${n} subscribers`);
      let r: FanOutLevel;
      try {
        r = await level(ctx, n, jobs, windowMs, profileDir);
      } catch (err) {
        // One level failing must not lose the others.
        rows.push(errorRow(`fan-out ${n.toLocaleString("en")} subs`, err, n === 10_000 ? false : null));
        continue;
      }
      const previous = results.at(-1);
      if (previous && r.subscribed > previous.subscribed) {
        r.kbPerSubscriberMarginal = ((r.rssAfterMiB - previous.rssAfterMiB) * 1024) / (r.subscribed - previous.subscribed);
      }
      results.push(r);
      ctx.log(
        `fan-out ${r.subscribed}/${n}: connect ${r.connectSeconds.toFixed(1)} s, delivery p50 ${r.latency.p50.toFixed(1)} / p99 ${r.latency.p99.toFixed(1)} ms ` +
          `(from stream ${r.latencyFromStream.p50.toFixed(0)} / ${r.latencyFromStream.p99.toFixed(0)}), ` +
          `${r.events}/${r.expectedEvents} events, gaps ${r.gaps}, dup ${r.duplicates}, ${r.kbPerSubscriber.toFixed(1)} KB/sub, ` +
          `lag p99 ${r.lag.p99.toFixed(1)} ms (probe ${r.lagProbe.p99.toFixed(1)}, clients ${r.clientLoopDelay.p99.toFixed(1)} / max ${r.clientLoopDelay.max.toFixed(0)}), ` +
          `clock drift ${r.clockDriftMs.toFixed(1)} ms`,
      );
      // The targets are set at 10k subscribers; other levels are reported without a verdict.
      const judged = n === 10_000;
      const scenario = `fan-out ${n.toLocaleString("en")} subs`;
      const base = { scenario, baseline: null, baselineName: "absolute target", ratio: null };
      const capped =
        r.subscribers < n ? `${r.subscribers.toLocaleString("en")} attempted (API open-files limit ${r.openFilesLimit})` : null;
      const failed = r.subscribed < r.subscribers ? `${r.subscribed} subscribed: ${r.firstError}` : null;
      const short = [capped, failed].filter(Boolean).join("; ") || undefined;
      rows.push(
        {
          ...base,
          metric: "delivery p99 ms",
          project: r.latency.p99,
          baseline: r.latency.p50,
          baselineName: "delivery p50 ms",
          target: "<= 50 ms @10k",
          pass: judged ? r.latency.p99 <= 50 && !short : null,
          note: short,
        },
        {
          ...base,
          metric: "gaps",
          project: r.gaps,
          target: "0 @10k",
          pass: judged ? r.gaps === 0 && r.duplicates === 0 && r.dropped === 0 : null,
          note:
            [r.duplicates ? `${r.duplicates} duplicates` : "", r.dropped ? `${r.dropped} dropped` : ""].filter(Boolean).join(", ") ||
            undefined,
        },
        {
          ...base,
          metric: "KB / subscriber",
          project: r.kbPerSubscriber,
          target: "<= 25 @10k",
          pass: judged ? r.kbPerSubscriber <= 25 : null,
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
          target: "<= 30 ms @10k",
          pass: judged ? r.lag.p99 <= 30 : null,
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
    return { rows, details: { jobs, eventsPerSecond: EVENTS_PER_SECOND, settleMs: SETTLE_MS, windowMs, levels: results } };
  },
} satisfies Scenario;
