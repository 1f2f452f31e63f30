import { randomBytes } from "node:crypto";
import { RedisPubSub } from "graphql-redis-subscriptions";
import { Counter, Gauge, Registry } from "prom-client";
import { AccessService } from "../access/access-service.ts";
import { ApiKeyStore } from "../access/api-key-store.ts";
import { Authenticator } from "../access/authenticator.ts";
import type { Transport } from "../access/live-sessions.ts";
import { LiveSessions } from "../access/live-sessions.ts";
import type { Principal } from "../access/principal.ts";
import { addressBucket, bucketOf, RateLimiter } from "../access/rate-limiter.ts";
import { RedisRevocationBus } from "../access/revocation-bus.ts";
import { TenantCache } from "../access/tenant-cache.ts";
import { type Config, ConfigError } from "../config.ts";
import type { Context } from "../graphql/builder.ts";
import { runReadyChecks } from "../infra/health-server.ts";
import type { Logger } from "../infra/logger.ts";
import { createPrisma, poolOf } from "../infra/prisma.ts";
import { bullConnection, closeRedis, createRedis } from "../infra/redis.ts";
import type { Tracing } from "../infra/tracing.ts";
import { keySpace, layoutProblems, QueueSet, queuesLeftInOtherLayout } from "../jobs/bullmq/index.ts";
import {
  BulkActions,
  JobControl,
  JobService,
  OperatorActionLog,
  PayloadCipher,
  PayloadSecrets,
  QueueService,
  RecoveryReconciler,
} from "../jobs/control/index.ts";
import {
  type BulkActionEvent,
  EventChannels,
  EventFeeds,
  EventRelay,
  EventStream,
  type JobEvent,
  parseBulkActionEvent,
} from "../jobs/events/index.ts";
import {
  BulkSelectionStore,
  DurableRecords,
  FailedJobInbox,
  HistoryQuarantine,
  HistoryQueries,
  HistoryStore,
  JobLogStore,
  JobSecretStore,
  JobStatsQueries,
  lazyJobLoaders,
} from "../jobs/history/index.ts";
import { loadJobTypes } from "../jobs/jobs-module.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import type { Authenticate } from "./auth.ts";
import { QueueMetrics } from "./queue-metrics.ts";

export interface ApiRuntime {
  registry: JobRegistry;
  jobs: JobService;
  queueService: QueueService;
  feeds: EventFeeds;
  /** The process's shared event-channel subscriptions (for tests). */
  channels: EventChannels;
  context: (principal: Principal, transport?: Transport) => Context;
  authenticate: Authenticate;
  /** API keys and job tokens. */
  access: AccessService;
  /** The API's own metrics (served on /metrics with the process metrics): enqueues per key, the recovery reconciler's. */
  metrics: Registry;
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Durable enqueue's recovery reconciler (running; tests call `runOnce`). */
  recovery: RecoveryReconciler;
  close(): Promise<void>;
}

/**
 * `authenticate` with the rate limit: each call takes one request from the credential's budget, or,
 * when the credential is refused, from the client address's (so guessing keys is limited too).
 * No `async` here: a cached credential answers synchronously, and this runs on every request.
 */
function limited(authenticate: Authenticate, limiter: RateLimiter | null): Authenticate {
  if (!limiter) return authenticate;
  const refused = (address: string | undefined, err: unknown): Promise<never> =>
    limiter.take(addressBucket(address)).then(() => {
      throw err;
    });
  const admit = (principal: Principal, authorization: string | null | undefined, address: string | undefined): Promise<Principal> => {
    // Only a job token's budget is keyed by the credential's text.
    const credential = principal.kind === "JOB_TOKEN" ? /^Bearer[ \t]+(\S+)/i.exec(authorization?.trim() ?? "")?.[1] : undefined;
    return limiter.admit(bucketOf(principal, credential, address), principal);
  };
  return (authorization, address) => {
    let principal: Principal | Promise<Principal>;
    try {
      principal = authenticate(authorization, address);
    } catch (err) {
      return refused(address, err);
    }
    if (principal instanceof Promise) {
      return principal.then(
        (p) => admit(p, authorization, address),
        (err: unknown) => refused(address, err),
      );
    }
    return admit(principal, authorization, address);
  };
}

