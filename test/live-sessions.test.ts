// Revocation tracking of live subscriptions (src/access/live-sessions.ts), without a server: a
// feed-like stream is tracked as it is, any other stream through a wrapper whose reads race the
// revocation one at a time.
import { describe, expect, it } from "vitest";
import { CLOSE_REVOKED, LiveSessions } from "../src/access/live-sessions.ts";
import { ADMIN_ENV, type Principal } from "../src/access/principal.ts";

const principal: Principal = { ...ADMIN_ENV, keyId: "key-1" };

function transport() {
  const closes: number[] = [];
  return { closes, close: (code: number) => void closes.push(code) };
}

describe("LiveSessions", () => {
  it("wraps a plain stream: every read passes through; revocation rejects the waiting read and closes the transport", async () => {
    const sessions = new LiveSessions();
    let n = 0;
    let release: (() => void) | null = null;
    const source: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () =>
          n < 1000
            ? Promise.resolve({ value: n++, done: false })
            : new Promise<IteratorResult<number>>((resolve) => {
                release = () => resolve({ value: undefined, done: true });
              }),
        return: async () => ({ value: undefined, done: true }),
      }),
    };
    const t = transport();
    const iterator = sessions.track(principal, source, t)[Symbol.asyncIterator]();
    for (let i = 0; i < 1000; i++) expect(await iterator.next()).toEqual({ value: i, done: false });
    expect(sessions.size()).toBe(1);
    const waiting = iterator.next();
    expect(sessions.revoke("key-1")).toBe(1);
    await expect(waiting).rejects.toMatchObject({ message: "The API key was revoked", extensions: { code: "UNAUTHENTICATED" } });
    await expect(iterator.next()).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    expect(t.closes).toEqual([CLOSE_REVOKED]);
    expect(sessions.size()).toBe(0);
    (release as (() => void) | null)?.();
  });

  it("leaves its key's set when the wrapped stream ends or is returned", async () => {
    const sessions = new LiveSessions();
    async function* two() {
      yield 1;
      yield 2;
    }
    const ended = sessions.track(principal, two(), undefined)[Symbol.asyncIterator]();
    const returned = sessions.track(principal, two(), undefined)[Symbol.asyncIterator]();
    expect(sessions.size()).toBe(2);
    while (!(await ended.next()).done);
    await returned.return?.();
    expect(sessions.size()).toBe(0);
  });

  it("tracks an endable stream as it is: revocation ends it with the error, its end leaves the set", () => {
    const sessions = new LiveSessions();
    const made = () => {
      const stream = {
        endedWith: null as Error | null,
        listener: null as { ended(): void } | null,
        endWith(error: Error) {
          this.endedWith = error;
          this.listener?.ended();
        },
        notifyEnd(listener: { ended(): void }) {
          this.listener = listener;
        },
        [Symbol.asyncIterator]() {
          return { next: async () => ({ value: undefined, done: true as const }) };
        },
      };
      return stream;
    };
    const revoked = made();
    const finished = made();
    const t = transport();
    expect(sessions.track(principal, revoked, t)).toBe(revoked);
    expect(sessions.track(principal, finished, undefined)).toBe(finished);
    expect(sessions.size()).toBe(2);
    finished.listener?.ended();
    expect(sessions.size()).toBe(1);
    expect(sessions.revoke("key-1")).toBe(1);
    expect(revoked.endedWith).toMatchObject({ message: "The API key was revoked", extensions: { code: "UNAUTHENTICATED" } });
    expect(t.closes).toEqual([CLOSE_REVOKED]);
    expect(sessions.size()).toBe(0);
  });

  it("tracks connections and nothing for keyless principals", () => {
    const sessions = new LiveSessions();
    const t = transport();
    const tracked = sessions.trackConnection(principal, t);
    expect(sessions.trackConnection(ADMIN_ENV, t)).toBeNull();
    expect(sessions.size()).toBe(1);
    tracked?.forget();
    expect(sessions.size()).toBe(0);
    sessions.trackConnection(principal, t);
    sessions.revoke("key-1");
    expect(t.closes).toEqual([CLOSE_REVOKED]);
  });
});
