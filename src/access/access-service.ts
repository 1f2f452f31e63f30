import type { ApiKeyStore, ApiKeyView, CreateApiKeyInput } from "./api-key-store.ts";
import type { Authenticator } from "./authenticator.ts";
import type { LiveSessions } from "./live-sessions.ts";
import type { Principal } from "./principal.ts";

/** Tells every API instance that a key was revoked (Redis pub/sub); optional in process-local use. */
export interface RevocationBus {
  publish(keyId: string): Promise<void>;
}

/** Key management and job tokens, as the GraphQL layer and `npm run keys` use them. */
export class AccessService {
  readonly store: ApiKeyStore;
  readonly authenticator: Authenticator;
  /** Open subscriptions by key, ended when their key is revoked. */
  readonly sessions: LiveSessions;
  private readonly bus: RevocationBus | null;

  constructor(store: ApiKeyStore, authenticator: Authenticator, sessions: LiveSessions, bus: RevocationBus | null) {
    this.store = store;
    this.authenticator = authenticator;
    this.sessions = sessions;
    this.bus = bus;
  }

  async createKey(input: CreateApiKeyInput): Promise<{ apiKey: ApiKeyView; secret: string }> {
    const created = await this.store.create(input);
    this.authenticator.keyCreated();
    return created;
  }

  listKeys(): Promise<ApiKeyView[]> {
    return this.store.list();
  }

  /** Revokes a key here at once, and on every other instance through the bus (within KEY_CACHE_MS without it). */
  async revokeKey(id: string): Promise<ApiKeyView> {
    const key = await this.store.revoke(id);
    this.revoked(key.id);
    await this.bus?.publish(key.id);
    return key;
  }

  /** A key was revoked (here, or on another instance: the bus calls this): forget it, end its subscriptions. */
  revoked(keyId: string): void {
    this.authenticator.forget(keyId);
    this.sessions.revoke(keyId);
  }

  mintJobToken(issuer: Principal, job: { queue: string; id: string; tenant: string | null }, ttlSeconds: number) {
    return this.authenticator.mintJobToken(issuer, job, ttlSeconds);
  }
}