/** The recovery reconciler's metrics on the API's registry. */
function recoveryMetrics(metrics: Registry) {
  const recovered = new Counter({
    name: "jobs_recovered_total",
    help: "Jobs the recovery reconciler re-added to Redis from their history rows after Redis lost them",
    labelNames: ["queue"],
    registers: [metrics],
  });
  const passes = new Counter({ name: "recovery_passes_total", help: "Recovery passes this instance ran", registers: [metrics] });
  const last = new Gauge({
    name: "recovery_last_pass_recovered",
    help: "Jobs re-added by this instance's last recovery pass",
    registers: [metrics],
  });
  const seconds = new Gauge({
    name: "recovery_last_pass_seconds",
    help: "Duration of this instance's last recovery pass",
    registers: [metrics],
  });
  const notRecovered = new Counter({
    name: "jobs_not_recovered_total",
    help: "Jobs Redis lost that the recovery reconciler did not re-add because their secret payload fields could not be restored (marked FAILED, operator action NOT_RECOVERED)",
    labelNames: ["queue"],
    registers: [metrics],
  });
  return (pass: { recovered: number; ms: number }, perQueue: Map<string, number>, lost: Map<string, number>) => {
    passes.inc();
    for (const [queue, n] of perQueue) recovered.inc({ queue }, n);
    for (const [queue, n] of lost) if (n > 0) notRecovered.inc({ queue }, n);
    last.set(pass.recovered);
    seconds.set(pass.ms / 1000);
  };
}

/**
 * Connects the API's services: Redis (requests, pub/sub), PostgreSQL, the queues, and the relay that
 * turns BullMQ events into subscription events. `close` releases all of it.
 */
