// Tenant fan-out: N `queueEvents` subscribers on one API process, each on a tenant-bound API key,
// split across T tenants, against the same N subscribers all bound to one tenant, same run (each
// phase on a fresh stack). Every subscriber receives the same PROGRESS events per second in both
// phases: each tenant has one job ticking EVENTS_PER_TENANT_S times a second, so the T-tenant phase
// puts T times more events through the queue's one channel and the fan-out must pick each event's
// N/T subscribers out of the N. Both phases use T keys (in the one-tenant phase all bound to the same
// tenant), so authentication does the same work. Latency: the worker's `at` to client receipt, as
// in fan-out (load/ws-subscribers.ts).
//
// BENCH_TENANT_FANOUT=<subscribers>,<tenants> picks the size (default 10,000 over 100; quick 500 over 10).

import { enqueueNoops, post } from "../lib/graphql-client.ts";
import { type Steered, steer } from "../lib/ipc.ts";
import type { BenchContext, Row, Scenario } from "../lib/scenario.ts";
import { summarize } from "../lib/stats.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

type Report = Extract<WsSubscribersMessage, { type: "report" }>;
type Subscribed = Extract<WsSubscribersMessage, { type: "subscribed" }>;

/** PROGRESS events per second each subscriber receives (its tenant's one job's ticks). */
const EVENTS_PER_TENANT_S = 0.5;
const SETTLE_MS = 5_000;
/** The tenant-split set's delivery p99 may be at most this many times the one-tenant set's. */
const MAX_RATIO = 2;

