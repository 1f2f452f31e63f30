import type http from "node:http";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Authenticate } from "./auth.ts";
import { requestAddress } from "./client-address.ts";
import { badGetParameter } from "./input-guard.ts";

/** What `authenticate` resolves to (an actor today; a principal once keys have scopes). */
export type Principal = Awaited<ReturnType<Authenticate>>;

/** Content types whose POST bodies run operations (a cross-site form can send none of them without a CORS preflight). */
const OPERATION_CONTENT_TYPES = new Set(["application/json", "application/graphql-response+json"]);

/** A GraphQL-style error response (as Yoga answers its own 4xx). */
export function errorResponse(status: number, message: string, code: string, headers: Record<string, string> = {}): Response {
  return Response.json({ errors: [{ message, extensions: { code } }] }, { status, headers });
}

/**
 * The origins allowed to call the API from a browser: the API's own (`Origin` matching `Host`),
 * plus CORS_ORIGINS (`*` = any).
 */
export function originAllowed(origin: string | null | undefined, host: string | null | undefined, allowed: readonly string[]): boolean {
  if (!origin) return true;
  if (allowed.includes("*") || allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** Yoga's `cors` option: headers only for allowed cross-origin callers, never credentials (keys travel in a header). */
export function corsFor(allowed: readonly string[]) {
  return (request: Request) => {
    const origin = request.headers.get("origin");
    if (!origin || !originAllowed(origin, null, allowed)) return false as const;
    return {
      origin: [origin],
      credentials: false,
      methods: ["GET", "POST"],
      allowedHeaders: ["authorization", "content-type", "accept"],
      maxAge: 600,
    };
  };
}

/**
 * The first thing every request to the GraphQL endpoint meets, before its body is read:
 * - CSRF: a POST runs operations only with a JSON content type (form and multipart posts, which a
 *   page on another site can send without asking, get 415), and a GET never runs a subscription
 *   (Yoga already refuses mutations over GET);
 * - authentication: `authenticate` runs once, on the header alone, so a request without a valid key
 *   costs a header check and is answered 401 before its body is read or parsed. The result is kept
 *   for the request's context (`principalOf`), so it is not authenticated twice.
 */
export function requestGuardPlugin(options: {
  authenticate: Authenticate;
  graphqlEndpoint: string;
  /** TRUST_PROXY_HOPS: how the client's address is read (see client-address.ts). */
  trustProxyHops: number;
}): {
  plugin: Plugin;
  principalOf: (request: Request) => Principal | undefined;
} {
  const principals = new WeakMap<Request, Principal>();
  /** The answer to a refused credential (a GraphQLError with its HTTP status), or 503 when a store did not answer. */
  const refusal = (err: unknown): Response => {
    // A store the check needs did not answer (PostgreSQL down while auth may be open and the key
    // cache is cold): refuse, as unavailable rather than as a masked 500.
    if (!(err instanceof GraphQLError)) {
      return errorResponse(503, "Could not check the credential right now (a store did not answer); retry", "UNAVAILABLE");
    }
    const http = (err.extensions.http ?? {}) as { status?: number; headers?: Record<string, string> };
    return Response.json({ errors: [err.toJSON()] }, { status: http.status ?? 401, ...(http.headers ? { headers: http.headers } : {}) });
  };
  const plugin: Plugin = {
    // Not an async hook: with a cached credential and no rate limit it answers without a promise.
    onRequest({ request, url, endResponse, serverContext }) {
      if (url.pathname !== options.graphqlEndpoint) return;
      if (request.method === "POST") {
        const header = request.headers.get("content-type") ?? "";
        // The common case without splitting: exactly `application/json`.
        const type = header === "application/json" ? header : (header.split(";")[0]?.trim().toLowerCase() ?? "");
        // Yoga parses only application/json bodies: the other JSON type is the same body.
        if (type === "application/graphql-response+json") request.headers.set("content-type", "application/json");
        if (!OPERATION_CONTENT_TYPES.has(type)) {
          endResponse(
            errorResponse(415, "POST bodies must be application/json (or application/graphql-response+json)", "BAD_REQUEST", {
              accept: "application/json",
            }),
          );
          return;
        }
      } else if (request.method === "GET") {
        const bad = badGetParameter(url);
        if (bad) {
          endResponse(errorResponse(400, `Bad GET parameter: ${bad}`, "BAD_REQUEST"));
          return;
        }
      } else {
        return; // Yoga answers 405.
      }
      let principal: Principal | Promise<Principal>;
      try {
        // The client's address: rate limits for requests without a valid credential are per address.
        const address = requestAddress((serverContext as { req?: http.IncomingMessage } | undefined)?.req, options.trustProxyHops);
        principal = options.authenticate(request.headers.get("authorization"), address);
      } catch (err) {
        endResponse(refusal(err));
        return;
      }
      if (!(principal instanceof Promise)) {
        principals.set(request, principal);
        return;
      }
      return principal.then(
        (p) => void principals.set(request, p),
        (err: unknown) => endResponse(refusal(err)),
      );
    },
    onSubscribe({ args }) {
      const request = (args.contextValue as { request?: Request }).request;
      if (request?.method === "GET") {
        throw new GraphQLError("Subscriptions are not run from GET requests: POST with Accept: text/event-stream", {
          extensions: { code: "BAD_REQUEST", http: { status: 405, headers: { allow: "POST" } } },
        });
      }
    },
  };
  return { plugin, principalOf: (request) => principals.get(request) };
}
