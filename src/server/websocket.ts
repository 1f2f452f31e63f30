import type http from "node:http";
import {
  createSourceEventStream,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  execute as executeGraphql,
  GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
  getOperationAST,
} from "graphql";
import { CloseCode, GRAPHQL_TRANSPORT_WS_PROTOCOL, handleProtocols, MessageType, parseMessage, type SubscribePayload } from "graphql-ws";
import type { YogaServerInstance } from "graphql-yoga";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import type { Transport } from "../access/live-sessions.ts";
import type { Principal } from "../access/principal.ts";
import type { Config } from "../config.ts";
import type { Context } from "../graphql/builder.ts";
import type { Logger } from "../infra/logger.ts";
import { isPullStream, type PullStream, type StreamConsumer } from "../jobs/events/index.ts";
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

export interface GraphqlWsOptions {
  authenticate: Authenticate;
  /** Builds an operation's context (app.ts' `context`): a subscription's is built here, without envelop's. */
  context: (principal: Principal, transport?: Transport) => Context;
  /**
   * Called with each connection's principal once connection_init is accepted, and the connection
   * (to close); returns what to call when the connection ends (null: not tracked). Used to close a
   * revoked key's connections.
   */
  trackConnection?: ((principal: Principal, connection: Required<Transport>) => { forget(): void } | null) | undefined;
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

/** What a socket's operation needs of the server: shared by every connection (no closures per connection). */
interface Server {
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  /** The schema envelop hands out (the same for every operation), taken from the first one. */
  schema: GraphQLSchema | null;
  authenticate: Authenticate;
  context: (principal: Principal, transport?: Transport) => Context;
  persisted: PersistedOperations | undefined;
  maxDataDepth: number;
  limits: WebSocketLimits;
  log: Logger;
  maskErrors: (errors: readonly GraphQLError[]) => GraphQLFormattedError[];
  /** A socket's events (see `ServerSocket`). */
  onMessage(conn: Connection, data: RawData): void;
  onError(conn: Connection, err: Error): void;
  onClose(conn: Connection): void;
}

/**
 * ws' WebSocket, with its events handed straight to the server's functions instead of through
 * listeners: an EventEmitter with listeners keeps a dictionary of them per socket (~280 bytes).
 * Until `connection` is set (a socket refused at the upgrade) it behaves as ws' own.
 */
class ServerSocket extends WebSocket {
  connection: Connection | null = null;

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    const conn = this.connection;
    if (conn === null) return super.emit(event, ...args);
    switch (event) {
      case "message":
        conn.server.onMessage(conn, args[0] as RawData);
        return true;
      case "pong":
        conn.awaitingPong = false;
        return true;
      case "ping":
        // ws answers pings itself (autoPong).
        return true;
      case "error":
        conn.server.onError(conn, args[0] as Error);
        return true;
      case "close":
        this.connection = null;
        conn.server.onClose(conn);
        return true;
      default:
        return super.emit(event, ...args);
    }
  }
}

function messageOf(id: string, type: string, payload: unknown): string {
  return `{"id":${JSON.stringify(id)},"type":"${type}","payload":${JSON.stringify(payload)}}`;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function";
}

function isPromiseLike<T>(value: unknown): value is PromiseLike<T> {
  return typeof value === "object" && value !== null && typeof (value as PromiseLike<T>).then === "function";
}

/**
 * One client connection: the `graphql-transport-ws` protocol's state (init, acknowledgement, the
 * operations by id) and the few fields the shared timers below read. Deliberately small: a server
 * holds tens of thousands.
 */
