import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Job tokens: a browser's credential for one job. `jct_<claims>.<mac>`, both base64url; the claims
 * are a JSON array [queue, job id, tenant, expiry (epoch seconds), issuing key id], the mac their
 * HMAC-SHA256 with JOB_TOKEN_SECRET. Verified with no database round trip.
 */
export interface JobTokenClaims {
  queue: string;
  id: string;
  tenant: string | null;
  /** Expiry, epoch seconds. */
  exp: number;
  /** The API key that minted it; null for ADMIN_API_KEY or anonymous (auth open). */
  keyId: string | null;
}

export const JOB_TOKEN_PREFIX = "jct_";
/** Longer is not one of ours: refused before any decoding. */
const MAX_TOKEN_LENGTH = 2_048;
export const MAX_JOB_TOKEN_TTL_SECONDS = 86_400;

function mac(secret: string, body: string): Buffer {
  return createHmac("sha256", secret).update(body).digest();
}

export function signJobToken(claims: JobTokenClaims, secret: string): string {
  const body = Buffer.from(JSON.stringify([claims.queue, claims.id, claims.tenant, claims.exp, claims.keyId])).toString("base64url");
  return `${JOB_TOKEN_PREFIX}${body}.${mac(secret, body).toString("base64url")}`;
}

/** The claims of a well-formed, untampered, unexpired token; null for anything else. */
export function verifyJobToken(token: string, secret: string, nowMs = Date.now()): JobTokenClaims | null {
  if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(JOB_TOKEN_PREFIX)) return null;
  const dot = token.indexOf(".", JOB_TOKEN_PREFIX.length);
  if (dot < 0) return null;
  const body = token.slice(JOB_TOKEN_PREFIX.length, dot);
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  const expected = mac(secret, body);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || parsed.length !== 5) return null;
  const [queue, id, tenant, exp, keyId] = parsed as unknown[];
  if (typeof queue !== "string" || typeof id !== "string" || typeof exp !== "number") return null;
  if (tenant !== null && typeof tenant !== "string") return null;
  if (keyId !== null && typeof keyId !== "string") return null;
  if (exp * 1000 <= nowMs) return null;
  return { queue, id, tenant, exp, keyId };
}
