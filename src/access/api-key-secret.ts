import { createHash, randomBytes } from "node:crypto";

/**
 * API key secrets: `jca_` and 43 characters of base64url (32 random bytes). The prefix lets secret
 * scanners (GitHub's, gitleaks) recognise a leaked key; the 256 random bits make a plain SHA-256
 * enough to store (nothing to brute-force, unlike a password), and a lookup by hash needs no
 * constant-time compare of the secret itself.
 */
export const API_KEY_PREFIX = "jca_";
const SECRET = /^jca_[A-Za-z0-9_-]{43}$/;

export function generateApiKeySecret(): string {
  return `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/** True when `value` has the shape of one of our secrets (so anything else needs no lookup). */
export function looksLikeApiKeySecret(value: string): boolean {
  return SECRET.test(value);
}

export function hashApiKeySecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** What lists show of a secret: the prefix and 8 characters. */
export function displayPrefix(secret: string): string {
  return secret.slice(0, API_KEY_PREFIX.length + 8);
}
