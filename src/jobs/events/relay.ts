import { randomUUID } from "node:crypto";
import { type ConnectionOptions, QueueEvents } from "bullmq";
import type { Logger } from "../../infra/logger.ts";
import { Periodic } from "../../infra/periodic.ts";
import type { RedisClient } from "../../infra/redis.ts";
import { channels, type KeySpace, keys, queuePrefix } from "../bullmq/keys.ts";
import { Lease } from "../bullmq/lease.ts";
import type { LocalDelivery } from "./channels.ts";
import { type JobEvent, type LoadJob, translate } from "./job-event.ts";

/** BullMQ event names we turn into JobEvents ("cancelled" is written by cancelJob itself, "log" by the workers). */
const RELAYED = [
  "added",
  "waiting",
  "delayed",
  "active",
  "progress",
  "completed",
  "failed",
  "removed",
  "stalled",
  "cancelled",
  "log",
  // Flows: a child's end, written into its parent's stream by the worker (src/jobs/bullmq/flows.ts).
  "child-completed",
  "child-failed",
] as const;

export interface EventRelayOptions {
  /** What each queue's `QueueEvents` connects with (see `bullConnection`). */
  connection: ConnectionOptions;
  /** Where the queues' keys and channels live (QUEUE_PREFIX and REDIS_KEY_LAYOUT). */
  space: KeySpace;
  /** Publishes (a plain ioredis connection, not in subscriber mode). */
  publisher: RedisClient;
  loadJob: LoadJob;
  log: Logger;
  /** How long a relay's leadership lasts without renewal; another instance takes over after it. */
  leaseMs: number;
  /** Subscribers in this process get events from here first, without the pub/sub round trip. */
  local?: LocalDelivery;
}

/** A queue this instance relays: its reader, the events read and not yet published, the publishing loop. */
interface Leading {
  reader: QueueEvents;
  pending: { id: string; name: string; translated: JobEvent | null | Promise<JobEvent | null> }[];
  draining: Promise<void> | null;
}

/**
 * Publishes a batch of events and records the last one's id, atomically. KEYS[1]: the position key;
 * ARGV[1]: that id; then, per event, its job channel, its queue channel and its payload.
 */
const PUBLISH_BATCH = `for i = 2, #ARGV, 3 do
  redis.call("publish", ARGV[i], ARGV[i + 2])
  redis.call("publish", ARGV[i + 1], ARGV[i + 2])
end
redis.call("set", KEYS[1], ARGV[1])
return 0`;

/**
 * Turns each queue's BullMQ events stream into JobEvents on Redis pub/sub: one channel per job and
 * one per queue, so an API instance subscribes only to what its clients watch.
 *
 * One relay per queue across all API instances: every instance runs an EventRelay, and for each
 * queue the one holding a Redis lease reads the stream with `QueueEvents` and publishes. Events read
 * while a publish is in flight go out together in the next one (a script that publishes them all and
 * stores the last id, atomically), so a relay that takes over (the leader died or lost Redis) starts
 * reading right after the last event published: nothing is skipped. An event published twice around a takeover is dropped by subscribers, which only accept
 * ids past the last one they delivered.
 */
export class EventRelay {
  private readonly token = randomUUID();
  private readonly leading = new Map<string, Leading>();
  private readonly leases = new Map<string, Lease>();
  private loop: Periodic | null = null;
  private queues: string[] = [];
  private stopped = false;

  private readonly options: EventRelayOptions;

  constructor(options: EventRelayOptions) {
    this.options = options;
  }

  private positionKey(queue: string) {
    return keys.relayPosition(this.options.space, queue);
  }

  /** Starts competing for every queue's lease; resolves after the first round. */
  async start(queues: string[]): Promise<void> {
    this.queues = queues;
    const { publisher, space, leaseMs } = this.options;
    for (const queue of queues) this.leases.set(queue, new Lease(publisher, keys.relayLease(space, queue), leaseMs, this.token));
    await this.tick();
    const every = Math.max(100, Math.floor(leaseMs / 3));
    this.loop = new Periodic(() => this.tick(), { intervalMs: every, firstDelayMs: every });
    this.loop.start();
  }