class Connection implements Required<Transport> {
  /** Messages handed to `ws` whose write has not completed (the client has not taken them). */
  inFlight = 0;
  /** performance.now() when messages started waiting, or when the client last took one while more wait. */
  waitingSince = 0;
  /** A ping went out and no pong has come back yet. */
  awaitingPong = false;
  /** `connection_init` came (accepted or being checked). */
  initReceived = false;
  /** `connection_init`'s `authorization` (the only connection parameter read): every operation authenticates with it again. */
  authorization: string | null = null;
  /** Set once `connection_init` carried a valid key: who the connection acts as (acknowledged). */
  principal: Principal | undefined = undefined;
  /** The running operation, when there is one (the usual case: one subscription per socket). */
  private only: Operation | null = null;
  /** Running operations by id when there are several (then `only` is null). */
  private several: Map<string, Operation> | null = null;
  /** Operations whose handling has not ended: set up, running, or being torn down. */
  unfinished = 0;
  /** Its place in the per-address limit, while it holds one (the address counted). */
  addressHeld: string | null = null;
  /** Its place in the per-credential limit, while it holds one (the credential's key). */
  credentialHeld: string | null = null;
  /** The client's address (rate limits). */
  remoteAddress: string | undefined = undefined;
  /** Its place among its key's live sessions (see `trackConnection`). */
  session: { forget(): void } | null = null;
  /** performance.now() when it opened (the init timeout). */
  readonly openedAt = performance.now();

  readonly socket: ServerSocket;
  readonly watch: Watch;
  readonly server: Server;
  readonly group: number;

  constructor(
    socket: ServerSocket,
    watch: Watch,
    server: Server,
    /** Its keep-alive group (see `Watch`). */
    group: number,
  ) {
    this.socket = socket;
    this.watch = watch;
    this.server = server;
    this.group = group;
  }

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  /**
   * Hands `data` to `ws`; `done` is called once it was written to the OS (false: the socket is not
   * open, nothing was sent and `done` is not called). A subscription sends its next event only then.
   */
  write(data: string, done: ((err?: Error) => void) | null): boolean {
    if (!this.open) return false;
    this.watch.sending(this);
    this.socket.send(data, (err) => {
      this.watch.sent(this);
      done?.(err ?? undefined);
    });
    return true;
  }

  /** Resolves once written (or at once when the socket is not open). */
  send(data: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.write(data, (err) => (err ? reject(err) : resolve()))) resolve();
    });
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  /** The running operation with this id. */
  operation(id: string): Operation | undefined {
    if (this.only !== null) return this.only.id === id ? this.only : undefined;
    return this.several?.get(id);
  }

  /** Running operations. */
  get operationCount(): number {
    return this.only !== null ? 1 : (this.several?.size ?? 0);
  }

  addOperation(op: Operation): void {
    if (this.only === null && (this.several === null || this.several.size === 0)) {
      this.only = op;
      return;
    }
    if (this.several === null) this.several = new Map();
    if (this.only !== null) {
      this.several.set(this.only.id, this.only);
      this.only = null;
    }
    this.several.set(op.id, op);
  }

  /** Forgets `op` if it is the running one under its id. */
  removeOperation(op: Operation): void {
    if (this.only === op) this.only = null;
    else if (this.several?.get(op.id) === op) this.several.delete(op.id);
  }

  /** Takes every running operation out (the connection closed). */
  takeOperations(): Operation[] {
    const ops = this.only !== null ? [this.only] : this.several ? [...this.several.values()] : [];
    this.only = null;
    this.several = null;
    return ops;
  }

  /** An operation ended (and was torn down). */
  finished(op: Operation): void {
    this.unfinished--;
    this.removeOperation(op);
  }
}

/**
 * One `subscribe` message's operation. A subscription whose events come from an event feed reads it
 * as a `PullStream`: the feed calls `ready` when it has something, the event is executed against
 * the operation's selection set (graphql-js `execute`, the event as root value, as its `subscribe`
 * does per event) and sent, and the next one is taken only once the client took that one (ws' write
 * callback), so a client that stops reading leaves the events in its feed's bounded buffer. An idle
 * subscription then holds this object, its context and its feed: no promise, suspended function or
 * closure. Other streams (a finished job's one SNAPSHOT, queries' incremental results) are read
 * with an async loop.
 */
