import type http from "node:http";
import { isIP } from "node:net";

/**
 * The client's address, for per-address rate limits and connection limits.
 *
 * `trustedHops` is how many proxies in front of the API append to `X-Forwarded-For` (TRUST_PROXY_HOPS).
 * 0 (the default): the socket's address, and `X-Forwarded-For` is never read, since any client can
 * send one. n > 0: the chain is the header's entries followed by the socket's address, and the
 * client is the entry n places left of the socket's, i.e. the address the outermost trusted proxy
 * saw. Entries further left were written by the client and are ignored, so a spoofed header
 * cannot pick its own budget. A chain shorter than that (the request skipped a proxy) gives its
 * leftmost entry; an entry that is not an IP address (a misconfigured proxy, or a client's text
 * where the count is wrong) gives the nearest valid one to its right, the socket's at worst.
 */
export function clientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | string[] | null | undefined,
  trustedHops: number,
): string | undefined {
  if (trustedHops <= 0 || !forwardedFor) return socketAddress;
  const header = Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor;
  // Only the last `trustedHops` entries can matter: read them from the right, never the whole header.
  const entries: string[] = [];
  let end = header.length;
  while (entries.length < trustedHops && end > 0) {
    const comma = header.lastIndexOf(",", end - 1);
    entries.unshift(header.slice(comma + 1, end).trim());
    end = Math.max(comma, 0);
  }
  // entries[0] is the candidate (or the leftmost, when the chain is short); to its right, trusted hops.
  for (const entry of entries) if (isIP(entry)) return entry;
  return socketAddress;
}

/** `clientAddress` of a Node request. */
export function requestAddress(req: http.IncomingMessage | undefined, trustedHops: number): string | undefined {
  if (!req) return undefined;
  return clientAddress(req.socket?.remoteAddress, req.headers?.["x-forwarded-for"], trustedHops);
}
