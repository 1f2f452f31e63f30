// The floors' event relay (bench/README.md, "enqueueJobs' floor"): the least code that does what the
// API's relay (src/jobs/events/relay.ts) does for every job it enqueues. Every `added` / `waiting`
// event of one queue is read back from its events stream and published twice (job channel, queue
// channel) by one script per batch of up to 500 events, which also stores the last event's id (where
// a relay resumes). Used by the enqueueJobs and enqueueFlow floors (floor-add-bulk.ts, raw-flow-add.ts).
import { QueueEvents } from "bullmq";
import type { Redis } from "ioredis";

const PUBLISH_BATCH = `for i = 2, #ARGV, 3 do
  redis.call("publish", ARGV[i], ARGV[i + 2])
  redis.call("publish", ARGV[i + 1], ARGV[i + 2])
end
redis.call("set", KEYS[1], ARGV[1])
return 0`;

export interface FloorRelayOptions {
  redisUrl: string;
  /** Publishes (not in subscriber mode). */
  publisher: Redis;
  queue: string;
  /** The queue's BullMQ prefix (where its events stream is). */
  prefix: string;
  /** `<base>:job:<id>` and `<base>:all` are the channels, as the API's. */
  channelBase: string;
  /** Where the last relayed event's id is stored. */
  positionKey: string;
}

/** Starts relaying `queue`'s events; resolves once its reader is ready, with the reader (to close). */
export async function startFloorRelay(o: FloorRelayOptions): Promise<QueueEvents> {
  const pending: { id: string; type: string; jobId: string }[] = [];
  let draining = false;
  async function drain(): Promise<void> {
    while (pending.length > 0) {
      const batch = pending.splice(0, 500);
      const args: string[] = [];
      for (const e of batch) {
        const at = new Date(Number(e.id.split("-")[0]));
        args.push(
          `${o.channelBase}:job:${e.jobId}`,
          `${o.channelBase}:all`,
          // The API's event, field for field (src/jobs/events/job-event.ts).
          JSON.stringify({ id: e.id, queue: o.queue, jobId: e.jobId, at, progress: null, failedReason: null, job: null, type: e.type }),
        );
      }
      await o.publisher.eval(PUBLISH_BATCH, 1, o.positionKey, batch.at(-1)?.id as string, ...args);
    }
  }
  const events = new QueueEvents(o.queue, { connection: { url: o.redisUrl }, prefix: o.prefix });
  for (const name of ["added", "waiting"] as const) {
    events.on(name, ((args: { jobId: string }, id: string) => {
      pending.push({ id, type: name === "added" ? "ADDED" : "WAITING", jobId: args.jobId });
      if (draining) return;
      draining = true;
      drain()
        .catch((err: unknown) => process.stderr.write(`relay: ${String(err)}\n`))
        .finally(() => {
          draining = false;
        });
    }) as never);
  }
  await events.waitUntilReady();
  return events;
}
