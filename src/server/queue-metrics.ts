import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../infra/logger.ts";
import type { RedisClient } from "../infra/redis.ts";
import { type QueueGauges, type QueueSet, readQueueGauges } from "../jobs/bullmq/index.ts";

/** The job states `queue_jobs` reports, as BullMQ names them. */
export const QUEUE_STATES = ["waiting", "prioritized", "delayed", "active", "failed"] as const;

export interface QueueMetricsSources {
  queues: QueueSet;
  /** A connection for the one script BullMQ has no call for (the oldest waiting job). */
  redis: RedisClient;
  /** The queues to report (every registered one). */
  names: string[];
  relay: { relayedCount(queue: string): number; isLeader(queue: string): boolean };
  channels: { listenerTotal(): number };
  log: Logger;
  /** How long one read of Redis serves scrapes (default 1,000 ms). */
  cacheMs?: number;
}

/**
 * The API's queue metrics on `/metrics`, read from Redis when scraped (at most once per `cacheMs`,
 * however many scrapers or metrics ask): per queue, jobs by state, the oldest waiting job's age,
 * workers and whether it is paused, which come from Redis and so read the same on every API instance;
 * and this instance's own events relayed and subscriptions open. A queue whose read fails is left out
 * of that scrape (no stale values) and counted in `queue_metrics_read_errors_total`.
 */
export class QueueMetrics {
  readonly registry = new Registry();
  private cached: { at: number; gauges: Promise<Map<string, QueueGauges>> } | null = null;
  private readonly sources: QueueMetricsSources;
  private readonly readErrors: Counter<"queue">;

  constructor(sources: QueueMetricsSources) {
    this.sources = sources;
    const registers = [this.registry];
    const read = () => this.read();
    const { names, relay, channels } = sources;
    this.readErrors = new Counter({
      name: "queue_metrics_read_errors_total",
      help: "Scrapes where a queue's numbers could not be read from Redis (that queue was left out)",
      labelNames: ["queue"],
      registers,
      // After this scrape's read, so its failures show in the same scrape.
      async collect() {
        await read();
      },
    });
    // Every queue's series from the start, so `increase()` sees the first error.
    for (const queue of names) this.readErrors.inc({ queue }, 0);
    new Gauge({
      name: "queue_jobs",
      help: "Jobs in the queue by state, as BullMQ counts them (the same on every API instance)",
      labelNames: ["queue", "state"],
      registers,
      async collect() {
        this.reset();
        for (const [queue, g] of await read()) for (const state of QUEUE_STATES) this.set({ queue, state }, g.counts[state]);
      },
    });
    new Gauge({
      name: "queue_oldest_waiting_seconds",
      help: "How long the job next in line (waiting or prioritized) has been ready to run; 0 when none waits",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const [queue, g] of await read()) this.set({ queue }, g.oldestWaitingMs / 1000);
      },
    });
    new Gauge({
      name: "queue_workers",
      help: "Worker connections serving the queue (BullMQ's getWorkersCount)",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const [queue, g] of await read()) this.set({ queue }, g.workers);
      },
    });
    new Gauge({
      name: "queue_paused",
      help: "1 while the queue is paused",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const [queue, g] of await read()) this.set({ queue }, g.paused ? 1 : 0);
      },
    });
    new Counter({
      name: "events_relayed_total",
      help: "Job events this API instance read from BullMQ's stream and published (only the queue's relay leader counts)",
      labelNames: ["queue"],
      registers,
      collect() {
        this.reset();
        for (const queue of names) this.inc({ queue }, relay.relayedCount(queue));
      },
    });
    new Gauge({
      name: "event_relay_leader",
      help: "1 when this API instance relays the queue's events",
      labelNames: ["queue"],
      registers,
      collect() {
        for (const queue of names) this.set({ queue }, relay.isLeader(queue) ? 1 : 0);
      },
    });
    new Gauge({
      name: "subscriptions_open",
      help: "jobEvents / queueEvents subscriptions open on this API instance (WebSocket and SSE)",
      registers,
      collect() {
        this.set(channels.listenerTotal());
      },
    });
  }

  /** Every queue's gauges, read once per `cacheMs` and shared by everything that asks meanwhile. */
  read(): Promise<Map<string, QueueGauges>> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < (this.sources.cacheMs ?? 1_000)) return this.cached.gauges;
    const gauges = this.readAll(now);
    this.cached = { at: now, gauges };
    return gauges;
  }

  private async readAll(now: number): Promise<Map<string, QueueGauges>> {
    const { queues, names, log, redis } = this.sources;
    const result = new Map<string, QueueGauges>();
    await Promise.all(
      names.map(async (name) => {
        const queue = queues.get(name);
        if (!queue) return;
        try {
          result.set(name, await readQueueGauges(queue, redis, now));
        } catch (err) {
          this.readErrors.inc({ queue: name });
          log.debug("could not read queue metrics", { queue: name, err: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    // Keep the order of `names`, so the exposition is stable.
    return new Map(names.filter((n) => result.has(n)).map((n) => [n, result.get(n) as QueueGauges]));
  }
}
