// Client process: many graphql-ws (`graphql-transport-ws`) subscriptions to jobEvents, one per socket,
// spoken by hand over `ws` so one process can hold thousands. Measures each PROGRESS event's delivery
// latency against the `at` the worker stamped, and gaps and duplicates in each job's tick sequence.
//
// The clock: the worker stamps `at` as performance.timeOrigin + performance.now() (demo.noop) and this
// process reads the same expression on arrival. Both are the host's wall clock sampled once at process
// start plus the shared monotonic clock since, so on one host they agree to well under a millisecond
// unless the wall clock is stepped or slewed after a process started; the report carries this
// process's drift against Date.now() so such a case shows.
import { monitorEventLoopDelay } from "node:perf_hooks";
import WebSocket from "ws";
import { scriptInput } from "../lib/child.ts";
import { nowMs, summarize } from "../lib/stats.ts";

export interface WsSubscribersInput {
  wsUrl: string;
  apiKey: string;
  queue: string;
  /** One `jobEvents` subscription per id (one socket each). */
  jobIds: string[];
  /**
   * Instead of jobEvents: one `queueEvents(types: [PROGRESS])` subscription per key listed (one socket
   * each, `connection_init` with that key). No SNAPSHOT comes, so a subscription counts as open once
   * its subscribe message is sent; gaps are not counted (a queue feed interleaves many jobs' ticks).
   */
  queueEventsKeys?: string[];
  /** Sockets being opened at once (keeps the server's accept backlog from overflowing). */
  openConcurrency: number;
}

/**
 * IPC to the harness: "reset" starts the measured window (clears latencies and the event count; gaps
 * and duplicates keep counting from each subscription's SNAPSHOT); "report" answers the figures;
 * "close" ends the process.
 */
export type WsSubscribersMessage =
  | { type: "subscribed"; subscribed: number; failed: number; ms: number; firstError: string | null }
  | {
      type: "report";
      latency: ReturnType<typeof summarize>;
      samples: number[];
      /**
       * The same deliveries timed from the event's stream id instead (Redis' clock when the worker's
       * progress entered the events stream, whole ms): the part after Redis, i.e. relay and API.
       */
      fromStream: number[];
      /** Ticks missing, since each subscription's SNAPSHOT. */
      gaps: number;
      /** Ticks received again or out of order (at or below the newest one seen), since the SNAPSHOT. */
      duplicates: number;
      events: number;
      completed: number;
      dropped: number;
      /** Subscriptions refused after they counted as open (queueEvents mode: no SNAPSHOT to wait for). */
      errors: number;
      /** performance.timeOrigin + performance.now() minus Date.now() at report time (ms). */
      clockDriftMs: number;
      /** This process's own event-loop delay since "reset" (ms, p99 and max): a busy client delays what it times. */
      loopDelay: { p99: number; max: number };
    };

const QUERY = "subscription($queue: String!, $id: ID!) { jobEvents(queue: $queue, id: $id) { id type progress } }";
const QUEUE_QUERY = "subscription($queue: String!) { queueEvents(queue: $queue, types: [PROGRESS]) { id type progress } }";
const input = scriptInput<WsSubscribersInput>();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let latencies: number[] = [];
let fromStream: number[] = [];
let gaps = 0;
let duplicates = 0;
let events = 0;
let completed = 0;
let dropped = 0;
/** Subscriptions refused after they counted as open (queueEvents mode). */
let errors = 0;
const sockets: WebSocket[] = [];

type Progress = { tick?: number; at?: number } | null;
type Delivered = { id?: string; type: string; progress: Progress };

/** Opens one socket with one subscription: to a job's events (`jobId`), or with `queueKey` to the queue's. */
function open(jobId: string | null, queueKey?: string): Promise<void> {
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
    const key = queueKey ?? input.apiKey;
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${key}` } })));
    ws.on("message", (raw) => {
      const now = nowMs();
      const msg = JSON.parse(String(raw)) as {
        type: string;
        payload?: { data?: { jobEvents?: Delivered; queueEvents?: Delivered } };
      };
      if (msg.type === "connection_ack") {
        const payload = queueKey
          ? { query: QUEUE_QUERY, variables: { queue: input.queue } }
          : { query: QUERY, variables: { queue: input.queue, id: jobId } };
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload }));
        if (queueKey) settle();
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (msg.type === "next") {
        const event = msg.payload?.data?.jobEvents ?? msg.payload?.data?.queueEvents;
        if (!event) return settle(new Error(JSON.stringify(msg.payload)));
        const tick = event.progress?.tick;
        if (queueKey) {
          if (event.type !== "PROGRESS") return;
          events++;
          if (typeof event.progress?.at === "number") latencies.push(now - event.progress.at);
          const streamMs = Number.parseInt(event.id ?? "", 10);
          if (Number.isFinite(streamMs)) fromStream.push(now - streamMs);
        } else if (event.type === "SNAPSHOT") {
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
      } else if (msg.type === "error") {
        if (settled) errors++;
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
const queueKeys = input.queueEventsKeys;
const total = queueKeys ? queueKeys.length : input.jobIds.length;
await Promise.all(
  Array.from({ length: input.openConcurrency }, async () => {
    while (next < total) {
      const i = next++;
      try {
        await (queueKeys ? open(null, queueKeys[i]) : open(input.jobIds[i] as string));
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
      errors,
      clockDriftMs: nowMs() - Date.now(),
      // The histogram records the whole interval between its 10 ms ticks: the delay is what exceeds it.
      loopDelay: { p99: Math.max(0, loopDelay.percentile(99) / 1e6 - 10), max: Math.max(0, loopDelay.max / 1e6 - 10) },
    } satisfies WsSubscribersMessage);
  } else if (m === "close") {
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
