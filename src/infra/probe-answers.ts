import { createHash, timingSafeEqual } from "node:crypto";

const sha256 = (s: string) => createHash("sha256").update(s).digest();

/**
 * `Authorization: Bearer <token>` compared in constant time: digests of equal length, so neither the
 * position of the first wrong character nor the token's length shows in the time taken.
 */
export function bearerMatches(header: string | null | undefined, token: string): boolean {
  return timingSafeEqual(sha256(header ?? ""), sha256(`Bearer ${token}`));
}

/**
 * Readiness checks as `/readyz` shows them to anyone: which dependency failed, never its error text
 * (hosts, ports, users, versions), which goes to the log instead. "ok" stays "ok"; a failure
 * ("failed: ECONNREFUSED 10.0.0.5:5432") becomes "failed"; other words ("not running") stay.
 */
export function publicChecks(checks: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(checks).map(([name, v]) => [name, v.startsWith("failed") ? "failed" : v]));
}