class Operation implements StreamConsumer {
  /** Ended by the client (`complete`) or by the connection closing. */
  cancelled = false;
  /** A read, execution or write is under way: `ready` leaves the next event to it. */
  private busy = false;
  private done = false;
  private stream: (PullStream<unknown> & AsyncIterator<unknown>) | AsyncIterator<unknown> | null = null;
  private document: DocumentNode | null = null;
  private contextValue: unknown = undefined;
  private variableValues: Record<string, unknown> | null | undefined = undefined;
  private operationName: string | null | undefined = undefined;

  readonly conn: Connection;
  readonly id: string;

  constructor(conn: Connection, id: string) {
    this.conn = conn;
    this.id = id;
  }

  /** Sets the operation up and runs it; rejects only on an internal error. */
  async start(payload: SubscribePayload): Promise<void> {
    const conn = this.conn;
    const server = conn.server;
    // Persisted operations first (by hash, or refused in `only`), as Yoga's onParams does on HTTP.
    let query = payload.query;
    if (server.persisted) {
      try {
        query = server.persisted.resolve(payload) ?? "";
      } catch (err) {
        if (err instanceof GraphQLError) return this.fail([err]);
        throw err;
      }
    }
    // Envelop's parse and validate: cached, with the query limits' rules and hooks.
    const enveloped = server.yoga.getEnveloped({
      principal: conn.principal,
      connectionParams: { authorization: conn.authorization },
      socket: conn,
      remoteAddress: conn.remoteAddress,
      params: payload,
    });
    let document: DocumentNode;
    try {
      document = enveloped.parse(query);
    } catch (err) {
      if (err instanceof GraphQLError) return this.fail([err]);
      throw err;
    }
    server.schema ??= enveloped.schema;
    const errors = enveloped.validate(enveloped.schema, document);
    if (errors.length) return this.fail(errors);
    const bad = operationInputProblem(document, payload.variables, server.maxDataDepth);
    if (bad) return this.fail([bad]);
    const operation = getOperationAST(document, payload.operationName);
    if (!operation) return this.fail([new GraphQLError("Unable to identify operation")]);
    this.document = document;
    this.variableValues = payload.variables;
    this.operationName = payload.operationName;

    if (operation.operation !== "subscription") {
      // Queries and mutations: envelop's context and execute, as over HTTP.
      try {
        this.contextValue = await enveloped.contextFactory();
      } catch (err) {
        if (err instanceof GraphQLError) return this.fail([err]);
        throw err;
      }
      const result = await enveloped.execute(this.args(undefined));
      if (isAsyncIterable(result)) return this.loop(result[Symbol.asyncIterator](), false);
      return this.single(result as ExecutionResult);
    }

    // A subscription: the context authenticates the operation again (a revoked key or an exhausted
    // rate limit is an error message for this operation, not a dropped connection). Built directly,
    // not through envelop's context: it lives as long as the subscription, so it stays this small.
    try {
      this.contextValue = server.context(await server.authenticate(conn.authorization, conn.remoteAddress), conn);
    } catch (err) {
      if (err instanceof GraphQLError) return this.fail([err]);
      throw err;
    }
    const source = await createSourceEventStream(this.args(undefined));
    if (!isAsyncIterable(source)) return this.single(source as ExecutionResult);
    const stream = source[Symbol.asyncIterator]();
    if (this.cancelled) {
      await stream.return?.();
      return this.finish();
    }
    if (isPullStream(stream)) {
      this.stream = stream;
      stream.consume(this);
      this.ready();
      return;
    }
    return this.loop(stream, true);
  }

  private args(rootValue: unknown): ExecutionArgs {
    return {
      schema: this.conn.server.schema as GraphQLSchema,
      document: this.document as DocumentNode,
      rootValue,
      contextValue: this.contextValue,
      variableValues: this.variableValues,
      operationName: this.operationName,
    };
  }

