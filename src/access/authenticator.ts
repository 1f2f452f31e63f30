import { hash as sha, timingSafeEqual } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Logger } from "../infra/logger.ts";
import { looksLikeApiKeySecret } from "./api-key-secret.ts";
import type { ApiKeyStore, ApiKeyView } from "./api-key-store.ts";
import { JOB_TOKEN_PREFIX, type JobTokenClaims, MAX_JOB_TOKEN_TTL_SECONDS, signJobToken, verifyJobToken } from "./job-token.ts";
import { ADMIN_ENV, ANONYMOUS, hasScope, type Principal } from "./principal.ts";

/** How long an instance trusts what it read about a key (revocation reaches it within this). */
export const KEY_CACHE_MS = 4_000;
/** Cache entries kept at most (wrong secrets are cached too, so a flood of them costs no queries). */
const MAX_CACHE_ENTRIES = 10_000;
/** lastUsedAt is written at most once a minute per key and instance (and the UPDATE itself skips fresher rows). */
const TOUCH_EVERY_MS = 60_000;

export const UNAUTHENTICATED_MESSAGE = "Missing or invalid API key: send Authorization: Bearer <key>";

export function unauthenticated(message = UNAUTHENTICATED_MESSAGE): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: "UNAUTHENTICATED", http: { status: 401, headers: { "www-authenticate": "Bearer" } } },
  });
}

/** SHA-256 in one call (no Hash object per request). */
const digest = (s: string): Buffer => sha("sha256", s, "buffer");

export interface AuthenticatorOptions {
  /** ADMIN_API_KEY: one more admin key, from the environment. */
  adminApiKey: string | undefined;
  /** HMAC key of job tokens (JOB_TOKEN_SECRET). */
  jobTokenSecret: string;
  /** Production never runs open, whatever is configured. */
  production: boolean;
  store: ApiKeyStore;
  log: Logger;
  cacheMs?: number;
}

type Cached<T> = { value: T | Promise<T>; until: number };

/** A small TTL map whose oldest entries go first when it is full. */
class TtlCache<T> {
  private readonly entries = new Map<string, Cached<T>>();
  private readonly ttlMs: number;
  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }
  get(key: string, now: number): T | Promise<T> | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (hit.until > now) return hit.value;
    this.entries.delete(key);
    return undefined;
  }
  set(key: string, value: T | Promise<T>, now: number): void {
    if (this.entries.size >= MAX_CACHE_ENTRIES) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { value, until: now + this.ttlMs });
  }
  /** The cached value, else `load()`'s promise, cached at once (concurrent callers share one load; a failed load is not kept). */
  getOrLoad(key: string, load: () => Promise<T>): T | Promise<T> {
    const now = Date.now();
    const hit = this.get(key, now);
    if (hit !== undefined) return hit;
    const loading = load();
    this.set(key, loading, now);
    loading.then(
      (value) => this.set(key, value, now),
      () => this.delete(key),
    );
    return loading;
  }
  delete(key: string): void {
    this.entries.delete(key);
  }
  deleteWhere(test: (value: T) => boolean): void {
    for (const [key, entry] of this.entries) {
      if (!(entry.value instanceof Promise) && test(entry.value)) this.entries.delete(key);
    }
  }
  clear(): void {
    this.entries.clear();
  }
}

/** A key as the cache holds it: its row and the principal every request with it gets (made once). */
type KnownKey = { view: ApiKeyView; principal: Principal };

function knownKey(view: ApiKeyView | null): KnownKey | null {
  return view ? { view, principal: principalOfKey(view) } : null;
}

function principalOfKey(key: ApiKeyView): Principal {
  return Object.freeze({
    kind: "API_KEY",
    actor: key.name,
    scopes: key.scopes,
    tenant: key.tenant,
    queues: key.queues,
    keyId: key.id,
    job: null,
  });
}

/**
 * Turns an `Authorization` value into a Principal: ADMIN_API_KEY, an API key (`jca_...`, looked up
 * by its hash, cached per instance for KEY_CACHE_MS) or a job token (`jct_...`, verified by its
 * HMAC; its issuing key's revocation from the same cache). A cached key answers synchronously, so
 * a request with a known key costs a hash and a map lookup. Missing or wrong: UNAUTHENTICATED
 * (the same answer for both), except while auth is open (development, no ADMIN_API_KEY and no
 * active key), when a request without a key is anonymous with every scope.
 */
export class Authenticator {
  private readonly options: AuthenticatorOptions;
  private readonly adminDigest: Buffer | null;
  private readonly byHash: TtlCache<KnownKey | null>;
  private readonly byId: TtlCache<ApiKeyView | null>;
  private readonly anyActive: TtlCache<boolean>;
  private readonly touched = new Map<string, number>();