const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { __typename ... on CreateApiKeySuccess { secret } } }`;

interface Phase {
  tenants: number;
  subscribers: number;
  subscribed: number;
  failed: number;
  errors: number;
  connectSeconds: number;
  latency: ReturnType<typeof summarize>;
  events: number;
  expectedEvents: number;
  firstError: string | null;
}

/** One phase on a fresh stack: `keys` API keys bound to `tenantOfKey(k)`, subscriber i on key i % keys. */
async function phase(
  ctx: BenchContext,
  subscribers: number,
  keys: number,
  tenantOfKey: (k: number) => string,
  windowMs: number,
): Promise<Phase> {
  const tenants = new Set(Array.from({ length: keys }, (_, k) => tenantOfKey(k))).size;
  const tickMs = Math.round(1000 / EVENTS_PER_TENANT_S);
  const stack = await ctx.startStack({ workers: 1, workerEnv: { WORKER_CONCURRENCY: String(tenants) } });
  const clients: Steered<WsSubscribersMessage>[] = [];
  try {
    const secrets: string[] = [];
    for (let k = 0; k < keys; k++) {
      const r = await post<{ createApiKey: { secret?: string } }>(stack.url, ctx.apiKey, CREATE_KEY, {
        input: { name: `bench-tenant-${k}`, scopes: ["READ"], tenant: tenantOfKey(k) },
      });
      if (!r.createApiKey.secret) throw new Error(`createApiKey refused: ${JSON.stringify(r)}`);
      secrets.push(r.createApiKey.secret);
    }
    // One job per tenant, starts spread over one tick period so the queue's events arrive evenly.
    const tenantNames = [...new Set(Array.from({ length: keys }, (_, k) => tenantOfKey(k)))];
    await enqueueNoops(
      stack.url,
      ctx.apiKey,
      tenants,
      { ticks: 10_000, tickMs },
      { delayMs: (i) => Math.round((i * tickMs) / tenants), tenant: (i) => tenantNames[i] as string },
    );
    const processes = subscribers >= 5_000 ? 4 : 2;
    const t0 = Date.now();
    for (let p = 0; p < processes; p++) {
      const mine: string[] = [];
      for (let i = p; i < subscribers; i += processes) mine.push(secrets[i % keys] as string);
      clients.push(
        steer<WsSubscribersMessage>("load/ws-subscribers.ts", {
          wsUrl: stack.url.replace(/^http/, "ws"),
          apiKey: ctx.apiKey,
          queue: "demo",
          jobIds: [],
          queueEventsKeys: mine,
          openConcurrency: 50,
        }),
      );
    }
    const subs = await Promise.all(clients.map((c) => c.next<Subscribed>("subscribed", 900_000)));
    const connectSeconds = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    for (const c of clients) c.send("reset");
    await new Promise((r) => setTimeout(r, windowMs));
    for (const c of clients) c.send("report");
    const reports = await Promise.all(clients.map((c) => c.next<Report>("report")));
    const subscribed = subs.reduce((a, s) => a + s.subscribed, 0);
    return {
      tenants,
      subscribers,
      subscribed,
      failed: subs.reduce((a, s) => a + s.failed, 0),
      errors: reports.reduce((a, r) => a + (r.errors ?? 0), 0),
      connectSeconds,
      latency: summarize(reports.flatMap((r) => r.samples)),
      events: reports.reduce((a, r) => a + r.events, 0),
      expectedEvents: Math.round((subscribed * EVENTS_PER_TENANT_S * windowMs) / 1000),
      firstError: subs.find((s) => s.firstError)?.firstError ?? null,
    };
  } finally {
    for (const c of clients) c.kill();
    await stack.stop();
  }
}

export default {
  name: "tenant-fan-out",
  async run(ctx) {
    const [subscribers, tenants] = process.env.BENCH_TENANT_FANOUT
      ? (process.env.BENCH_TENANT_FANOUT.split(",").map(Number) as [number, number])
      : ctx.quick
        ? [500, 10]
        : [10_000, 100];
    const windowMs = ctx.quick ? 4_000 : 20_000;
    ctx.log(`tenant fan-out: ${subscribers} subscribers in one tenant`);
    const one = await phase(ctx, subscribers, tenants, () => "tenant-0", windowMs);
    ctx.log(
      `  one tenant: delivery p50 ${one.latency.p50.toFixed(1)} / p99 ${one.latency.p99.toFixed(1)} ms, ${one.events}/${one.expectedEvents} events`,
    );
    ctx.log(`tenant fan-out: ${subscribers} subscribers over ${tenants} tenants`);
    const split = await phase(ctx, subscribers, tenants, (k) => `tenant-${k}`, windowMs);
    ctx.log(
      `  ${tenants} tenants: delivery p50 ${split.latency.p50.toFixed(1)} / p99 ${split.latency.p99.toFixed(1)} ms, ${split.events}/${split.expectedEvents} events`,
    );

    const scenario = `tenant fan-out, ${subscribers.toLocaleString("en")} queueEvents subs`;
    const short = [one, split]
      .filter((p) => p.subscribed < p.subscribers || p.errors > 0)
      .map((p) => `${p.tenants} tenant(s): ${p.subscribed} subscribed, ${p.errors} refused: ${p.firstError}`)
      .join("; ");
    const ratio = one.latency.p99 > 0 ? split.latency.p99 / one.latency.p99 : null;
    const rows: Row[] = [
      {
        scenario,
        metric: "delivery p99 ms",
        project: split.latency.p99,
        baseline: one.latency.p99,
        baselineName: `same set in 1 tenant (${tenants} tenants here)`,
        ratio,
        target: `<= ${MAX_RATIO}x`,
        pass: ratio !== null && ratio <= MAX_RATIO && !short,
        note: short || undefined,
      },
      {
        scenario,
        metric: "delivery p50 ms",
        project: split.latency.p50,
        baseline: one.latency.p50,
        baselineName: "same set in 1 tenant",
        ratio: null,
        target: "-",
        pass: null,
      },
      {
        scenario,
        metric: "events received / expected",
        project: split.events,
        baseline: one.events,
        baselineName: `expected ${split.expectedEvents} / ${one.expectedEvents}`,
        ratio: null,
        target: "-",
        pass: null,
      },
    ];
    return { rows, details: { eventsPerTenantPerSecond: EVENTS_PER_TENANT_S, settleMs: SETTLE_MS, windowMs, oneTenant: one, split } };
  },
} satisfies Scenario;