  /** The feed has something (or ended): take, execute and send until it has nothing or a write is pending. */
  ready(): void {
    if (this.busy || this.done) return;
    const stream = this.stream as PullStream<unknown>;
    this.busy = true;
    for (;;) {
      if (this.cancelled || !this.conn.open) {
        this.busy = false;
        return;
      }
      let next: IteratorResult<unknown> | null;
      try {
        next = stream.take();
      } catch (err) {
        this.busy = false;
        this.streamFailed(err);
        return;
      }
      if (next === null) {
        this.busy = false;
        return;
      }
      if (next.done) {
        this.busy = false;
        this.complete();
        return;
      }
      let result: ReturnType<typeof executeGraphql>;
      try {
        result = executeGraphql(this.args(next.value));
      } catch (err) {
        this.busy = false;
        this.streamFailed(err);
        return;
      }
      if (isPromiseLike<ExecutionResult>(result)) {
        result.then(
          (r) => this.sendEvent(r),
          (err: unknown) => {
            this.busy = false;
            this.streamFailed(err);
          },
        );
        return;
      }
      if (this.sendEvent(result, true)) return;
    }
  }

  /** Sends one event's result; true when the write is pending (`ready` goes on once it is done). */
  private sendEvent(result: ExecutionResult, looping = false): boolean {
    if (this.cancelled) {
      this.busy = false;
      return false;
    }
    const written = this.conn.write(messageOf(this.id, MessageType.Next, this.masked(result)), (err) => {
      this.busy = false;
      if (err) this.streamFailed(err);
      else this.ready();
    });
    if (written) return true;
    // Not open: the connection's close ends the operation.
    this.busy = false;
    if (!looping) this.ready();
    return false;
  }

  private masked(result: ExecutionResult): ExecutionResult | (Omit<ExecutionResult, "errors"> & { errors: GraphQLFormattedError[] }) {
    return result.errors ? { ...result, errors: this.conn.server.maskErrors(result.errors) } : result;
  }

  /** Any other stream: one read at a time, each sent before the next read (as graphql-ws does). */
  private async loop(stream: AsyncIterator<unknown>, execute: boolean): Promise<void> {
    this.stream = stream;
    try {
      for (;;) {
        const next = await stream.next();
        if (next.done || this.cancelled) break;
        let result = (execute ? executeGraphql(this.args(next.value)) : next.value) as ExecutionResult | PromiseLike<ExecutionResult>;
        if (isPromiseLike<ExecutionResult>(result)) result = await result;
        if (this.cancelled) break;
        await this.conn.send(messageOf(this.id, MessageType.Next, this.masked(result)));
      }
    } catch (err) {
      return this.streamFailed(err);
    }
    this.complete();
  }

  /** A single result (a query, a mutation, or a subscription refused at its start): `next`, then `complete`. */
  private async single(result: ExecutionResult): Promise<void> {
    if (!this.cancelled) await this.conn.send(messageOf(this.id, MessageType.Next, this.masked(result)));
    this.complete();
  }

  /** The stream threw: an `error` message (masked as on HTTP), and the operation is over. */
  private streamFailed(err: unknown): void {
    const original = err instanceof Error ? err : new Error(String(err));
    this.fail([new GraphQLError(original.message, { originalError: original })]);
  }

  /** An `error` message for this operation (if the client still runs it), and it is over. */
  private fail(errors: readonly GraphQLError[]): void {
    if (!this.cancelled) this.conn.write(messageOf(this.id, MessageType.Error, this.conn.server.maskErrors(errors)), null);
    this.cancelled = true;
    this.finish();
  }

  /** The stream ended: `complete` (if the client still runs it), and it is over. */
  private complete(): void {
    if (!this.cancelled) this.conn.write(`{"id":${JSON.stringify(this.id)},"type":"complete"}`, null);
    this.cancelled = true;
    this.finish();
  }

