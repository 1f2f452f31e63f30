// Fan-out: N graphql-ws subscribers on one API process, spread over 1,000 jobs that report 200
// progress events/s in all. Delivery latency, gaps, memory per subscriber and event-loop lag per level.

import { readFileSync } from "node:fs";
import { enqueueNoops } from "../lib/graphql-client.ts";
import { type Steered, steer } from "../lib/ipc.ts";
import { errorRow, type Row, type Scenario } from "../lib/scenario.ts";
import { rssBytes } from "../lib/stack.ts";
import { nowMs, summarize } from "../lib/stats.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

type Report = Extract<WsSubscribersMessage, { type: "report" }>;
type Subscribed = Extract<WsSubscribersMessage, { type: "subscribed" }>;

const EVENTS_PER_SECOND = 200;

/**
 * The API exposes no event-loop metric, so lag is measured from outside: GET /healthz every 20 ms
 * from this process. Its round trip is the loop's lag plus a sub-millisecond idle cost (reported too).
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

export interface FanOutLevel {
  subscribers: number;
  subscribed: number;
  failed: number;
  connectSeconds: number;
  latency: ReturnType<typeof summarize>;
  events: number;
  gaps: number;
  dropped: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  kbPerSubscriber: number;
  lagIdle: ReturnType<typeof summarize>;
  lag: ReturnType<typeof summarize>;
  /** /healthz probes that failed during the window (refused or > 5 s). */
  lagProbeFailures: number;
  openFilesLimit: number;
  firstError: string | null;
}

async function level(ctx: Parameters<Scenario["run"]>[0], subscribers: number, jobs: number, windowMs: number): Promise<FanOutLevel> {
  const tickMs = Math.round((jobs / EVENTS_PER_SECOND) * 1000);
  const stack = await ctx.startStack({ workers: 1, workerEnv: { WORKER_CONCURRENCY: String(jobs) } });
  const clients: Steered<WsSubscribersMessage>[] = [];
  try {
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
    const lagIdle = summarize((await probeLag(healthUrl, 2_000)).samples);
    const pid = stack.api?.proc.pid ?? 0;
    const rssBefore = rssBytes(pid);
    // One socket per subscriber: past this limit the API cannot accept more (reported, not raised).
    const openFilesLimit = Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))?.[1] ?? Number.NaN);

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
    const subs = await Promise.all(clients.map((c) => c.next<Subscribed>("subscribed", 300_000)));
    const connectSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 2_000));
    for (const c of clients) c.send("reset");
    const probe = await probeLag(healthUrl, windowMs);
    const lag = summarize(probe.samples);
    const rssAfter = rssBytes(pid);
    for (const c of clients) c.send("report");
    const reports = await Promise.all(clients.map((c) => c.next<Report>("report")));
    const subscribed = subs.reduce((a, s) => a + s.subscribed, 0);
    return {
      subscribers,
      subscribed,
      failed: subs.reduce((a, s) => a + s.failed, 0),
      connectSeconds,
      latency: summarize(reports.flatMap((r) => r.samples)),
      events: reports.reduce((a, r) => a + r.events, 0),
      gaps: reports.reduce((a, r) => a + r.gaps, 0),
      dropped: reports.reduce((a, r) => a + r.dropped, 0),
      rssBeforeMiB: rssBefore / 2 ** 20,
      rssAfterMiB: rssAfter / 2 ** 20,
      kbPerSubscriber: (rssAfter - rssBefore) / 1024 / Math.max(1, subscribed),
      lagIdle,
      lag,
      lagProbeFailures: probe.failures,
      openFilesLimit,
      firstError: subs.find((s) => s.firstError)?.firstError ?? null,
    };
  } finally {
    for (const c of clients) c.kill();
    await stack.stop();
  }
}

export default {
  name: "fan-out",
  async run(ctx) {
    const levels = ctx.quick ? [500] : [1_000, 5_000, 10_000, 20_000];
    const jobs = ctx.quick ? 100 : 1_000;
    const windowMs = ctx.quick ? 3_000 : 20_000;
    const results: FanOutLevel[] = [];
    const rows: Row[] = [];
    for (const n of levels) {
      ctx.log(`fan-out: ${n} subscribers`);
      let r: FanOutLevel;
      try {
        r = await level(ctx, n, jobs, windowMs);
      } catch (err) {
        // One level failing (e.g. past the API's open-files limit) must not lose the others.
        rows.push(errorRow(`fan-out ${n.toLocaleString("en")} subs`, err, n === 10_000 ? false : null));
        continue;
      }
      results.push(r);
      // The targets are set at 10k subscribers; other levels are reported without a verdict.
      const judged = n === 10_000;
      const scenario = `fan-out ${n.toLocaleString("en")} subs`;
      const base = { scenario, baseline: null, baselineName: "absolute target", ratio: null };
      const short = r.subscribed < n ? `${r.subscribed} subscribed (API open-files limit ${r.openFilesLimit}): ${r.firstError}` : undefined;
      rows.push(
        {
          ...base,
          metric: "delivery p99 ms",
          project: r.latency.p99,
          target: "<= 50 ms @10k",
          pass: judged ? r.latency.p99 <= 50 && !short : null,
          note: short,
        },
        {
          ...base,
          metric: "gaps",
          project: r.gaps,
          target: "0 @10k",
          pass: judged ? r.gaps === 0 && r.dropped === 0 : null,
          note: r.dropped ? `${r.dropped} dropped` : undefined,
        },
        {
          ...base,
          metric: "KB / subscriber",
          project: r.kbPerSubscriber,
          target: "<= 25 @10k",
          pass: judged ? r.kbPerSubscriber <= 25 : null,
        },
        {
          ...base,
          metric: "loop lag p99 ms",
          project: r.lag.p99,
          baseline: r.lagIdle.p99,
          baselineName: "same probe, idle",
          target: "<= 30 ms @10k",
          pass: judged ? r.lag.p99 <= 30 && r.lagProbeFailures === 0 : null,
          note: r.lagProbeFailures ? `${r.lagProbeFailures} probes failed` : undefined,
        },
      );
    }
    return { rows, details: { jobs, eventsPerSecond: EVENTS_PER_SECOND, windowMs, levels: results } };
  },
} satisfies Scenario;
