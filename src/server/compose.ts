import type { Config } from "../config.ts";
import { schema } from "../graphql/schema.ts";
import type { Logger } from "../infra/logger.ts";
import { type AppDeps, buildApp } from "./app.ts";
import { PersistedOperations } from "./persisted-operations.ts";
import type { ApiRuntime } from "./runtime.ts";
import { websocketLimits } from "./websocket.ts";

/**
 * The API app from a configuration and its runtime, as `npm start` builds it; `overrides` for what
 * a caller sets differently (tests: GraphiQL on; the bench's baseline: protections off).
 */
export function buildAppFrom(config: Config, runtime: ApiRuntime, log: Logger, overrides: Partial<AppDeps> = {}) {
  return buildApp({
    schema,
    context: runtime.context,
    authenticate: runtime.authenticate,
    trackConnection: (principal, connection) => runtime.access.sessions.trackConnection(principal, connection),
    websocket: websocketLimits(config),
    ready: runtime.ready,
    log,
    graphiql: config.nodeEnv !== "production",
    introspection: config.introspection,
    metricsToken: config.metricsToken,
    limits: config.limits,
    corsOrigins: config.corsOrigins,
    trustProxyHops: config.trustProxyHops,
    persisted: PersistedOperations.load(config.persistedOperations),
    metrics: runtime.metrics,
    maxFlowNodes: config.maxFlowNodes,
    ...overrides,
  });
}