  /** The client completed it, or the connection closed: the stream is returned (its feed leaves its channel). */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const stream = this.stream;
    // Still being set up: `start` returns the stream when it comes.
    if (!stream) return;
    // A feed ends now; an async loop ends (and finishes) when its pending read settles.
    if (isPullStream(stream)) this.finish();
    else stream.return?.()?.catch((err: unknown) => this.conn.server.log.warn("graphql-ws: ending a subscription failed", { err }));
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.cancelled = true;
    const stream = this.stream;
    if (stream && isPullStream(stream)) {
      stream.consume(null);
      stream.return().catch((err: unknown) => this.conn.server.log.warn("graphql-ws: ending a subscription failed", { err }));
    }
    this.stream = null;
    this.contextValue = undefined;
    this.conn.finished(this);
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
 * Slow consumers: a subscription's next event is sent only once the previous one was written to
 * the OS, so a client that stops reading stalls only its own subscriptions, their events waiting in
 * each subscription's bounded buffer (src/jobs/events/feed.ts) where progress coalesces. A
 * connection that has had messages waiting for `slowConsumerMs` without the client taking any is
 * closed with 4008. Only connections with messages waiting are looked at.
 *
 * Init timeout: a connection that has sent no `connection_init` within `initTimeoutMs` is closed
 * with 4408 (graphql-ws' code); only connections still waiting for it are looked at.
 */
class Watch {
  private readonly groups: Set<Connection>[];
  private readonly waiting = new Set<Connection>();
  private readonly uninitialised = new Set<Connection>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly initTimeout: boolean;
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
    this.initTimeout = limits.initTimeoutMs > 0 && Number.isFinite(limits.initTimeoutMs);
    if (this.initTimeout) {
      const initSweepMs = Math.max(10, Math.min(1_000, limits.initTimeoutMs / 10));
      this.timers.push(setInterval(() => this.sweepUninitialised(), initSweepMs).unref());
    }
  }

  open(socket: ServerSocket, server: Server): Connection {
    const group = this.nextGroup++ % this.groups.length;
    const conn = new Connection(socket, this, server, group);
    this.groups[group]?.add(conn);
    if (this.initTimeout) this.uninitialised.add(conn);
    return conn;
  }

  /** Every open connection. */
  connections(): Connection[] {
    return this.groups.flatMap((group) => [...group]);
  }

  initialised(conn: Connection): void {
    this.uninitialised.delete(conn);
  }

  forget(conn: Connection): void {
    this.groups[conn.group]?.delete(conn);
    this.waiting.delete(conn);
    this.uninitialised.delete(conn);
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

  private sweepUninitialised(): void {
    const openedBefore = performance.now() - this.limits.initTimeoutMs;
    for (const conn of this.uninitialised) {
      // In order of opening: the first one young enough ends the sweep.
      if (conn.openedAt > openedBefore) break;
      this.uninitialised.delete(conn);
      if (!conn.initReceived) conn.close(CloseCode.ConnectionInitialisationTimeout, "Connection initialisation timeout");
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }
}

/**
 * The `graphql-transport-ws` protocol (graphql-ws' own protocol, its close codes and messages) on
 * the HTTP server's GraphQL path, served here rather than by graphql-ws' `makeServer`: a server
 * holds one connection per subscriber, and graphql-ws keeps, per connection and per subscription,
 * closures, a suspended handler with its message and an async iterator chain for as long as the
 * subscription lives (with graphql-js' `subscribe`: about 3 KB per subscriber). Here a connection is
 * one `Connection`, a subscription one `Operation` reading its feed without a pending promise, and
 * the timers are shared (see `Watch`); messages are validated with graphql-ws' `parseMessage`.
 *
 * Operations go through Yoga's envelop for parsing and validation (cached, with the query limits),
 * like over HTTP and SSE. Queries and mutations also take envelop's context and execute. A
 * subscription's context is built by `context` after authenticating the operation again (what
 * app.ts' context does for a socket), and its events execute with graphql-js directly (the engine
 * SSE uses too, see app.ts): envelop would wrap each subscription in more async iterators for its
 * result hooks, held for its whole life. The one such hook in use is error masking, applied here
 * instead (`maskErrors`: Yoga's own function and message) to every result and error sent. Plugins'
 * onSubscribe and onContextBuilding hooks don't run for WebSocket subscriptions.
 */
export function attachGraphqlWs(
  server: http.Server,
  yoga: YogaServerInstance<Record<string, unknown>, Context>,
  {
    authenticate,
    context,
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
    WebSocket: ServerSocket,
    server,
    path: yoga.graphqlEndpoint,
    handleProtocols,
    maxPayload: maxPayloadBytes,
    // The connections are tracked by `Watch` already; ws' own tracking adds a closure per socket.
    clientTracking: false,
    // Browsers let any page open a WebSocket to any host: only allowed origins may (CSWSH).
    verifyClient: ({ req }: { req: http.IncomingMessage }) => originAllowed(req.headers.origin, req.headers.host, corsOrigins),
  });
  const watch = new Watch(limits);
  const shared: Server = {
    yoga,
    schema: null,
    authenticate,
    context,
    persisted,
    maxDataDepth,
    limits,
    log,
    maskErrors,
    onMessage,
    onError(conn, err) {
      log.warn("graphql-ws: socket error", { err: err.message });
      conn.close(CloseCode.InternalServerError, "Internal server error");
    },
    onClose,
  };

  /** `connection_init`: a bad key closes the socket with 4403 (graphql-ws' Forbidden), before any operation. */
  async function init(conn: Connection): Promise<void> {
    const authorization = conn.authorization;
    let principal: Principal;
    try {
      principal = await authenticate(authorization, conn.remoteAddress);
    } catch (err) {
      // A store the check needs did not answer (PostgreSQL down, key cache cold): "try again
      // later" (1013), as HTTP answers 503, rather than 4403, which tells a client its key is bad.
      if (!(err instanceof GraphQLError)) conn.close(CLOSE_TRY_AGAIN_LATER, "Could not check the credential right now; retry");
      else conn.close(CloseCode.Forbidden, "Forbidden");
      return;
    }
    if (!conn.open) return;
    const credential = credentialKey(authorization);
    const refused = connectionLimits.takeCredential(credential);
    if (refused !== null) {
      conn.close(CLOSE_TOO_MANY_CONNECTIONS, refused);
      return;
    }
    conn.credentialHeld = credential;
    conn.principal = principal;
    if (trackConnection) conn.session = trackConnection(principal, conn);
    await conn.send(`{"type":"${MessageType.ConnectionAck}"}`);
  }

  /** Why a `subscribe` message closes the connection instead of starting an operation (code and reason), if it does. */
  function refusal(conn: Connection, id: string): [number, string] | null {
    if (conn.principal === undefined) return [CloseCode.Unauthorized, "Unauthorized"];
    if (conn.operation(id)) return [CloseCode.SubscriberAlreadyExists, `Subscriber for ${id} already exists`];
    // An operation counts from its subscribe message until it is done with, torn down included:
    // `complete` during setup does not free its place before the setup ends. Twice the running
    // limit, so a client that completes one and at once starts another is not cut off, while
    // subscribe+complete pairs sent in a loop are (each setup reads Redis).
    if (conn.unfinished >= 2 * limits.maxSubscriptions) {
      return [
        CLOSE_TOO_MANY_SUBSCRIPTIONS,
        `Too many subscriptions being set up or torn down on one connection (at most ${2 * limits.maxSubscriptions})`,
      ];
    }
    return null;
  }

  /** A `subscribe` message: starts the operation, or closes the connection (see `refusal`). */
  function subscribe(conn: Connection, id: string, payload: SubscribePayload): void {
    const refused = refusal(conn, id);
    if (refused) {
      conn.close(refused[0], refused[1]);
      return;
    }
    const op = new Operation(conn, id);
    conn.addOperation(op);
    conn.unfinished++;
    if (conn.operationCount > limits.maxSubscriptions) {
      // The connection's close cancels every running operation, this one included.
      conn.close(CLOSE_TOO_MANY_SUBSCRIPTIONS, `Too many subscriptions on one connection (at most ${limits.maxSubscriptions})`);
      return;
    }
    op.start(payload).catch((err: unknown) => {
      log.error("graphql-ws: handling a message failed", { err });
      conn.close(CloseCode.InternalServerError, "Internal server error");
    });
  }

  // A socket's events, for every connection (see `ServerSocket`): no closures per connection.
  function onMessage(conn: Connection, data: RawData) {
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (conn.principal === undefined && bytes > MAX_INIT_MESSAGE_BYTES) {
      conn.close(CloseCode.BadRequest, `Message too large before connection_init was accepted (at most ${MAX_INIT_MESSAGE_BYTES} bytes)`);
      return;
    }
    let message: ReturnType<typeof parseMessage>;
    try {
      message = parseMessage(String(data));
    } catch {
      conn.close(CloseCode.BadRequest, "Invalid message received");
      return;
    }
    switch (message.type) {
      case MessageType.ConnectionInit: {
        if (conn.initReceived) return conn.close(CloseCode.TooManyInitialisationRequests, "Too many initialisation requests");
        conn.initReceived = true;
        watch.initialised(conn);
        const authorization = message.payload?.authorization;
        conn.authorization = typeof authorization === "string" ? authorization : null;
        init(conn).catch((err: unknown) => {
          log.error("graphql-ws: handling a message failed", { err });
          conn.close(CloseCode.InternalServerError, "Internal server error");
        });
        return;
      }
      case MessageType.Ping:
        conn.write(message.payload ? JSON.stringify({ type: MessageType.Pong, payload: message.payload }) : `{"type":"pong"}`, null);
        return;
      case MessageType.Pong:
        return;
      case MessageType.Subscribe:
        return subscribe(conn, message.id, message.payload);
      case MessageType.Complete: {
        const op = conn.operation(message.id);
        if (!op) return;
        conn.removeOperation(op);
        op.cancel();
        return;
      }
      default:
        // A message only a server sends (connection_ack, next, error): graphql-ws closes with 4400 too.
        conn.close(CloseCode.BadRequest, `Unexpected message of type ${message.type} received`);
    }
  }
  function onClose(conn: Connection) {
    if (conn.addressHeld !== null) connectionLimits.releaseAddress(conn.addressHeld);
    if (conn.credentialHeld !== null) connectionLimits.releaseCredential(conn.credentialHeld);
    conn.addressHeld = null;
    conn.credentialHeld = null;
    watch.forget(conn);
    conn.session?.forget();
    conn.session = null;
    for (const op of conn.takeOperations()) op.cancel();
  }

  wss.on("error", (err) => log.error("WebSocket server error", { err }));
  wss.on("connection", (socket, req) => {
    const remoteAddress = requestAddress(req, trustProxyHops);
    const refused = connectionLimits.takeAddress(remoteAddress ?? "");
    if (refused !== null) {
      socket.close(CLOSE_TOO_MANY_CONNECTIONS, refused.slice(0, 120));
      return;
    }
    if (socket.protocol !== GRAPHQL_TRANSPORT_WS_PROTOCOL) {
      connectionLimits.releaseAddress(remoteAddress ?? "");
      socket.close(CloseCode.SubprotocolNotAcceptable, "Subprotocol not acceptable");
      return;
    }
    const conn = watch.open(socket, shared);
    conn.addressHeld = remoteAddress ?? "";
    conn.remoteAddress = remoteAddress;
    socket.connection = conn;
  });

  return {
    async close() {
      watch.stop();
      const open = watch.connections();
      // Operations end now, not when each socket's close event comes: their feeds leave their
      // channels (an UNSUBSCRIBE) while the Redis connections are still open.
      for (const conn of open) {
        conn.socket.connection = null;
        onClose(conn);
      }
      for (const conn of open) conn.socket.close(1001, "Going away");
      for (const conn of open) conn.socket.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
