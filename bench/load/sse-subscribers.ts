// Client process: graphql-sse ("distinct connections" mode, as Yoga serves it) subscriptions to
// jobEvents, one HTTP request each (POST with `accept: text/event-stream`), spoken by hand over
// node:http. Measures each PROGRESS event's delivery latency against the `at` the worker stamped, and
// gaps and duplicates, exactly as load/ws-subscribers.ts does for graphql-ws (same input, same IPC
// messages, same clock; see there).
import http from "node:http";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";
import type { WsSubscribersInput, WsSubscribersMessage } from "./ws-subscribers.ts";

const QUERY = "subscription($queue: String!, $id: ID!) { jobEvents(queue: $queue, id: $id) { id type progress } }";
const input = scriptInput<WsSubscribersInput>();
const url = new URL(input.wsUrl.replace(/^ws/, "http"));
const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let latencies: number[] = [];
let fromStream: number[] = [];
let gaps = 0;
let duplicates = 0;
let events = 0;
let completed = 0;
let dropped = 0;
const requests: http.ClientRequest[] = [];

type JobEventPayload = { data?: { jobEvents?: { id?: string; type: string; progress: { tick?: number; at?: number } | null } } };

function open(jobId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastTick = -1;
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };
    const body = JSON.stringify({ query: QUERY, variables: { queue: input.queue, id: jobId } });
    const req = http.request(url, {
      method: "POST",
      agent,
      headers: {
        "content-type": "application/json",
        accept: "text/event-stream",
        authorization: `Bearer ${input.apiKey}`,
        "content-length": Buffer.byteLength(body),
      },
    });
    requests.push(req);
    req.on("error", (err) => settle(err));
    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        settle(new Error(`HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (chunk: string) => {
        const now = nowMs();
        buffer += chunk;
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const kind = /^event: (.*)$/m.exec(message)?.[1];
          if (kind === "complete") {
            completed++;
            continue;
          }
          const data = message
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart())
            .join("\n");
          if (!data) continue; // keep-alive comment
          const event = (JSON.parse(data) as JobEventPayload).data?.jobEvents;
          if (!event) return settle(new Error(data.slice(0, 500)));
          const tick = event.progress?.tick;
          if (event.type === "SNAPSHOT") {
            if (typeof tick === "number") lastTick = tick;
            settle();
          } else if (event.type === "PROGRESS" && typeof tick === "number") {
            events++;
            if (lastTick >= 0 && tick > lastTick + 1) gaps += tick - lastTick - 1;
            if (tick <= lastTick) duplicates++;
            lastTick = Math.max(lastTick, tick);
            if (typeof event.progress?.at === "number") latencies.push(now - event.progress.at);
            const streamMs = Number.parseInt(event.id ?? "", 10);
            if (Number.isFinite(streamMs)) fromStream.push(now - streamMs);
          }
        }
      });
      res.on("close", () => {
        if (settled) dropped++;
        settle(new Error("closed before the SNAPSHOT"));
      });
    });
    req.end(body);
  });
}

const t0 = Date.now();
let subscribed = 0;
let failed = 0;
let firstError: string | null = null;
let next = 0;
await Promise.all(
  Array.from({ length: input.openConcurrency }, async () => {
    while (next < input.jobIds.length) {
      const jobId = input.jobIds[next++] as string;
      try {
        await open(jobId);
        subscribed++;
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  }),
);
dropped = 0;
process.send?.({ type: "subscribed", subscribed, failed, ms: Date.now() - t0, firstError } satisfies WsSubscribersMessage);
process.on("message", (m: string) => {
  if (m === "reset") {
    latencies = [];
    fromStream = [];
    events = 0;
    loopDelay.reset();
    loopDelay.enable();
  } else if (m === "report") {
    process.send?.({
      type: "report",
      latency: summarize(latencies),
      samples: latencies,
      fromStream,
      gaps,
      duplicates,
      events,
      completed,
      dropped,
      errors: 0,
      clockDriftMs: nowMs() - Date.now(),
      loopDelay: { p99: Math.max(0, loopDelay.percentile(99) / 1e6 - 10), max: Math.max(0, loopDelay.max / 1e6 - 10) },
    } satisfies WsSubscribersMessage);
  } else if (m === "close") {
    for (const req of requests) req.destroy();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
