import type http from "node:http";
import { type ExecutionArgs, type ExecutionResult, GraphQLError, type GraphQLFormattedError, subscribe } from "graphql";
import { CloseCode, handleProtocols, makeServer, type Context as WsContext, type WebSocket as WsTransport } from "graphql-ws";
import type { YogaServerInstance } from "graphql-yoga";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import type { Principal } from "../access/principal.ts";
import type { Config } from "../config.ts";
import type { Context } from "../graphql/builder.ts";
import type { Logger } from "../infra/logger.ts";
import type { Authenticate } from "./auth.ts";
import { requestAddress } from "./client-address.ts";
import { CLOSE_TOO_MANY_CONNECTIONS, type ConnectionLimits, credentialKey } from "./connection-limits.ts";
import { operationInputProblem } from "./input-guard.ts";
import type { PersistedOperations } from "./persisted-operations.ts";
import { originAllowed } from "./request-guard.ts";

/** Close codes of our own (graphql-ws uses 44xx; 4000-4399 are free for applications). */
export const CLOSE_SLOW_CONSUMER = 4008;
export const CLOSE_TOO_MANY_SUBSCRIPTIONS = 4029;
/** RFC 6455's "Try Again Later": the credential could not be checked (a store did not answer). */
export const CLOSE_TRY_AGAIN_LATER = 1013;

/**
 * Largest message read before the connection is authenticated: `connection_init` carries a key, not
 * a document, so a bigger one is closed (4400) before it is parsed.
 */
export const MAX_INIT_MESSAGE_BYTES = 16 * 1024;

const SUBSCRIBE_MESSAGE = /"type"\s*:\s*"subscribe"/;

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

/** Yoga's envelop execute for one operation (queries and mutations sent over the socket). */
type Enveloped = { execute: (args: ExecutionArgs) => unknown };

export interface GraphqlWsOptions {
  authenticate: Authenticate;
  /**
   * Called with each connection's principal once connection_init is accepted, and a way to close
   * it; returns what to call when the connection ends. Used to close a revoked key's connections.
   */
  trackConnection?: ((principal: Principal, close: (code: number, reason: string) => void) => () => void) | undefined;
  limits: WebSocketLimits;
  /** Open WebSockets per address and per credential (shared with SSE). */
  connections: ConnectionLimits;
  /** ws' maxPayload: a bigger message closes the socket (1009). */
  maxPayloadBytes: number;
  /** Deepest nesting of variables' JSON values (MAX_DATA_DEPTH). */
  maxDataDepth: number;
  /** Browser origins allowed besides the API's own (CORS_ORIGINS); others are refused at the upgrade. */
  corsOrigins: readonly string[];
  /** PERSISTED_OPERATIONS: subscribe payloads resolved (and refused) as on HTTP. */
  persisted?: PersistedOperations | undefined;
  /** TRUST_PROXY_HOPS: how the client's address is read from the upgrade request (client-address.ts). */
  trustProxyHops?: number | undefined;
  log: Logger;
  /** The error masking Yoga applies (same function, same message), for what subscriptions send. */
  maskErrors: (errors: readonly GraphQLError[]) => GraphQLFormattedError[];
}

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
 * One client connection: graphql-ws' transport for it (`send`, `close`, `onMessage`), and the few
 * fields the shared timers below read. Deliberately small: a server holds tens of thousands.
 */
class Connection implements WsTransport {
  /** graphql-ws' handler of incoming messages. */
  receive: ((data: string) => Promise<void>) | null = null;
  /** graphql-ws' handler of the socket's end. */
  closed: ((code: number, reason: string) => Promise<void>) | null = null;
  /** Messages handed to `ws` whose write has not completed (the client has not taken them). */
  inFlight = 0;
  /** performance.now() when messages started waiting, or when the client last took one while more wait. */
  waitingSince = 0;
  /** A ping went out and no pong has come back yet. */
  awaitingPong = false;
  /** Set once `connection_init` carried a valid key: who the connection acts as. */
  principal: Principal | undefined = undefined;
  /** Subscribe messages whose handling has not ended: set up, running, or being torn down. */
  operations = 0;
  /** Releases this connection's places in the connection limits. */
  release: (() => void) | null = null;
  /** The client's address (rate limits). */
  remoteAddress: string | undefined = undefined;
  /** Stops tracking this connection under its key (see `trackConnection`). */
  untrack: (() => void) | null = null;

