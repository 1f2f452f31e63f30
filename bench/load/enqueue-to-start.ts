// Enqueue to start, one job at a time with the worker idle and waiting: from the enqueue's answer
// (enqueueJob's HTTP response, or raw Queue.add resolving) to the job's ACTIVE event at a subscriber
// (a graphql-ws `queueEvents(types: [ACTIVE])` subscription, or a raw QueueEvents `active` listener).
// Rounds alternate between the two so both see the same machine. Times are this process's own clock.
//
// The raw side needs a raw Worker consuming `rawQueue` under `prefix` (load/raw-worker.ts); the API
// side needs the stack's workers consuming `demo`.
import { Queue, QueueEvents } from "bullmq";
import WebSocket from "ws";
import { answer, scriptInput } from "../lib/child.ts";
import { post } from "../lib/graphql-client.ts";
import { nowMs } from "../lib/stats.ts";

export interface EnqueueToStartInput {
  url: string;
  apiKey: string;
  redisUrl: string;
  prefix: string;
  rawQueue: string;
  /** Jobs per side and round; rounds alternate raw, API, raw, API... */
  perRound: number;
  rounds: number;
  /** Pause after each ACTIVE, so the worker has finished the job and is back in its blocking wait. */
  idleMs: number;
}

export interface EnqueueToStartResult {
  /** ACTIVE at the subscriber minus the enqueue's answer, ms (negative: the event came first). */
  api: number[];
  raw: number[];
  /** ACTIVE at the subscriber minus the moment the enqueue was sent, ms. */
  apiFromSend: number[];
  rawFromSend: number[];
  /** The enqueue's own round trip, ms. */
  apiEnqueue: number[];
  rawEnqueue: number[];
}

const input = scriptInput<EnqueueToStartInput>();
const ENQUEUE = `mutation { enqueueJob(input: { queue: "demo", name: "noop", data: {} }) { __typename ... on EnqueueJobSuccess { job { id } } } }`;
const SUBSCRIBE = `subscription { queueEvents(queue: "demo", types: [ACTIVE]) { jobId type } }`;

/** Arrival times of ACTIVE events by job id, and the one waiter for the job being timed. */
function arrivals() {
  const seen = new Map<string, number>();
  let waiter: { id: string; resolve: (at: number) => void } | null = null;
  return {
    arrived(id: string, at: number) {
      if (waiter?.id === id) {
        waiter.resolve(at);
        waiter = null;
      } else seen.set(id, at);
    },
    wait(id: string, timeoutMs = 30_000): Promise<number> {
      const at = seen.get(id);
      if (at !== undefined) {
        seen.delete(id);
        return Promise.resolve(at);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no ACTIVE for job ${id} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = {
          id,
          resolve: (t) => {
            clearTimeout(timer);
            resolve(t);
          },
        };
      });
    },
  };
}

// Raw: Queue.add and QueueEvents on a queue a raw Worker consumes.
const connection = { url: input.redisUrl, maxRetriesPerRequest: null };
const rawQueue = new Queue(input.rawQueue, { connection, prefix: input.prefix });
const rawEvents = new QueueEvents(input.rawQueue, { connection, prefix: input.prefix });
const rawActive = arrivals();
rawEvents.on("active", ({ jobId }) => rawActive.arrived(jobId, nowMs()));
await Promise.all([rawQueue.waitUntilReady(), rawEvents.waitUntilReady()]);

// Ours: one graphql-ws subscription to the demo queue's ACTIVE events.
const apiActive = arrivals();
const ws = new WebSocket(input.url.replace(/^http/, "ws"), "graphql-transport-ws");
await new Promise<void>((resolve, reject) => {
  ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${input.apiKey}` } })));
  ws.on("message", (raw) => {
    const at = nowMs();
    const msg = JSON.parse(String(raw)) as { type: string; payload?: { data?: { queueEvents?: { jobId: string } } } };
    if (msg.type === "connection_ack") {
      ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: SUBSCRIBE } }));
      resolve();
    } else if (msg.type === "next" && msg.payload?.data?.queueEvents) apiActive.arrived(msg.payload.data.queueEvents.jobId, at);
    else if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    else if (msg.type === "error") reject(new Error(JSON.stringify(msg)));
  });
  ws.on("error", reject);
  ws.on("close", (code, reason) => reject(new Error(`WebSocket closed: ${code} ${reason}`)));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function enqueueApi(): Promise<string> {
  const r = await post<{ enqueueJob: { job?: { id: string } } }>(input.url, input.apiKey, ENQUEUE);
  if (!r.enqueueJob.job) throw new Error(`enqueue refused: ${JSON.stringify(r)}`);
  return r.enqueueJob.job.id;
}
async function enqueueRaw(): Promise<string> {
  const job = await rawQueue.add("noop", {}, { removeOnComplete: true });
  return job.id as string;
}

async function once(
  enqueue: () => Promise<string>,
  active: ReturnType<typeof arrivals>,
): Promise<{ fromAnswer: number; fromSend: number; enqueue: number }> {
  const sent = nowMs();
  const id = await enqueue();
  const answered = nowMs();
  const at = await active.wait(id);
  await sleep(input.idleMs);
  return { fromAnswer: at - answered, fromSend: at - sent, enqueue: answered - sent };
}

// Warm-up: the subscription is live once its first ACTIVE arrives (a queue feed sends no SNAPSHOT).
for (let attempt = 1; ; attempt++) {
  try {
    await apiActive.wait(await enqueueApi(), 2_000);
    break;
  } catch (err) {
    if (attempt === 30) throw err;
  }
}
for (let i = 0; i < 20; i++) {
  await once(enqueueApi, apiActive);
  await once(enqueueRaw, rawActive);
}

const result: EnqueueToStartResult = { api: [], raw: [], apiFromSend: [], rawFromSend: [], apiEnqueue: [], rawEnqueue: [] };
for (let round = 0; round < input.rounds; round++) {
  for (let i = 0; i < input.perRound; i++) {
    const r = await once(enqueueRaw, rawActive);
    result.raw.push(r.fromAnswer);
    result.rawFromSend.push(r.fromSend);
    result.rawEnqueue.push(r.enqueue);
  }
  for (let i = 0; i < input.perRound; i++) {
    const r = await once(enqueueApi, apiActive);
    result.api.push(r.fromAnswer);
    result.apiFromSend.push(r.fromSend);
    result.apiEnqueue.push(r.enqueue);
  }
}
ws.terminate();
await Promise.all([rawQueue.close(), rawEvents.close()]);
answer(result);
