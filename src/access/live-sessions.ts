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
 * The open subscriptions of each API key (job tokens count under their issuing key), so a revoked
 * key's subscriptions end within moments on every instance (the revocation bus calls `revoke`).
 * Subscriptions of ADMIN_API_KEY and anonymous are not tracked (nothing can revoke them).
 */
export class LiveSessions {
  private readonly byKey = new Map<string, Set<() => void>>();

  /**
   * Wraps a subscription's event stream: it ends when `principal`'s key is revoked, with a GraphQL
   * error UNAUTHENTICATED (SSE) after the transport is closed with 4403 (WebSocket).
   */
  track<T>(principal: Principal, events: AsyncIterable<T>, transport: Transport | undefined): AsyncIterable<T> {
    const keyId = principal.keyId;
    if (keyId === null) return events;
    const iterator = events[Symbol.asyncIterator]();
    let revoke!: () => void;
    const revoked = new Promise<never>((_, reject) => {
      revoke = () => reject(new GraphQLError("The API key was revoked", { extensions: { code: "UNAUTHENTICATED" } }));
    });
    revoked.catch(() => {});
    const end = () => {
      revoke();
      void iterator.return?.();
      transport?.close?.(CLOSE_REVOKED, "API key revoked");
    };
    const set = this.byKey.get(keyId) ?? new Set();
    set.add(end);
    this.byKey.set(keyId, set);
    const forget = () => {
      set.delete(end);
      if (set.size === 0 && this.byKey.get(keyId) === set) this.byKey.delete(keyId);
    };
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          try {
            const result = await Promise.race([iterator.next(), revoked]);
            if (result.done) forget();
            return result;
          } catch (err) {
            forget();
            throw err;
          }
        },
        return: async () => {
          forget();
          return (await iterator.return?.()) ?? { done: true, value: undefined };
        },
      }),
    };
  }

  /**
   * A WebSocket connection authenticated with `principal`'s key (or a job token it issued): closed
   * with 4403 when the key is revoked, subscriptions or not. Returns what to call when it ends.
   */
  trackConnection(principal: Principal, close: (code: number, reason: string) => void): () => void {
    const keyId = principal.keyId;
    if (keyId === null) return () => {};
    const end = () => close(CLOSE_REVOKED, "API key revoked");
    const set = this.byKey.get(keyId) ?? new Set();
    set.add(end);
    this.byKey.set(keyId, set);
    return () => {
      set.delete(end);
      if (set.size === 0 && this.byKey.get(keyId) === set) this.byKey.delete(keyId);
    };
  }

  /** Ends every open subscription of the key. */
  revoke(keyId: string): number {
    const set = this.byKey.get(keyId);
    if (!set) return 0;
    this.byKey.delete(keyId);
    for (const end of set) end();
    return set.size;
  }

  /** Subscriptions tracked (for tests and metrics). */
  size(): number {
    let n = 0;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }
}
