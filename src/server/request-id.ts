import { randomUUID } from "node:crypto";
import type http from "node:http";
import { withLogContext } from "../infra/log-context.ts";

export const REQUEST_ID_HEADER = "x-request-id";

/** What we keep from a caller's X-Request-Id (a proxy's id, so its logs and ours join up); anything else is replaced. */
const ACCEPTED = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request's id: the caller's X-Request-Id when it is a short plain token, else a new UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === "string" && ACCEPTED.test(header) ? header : randomUUID();
}

/**
 * Gives every HTTP request an id: answered in the X-Request-Id header, and carried by every log line
 * written while handling it (log-context.ts).
 */
export function withRequestId(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    const requestId = requestIdOf(req.headers[REQUEST_ID_HEADER]);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    return withLogContext({ requestId }, () => handler(req, res));
  };
}
