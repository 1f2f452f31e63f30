// Memory per idle subscriber, free of the machine's load: one API process, no events flowing, the
// heap measured after full garbage collections. `fan-out` reports resident memory under 200 events/s,
// which moves with where each GC cycle stands and with how busy the machine is; this figure does not.
//
// Per kind of subscriber (a fresh API each): connect LOW subscribers (graphql-ws, one socket and one
// `jobEvents` subscription each, on jobs that stay waiting: no worker), collect garbage, read the
// V8 heap used and the RSS; connect HIGH - LOW more, read again. KB per subscriber is the difference
// over HIGH - LOW: what one more subscriber holds, without the process's fixed part.
//   - `admin key`: connections as ADMIN_API_KEY (nothing can revoke it: no revocation tracking);
//   - `API key`: a READ key made through createApiKey, so each connection and subscription is also
//     tracked for revocation (LiveSessions), as a real client's is.
//
// Diagnosis: BENCH_MEMORY_SNAPSHOTS=<dir> writes a heap snapshot at each reading
// (subscriber-memory-<kind>-<n>.heapsnapshot); compare two in Chrome DevTools ("Comparison" view).
// BENCH_MEMORY_LEVELS=2000,4000 sets LOW and HIGH.

import { mkdirSync } from "node:fs";
import path from "node:path";
import { enqueueNoops, post } from "../lib/graphql-client.ts";
import { connectInspector, type Inspector, inspectorUrl } from "../lib/inspector.ts";
import { type Steered, steer } from "../lib/ipc.ts";
import { errorRow, type Row, type Scenario } from "../lib/scenario.ts";
import { rssBytes } from "../lib/stack.ts";
import type { WsSubscribersMessage } from "../load/ws-subscribers.ts";

type Subscribed = Extract<WsSubscribersMessage, { type: "subscribed" }>;

