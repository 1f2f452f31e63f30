import { GraphQLError } from "graphql";
import type { Principal } from "./principal.ts";

/** What a subscription's transport can do when its credential is revoked. */
export interface Transport {
  /** WebSocket: close the whole connection (graphql-ws' Forbidden, 4403). */
  close?(code: number, reason: string): void;
}

/** graphql-ws' Forbidden close code: the contract's answer to a revoked key on a WebSocket. */
export const CLOSE_REVOKED = 4403;

/**
 * An event stream that can be ended from outside without a wrapper around it (the event feeds of
 * src/jobs/events/feed.ts): `endWith` drops what it buffered and makes its reader's next read throw
 * `error`; `notifyEnd`'s listener is told once when the stream ends, whatever ends it (at once if it
 * has ended already).
 */
export interface EndableStream {
  endWith(error: Error): void;
  notifyEnd(listener: { ended(): void }): void;
}

function isEndable(value: object): value is EndableStream {
  const stream = value as Partial<EndableStream>;
  return typeof stream.endWith === "function" && typeof stream.notifyEnd === "function";
}

function revokedError(): GraphQLError {
  return new GraphQLError("The API key was revoked", { extensions: { code: "UNAUTHENTICATED" } });
}

/** One tracked subscription or WebSocket connection under its key. */
interface Session {
  revoke(): void;
}

/**
 * The open subscriptions of each API key (job tokens count under their issuing key), so a revoked
 * key's subscriptions end within moments on every instance (the revocation bus calls `revoke`).
 * Subscriptions of ADMIN_API_KEY and anonymous are not tracked (nothing can revoke them).
 *
 * A server holds tens of thousands of these: each is one small object in its key's set, with no
 * closures, promises or timers of its own.
 */
export class LiveSessions {
  private readonly byKey = new Map<string, Set<Session>>();

  /**
   * Tracks a subscription's event stream: it ends when `principal`'s key is revoked, with a GraphQL
   * error UNAUTHENTICATED (SSE) after the transport is closed with 4403 (WebSocket). An
   * `EndableStream` is tracked as it is (returned unchanged); any other stream is wrapped.
   */
  track<T>(principal: Principal, events: AsyncIterable<T>, transport: Transport | undefined): AsyncIterable<T> {
    const keyId = principal.keyId;
    if (keyId === null) return events;
    if (isEndable(events)) {
      const session = new StreamSession(this, keyId, events, transport);
      this.add(keyId, session);
      events.notifyEnd(session);
      return events;
    }
    const wrapped = new TrackedIterator(this, keyId, events[Symbol.asyncIterator](), transport);
    this.add(keyId, wrapped);
    return wrapped;
  }

  /**
   * A WebSocket connection authenticated with `principal`'s key (or a job token it issued): closed
   * with 4403 when the key is revoked, subscriptions or not. Returns what to call when it ends
   * (`forget`), or null when nothing tracks it (no key).
   */
  trackConnection(principal: Principal, transport: Required<Transport>): { forget(): void } | null {
    const keyId = principal.keyId;
    if (keyId === null) return null;
    const session = new ConnectionSession(this, keyId, transport);
    this.add(keyId, session);
    return session;
  }

  /** Ends every open subscription of the key. */
  revoke(keyId: string): number {
    const set = this.byKey.get(keyId);
    if (!set) return 0;
    this.byKey.delete(keyId);
    for (const session of set) session.revoke();
    return set.size;
  }

  /** Subscriptions tracked (for tests and metrics). */
  size(): number {
    let n = 0;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }

  private add(keyId: string, session: Session): void {
    let set = this.byKey.get(keyId);
    if (!set) {
      set = new Set();
      this.byKey.set(keyId, set);
    }
    set.add(session);
  }

  /** @internal */
  remove(keyId: string, session: Session): void {
    const set = this.byKey.get(keyId);
    if (!set?.delete(session)) return;
    if (set.size === 0) this.byKey.delete(keyId);
  }
}

class ConnectionSession implements Session {
  private readonly sessions: LiveSessions;
  private readonly keyId: string;
  private readonly transport: Required<Transport>;

  constructor(sessions: LiveSessions, keyId: string, transport: Required<Transport>) {
    this.sessions = sessions;
    this.keyId = keyId;
    this.transport = transport;
  }

  revoke(): void {
    this.transport.close(CLOSE_REVOKED, "API key revoked");
  }

  forget(): void {
    this.sessions.remove(this.keyId, this);
  }
}

/** A tracked `EndableStream`: it is told when the stream ends (then leaves its key's set). */
class StreamSession implements Session {
  private readonly sessions: LiveSessions;
  private readonly keyId: string;
  private readonly stream: EndableStream;
  private readonly transport: Transport | undefined;

  constructor(sessions: LiveSessions, keyId: string, stream: EndableStream, transport: Transport | undefined) {
    this.sessions = sessions;
    this.keyId = keyId;
    this.stream = stream;
    this.transport = transport;
  }

  revoke(): void {
    this.stream.endWith(revokedError());
    this.transport?.close?.(CLOSE_REVOKED, "API key revoked");
  }

  ended(): void {
    this.sessions.remove(this.keyId, this);
  }
}

/**
 * Any other stream, wrapped: a read waiting when the key is revoked rejects at once. Each read
 * holds only its own promise while it waits (nothing accumulates per event).
 */
class TrackedIterator<T> implements AsyncIterableIterator<T>, Session {
  private readonly sessions: LiveSessions;
  private readonly keyId: string;
  private readonly iterator: AsyncIterator<T>;
  private readonly transport: Transport | undefined;
  private revoked: GraphQLError | null = null;
  private rejectWaiting: ((err: Error) => void) | null = null;

  constructor(sessions: LiveSessions, keyId: string, iterator: AsyncIterator<T>, transport: Transport | undefined) {
    this.sessions = sessions;
    this.keyId = keyId;
    this.iterator = iterator;
    this.transport = transport;
  }

  revoke(): void {
    this.revoked = revokedError();
    this.rejectWaiting?.(this.revoked);
    this.rejectWaiting = null;
    void this.iterator.return?.();
    this.transport?.close?.(CLOSE_REVOKED, "API key revoked");
  }

  async next(): Promise<IteratorResult<T>> {
    try {
      if (this.revoked) throw this.revoked;
      const result = await new Promise<IteratorResult<T>>((resolve, reject) => {
        this.rejectWaiting = reject;
        this.iterator.next().then(resolve, reject);
      });
      this.rejectWaiting = null;
      if (result.done) this.sessions.remove(this.keyId, this);
      return result;
    } catch (err) {
      this.rejectWaiting = null;
      this.sessions.remove(this.keyId, this);
      throw err;
    }
  }

  async return(): Promise<IteratorResult<T>> {
    this.sessions.remove(this.keyId, this);
    return (await this.iterator.return?.()) ?? { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
