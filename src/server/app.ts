import http from "node:http";
import type { AddressInfo } from "node:net";
import { renderGraphiQL } from "@graphql-yoga/render-graphiql";
import {
  type DefinitionNode,
  GraphQLError,
  type GraphQLSchema,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type OperationDefinitionNode,
  subscribe,
} from "graphql";
import { createYoga, type Plugin } from "graphql-yoga";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Transport } from "../access/live-sessions.ts";
import type { RequestLimits } from "../config.ts";
import { MASKED_ERROR_MESSAGE, maskUnexpected } from "../graphql/as-graphql-error.ts";
import type { Context } from "../graphql/builder.ts";
import type { Logger } from "../infra/logger.ts";
import { bearerMatches, publicChecks } from "../infra/probe-answers.ts";
import type { Tracing } from "../infra/tracing.ts";
import type { Authenticate } from "./auth.ts";
import { requestAddress } from "./client-address.ts";
import { ConnectionLimits, credentialKey } from "./connection-limits.ts";
import { demoPagePlugin } from "./demo-page.ts";
import { httpMetricsPlugin } from "./http-metrics.ts";
import { boundedErrorsPlugin, inputGuardPlugin } from "./input-guard.ts";
import type { PersistedOperations } from "./persisted-operations.ts";
import { boundedParserCache, queryLimitsPlugin } from "./query-limits.ts";
import { requestBodyLimitPlugin } from "./request-body-limit.ts";
import { corsFor, errorResponse, type Principal, requestGuardPlugin } from "./request-guard.ts";
import { withRequestId } from "./request-id.ts";
import { attachGraphqlWs, type GraphqlWsOptions, type WebSocketLimits } from "./websocket.ts";

export interface AppDeps {
  schema: GraphQLSchema;
  /** Builds the per-request context (services, who is asking, and the WebSocket it came on, if any). */
  context: (principal: Principal, transport?: Transport) => Context;
  /** Resolves an `Authorization` value to a principal (sync or a promise); throws UNAUTHENTICATED. Called once per HTTP request, before its body is read, and once per WebSocket operation. */
  authenticate: Authenticate;
  /** Keeps each WebSocket under its key so revoking the key closes it (4403). */
  trackConnection?: GraphqlWsOptions["trackConnection"];
  /** Resolves when Redis and PostgreSQL answer; `checks` says "ok" or "failed" per dependency. */
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  log: Logger;
  graphiql: boolean;
  introspection: boolean;
  /** graphql-ws limits (keep-alive, init timeout, subscriptions per connection, slow consumers). */
  websocket: WebSocketLimits;
  /** The registry `/metrics` serves (the runtime's own metrics in it); default: a new one. */
  metrics?: Registry | undefined;
  /** When set, `/metrics` needs `Authorization: Bearer <token>` (METRICS_TOKEN). */
  metricsToken?: string | undefined;
  /** What one request may cost (MAX_* variables); defaults as in config.ts. */
  limits?: RequestLimits | undefined;
  /** Cross-origin callers allowed besides the API's own origin (CORS_ORIGINS). */
  corsOrigins?: readonly string[] | undefined;
  /**
   * false: the request protections of issue 14 off (early auth, CSRF, query and input limits,
   * bounded errors, byte-bounded cache, SSE connection limits; body limit back to Yoga's 25 MB).
   * Only for the bench's baseline (bench/load/api-unprotected.ts): no configuration turns it off.
   */
  protections?: boolean | undefined;
  /** Serves the demo page at `/demo` (DEMO_PAGE); `"rebuild"` bundles it again on each page load (development). */
  demoPage?: boolean | "rebuild";
  /** MAX_FLOW_NODES, which the demo page bounds its fan-out by (enqueueFlow refuses more anyway); default 1000. */
  maxFlowNodes?: number | undefined;
  /** PERSISTED_OPERATIONS with the typed client's manifest; none: any document runs (as `allow` without hashes). */
  persisted?: PersistedOperations | undefined;
  /** TRUST_PROXY_HOPS: proxies whose X-Forwarded-For entry is trusted for the client's address (0: none). */
  trustProxyHops?: number | undefined;
  /** OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT): a SERVER span per `/graphql` HTTP request; unset: none. */
  tracing?: Pick<Tracing, "serve" | "annotate"> | undefined;
}