/** The issue #19 target at 10,000 subscribers (there it is RSS under load; see fan-out). */
const TARGET_KB_PER_SUBSCRIBER = 15;
const JOBS = 100;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { __typename ... on CreateApiKeySuccess { secret } } }`;

interface Reading {
  subscribers: number;
  heapUsedBytes: number;
  rssBytes: number;
  externalBytes: number;
}

/** Full GCs (twice: weak callbacks and finalizers free more on the second), then the process's figures. */
async function read(inspector: Inspector, pid: number, subscribers: number, snapshot: string | null): Promise<Reading> {
  await inspector.collectGarbage();
  await inspector.collectGarbage();
  const usage = JSON.parse(await inspector.evaluate("JSON.stringify(process.memoryUsage())")) as {
    heapUsed: number;
    external: number;
  };
  const reading = { subscribers, heapUsedBytes: usage.heapUsed, rssBytes: rssBytes(pid), externalBytes: usage.external };
  if (snapshot) await inspector.heapSnapshot(snapshot);
  return reading;
}

async function kind(
  ctx: Parameters<Scenario["run"]>[0],
  name: string,
  withApiKey: boolean,
  low: number,
  high: number,
  snapshotDir: string | undefined,
): Promise<{ name: string; readings: Reading[]; failed: number; firstError: string | null }> {
  const stack = await ctx.startStack({ workers: 0, apiEnv: { NODE_OPTIONS: "--inspect=127.0.0.1:0" } });
  const clients: Steered<WsSubscribersMessage>[] = [];
  let inspector: Inspector | null = null;
  try {
    if (!stack.api) throw new Error("no API");
    const url = inspectorUrl(stack.api.stderr());
    if (!url) throw new Error("the API printed no inspector URL");
    inspector = await connectInspector(url);
    const pid = stack.api.proc.pid ?? 0;
    let key = ctx.apiKey;
    if (withApiKey) {
      const r = await post<{ createApiKey: { secret?: string } }>(stack.url, ctx.apiKey, CREATE_KEY, {
        input: { name: "bench-subscriber-memory", scopes: ["READ"] },
      });
      if (!r.createApiKey.secret) throw new Error(`createApiKey refused: ${JSON.stringify(r)}`);
      key = r.createApiKey.secret;
    }
    // Waiting jobs (no worker): their subscriptions get a SNAPSHOT and then nothing.
    const ids = await enqueueNoops(stack.url, ctx.apiKey, JOBS, { ticks: 1, tickMs: 1 });
    const connect = async (n: number, offset: number) => {
      const procs = 2;
      const started: Steered<WsSubscribersMessage>[] = [];
      for (let p = 0; p < procs; p++) {
        const mine: string[] = [];
        for (let i = p; i < n; i += procs) mine.push(ids[(offset + i) % JOBS] as string);
        started.push(
          steer<WsSubscribersMessage>("load/ws-subscribers.ts", {
            wsUrl: stack.url.replace(/^http/, "ws"),
            apiKey: key,
            queue: "demo",
            jobIds: mine,
            openConcurrency: 50,
          }),
        );
      }
      clients.push(...started);
      return Promise.all(started.map((c) => c.next<Subscribed>("subscribed", 900_000)));
    };
    const file = (n: number) =>
      snapshotDir ? path.join(snapshotDir, `subscriber-memory-${name.replace(/\W+/g, "-")}-${n}.heapsnapshot`) : null;
    const readings: Reading[] = [];
    const subs: Subscribed[] = [];
    let total = 0;
    for (const target of [low, high]) {
      const got = await connect(target - total, total);
      subs.push(...got);
      total += got.reduce((a, s) => a + s.subscribed, 0);
      // Let the connections' setup garbage (and graphql-ws' init timers) go before reading.
      await new Promise((r) => setTimeout(r, 2_000));
      readings.push(await read(inspector, pid, total, file(total)));
    }
    return {
      name,
      readings,
      failed: subs.reduce((a, s) => a + s.failed, 0),
      firstError: subs.find((s) => s.firstError)?.firstError ?? null,
    };
  } finally {
    inspector?.close();
    for (const c of clients) c.kill();
    await stack.stop();
  }
}

export default {
  name: "subscriber-memory",
  async run(ctx) {
    const [low, high] = (process.env.BENCH_MEMORY_LEVELS ?? (ctx.quick ? "200,400" : "2000,4000")).split(",").map(Number) as [
      number,
      number,
    ];
    const snapshotDir = process.env.BENCH_MEMORY_SNAPSHOTS || undefined;
    if (snapshotDir) mkdirSync(snapshotDir, { recursive: true });
    const rows: Row[] = [];
    const details: Record<string, unknown> = { low, high, jobs: JOBS };
    for (const [name, withApiKey] of [
      ["admin key", false],
      ["API key", true],
    ] as const) {
      const scenario = `subscriber-memory ${name}, ${low.toLocaleString("en")} -> ${high.toLocaleString("en")} idle subs`;
      ctx.log(scenario);
      try {
        const r = await kind(ctx, name, withApiKey, low, high, snapshotDir);
        details[name] = r;
        const [a, b] = r.readings as [Reading, Reading];
        const n = Math.max(1, b.subscribers - a.subscribers);
        const heapKb = (b.heapUsedBytes - a.heapUsedBytes) / 1024 / n;
        const rssKb = (b.rssBytes - a.rssBytes) / 1024 / n;
        const externalKb = (b.externalBytes - a.externalBytes) / 1024 / n;
        ctx.log(
          `${scenario}: ${a.subscribers} -> ${b.subscribers} subscribed (${r.failed} failed${r.firstError ? `: ${r.firstError}` : ""}), ` +
            `heap ${heapKb.toFixed(2)} KB/sub, RSS ${rssKb.toFixed(2)} KB/sub, external ${externalKb.toFixed(2)} KB/sub`,
        );
        const note = r.failed ? `${r.failed} failed: ${r.firstError}` : undefined;
        const base = { scenario, baseline: null, baselineName: "-", ratio: null, pass: null, note };
        rows.push(
          { ...base, metric: "heap KB / subscriber (after GC)", project: heapKb, target: "-" },
          {
            ...base,
            metric: "RSS KB / subscriber (after GC)",
            project: rssKb,
            target: `(fan-out: <= ${TARGET_KB_PER_SUBSCRIBER} under load)`,
          },
        );
      } catch (err) {
        rows.push(errorRow(scenario, err));
      }
    }
    return { rows, details };
  },
} satisfies Scenario;
