import { createHash } from "node:crypto";

/** Close code (WebSocket) for a connection refused by these limits; HTTP answers 429. */
export const CLOSE_TOO_MANY_CONNECTIONS = 4030;

/** A short, stable name for a credential that never holds the credential itself. */
export function credentialKey(authorization: string | null | undefined): string {
  return createHash("sha256")
    .update(authorization ?? "")
    .digest("base64url")
    .slice(0, 22);
}

/**
 * Long-lived connections (WebSockets and SSE streams) held per client address and per credential.
 * `acquire` counts one and returns its release (idempotent), or the reason it is refused. A limit of
 * 0 is no limit.
 */
export class ConnectionLimits {
  private readonly byAddress = new Map<string, number>();
  private readonly byCredential = new Map<string, number>();
  private readonly perAddress: number;
  private readonly perCredential: number;

  constructor(perAddress: number, perCredential: number) {
    this.perAddress = perAddress;
    this.perCredential = perCredential;
  }

  acquireAddress(address: string): (() => void) | string {
    return this.acquire(this.byAddress, address, this.perAddress, "from one address");
  }

  acquireCredential(key: string): (() => void) | string {
    return this.acquire(this.byCredential, key, this.perCredential, "with one credential");
  }

  /** Both, or neither (the first refusal's reason). */
  acquireBoth(address: string, key: string): (() => void) | string {
    const a = this.acquireAddress(address);
    if (typeof a === "string") return a;
    const c = this.acquireCredential(key);
    if (typeof c === "string") {
      a();
      return c;
    }
    return () => {
      a();
      c();
    };
  }

  /**
   * `acquireAddress` without a release function to keep: null when counted (then `releaseAddress`
   * once, with the same address), else the reason it is refused. For holders of thousands (websocket.ts).
   */
  takeAddress(address: string): string | null {
    return this.take(this.byAddress, address, this.perAddress, "from one address");
  }

  releaseAddress(address: string): void {
    this.give(this.byAddress, address);
  }

  /** `acquireCredential` the same way (see `takeAddress`). */
  takeCredential(key: string): string | null {
    return this.take(this.byCredential, key, this.perCredential, "with one credential");
  }

  releaseCredential(key: string): void {
    this.give(this.byCredential, key);
  }

  /** Open connections counted now (for tests and metrics). */
  counts(): { addresses: number; credentials: number } {
    let addresses = 0;
    let credentials = 0;
    for (const n of this.byAddress.values()) addresses += n;
    for (const n of this.byCredential.values()) credentials += n;
    return { addresses, credentials };
  }

  private acquire(map: Map<string, number>, key: string, limit: number, what: string): (() => void) | string {
    const refused = this.take(map, key, limit, what);
    if (refused !== null) return refused;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.give(map, key);
    };
  }

  private take(map: Map<string, number>, key: string, limit: number, what: string): string | null {
    const now = map.get(key) ?? 0;
    if (limit > 0 && now >= limit) return `Too many open connections ${what} (at most ${limit} WebSockets and SSE streams)`;
    map.set(key, now + 1);
    return null;
  }

  private give(map: Map<string, number>, key: string): void {
    const left = (map.get(key) ?? 1) - 1;
    if (left <= 0) map.delete(key);
    else map.set(key, left);
  }
}
