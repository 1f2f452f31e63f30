import { createHash, timingSafeEqual } from "node:crypto";
import { GraphQLError } from "graphql";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Who a request acts as: "admin" for the admin key, "anonymous" while auth is open. */
export type Authenticate = (authorization: string | null | undefined) => string;

/**
 * Checks `Authorization: Bearer <key>` (HTTP) or the `authorization` field of `connection_init`
 * (WebSocket). A missing and a wrong key get the same answer: UNAUTHENTICATED, HTTP 401.
 */
export function createAuthenticator(adminApiKey: string | undefined): Authenticate {
  if (!adminApiKey) return () => "anonymous";
  const expected = digest(adminApiKey);
  return (authorization) => {
    const match = /^Bearer (.+)$/i.exec(authorization?.trim() ?? "");
    if (match?.[1] && timingSafeEqual(digest(match[1]), expected)) return "admin";
    throw new GraphQLError("Missing or invalid API key: send Authorization: Bearer <key>", {
      extensions: { code: "UNAUTHENTICATED", http: { status: 401, headers: { "www-authenticate": "Bearer" } } },
    });
  };
}