  readonly socket: WebSocket;
  private readonly watch: Watch;
  readonly group: number;

  constructor(
    socket: WebSocket,
    watch: Watch,
    /** Its keep-alive group (see `Watch`). */
    group: number,
  ) {
    this.socket = socket;
    this.watch = watch;
    this.group = group;
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  /** Resolves once `ws` handed the message to the OS: graphql-ws asks for a subscription's next event only then. */
  send(data: string): Promise<void> {
    if (this.socket.readyState !== this.socket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.watch.sending(this);
      this.socket.send(data, (err) => {
        this.watch.sent(this);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  onMessage(receive: (data: string) => Promise<void>): void {
    this.receive = receive;
  }
}

/**
 * The timers of all connections, instead of a few per connection.
 *
 * Keep-alive: connections are spread over groups; each tick visits one group, terminating the
 * connections that have not answered the previous ping and pinging the others, so every connection
 * is pinged every `keepAliveMs` and has that long to answer, and the pings of thousands of
 * connections don't all go out in the same tick.
 *
 * Slow consumers: graphql-ws hands a subscription's next event to `send` only once the previous one
 * was written to the OS, so a client that stops reading stalls only its own subscriptions, their
 * events waiting in each subscription's bounded buffer (src/jobs/event-feed.ts) where progress
 * coalesces. A connection that has had messages waiting for `slowConsumerMs` without the client
 * taking any is closed with 4008. Only connections with messages waiting are looked at.
 */
class Watch {
  private readonly groups: Set<Connection>[];
  private readonly waiting = new Set<Connection>();
  private readonly timers: NodeJS.Timeout[] = [];
  private nextGroup = 0;
  private tick = 0;

  private readonly limits: WebSocketLimits;

  constructor(limits: WebSocketLimits) {
    this.limits = limits;
    const keepAlive = limits.keepAliveMs > 0 && Number.isFinite(limits.keepAliveMs);
    // A tick every ~100 ms: with 20,000 connections and a 12 s interval, ~170 pings at a time.
    const groups = keepAlive ? Math.max(1, Math.min(256, Math.floor(limits.keepAliveMs / 100))) : 1;
    this.groups = Array.from({ length: groups }, () => new Set<Connection>());
    if (keepAlive) this.timers.push(setInterval(() => this.keepAlive(), limits.keepAliveMs / groups).unref());
    const sweepMs = Math.max(10, Math.min(1_000, limits.slowConsumerMs / 4));
    this.timers.push(setInterval(() => this.sweepSlow(), sweepMs).unref());
  }

  open(socket: WebSocket): Connection {
    const group = this.nextGroup++ % this.groups.length;
    const conn = new Connection(socket, this, group);
    this.groups[group]?.add(conn);
    return conn;
  }

  forget(conn: Connection): void {
    this.groups[conn.group]?.delete(conn);
    this.waiting.delete(conn);
  }

  sending(conn: Connection): void {
    if (conn.inFlight++ === 0) {
      conn.waitingSince = performance.now();
      this.waiting.add(conn);
    }
  }

  sent(conn: Connection): void {
    conn.waitingSince = performance.now();
    if (--conn.inFlight === 0) this.waiting.delete(conn);
  }

  private keepAlive(): void {
    const group = this.groups[this.tick++ % this.groups.length] ?? [];
    for (const conn of group) {
      if (conn.socket.readyState !== conn.socket.OPEN) continue;
      if (conn.awaitingPong) {
        conn.socket.terminate();
        continue;
      }
      conn.awaitingPong = true;
      conn.socket.ping();
    }
  }

  private sweepSlow(): void {
    const stalledSince = performance.now() - this.limits.slowConsumerMs;
    for (const conn of this.waiting) {
      if (conn.waitingSince > stalledSince) continue;
      this.waiting.delete(conn);
      conn.close(CLOSE_SLOW_CONSUMER, "Slow consumer: events are not being read; reconnect and resume with `since`");
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }
}

/**
 * graphql-ws (`graphql-transport-ws`) on the HTTP server's GraphQL path. The protocol is graphql-ws'
 * own (`makeServer`); the glue to `ws` is ours, so each connection costs one small object and
 * shared timers (see `Watch`) rather than timers, closures and the HTTP upgrade request of its own.
 *
 * Operations go through Yoga's envelop for parsing, validation (cached) and context (auth), like
 * over HTTP and SSE. Queries and mutations execute through envelop too. A subscription's events
 * execute with graphql-js' `subscribe` directly, the engine SSE uses as well (see app.ts): envelop
 * would wrap each subscription in three more async iterators for its result hooks, about 2.5 KB per
 * subscription held for its whole life plus their work on every event. The one such hook in use is
 * error masking, applied here instead (`maskErrors`: Yoga's own function and message) to every
 * result and error sent. Plugins' onSubscribe hooks don't run for WebSocket subscriptions.
 */
export function attachGraphqlWs(
  server: http.Server,
  yoga: YogaServerInstance<Record<string, unknown>, Context>,
  {
    authenticate,
    limits,
    connections: connectionLimits,
    maxPayloadBytes,
    maxDataDepth,
    corsOrigins,
    trustProxyHops = 0,
    persisted,
    log,
    maskErrors,
    trackConnection,
  }: GraphqlWsOptions,
) {
  const wss = new WebSocketServer({
    server,
    path: yoga.graphqlEndpoint,
    handleProtocols,
    maxPayload: maxPayloadBytes,
    // Browsers let any page open a WebSocket to any host: only allowed origins may (CSWSH).
    verifyClient: ({ req }: { req: http.IncomingMessage }) => originAllowed(req.headers.origin, req.headers.host, corsOrigins),
  });
  const watch = new Watch(limits);
  const connections = new WeakMap<WebSocket, Connection>();

  const protocol = makeServer<Record<string, unknown> | undefined, Connection>({
    connectionInitWaitTimeout: limits.initTimeoutMs,
    // A bad key closes the socket with 4403 (graphql-ws' Forbidden), before any operation.
    onConnect: async (ctx) => {
      const authorization = typeof ctx.connectionParams?.authorization === "string" ? ctx.connectionParams.authorization : null;
      let principal: Principal;
      try {
        principal = await authenticate(authorization, ctx.extra.remoteAddress);
      } catch (err) {
        // A store the check needs did not answer (PostgreSQL down, key cache cold): "try again
        // later" (1013), as HTTP answers 503, rather than 4403, which tells a client its key is bad.
        if (!(err instanceof GraphQLError)) ctx.extra.close(CLOSE_TRY_AGAIN_LATER, "Could not check the credential right now; retry");
        return false;
      }
      const conn = ctx.extra;
      const release = connectionLimits.acquireCredential(credentialKey(authorization));
      if (typeof release === "string") {
        conn.close(CLOSE_TOO_MANY_CONNECTIONS, release);
        return false;
      }
      const address = conn.release;
      conn.release = () => {
        address?.();
        release();
      };
      conn.principal = principal;
      if (trackConnection) conn.untrack = trackConnection(principal, (code, reason) => conn.close(code, reason));
      return true;
    },
    // Yoga's envelop hands us its own execute in onSubscribe; it travels in rootValue.
    execute: (args) => (args.rootValue as Enveloped).execute(args) as never,
    subscribe: (args) => subscribe(args) as Promise<AsyncIterable<ExecutionResult> | ExecutionResult>,
    onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? { ...result, errors: maskErrors(result.errors) } : undefined),
    onError: (_ctx, _id, _payload, errors) => maskErrors(errors),
    onSubscribe: async (ctx: WsContext<Record<string, unknown> | undefined, Connection>, _id, payload) => {
      // graphql-ws lists every operation of the connection still running, this one included (the
      // count of operations being set up or torn down is checked as their messages arrive).
      if (Object.keys(ctx.subscriptions).length > limits.maxSubscriptions) {
        const message = `Too many subscriptions on one connection (at most ${limits.maxSubscriptions})`;
        ctx.extra.close(CLOSE_TOO_MANY_SUBSCRIPTIONS, message);
        return [new GraphQLError(message)];
      }
      // Persisted operations first (by hash, or refused in `only`), as Yoga's onParams does on HTTP.
      let query = payload.query;
      if (persisted) {
        try {
          query = persisted.resolve(payload) ?? "";
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
      }
      const { schema, execute, contextFactory, parse, validate } = yoga.getEnveloped({
        principal: ctx.extra.principal,
        connectionParams: ctx.connectionParams,
        socket: ctx.extra.socket,
        remoteAddress: ctx.extra.remoteAddress,
        params: payload,
      });
      // The context authenticates each operation again: a revoked key or an exhausted rate limit is
      // an error message for this operation (not a dropped connection).
      let contextValue: unknown;
      try {
        contextValue = await contextFactory();
      } catch (err) {
        if (err instanceof GraphQLError) return [err];
        throw err;
      }
      const args = {
        schema,
        operationName: payload.operationName,
        document: parse(query),
        variableValues: payload.variables,
        contextValue,
        rootValue: { execute } satisfies Enveloped,
      };
      const errors = validate(args.schema, args.document);
      if (errors.length) return errors;
      const bad = operationInputProblem(args.document, args.variableValues, maxDataDepth);
      if (bad) return [bad];
      return args;
    },
  });

  // Shared listeners (`this` is the socket): no closures per connection.
  function onSocketMessage(this: WebSocket, data: RawData) {
    const conn = connections.get(this);
    if (!conn?.receive) return;
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (conn.principal === undefined && bytes > MAX_INIT_MESSAGE_BYTES) {
      conn.close(CloseCode.BadRequest, `Message too large before connection_init was accepted (at most ${MAX_INIT_MESSAGE_BYTES} bytes)`);
      return;
    }
    const text = String(data);
    // A subscription counts from its subscribe message until graphql-ws is done with it, torn
    // down included: `complete` during setup does not free its place before the setup ends. Twice
    // the running limit, so a client that completes one and at once starts another is not cut off,
    // while subscribe+complete pairs sent in a loop are (each setup reads Redis).
    const counted = conn.principal !== undefined && SUBSCRIBE_MESSAGE.test(text);
    if (counted && conn.operations >= 2 * limits.maxSubscriptions) {
      conn.close(
        CLOSE_TOO_MANY_SUBSCRIPTIONS,
        `Too many subscriptions being set up or torn down on one connection (at most ${2 * limits.maxSubscriptions})`,
      );
      return;
    }
    if (counted) conn.operations++;
    conn
      .receive(text)
      .catch((err: unknown) => {
        log.error("graphql-ws: handling a message failed", { err });
        this.close(CloseCode.InternalServerError, "Internal server error");
      })
      .finally(() => {
        if (counted) conn.operations--;
      });
  }
  function onSocketPong(this: WebSocket) {
    const conn = connections.get(this);
    if (conn) conn.awaitingPong = false;
  }
  function onSocketError(this: WebSocket, err: Error) {
    log.warn("graphql-ws: socket error", { err: err.message });
    this.close(CloseCode.InternalServerError, "Internal server error");
  }
  function onSocketClose(this: WebSocket, code: number, reason: Buffer) {
    const conn = connections.get(this);
    if (!conn) return;
    connections.delete(this);
    conn.release?.();
    watch.forget(conn);
    conn.untrack?.();
    conn.closed?.(code, String(reason)).catch((err: unknown) => log.error("graphql-ws: closing a connection failed", { err }));
  }

  wss.on("error", (err) => log.error("WebSocket server error", { err }));
  wss.on("connection", (socket, req) => {
    const remoteAddress = requestAddress(req, trustProxyHops);
    const address = connectionLimits.acquireAddress(remoteAddress ?? "");
    if (typeof address === "string") {
      socket.close(CLOSE_TOO_MANY_CONNECTIONS, address.slice(0, 120));
      return;
    }
    const conn = watch.open(socket);
    conn.release = address;
    conn.remoteAddress = remoteAddress;
    connections.set(socket, conn);
    socket.on("message", onSocketMessage);
    socket.on("pong", onSocketPong);
    socket.on("error", onSocketError);
    socket.on("close", onSocketClose);
    conn.closed = protocol.opened(conn, conn);
  });

  return {
    async close() {
      watch.stop();
      for (const client of wss.clients) client.close(1001, "Going away");
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
