import type http from "node:http";
import { type ExecutionArgs, type ExecutionResult, GraphQLError } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import type { YogaServerInstance } from "graphql-yoga";
import { type WebSocket, WebSocketServer } from "ws";
import type { Config } from "../config.ts";
import type { Context } from "../graphql/builder.ts";
import type { Authenticate } from "./auth.ts";

/** Close codes of our own (graphql-ws uses 44xx; 4000-4399 are free for applications). */
export const CLOSE_SLOW_CONSUMER = 4008;
export const CLOSE_TOO_MANY_SUBSCRIPTIONS = 4029;

export interface WebSocketLimits {
  /** Ping interval; a client that misses the pong is disconnected. */
  keepAliveMs: number;
  /** Time allowed before `connection_init` (graphql-ws closes with 4408). */
  initTimeoutMs: number;
  /** Subscriptions one connection may run at once; one more closes it with 4029. */
  maxSubscriptions: number;
  /** How long one message may wait to be taken by the client before the socket is closed with 4008. */
  slowConsumerMs: number;
}

type Enveloped = {
  execute: (args: ExecutionArgs) => unknown;
  subscribe: (args: ExecutionArgs) => unknown;
  socket: WebSocket;
};

/** The limits as configured (WS_* variables). */
export function websocketLimits(config: Config): WebSocketLimits {
  return {
    keepAliveMs: config.wsKeepAliveMs,
    initTimeoutMs: config.wsInitTimeoutMs,
    maxSubscriptions: config.wsMaxSubscriptions,
    slowConsumerMs: config.wsSlowConsumerMs,
  };
}

/**
 * Closes the connection of a client that stops taking events. graphql-ws waits until each message
 * has been handed to the OS before it asks for the next one, so a client that stops reading stalls
 * its subscription at a `yield` here once the socket buffers are full; meanwhile new events wait in
 * the subscription's own bounded buffer (src/jobs/event-feed.ts), where progress coalesces. A yield
 * that is not taken within `slowConsumerMs` closes the socket with 4008. Other subscriptions and
 * connections are never slowed.
 */
async function* watched(
  source: AsyncIterable<ExecutionResult>,
  socket: WebSocket,
  limits: WebSocketLimits,
): AsyncGenerator<ExecutionResult> {
  for await (const result of source) {
    const watchdog = setTimeout(() => {
      socket.close(CLOSE_SLOW_CONSUMER, "Slow consumer: events are not being read; reconnect and resume with `since`");
    }, limits.slowConsumerMs);
    try {
      yield result;
    } finally {
      clearTimeout(watchdog);
    }
  }
}

/**
 * graphql-ws (`graphql-transport-ws`) on the HTTP server's GraphQL path, executing through Yoga's
 * envelop so WebSocket and SSE share context, auth, plugins and error masking.
 */
export function attachGraphqlWs(
  server: http.Server,
  yoga: YogaServerInstance<Record<string, unknown>, Context>,
  authenticate: Authenticate,
  limits: WebSocketLimits,
) {
  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint });
  const active = new WeakMap<WebSocket, Set<string>>();
  const forget = (socket: WebSocket, id: string) => active.get(socket)?.delete(id);

  const disposable = useServer(
    {
      connectionInitWaitTimeout: limits.initTimeoutMs,
      // A bad key closes the socket with 4403 (graphql-ws' Forbidden), before any operation.
      onConnect: (ctx) => {
        try {
          authenticate(typeof ctx.connectionParams?.authorization === "string" ? ctx.connectionParams.authorization : null);
          return true;
        } catch {
          return false;
        }
      },
      // Yoga's envelop hands us its own execute/subscribe in onSubscribe; they travel in rootValue.
      execute: (args) => (args.rootValue as Enveloped).execute(args) as never,
      subscribe: async (args) => {
        const root = args.rootValue as Enveloped;
        const result = (await root.subscribe(args)) as AsyncIterable<ExecutionResult> | ExecutionResult;
        return Symbol.asyncIterator in result ? watched(result, root.socket, limits) : result;
      },
      onSubscribe: async (ctx, id, payload) => {
        const socket = ctx.extra.socket;
        const ids = active.get(socket) ?? new Set<string>();
        active.set(socket, ids);
        if (ids.size >= limits.maxSubscriptions) {
          socket.close(CLOSE_TOO_MANY_SUBSCRIPTIONS, `Too many subscriptions on one connection (at most ${limits.maxSubscriptions})`);
          return [new GraphQLError(`Too many subscriptions on one connection (at most ${limits.maxSubscriptions})`)];
        }
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket,
          params: payload,
        });
        const args = {
          schema,
          operationName: payload.operationName,
          document: parse(payload.query),
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe, socket },
        };
        const errors = validate(args.schema, args.document);
        if (errors.length) return errors;
        ids.add(id);
        return args;
      },
      onComplete: (ctx, id) => {
        forget(ctx.extra.socket, id);
      },
      onError: (ctx, id) => {
        forget(ctx.extra.socket, id);
      },
    },
    wss,
    limits.keepAliveMs,
  );

  return {
    async close() {
      await disposable.dispose();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