/** The defaults of config.ts, for callers that build an app without a Config. */
export const DEFAULT_LIMITS: RequestLimits = {
  maxRequestBytes: 1024 * 1024,
  maxBulkRequestBytes: 16 * 1024 * 1024,
  maxTokens: 10_000,
  maxDepth: 15,
  maxAliases: 50,
  maxDirectives: 20,
  maxCost: 5_000,
  maxDataDepth: 64,
  parserCacheBytes: 16 * 1024 * 1024,
  maxConnectionsPerAddress: 100,
  maxConnectionsPerCredential: 500,
};

export interface App {
  /** The Fetch-API handler: `/graphql`, `/healthz`, `/readyz`. Usable in process without a port. */
  fetch: (request: Request) => Promise<Response> | Response;
  /** Listens on `port` (0 for any free one); resolves with the URL of the GraphQL endpoint. */
  start(port: number, host?: string): Promise<string>;
  /** Closes WebSockets, then the HTTP server. */
  stop(): Promise<void>;
}

/** Yoga's logger on ours; a level that is off costs a check, not a message and an array per call. */
function yogaLogging(log: Logger) {
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (...a: unknown[]): void => {
      if (log.enabled?.(level) === false) return;
      log[level](String(a[0]), { args: a.slice(1) });
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function healthPlugin(ready: AppDeps["ready"], metrics: Registry, metricsToken: string | undefined, log: Logger): Plugin {
  // Not an async hook: the GraphQL requests (all but a few) pass through without a promise.
  return {
    onRequest({ url, request, endResponse }) {
      const path = url.pathname;
      if (path === "/metrics") {
        if (metricsToken && !bearerMatches(request.headers.get("authorization"), metricsToken)) {
          endResponse(errorResponse(401, "Unauthorized", "UNAUTHENTICATED"));
          return;
        }
        return metrics.metrics().then((text) => endResponse(new Response(text, { headers: { "content-type": metrics.contentType } })));
      }
      if (path === "/healthz") {
        endResponse(Response.json({ status: "ok" }));
        return;
      }
      if (path === "/readyz") {
        return ready().then((result) => {
          if (!result.ok) log.warn("readiness check failed", { checks: result.checks });
          // Which dependency failed, never its error text (hosts, users, versions): that goes to the log.
          const checks = publicChecks(result.checks);
          endResponse(Response.json({ status: result.ok ? "ready" : "not ready", checks }, { status: result.ok ? 200 : 503 }));
        });
      }
    },
  };
}

/** Production default: no `__schema` / `__type` unless INTROSPECTION=true. */
function noIntrospectionPlugin(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/**
 * Subscriptions run on graphql-js' own `subscribe` instead of Yoga's default engine
 * (@graphql-tools/executor, kept for queries and mutations). A subscription lives for as long as
 * its client watches, and that engine keeps more for each one (per-subscription variable
 * signatures and memo maps, an extra flattening iterator, a generator per event): about 2.5 KB per
 * subscription and a fifth of the CPU per event, for features (@defer, @stream, abort signals)
 * subscriptions here don't use. Only the engine call changes: plugin hooks (error masking
 * included), context and validation run as before. This is the SSE path; WebSocket subscriptions
 * call graphql-js' `subscribe` themselves (see websocket.ts).
 */
/** Names the request's span after the operation it runs (`graphql.operation.name` / `.type`). */
function operationSpanPlugin(tracing: Pick<Tracing, "annotate">): Plugin {
  return {
    onExecute({ args }) {
      const operation = args.document.definitions.find(
        (d: DefinitionNode): d is OperationDefinitionNode =>
          d.kind === Kind.OPERATION_DEFINITION && (args.operationName == null || d.name?.value === args.operationName),
      );
      if (operation) {
        tracing.annotate({ "graphql.operation.type": operation.operation, "graphql.operation.name": operation.name?.value ?? "" });
      }
    },
  };
}

function graphqlJsSubscriptions(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(subscribe as Parameters<typeof setSubscribeFn>[0]);
    },
  };
}

/** Builds the API: nothing listens until `start`. */
export function buildApp(deps: AppDeps): App {
  // One registry per app (not prom-client's global one), so building two apps in a process works.
  const own = new Registry();
  collectDefaultMetrics({ register: own });
  const httpMetrics = httpMetricsPlugin(own);
  const metrics = deps.metrics ? Registry.merge([own, deps.metrics]) : own;
  const limits = deps.limits ?? DEFAULT_LIMITS;
  const protect = deps.protections !== false;
  const trustProxyHops = deps.trustProxyHops ?? 0;
  const guard = requestGuardPlugin({ authenticate: deps.authenticate, graphqlEndpoint: "/graphql", trustProxyHops });
  // A sync throw of `authenticate` (a wrong key with rate limits off) becomes a rejection, as before.
  const authenticatedContext = async (authorization: string | null | undefined, address: string | undefined, transport?: Transport) =>
    deps.context(await deps.authenticate(authorization, address), transport);
  const connections = new ConnectionLimits(limits.maxConnectionsPerAddress, limits.maxConnectionsPerCredential);
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema: deps.schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    // GraphiQL's assets bundled in the page, so it works without reaching a CDN.
    renderGraphiQL,
    // GraphiQL sends documents, which PERSISTED_OPERATIONS=only refuses: not served then.
    graphiql:
      deps.graphiql && deps.persisted?.mode !== "only"
        ? {
            title: "Job control API",
            subscriptionsProtocol: "WS",
            defaultQuery: EXAMPLE_OPERATIONS,
          }
        : false,
    // One mapping of the domain's errors for HTTP, SSE and WebSocket (src/graphql/as-graphql-error.ts).
    maskedErrors: { errorMessage: MASKED_ERROR_MESSAGE, maskError: maskUnexpected },
    // Replaced by requestBodyLimitPlugin: same limit, without a stream per request (see its file).
    maxRequestBodySize: false,
    // Only JSON bodies run operations (request-guard.ts); multipart is not parsed at all.
    multipart: !protect,
    ...(protect ? { cors: corsFor(deps.corsOrigins ?? []), parserAndValidationCache: boundedParserCache(limits) } : {}),
    logging: yogaLogging(deps.log),
    // Not async: an HTTP request's context is built synchronously from what the guard already knows.
    context: (initial) => {
      // websocket.ts passes its connection as `socket`: closed with 4403 if the key is revoked.
      const transport = (initial as { socket?: Transport }).socket;
      // HTTP and SSE: authenticated once, before the body was read (the request guard).
      const known = transport === undefined && initial.request ? guard.principalOf(initial.request) : undefined;
      if (known !== undefined) return deps.context(known);
      // graphql-ws (and requests the guard did not see): every operation authenticates again, so a
      // revoked key or a spent rate limit answers that operation.
      const fromSocket = (initial as { connectionParams?: { authorization?: unknown } }).connectionParams?.authorization;
      const authorization = typeof fromSocket === "string" ? fromSocket : initial.request?.headers.get("authorization");
      const address =
        requestAddress((initial as { req?: http.IncomingMessage }).req, trustProxyHops) ??
        (initial as { remoteAddress?: string }).remoteAddress;
      return authenticatedContext(authorization, address, transport);
    },
    plugins: [
      httpMetrics,
      healthPlugin(deps.ready, metrics, deps.metricsToken, deps.log),
      ...(deps.demoPage
        ? [demoPagePlugin({ log: deps.log, rebuildOnLoad: deps.demoPage === "rebuild", maxFlowNodes: deps.maxFlowNodes })]
        : []),
      ...(protect ? [guard.plugin] : []),
      ...(deps.persisted ? [deps.persisted.plugin()] : []),
      // With the protections on, the query-limits plugin adds this rule with its own (one hook, one cache).
      ...(deps.introspection || protect ? [] : [noIntrospectionPlugin()]),
      protect ? requestBodyLimitPlugin(limits.maxRequestBytes, limits.maxBulkRequestBytes) : requestBodyLimitPlugin(25_000_000, 25_000_000),
      ...(protect
        ? [
            queryLimitsPlugin(limits, {
              suggestions: deps.introspection,
              introspection: deps.introspection,
              cacheValidation: limits.parserCacheBytes > 0,
            }),
            inputGuardPlugin(limits.maxDataDepth),
            boundedErrorsPlugin(),
          ]
        : []),
      graphqlJsSubscriptions(),
      ...(deps.tracing ? [operationSpanPlugin(deps.tracing)] : []),
    ],
  });

  // SSE streams are long-lived: counted per address and per credential while they are open.
  const handle: http.RequestListener = (req, res) => {
    if (!protect || !req.headers.accept?.includes("text/event-stream")) return void yoga(req, res);
    const release = connections.acquireBoth(requestAddress(req, trustProxyHops) ?? "", credentialKey(req.headers.authorization));
    if (typeof release === "string") {
      res.writeHead(429, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ message: release, extensions: { code: "TOO_MANY_CONNECTIONS" } }] }));
      req.resume();
      return;
    }
    res.once("close", release);
    void yoga(req, res);
  };
  // Tracing on: `/graphql` requests (SSE included) run inside a SERVER span; probes and /metrics don't.
  const tracing = deps.tracing;
  const traced: http.RequestListener = tracing
    ? (req, res) => (req.url?.startsWith(yoga.graphqlEndpoint) ? tracing.serve(req, res, () => handle(req, res)) : handle(req, res))
    : handle;
  const server = http.createServer(withRequestId(traced));
  const ws = attachGraphqlWs(server, yoga, {
    authenticate: deps.authenticate,
    context: deps.context,
    trackConnection: deps.trackConnection,
    limits: deps.websocket,
    connections,
    maxPayloadBytes: limits.maxRequestBytes,
    maxDataDepth: limits.maxDataDepth,
    corsOrigins: deps.corsOrigins ?? [],
    trustProxyHops,
    persisted: deps.persisted,
    log: deps.log,
    // The same masking as maskedErrors above; what it hides is logged as Yoga logs it.
    maskErrors: (errors) =>
      errors.map((error) => {
        const masked = maskUnexpected(error);
        if (masked.message === MASKED_ERROR_MESSAGE && masked !== error) deps.log.error(String(error), { args: [] });
        return masked instanceof GraphQLError ? masked.toJSON() : { message: masked.message };
      }),
  });

  return {
    fetch: (request) => yoga.fetch(request),
    start: (port, host = "127.0.0.1") =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const address = server.address() as AddressInfo;
          const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
          resolve(`http://${shown}:${address.port}${yoga.graphqlEndpoint}`);
        });
      }),
    stop: async () => {
      await ws.close();
      if (!server.listening) return;
      server.closeIdleConnections();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // SSE streams are long-lived requests: give them a moment to end, then cut them.
      const timer = setTimeout(() => server.closeAllConnections(), 1_000);
      await closed;
      clearTimeout(timer);
    },
  };
}