  /** True while this instance holds the lease on relaying `queue`'s events (the `event_relay_leader` gauge). */
  isLeader(queue: string): boolean {
    return this.leading.has(queue);
  }

  /** Events of `queue` this instance has published since it started (for /metrics). */
  relayedCount(queue: string): number {
    return this.relayed.get(queue) ?? 0;
  }
  private readonly relayed = new Map<string, number>();

  /** One round: renew held leases (dropping lost ones), try to take free ones. */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    const { log } = this.options;
    for (const queue of this.queues) {
      const lease = this.leases.get(queue) as Lease;
      try {
        if (this.leading.has(queue)) {
          if (!(await lease.renew())) {
            log.warn("lost the event relay lease; another instance relays this queue now", { queue });
            await this.resign(queue);
          }
        } else if (await lease.acquire()) {
          await this.lead(queue);
        }
      } catch (err) {
        // Redis unreachable: a leader that cannot renew must assume it lost the lease by expiry.
        log.debug("event relay lease round failed", { queue, err: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  private async lead(queue: string): Promise<void> {
    const { publisher, connection, space, log } = this.options;
    const position = (await publisher.get(this.positionKey(queue))) ?? "$";
    const reader = new QueueEvents(queue, {
      connection,
      prefix: queuePrefix(space, queue),
      lastEventId: position,
    });
    reader.on("error", (err) => log.warn("QueueEvents error", { queue, err: err instanceof Error ? err.message : String(err) }));
    const state: Leading = { reader, pending: [], draining: null };
    for (const name of RELAYED) {
      // QueueEvents emits every event name found in the stream, ours ("cancelled") included; its
      // typed listener map only knows BullMQ's own, hence the cast.
      reader.on(
        name as "added",
        ((args: Record<string, unknown>, id: string) => {
          // Lookups (the job of a terminal event) start at once and overlap; publishing stays in order.
          const translated = translate(queue, id, name, args, this.options.loadJob);
          if (translated instanceof Promise) translated.catch(() => undefined);
          state.pending.push({ id, name, translated });
          state.draining ??= this.drain(queue, state).finally(() => {
            state.draining = null;
          });
        }) as never,
      );
    }
    this.leading.set(queue, state);
    await reader.waitUntilReady();
    log.info("relaying events", { queue, from: position });
  }

  /** Publishes what is pending, in order, in batches, until nothing is. */
  private async drain(queue: string, state: Leading): Promise<void> {
    const { publisher, space, log } = this.options;
    const queueChannel = channels.queue(space, queue);
    const jobChannelPrefix = channels.jobPrefix(space, queue);
    while (state.pending.length > 0) {
      const batch = state.pending.splice(0, 500);
      const args: string[] = [];
      for (const { id, name, translated } of batch) {
        let event: JobEvent | null;
        try {
          // Most events are translated at once; only those that read their job are awaited.
          event = translated instanceof Promise ? await translated : translated;
        } catch (err) {
          log.error("relaying an event failed", { queue, id, name, err: err instanceof Error ? err.message : String(err) });
          continue;
        }
        if (!event) continue;
        const jobChannel = jobChannelPrefix + event.jobId;
        this.options.local?.emit(jobChannel, event);
        this.options.local?.emit(queueChannel, event);
        args.push(jobChannel, queueChannel, JSON.stringify(event));
      }
      const last = batch.at(-1)?.id as string;
      try {
        await publisher.eval(PUBLISH_BATCH, 1, this.positionKey(queue), last, ...args);
        this.relayed.set(queue, (this.relayed.get(queue) ?? 0) + args.length / 3);
      } catch (err) {
        log.error("publishing relayed events failed", {
          queue,
          from: batch[0]?.id,
          to: last,
          err: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  private async resign(queue: string): Promise<void> {
    const state = this.leading.get(queue);
    this.leading.delete(queue);
    if (!state) return;
    await state.reader.close();
    await state.draining;
  }

  /** Stops relaying and hands the leases back so another instance takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop?.stop();
    for (const queue of [...this.leading.keys()]) {
      await this.resign(queue);
      await this.leases
        .get(queue)
        ?.release()
        .catch(() => undefined);
    }
  }
}
