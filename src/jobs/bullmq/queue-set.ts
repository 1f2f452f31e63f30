import { AsyncLocalStorage } from "node:async_hooks";
import type { FlowJob, JobNode, Queue, Telemetry } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";
import type { JobRegistry } from "../registry.ts";
import { type FailedJobRef, whichCancelled } from "./cancellation.ts";
import { JobIds, type PreparedBulk, ReservedIdFlowProducer, ReservedIdQueue } from "./job-ids.ts";
import { type KeySpace, keys, queuePrefix } from "./keys.ts";

/** Finished jobs are kept in Redis this long (history keeps them for good). */
export const KEEP_COMPLETED = { age: 24 * 3600, count: 10_000 };
export const KEEP_FAILED = { age: 7 * 24 * 3600 };

/** The promise a flow's Redis transaction waits for before it is sent (`QueueSet.addFlow`'s `gate`). */
const flowGate = new AsyncLocalStorage<Promise<unknown>>();

/**
 * A connection of its own for the FlowProducer, whose transactions (`multi`: BullMQ adds a flow in
 * one) started inside `flowGate.run(gate, ...)` are sent only once `gate` resolves, and never when it
 * rejects: until `exec`, an ioredis transaction is only a list of commands in memory.
 */
function gatedConnection(connection: RedisClient): RedisClient {
  const gated = (connection as { duplicate(): RedisClient }).duplicate();
  const multi = gated.multi.bind(gated) as (...args: unknown[]) => { exec: (...a: unknown[]) => Promise<unknown> };
  (gated as { multi: unknown }).multi = (...args: unknown[]) => {
    const transaction = multi(...args);
    const gate = flowGate.getStore();
    if (gate) {
      const exec = transaction.exec.bind(transaction);
      transaction.exec = async (...a: unknown[]) => {
        await gate;
        return exec(...a);
      };
    }
    return transaction;
  };
  return gated;
}

/** One BullMQ `Queue` per registered queue, sharing one connection; made on first use. */
export class QueueSet {
  private readonly queues = new Map<string, Queue>();
  private flowProducer: ReservedIdFlowProducer | undefined;
  private readonly slots = new Map<string, number>();
  private flowConnection: RedisClient | undefined;

  private readonly registry: JobRegistry;
  /** The connection the queues share (for the few reads BullMQ has no call for). */
  readonly connection: RedisClient;
  /** Where the queues' keys live (QUEUE_PREFIX and REDIS_KEY_LAYOUT). */
  readonly space: KeySpace;
  readonly eventsMaxLen;
  /** Job ids reserved before the add (durable enqueue: the history row is committed first). */
  readonly ids: JobIds;
  private readonly telemetry: Telemetry | undefined;

  constructor(
    registry: JobRegistry,
    connection: RedisClient,
    space: KeySpace,
    /** Approximate length of each queue's events stream; how far back `since` can resume. */
    eventsMaxLen = 10_000,
    /** BullMQ's telemetry (OpenTelemetry traces on); undefined: none, `add` calls straight through. */
    telemetry?: Telemetry,
  ) {
    this.telemetry = telemetry;
    this.registry = registry;
    this.connection = connection;
    this.space = space;
    this.eventsMaxLen = eventsMaxLen;
    this.ids = new JobIds(connection, space);
  }

  /** The queue, or undefined when no job type is registered on it. */
  get(name: string): Queue | undefined {
    if (!this.registry.hasQueue(name)) return undefined;
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new ReservedIdQueue(name, {
        connection: this.connection,
        prefix: queuePrefix(this.space, name),
        skipWaitingForReady: true,
        streams: { events: { maxLen: this.eventsMaxLen } },
        defaultJobOptions: { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
        ...(this.telemetry ? { telemetry: this.telemetry } : {}),
      });
      // Errors surface on the calls that hit them; this only keeps an idle connection error from
      // becoming an unhandled 'error' event.
      queue.on("error", () => {});
      this.queues.set(name, queue);
    }
    return queue;
  }

  /**
   * A bulk add built now and sent by `send()` (see ReservedIdQueue.prepareBulk); undefined for a queue
   * with no job type registered.
   */
  prepareBulk(name: string, jobs: Parameters<ReservedIdQueue["prepareBulk"]>[0]): Promise<PreparedBulk> | undefined {
    const queue = this.get(name);
    return queue instanceof ReservedIdQueue ? queue.prepareBulk(jobs) : undefined;
  }

  /**
   * Adds a flow (a parent and its children, any queues) atomically with BullMQ's FlowProducer. Every
   * node gets the options a queue's own adds get (finished jobs kept as long, events stream trimmed
   * the same): the FlowProducer does not read the queues' defaults.
   *
   * With a `gate`, the flow's transaction is built at once (BullMQ's work on the client: a job object,
   * its encoded options and a script call per node) but sent to Redis only once `gate` resolves; if it
   * rejects nothing is sent and this rejects with its error. An enqueue passes the commit of the
   * flow's history rows as the gate, so building the transaction overlaps the wait for PostgreSQL
   * while Redis still gets nothing before the rows are committed.
   */
  addFlow(flow: FlowJob, gate?: Promise<unknown>): Promise<JobNode> {
    if (!this.flowProducer) {
      this.flowConnection = gatedConnection(this.connection);
      this.flowProducer = new ReservedIdFlowProducer({
        connection: this.flowConnection,
        prefix: this.space.base,
        ...(this.telemetry ? { telemetry: this.telemetry } : {}),
      });
      this.flowProducer.on("error", () => {});
    }
    const queuesOptions: Record<string, { streams: { events: { maxLen: number } } }> = {};
    const withDefaults = (node: FlowJob | NonNullable<FlowJob["children"]>[number]): void => {
      node.opts = { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED, ...node.opts };
      // Each queue's own key prefix (REDIS_KEY_LAYOUT per-queue gives every queue its hash tag).
      node.prefix = queuePrefix(this.space, node.queueName);
      queuesOptions[node.queueName] = { streams: { events: { maxLen: this.eventsMaxLen } } };
      for (const child of node.children ?? []) withDefaults(child);
    };
    withDefaults(flow);
    const producer = this.flowProducer;
    const add = () => producer.add(flow, { queuesOptions });
    return gate ? flowGate.run(gate, add) : add();
  }

  /**
   * The Redis Cluster hash slot of a queue's keys (every key of a queue is in one slot: its prefix's
   * hash tag), or null on one Redis, where any keys may go together. Asked of the cluster once per
   * queue (CLUSTER KEYSLOT) and kept: a key's slot never changes.
   */
  async slotOf(queue: string): Promise<number | null> {
    if (!this.connection.isCluster) return null;
    let slot = this.slots.get(queue);
    if (slot === undefined) {
      slot = Number(await this.connection.cluster("KEYSLOT", keys.meta(this.space, queue)));
      this.slots.set(queue, slot);
    }
    return slot;
  }

  /** The Redis key of a queue's events stream. */
  eventsKey(queue: string): string {
    return keys.events(this.space, queue);
  }

  /** For each job, whether it ended CANCELLED rather than FAILED (see `whichCancelled`). */
  whichCancelled(jobs: readonly FailedJobRef[]): Promise<boolean[]> {
    return whichCancelled(this.connection, this.space, jobs);
  }

  /** Whether a failed job ended CANCELLED. */
  async isCancelled(job: FailedJobRef): Promise<boolean> {
    return (await this.whichCancelled([job]))[0] ?? false;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    await this.flowProducer?.close();
    this.flowProducer = undefined;
    // BullMQ leaves a connection it was given open.
    this.flowConnection?.disconnect();
    this.flowConnection = undefined;
  }
}