  constructor(options: AuthenticatorOptions) {
    this.options = options;
    this.adminDigest = options.adminApiKey ? digest(options.adminApiKey) : null;
    const ttl = options.cacheMs ?? KEY_CACHE_MS;
    this.byHash = new TtlCache(ttl);
    this.byId = new TtlCache(ttl);
    this.anyActive = new TtlCache(ttl);
  }

  /** The `authenticate` dependency of AppDeps: sync when everything needed is cached. */
  readonly authenticate = (authorization: string | null | undefined): Principal | Promise<Principal> => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization?.trim() ?? "");
    const credential = match?.[1];
    if (!credential) {
      if (authorization?.trim()) throw unauthenticated();
      return this.whenOpen();
    }
    // One SHA-256 serves both the admin key's constant-time compare and the key lookup (same hash as hashApiKeySecret).
    const hashed = digest(credential);
    if (this.adminDigest && timingSafeEqual(hashed, this.adminDigest)) return ADMIN_ENV;
    if (credential.startsWith(JOB_TOKEN_PREFIX)) return this.fromJobToken(credential);
    if (!looksLikeApiKeySecret(credential)) throw unauthenticated();
    const hash = hashed.toString("hex");
    const found = this.byHash.getOrLoad(hash, () => this.options.store.findByHash(hash).then(knownKey));
    return found instanceof Promise ? found.then((key) => this.fromKey(key)) : this.fromKey(found);
  };

  private fromKey(key: KnownKey | null): Principal {
    if (!key || key.view.revokedAt) throw unauthenticated();
    this.touch(key.view.id);
    return key.principal;
  }

  private touch(id: string): void {
    const now = Date.now();
    if ((this.touched.get(id) ?? 0) > now - TOUCH_EVERY_MS) return;
    if (this.touched.size >= MAX_CACHE_ENTRIES) this.touched.clear();
    this.touched.set(id, now);
    this.options.store
      .touch(id)
      .catch((err: unknown) => this.options.log.warn("could not record an API key's last use", { keyId: id, err }));
  }

  /** No credential: anonymous while auth is open, else UNAUTHENTICATED. */
  private whenOpen(): Principal | Promise<Principal> {
    if (this.adminDigest || this.options.production) throw unauthenticated();
    const active = this.anyActive.getOrLoad("", () => this.options.store.anyActive());
    const decide = (keysExist: boolean) => {
      if (keysExist) throw unauthenticated();
      return ANONYMOUS;
    };
    return active instanceof Promise ? active.then(decide) : decide(active);
  }

  /** True while requests without a key are served (as anonymous). */
  async isOpen(): Promise<boolean> {
    if (this.adminDigest || this.options.production) return false;
    return !(await this.options.store.anyActive());
  }

  private fromJobToken(token: string): Principal | Promise<Principal> {
    const claims = verifyJobToken(token, this.options.jobTokenSecret);
    if (!claims) throw unauthenticated("Invalid or expired job token");
    const principal = (): Principal =>
      Object.freeze({
        kind: "JOB_TOKEN",
        actor: "job-token",
        scopes: [],
        tenant: claims.tenant,
        queues: [claims.queue],
        keyId: claims.keyId,
        job: { queue: claims.queue, id: claims.id },
      });
    if (claims.keyId === null) return principal();
    const keyId = claims.keyId;
    const key = this.byId.getOrLoad(keyId, () => this.options.store.findById(keyId));
    const decide = (k: ApiKeyView | null) => {
      if (!k || k.revokedAt) throw unauthenticated("Invalid or expired job token");
      return principal();
    };
    return key instanceof Promise ? key.then(decide) : decide(key);
  }

  /**
   * A job token for `job`, issued by `issuer` (who must hold READ; tokens don't mint tokens).
   * ttlSeconds: 1 to 86,400.
   */
  mintJobToken(
    issuer: Principal,
    job: { queue: string; id: string; tenant: string | null },
    ttlSeconds: number,
  ): { token: string; expiresAt: Date } {
    if (issuer.kind === "JOB_TOKEN" || !hasScope(issuer, "READ")) throw new Error("mintJobToken: the issuer lacks READ");
    const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
    const claims: JobTokenClaims = { queue: job.queue, id: job.id, tenant: job.tenant, exp, keyId: issuer.keyId };
    return { token: signJobToken(claims, this.options.jobTokenSecret), expiresAt: new Date(exp * 1000) };
  }

  /** Drops what this instance knows about a key (it was revoked here or on another instance). */
  forget(keyId: string): void {
    this.byId.delete(keyId);
    this.byHash.deleteWhere((key) => key?.view.id === keyId);
    this.anyActive.clear();
  }

  /** A key was created: auth is no longer open on this instance (others follow within KEY_CACHE_MS). */
  keyCreated(): void {
    this.anyActive.clear();
  }
}

export { MAX_JOB_TOKEN_TTL_SECONDS };
