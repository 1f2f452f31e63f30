import { RedisPubSub } from "graphql-redis-subscriptions";
import type { Registry } from "prom-client";
import { type Config, ConfigError } from "../config.ts";
import type { Context } from "../graphql/builder.ts";
import type { Logger } from "../infra/logger.ts";
import { createPrisma } from "../infra/prisma.ts";
import { bullConnection, closeRedis, createRedis } from "../infra/redis.ts";
import { QueueSet } from "../jobs/bullmq/index.ts";
import { JobControl, JobService, OperatorActionLog, QueueService } from "../jobs/control/index.ts";
import { EventChannels, EventFeeds, EventRelay, EventStream } from "../jobs/events/index.ts";
import { FailedJobInbox, HistoryQueries, HistoryStore, JobLogStore, JobStatsQueries, lazyJobLoaders } from "../jobs/history/index.ts";
import { createRegistry, defaultDefinitions, type JobRegistry } from "../jobs/registry.ts";
import { type Authenticate, createAuthenticator } from "./auth.ts";
import { QueueMetrics } from "./queue-metrics.ts";

export interface ApiRuntime {
  registry: JobRegistry;
  jobs: JobService;
  queueService: QueueService;
  feeds: EventFeeds;
  /** The process's shared event-channel subscriptions (for tests). */
  channels: EventChannels;
  context: (actor: string) => Context;
  authenticate: Authenticate;
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Queue, relay and subscription metrics for `/metrics` (see queue-metrics.ts). */
  metrics: Registry;
  close(): Promise<void>;
}

async function check(name: string, probe: () => Promise<unknown>, checks: Record<string, string>): Promise<boolean> {
  try {
    await Promise.race([probe(), new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after 1s")), 1_000))]);
    checks[name] = "ok";
    return true;
  } catch (err) {
    checks[name] = `failed: ${err instanceof Error ? err.message : String(err)}`;
    return false;
  }
}

/**
 * Connects the API's services: Redis (requests, pub/sub), PostgreSQL, the queues, and the relay that
 * turns BullMQ events into subscription events. `close` releases all of it.
 */
export async function createApiRuntime(config: Config, log: Logger): Promise<ApiRuntime> {
  const registry = createRegistry(defaultDefinitions({ demoQueue: config.demoQueue }));
  const unknown = config.readyzRequireWorkers.filter((q) => !registry.hasQueue(q));
  if (unknown.length > 0) {
    throw new ConfigError(unknown.map((q) => `READYZ_REQUIRE_WORKERS: unknown queue "${q}" (registered: ${registry.queues().join(", ")})`));
  }
  const redis = createRedis(config, "request");
  redis.on("error", (err) => log.debug("redis connection error", { err: err.message }));
  const publisher = createRedis(config, "subscriber");
  const subscriber = createRedis(config, "subscriber");
  for (const c of [publisher, subscriber]) c.on("error", (err) => log.debug("redis pub/sub connection error", { err: err.message }));
  const db = createPrisma(config.databaseUrl);
  // The queues share one connection of their own; BullMQ does not close a connection it was given.
  const queueConnection = createRedis(config, "request");
  const queues = new QueueSet(registry, queueConnection, config.queuePrefix, config.eventsMaxLen);
  // Made now rather than on first use: each writes the queue's settings (events stream length) to Redis.
  for (const name of registry.queues()) queues.get(name);
  const history = new HistoryStore(db);
  const historyQueries = new HistoryQueries(db, { maxPageSize: config.maxPageSize });
  const stats = new JobStatsQueries(db);
  const actions = new OperatorActionLog(db, log);
  const queueService = new QueueService(registry, queues, actions);
  const jobs = new JobService(registry, queues, history, log, {
    maxPayloadBytes: config.maxPayloadBytes,
    maxBulkEnqueue: config.maxBulkEnqueue,
    logs: new JobLogStore(db),
  });
  const control = new JobControl(
    jobs,
    queues,
    history,
    actions,
    redis,
    { cancelWaitMs: config.cancelWaitMs, maxBulkRetry: config.maxBulkRetry },
    new FailedJobInbox(db),
  );
  const stream = new EventStream(redis, (queue) => queues.eventsKey(queue));
  const loadJob = (queue: string, id: string) => jobs.getJob(queue, id);
  // One Redis subscription per watched channel, shared by all of this process's subscriptions.
  const pubsub = new RedisPubSub({ publisher, subscriber, deserializer: (message) => message.toString() });
  const channels = new EventChannels(pubsub, log);
  const relay = new EventRelay({
    connection: bullConnection(config),
    prefix: config.queuePrefix,
    publisher,
    loadJob,
    log,
    leaseMs: config.relayLeaseMs,
    local: channels,
  });
  await relay.start(registry.queues());
  const liveJob = (queue: string, id: string) => jobs.getLive(queue, id);
  const feeds = new EventFeeds({
    channels,
    stream,
    prefix: config.queuePrefix,
    loadJob,
    hasQueue: (queue) => registry.hasQueue(queue),
    maxBuffer: config.subscriberMaxBuffer,
  });

  const queueMetrics = new QueueMetrics({ queues, redis: queueConnection, names: registry.queues(), relay, channels, log });

  return {
    registry,
    metrics: queueMetrics.registry,
    jobs,
    queueService,
    feeds,
    channels,
    context: (actor) => ({
      jobs,
      control,
      queues: queueService,
      feeds,
      history: historyQueries,
      stats,
      loaders: lazyJobLoaders(liveJob, historyQueries),
      actor,
    }),
    authenticate: createAuthenticator(config.adminApiKey),
    ready: async () => {
      const checks: Record<string, string> = {};
      const results = await Promise.all([
        check("redis", () => redis.ping(), checks),
        check("postgres", () => db.$queryRaw`SELECT 1`, checks),
        // READYZ_REQUIRE_WORKERS: each named queue needs at least one worker connection.
        ...config.readyzRequireWorkers.map((q) =>
          check(
            `workers:${q}`,
            async () => {
              const n = await queues.get(q)?.getWorkersCount();
              if (!n) throw new Error(`no worker serves queue "${q}"`);
            },
            checks,
          ),
        ),
      ]);
      return { ok: results.every(Boolean), checks };
    },
    close: async () => {
      await relay.stop();
      await queues.close();
      await Promise.all([closeRedis(redis), closeRedis(publisher), closeRedis(subscriber), closeRedis(queueConnection)]);
      await db.$disconnect();
    },
  };
}