export async function createApiRuntime(config: Config, log: Logger, telemetry?: Tracing["telemetry"]): Promise<ApiRuntime> {
  // Throws a ConfigError (before connecting anything) when JOBS_MODULE cannot be loaded.
  const { registry } = await loadJobTypes({ demoQueue: config.demoQueue, jobsModule: config.jobsModule });
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
  const space = keySpace(config.queuePrefix, config.redisKeyLayout);
  // Jobs left under the other key layout would be invisible here: refuse to start (README: Key layout).
  // (Redis down at start: the API starts anyway, as before, and says it could not check.)
  const left = await queuesLeftInOtherLayout(queueConnection, space, registry.queues()).catch((err: unknown) => {
    log.warn("could not check for jobs under the other REDIS_KEY_LAYOUT (Redis did not answer)", {
      err: err instanceof Error ? err.message : String(err),
    });
    return [];
  });
  const stranded = layoutProblems(space, left);
  if (stranded.length > 0) {
    for (const c of [redis, publisher, subscriber, queueConnection]) c.disconnect();
    await db.$disconnect();
    throw new ConfigError(stranded);
  }
  // `telemetry` (tracing on): each add is a PRODUCER span, its context stored in the job for the worker.
  const queues = new QueueSet(registry, queueConnection, space, config.eventsMaxLen, telemetry);
  // Made now rather than on first use: each writes the queue's settings (events stream length) to Redis.
  for (const name of registry.queues()) queues.get(name);
  const quarantine = new HistoryQuarantine(poolOf(db), redis, space, (err) =>
    log.error("could not quarantine a row PostgreSQL refused", { err: err instanceof Error ? err.message : String(err) }),
  );
  const history = new HistoryStore(db, {}, quarantine);
  const historyQueries = new HistoryQueries(db, { maxPageSize: config.maxPageSize });
  const stats = new JobStatsQueries(db);
  const actions = new OperatorActionLog(db, log);
  const queueService = new QueueService(registry, queues, actions, {
    maxPayloadBytes: config.maxPayloadBytes,
    maxDataDepth: config.limits.maxDataDepth,
    minIntervalMs: config.schedulerMinIntervalMs,
    maxPerQueue: config.maxSchedulersPerQueue,
  });
  const records = new DurableRecords(db);
  // Secret payload fields: masked in history; with PAYLOAD_ENCRYPTION_KEYS also kept encrypted for replays and recovery.
  const secrets = new PayloadSecrets(
    registry,
    new JobSecretStore(db),
    config.payloadEncryptionKeys ? new PayloadCipher(config.payloadEncryptionKeys) : null,
    log,
  );
  const jobs = new JobService(
    registry,
    queues,
    history,
    log,
    {
      maxPayloadBytes: config.maxPayloadBytes,
      maxBulkEnqueue: config.maxBulkEnqueue,
      maxFlowNodes: config.maxFlowNodes,
      maxFlowDepth: config.maxFlowDepth,
      maxDataDepth: config.limits.maxDataDepth,
      enqueueAck: config.enqueueAck,
      logs: new JobLogStore(db),
      secrets,
    },
    records,
  );
  const control = new JobControl(
    jobs,
    queues,
    history,
    actions,
    redis,
    { cancelWaitMs: config.cancelWaitMs, maxBulkRetry: config.maxBulkRetry, maxFlowNodes: config.maxFlowNodes },
    new FailedJobInbox(db),
  );
  const stream = new EventStream(redis, (queue) => queues.eventsKey(queue));
  const loadJob = (queue: string, id: string) => jobs.getJob(queue, id);
  // One Redis subscription per watched channel, shared by all of this process's subscriptions.
  const pubsub = new RedisPubSub({ publisher, subscriber, deserializer: (message) => message.toString() });
  // Jobs' tenants, read once per job and instance: tenant-bound queue subscriptions are filtered with them at the fan-out.
  const tenants = new TenantCache(loadJob);
  const channels = new EventChannels(pubsub, log, null, (event: JobEvent) =>
    event.job ? event.job.tenant : tenants.resolve(event.queue, event.jobId),
  );
  const relay = new EventRelay({
    connection: bullConnection(config),
    space,
    publisher,
    loadJob,
    log,
    leaseMs: config.relayLeaseMs,
    local: channels,
  });
  await relay.start(registry.queues());
  // Bulk actions: selections in PostgreSQL, progress over the same pub/sub connection as job events.
  const bulk = new BulkActions({
    db,
    store: new BulkSelectionStore(db),
    control,
    jobs,
    actions,
    redis,
    prefix: config.queuePrefix,
    channels: new EventChannels<BulkActionEvent>(pubsub, log, parseBulkActionEvent),
    log,
    options: config.bulk,
  });
  bulk.start();
  const metrics = new Registry();
  // The rate limiter's script: a connection of its own, so its calls never queue behind other
  // commands. No auto-pipelining: the limiter batches itself (one call per credential per event-loop
  // turn, RateLimiter), and ioredis' auto-pipeline would only hold that call one more turn and build
  // a Pipeline object for it. (Before the limiter batched, one call per request written one by one
  // had been 14% of the API's CPU time on the trivial query: bench graphql-layer, 2026-12-06.)
  const limiterConnection = config.rateLimitPerMinute > 0 ? createRedis(config, "request") : null;
  // A connection of its own: a pass' pipelines of EXISTS must not queue ahead of the enqueues' commands.
  const recoveryConnection = createRedis(config, "request");
  const recovery = new RecoveryReconciler({
    redis: recoveryConnection,
    queues,
    queueNames: registry.queues(),
    records,
    history,
    log,
    options: config.recovery,
    onPass: recoveryMetrics(metrics),
    secrets,
  });
  recovery.start();
  const liveJob = (queue: string, id: string) => jobs.getLive(queue, id);
  const keyStore = new ApiKeyStore(db, (queue) => registry.hasQueue(queue));
  if (!config.jobTokenSecret && config.nodeEnv !== "test")
    log.warn("JOB_TOKEN_SECRET is not set: job tokens are signed with a random key and work on this instance only");
  const authenticator = new Authenticator({
    adminApiKey: config.adminApiKey,
    jobTokenSecret: config.jobTokenSecret ?? randomBytes(32).toString("base64url"),
    production: config.nodeEnv === "production",
    store: keyStore,
    log,
  });
  // Revocations reach every instance at once over pub/sub (a connection of its own: RedisPubSub owns `subscriber`).
  const revocations = createRedis(config, "subscriber");
  revocations.on("error", (err) => log.debug("redis pub/sub connection error", { err: err.message }));
  const bus = new RedisRevocationBus(publisher, revocations, config.queuePrefix);
  const access = new AccessService(keyStore, authenticator, new LiveSessions(), bus);
  await bus.start((keyId) => access.revoked(keyId), log);
  const enqueued = new Counter({
    name: "jobs_enqueued_total",
    help: "Jobs enqueued through the API, by the enqueuing key's name (never its secret) and queue",
    labelNames: ["key", "queue"],
    registers: [metrics],
  });
  const feeds = new EventFeeds({
    channels,
    stream,
    space,
    loadJob,
    hasQueue: (queue) => registry.hasQueue(queue),
    maxBuffer: config.subscriberMaxBuffer,
    tenantOf: tenants.resolve,
  });

  const queueMetrics = new QueueMetrics({ queues, redis: queueConnection, names: registry.queues(), relay, channels, log });

  return {
    registry,
    jobs,
    queueService,
    feeds,
    channels,
    access,
    // One registry for /metrics: enqueues per key, the recovery reconciler's, queues, relay, subscriptions.
    metrics: Registry.merge([metrics, queueMetrics.registry]),
    context: (principal, transport) => ({
      jobs,
      control,
      bulk,
      queues: queueService,
      feeds,
      history: historyQueries,
      stats,
      loaders: lazyJobLoaders(liveJob, historyQueries),
      actor: principal.actor,
      principal,
      access,
      transport,
      countEnqueued: (jobs) => {
        // One increment per queue (a bulk enqueue's 1,000 jobs are one call, not 1,000).
        const perQueue = new Map<string, number>();
        for (const job of jobs) perQueue.set(job.queue, (perQueue.get(job.queue) ?? 0) + 1);
        for (const [queue, n] of perQueue) enqueued.inc({ key: principal.actor, queue }, n);
      },
    }),
    authenticate: limited(
      authenticator.authenticate,
      limiterConnection ? new RateLimiter(limiterConnection, config.queuePrefix, config.rateLimitPerMinute, log) : null,
    ),
    recovery,
    ready: () =>
      runReadyChecks({
        redis: () => redis.ping(),
        postgres: () => db.$queryRaw`SELECT 1`,
        // READYZ_REQUIRE_WORKERS: each named queue needs at least one worker connection.
        ...Object.fromEntries(
          config.readyzRequireWorkers.map((q) => [
            `workers:${q}`,
            async () => {
              const n = await queues.get(q)?.getWorkersCount();
              if (!n) throw new Error(`no worker serves queue "${q}"`);
            },
          ]),
        ),
      }),
    close: async () => {
      await bulk.stop();
      await recovery.stop();
      await relay.stop();
      await queues.close();
      await Promise.all([
        closeRedis(redis),
        closeRedis(publisher),
        closeRedis(subscriber),
        closeRedis(queueConnection),
        closeRedis(recoveryConnection),
        ...(limiterConnection ? [closeRedis(limiterConnection)] : []),
        closeRedis(revocations),
      ]);
      await db.$disconnect();
    },
  };
}
