import http from "node:http";
import type { AddressInfo } from "node:net";
import { renderGraphiQL } from "@graphql-yoga/render-graphiql";
import { GraphQLError, type GraphQLSchema, NoSchemaIntrospectionCustomRule, subscribe } from "graphql";
import { createYoga, maskError, type Plugin } from "graphql-yoga";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Context } from "../graphql/builder.ts";
import type { Logger } from "../infra/logger.ts";
import type { Authenticate } from "./auth.ts";
import { httpMetricsPlugin } from "./http-metrics.ts";
import { requestBodyLimitPlugin } from "./request-body-limit.ts";
import { attachGraphqlWs, type WebSocketLimits } from "./websocket.ts";

export interface AppDeps {
  schema: GraphQLSchema;
  /** Builds the per-request context (services and actor). */
  context: (actor: string) => Context;
  /** Resolves an `Authorization` value to an actor; throws UNAUTHENTICATED. */
  authenticate: Authenticate;
  /** Resolves when Redis and PostgreSQL answer; rejects naming the one that failed. */
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  log: Logger;
  graphiql: boolean;
  introspection: boolean;
  /** graphql-ws limits (keep-alive, init timeout, subscriptions per connection, slow consumers). */
  websocket: WebSocketLimits;
  /** When set, `/metrics` needs `Authorization: Bearer <token>` (METRICS_TOKEN). */
  metricsToken?: string | undefined;
  /** More metrics for `/metrics` (the runtime's queue metrics), served with the process ones. */
  metrics?: Registry | undefined;
}

export interface App {
  /** The Fetch-API handler: `/graphql`, `/healthz`, `/readyz`. Usable in process without a port. */
  fetch: (request: Request) => Promise<Response> | Response;
  /** Listens on `port` (0 for any free one); resolves with the URL of the GraphQL endpoint. */
  start(port: number, host?: string): Promise<string>;
  /** Closes WebSockets, then the HTTP server. */
  stop(): Promise<void>;
}

function healthPlugin(ready: AppDeps["ready"], metrics: Registry, metricsToken: string | undefined): Plugin {
  return {
    async onRequest({ url, request, endResponse }) {
      if (url.pathname === "/metrics") {
        if (metricsToken && request.headers.get("authorization") !== `Bearer ${metricsToken}`) {
          endResponse(Response.json({ errors: [{ message: "Unauthorized", extensions: { code: "UNAUTHENTICATED" } }] }, { status: 401 }));
        } else {
          endResponse(new Response(await metrics.metrics(), { headers: { "content-type": metrics.contentType } }));
        }
      } else if (url.pathname === "/healthz") {
        endResponse(Response.json({ status: "ok" }));
      } else if (url.pathname === "/readyz") {
        const result = await ready();
        endResponse(Response.json({ status: result.ok ? "ready" : "not ready", checks: result.checks }, { status: result.ok ? 200 : 503 }));
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
function graphqlJsSubscriptions(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(subscribe as Parameters<typeof setSubscribeFn>[0]);
    },
  };
}

/** What clients see instead of an error that is not one of ours (Yoga's default message). */
const MASKED_ERROR_MESSAGE = "Unexpected error.";

/** Builds the API: nothing listens until `start`. */
export function buildApp(deps: AppDeps): App {
  // One registry per app (not prom-client's global one), so building two apps in a process works.
  const own = new Registry();
  collectDefaultMetrics({ register: own });
  const httpMetrics = httpMetricsPlugin(own);
  const metrics = deps.metrics ? Registry.merge([own, deps.metrics]) : own;
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema: deps.schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    // GraphiQL's assets bundled in the page, so it works without reaching a CDN.
    renderGraphiQL,
    graphiql: deps.graphiql
      ? {
          title: "Job control API",
          subscriptionsProtocol: "WS",
          defaultQuery: EXAMPLE_OPERATIONS,
        }
      : false,
    maskedErrors: { errorMessage: MASKED_ERROR_MESSAGE },
    // Replaced by requestBodyLimitPlugin: same limit, without a stream per request (see its file).
    maxRequestBodySize: false,
    logging: {
      debug: (...a) => deps.log.debug(String(a[0]), { args: a.slice(1) }),
      info: (...a) => deps.log.info(String(a[0]), { args: a.slice(1) }),
      warn: (...a) => deps.log.warn(String(a[0]), { args: a.slice(1) }),
      error: (...a) => deps.log.error(String(a[0]), { args: a.slice(1) }),
    },
    context: (initial) => {
      // HTTP and SSE carry the key in a header; graphql-ws in connection_init's payload.
      const fromSocket = (initial as { connectionParams?: { authorization?: unknown } }).connectionParams?.authorization;
      const authorization = typeof fromSocket === "string" ? fromSocket : initial.request?.headers.get("authorization");
      return deps.context(deps.authenticate(authorization));
    },
    plugins: [
      httpMetrics,
      healthPlugin(deps.ready, metrics, deps.metricsToken),
      ...(deps.introspection ? [] : [noIntrospectionPlugin()]),
      requestBodyLimitPlugin(),
      graphqlJsSubscriptions(),
    ],
  });

  const server = http.createServer(yoga);
  const ws = attachGraphqlWs(server, yoga, {
    authenticate: deps.authenticate,
    limits: deps.websocket,
    log: deps.log,
    // Yoga's masking (same function and message as maskedErrors above), and logged as Yoga logs it.
    maskErrors: (errors) =>
      errors.map((error) => {
        const masked = maskError(error, MASKED_ERROR_MESSAGE);
        if (masked !== error) deps.log.error(String(error), { args: [] });
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

/** What GraphiQL opens with: a demo job and a subscription to its progress. */
const EXAMPLE_OPERATIONS = `# 1. Run "Enqueue": it answers with the new job's id.
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
`;
