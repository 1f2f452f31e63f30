import type { Principal } from "../access/principal.ts";

/**
 * Resolves an `Authorization` value (HTTP and SSE header, or the `authorization` field of a
 * WebSocket's connection_init) to who is asking; throws (or rejects with) a GraphQLError with
 * extensions.code UNAUTHENTICATED (HTTP 401) for a missing or wrong credential alike. Synchronous
 * when everything it needs is cached (src/access/authenticator.ts) and rate limits are off; with them
 * on it also takes one request from the credential's budget (or, without a valid one, the client
 * `address`'s), rejecting with RATE_LIMITED (HTTP 429).
 */
export type Authenticate = (authorization: string | null | undefined, address?: string) => Principal | Promise<Principal>;