/**
 * What GraphiQL opens with: a demo job and a subscription to its progress, then a demo flow
 * (demo.fanout with 5 demo.sleep children) and its parent's events, one per child.
 * test/playground-examples.test.ts runs them.
 */
export const EXAMPLE_OPERATIONS = `# 1. Run "Enqueue": it answers with the new job's id.
# 2. Put that id in the variables of "Watch" and run it to see the progress bar move.
mutation Enqueue {
  enqueueJob(input: { queue: "demo", name: "sleep", data: { steps: 10, stepMs: 500 } }) {
    __typename
    ... on EnqueueJobSuccess { job { id state } }
    ... on UserError { code message }
  }
}

subscription Watch($id: ID! = "1") {
  jobEvents(queue: "demo", id: $id) { id type progress job { state result } }
}

# 3. Run "Fanout": a flow, one demo.fanout parent waiting for its 5 demo.sleep children.
# 4. Put the parent's id (job.id) in "WatchFlow": a CHILD_COMPLETED per child with the counts so far
#    ("3 of 5": processed of the sum), then the parent runs and adds up its children's results.
mutation Fanout {
  enqueueFlow(input: {
    queue: "demo", name: "fanout", data: { label: "playground" },
    children: [
      { queue: "demo", name: "sleep", data: { steps: 5, stepMs: 400 } }
      { queue: "demo", name: "sleep", data: { steps: 5, stepMs: 400 } }
      { queue: "demo", name: "sleep", data: { steps: 5, stepMs: 400 } }
      { queue: "demo", name: "sleep", data: { steps: 5, stepMs: 400 } }
      { queue: "demo", name: "sleep", data: { steps: 5, stepMs: 400 } }
    ]
  }) {
    __typename
    ... on EnqueueFlowSuccess { job { id state } jobs { id name state } }
    ... on UserError { code message }
  }
}

subscription WatchFlow($id: ID! = "1") {
  jobEvents(queue: "demo", id: $id) { id type childrenCounts { processed pending failed ignored } job { state result } }
}
`;
