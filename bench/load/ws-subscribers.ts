// Client process: many graphql-ws (`graphql-transport-ws`) subscriptions to jobEvents, one per socket,
// spoken by hand over `ws` so one process can hold thousands. Measures each PROGRESS event's delivery
// latency against the `at` the worker stamped, and gaps in each job's tick sequence.
import WebSocket from "ws";
import { scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";

export interface WsSubscribersInput {
  wsUrl: string;
  apiKey: string;
  queue: string;
  jobIds: string[];
  /** Sockets being opened at once (keeps the server's accept backlog from overflowing). */
  openConcurrency: number;
}

/** IPC to the harness: "reset" clears latencies; "report" answers the figures; "close" ends the process. */
export type WsSubscribersMessage =
  | { type: "subscribed"; subscribed: number; failed: number; ms: number; firstError: string | null }
  | {
      type: "report";
      latency: ReturnType<typeof summarize>;
      samples: number[];
      gaps: number;
      events: number;
      completed: number;
      dropped: number;
    };

const QUERY = "subscription($queue: String!, $id: ID!) { jobEvents(queue: $queue, id: $id) { type progress } }";
const input = scriptInput<WsSubscribersInput>();
let latencies: number[] = [];
let gaps = 0;
let events = 0;
let completed = 0;
let dropped = 0;
const sockets: WebSocket[] = [];

type Progress = { tick?: number; at?: number } | null;

function open(jobId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(input.wsUrl, "graphql-transport-ws");
    sockets.push(ws);
    let lastTick = -1;
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${input.apiKey}` } })));
    ws.on("message", (raw) => {
      const now = nowMs();
      const msg = JSON.parse(String(raw)) as { type: string; payload?: { data?: { jobEvents?: { type: string; progress: Progress } } } };
      if (msg.type === "connection_ack") {
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: QUERY, variables: { queue: input.queue, id: jobId } } }));
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (msg.type === "next") {
        const event = msg.payload?.data?.jobEvents;
        if (!event) return settle(new Error(JSON.stringify(msg.payload)));
        const tick = event.progress?.tick;
        if (event.type === "SNAPSHOT") {
          if (typeof tick === "number") lastTick = tick;
          settle();
        } else if (event.type === "PROGRESS" && typeof tick === "number") {
          events++;
          if (lastTick >= 0 && tick > lastTick + 1) gaps += tick - lastTick - 1;
          lastTick = Math.max(lastTick, tick);
          if (typeof event.progress?.at === "number") latencies.push(now - event.progress.at);
        }
      } else if (msg.type === "error") {
        settle(new Error(JSON.stringify(msg)));
      } else if (msg.type === "complete") {
        completed++;
      }
    });
    ws.on("error", (err) => settle(err));
    ws.on("close", () => {
      if (settled) dropped++;
      settle(new Error("closed before the SNAPSHOT"));
    });
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
// Closes from here on are drops: the subscriptions should live until the harness says "close".
dropped = 0;
process.send?.({ type: "subscribed", subscribed, failed, ms: Date.now() - t0, firstError } satisfies WsSubscribersMessage);
process.on("message", (m: string) => {
  if (m === "reset") {
    latencies = [];
    gaps = 0;
    events = 0;
  } else if (m === "report") {
    process.send?.({
      type: "report",
      latency: summarize(latencies),
      samples: latencies,
      gaps,
      events,
      completed,
      dropped,
    } satisfies WsSubscribersMessage);
  } else if (m === "close") {
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
