import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";

/**
 * Where outbound requests of processors (`webhook.deliver`) may go: never to loopback, private,
 * link-local (cloud metadata at 169.254.169.254 included), unique-local, carrier-grade NAT,
 * multicast or otherwise reserved addresses, unless WEBHOOK_ALLOW_PRIVATE=true or the URL's host is
 * in WEBHOOK_ALLOWED_HOSTS. The check is made on the address actually connected to: the host is
 * resolved, each address checked, and the socket connects to the checked address (Node's `lookup`
 * hook), so a DNS answer that changes between a check and the connection (rebinding) cannot slip
 * through. Redirects are not followed.
 */
export interface OutboundPolicy {
  allowPrivate: boolean;
  /** Lower-case host names (or IP literals) exempt from the address check. */
  allowedHosts: readonly string[];
}

/** Thrown when the policy refuses a destination: the job fails for good (no retries), naming why. */
export class OutboundRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OutboundRefused";
  }
}

const RANGES: [string, number, "ipv4" | "ipv6", string][] = [
  ["0.0.0.0", 8, "ipv4", "'this' network"],
  ["10.0.0.0", 8, "ipv4", "private"],
  ["100.64.0.0", 10, "ipv4", "carrier-grade NAT"],
  ["127.0.0.0", 8, "ipv4", "loopback"],
  ["169.254.0.0", 16, "ipv4", "link-local (cloud metadata)"],
  ["172.16.0.0", 12, "ipv4", "private"],
  ["192.0.0.0", 24, "ipv4", "IETF protocol assignments"],
  ["192.0.2.0", 24, "ipv4", "documentation"],
  ["192.88.99.0", 24, "ipv4", "6to4 relay"],
  ["192.168.0.0", 16, "ipv4", "private"],
  ["198.18.0.0", 15, "ipv4", "benchmarking"],
  ["198.51.100.0", 24, "ipv4", "documentation"],
  ["203.0.113.0", 24, "ipv4", "documentation"],
  ["224.0.0.0", 4, "ipv4", "multicast"],
  ["240.0.0.0", 4, "ipv4", "reserved"],
  ["::", 128, "ipv6", "unspecified"],
  ["::1", 128, "ipv6", "loopback"],
  ["64:ff9b::", 96, "ipv6", "NAT64"],
  ["64:ff9b:1::", 48, "ipv6", "NAT64"],
  ["100::", 64, "ipv6", "discard"],
  ["2001:db8::", 32, "ipv6", "documentation"],
  ["2002::", 16, "ipv6", "6to4"],
  ["fc00::", 7, "ipv6", "unique-local"],
  ["fe80::", 10, "ipv6", "link-local"],
  ["ff00::", 8, "ipv6", "multicast"],
];

const BLOCKS = RANGES.map(([address, prefix, family, why]) => {
  const list = new net.BlockList();
  list.addSubnet(address, prefix, family);
  return { list, family, why };
});

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address, in any spelling (`::ffff:127.0.0.1`,
 * `::ffff:7f00:1`, `0:0:0:0:0:ffff:7f00:0001`), or null. The URL parser normalises the spelling.
 */
function mappedIPv4(address: string): string | null {
  let normal: string;
  try {
    normal = new URL(`http://[${address}]/`).hostname.slice(1, -1).toLowerCase();
  } catch {
    return null;
  }
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(normal);
  if (!m) return null;
  const hi = Number.parseInt(m[1] as string, 16);
  const lo = Number.parseInt(m[2] as string, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why an address may not be reached, or null when it may. IPv4-mapped IPv6 is checked as IPv4. */
export function refusedAddressReason(address: string): string | null {
  const ip = net.isIPv6(address) ? (mappedIPv4(address) ?? address) : address;
  const family = net.isIPv4(ip) ? "ipv4" : net.isIPv6(ip) ? "ipv6" : null;
  if (!family) return "not an IP address";
  for (const block of BLOCKS) if (block.family === family && block.list.check(ip, family)) return block.why;
  return null;
}

/** The host of a URL as Node connects to it (IPv6 literals without brackets), lower case. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
}

/** Refuses the destination before anything is sent when its host is an IP literal the policy forbids. */
function checkLiteral(url: URL, policy: OutboundPolicy): void {
  const host = hostOf(url);
  if (policy.allowPrivate || policy.allowedHosts.includes(host) || !net.isIP(host)) return;
  const why = refusedAddressReason(host);
  if (why)
    throw new OutboundRefused(
      `Refused to connect to ${host}: ${why} address (set WEBHOOK_ALLOWED_HOSTS or WEBHOOK_ALLOW_PRIVATE to allow it)`,
    );
}

/**
 * Node's `lookup` for the socket: resolves every address of the host and hands the socket the first
 * one the policy allows; when none is, fails with an OutboundRefused naming the addresses and why.
 */
function checkedLookup(host: string, policy: OutboundPolicy): net.LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { all: true, family: options.family ?? 0, hints: options.hints ?? 0 }, (err, addresses) => {
      if (err) return callback(err, "", 0);
      const exempt = policy.allowPrivate || policy.allowedHosts.includes(host);
      const ok = exempt ? addresses[0] : addresses.find((a) => refusedAddressReason(a.address) === null);
      if (!ok) {
        const reasons = addresses.map((a) => `${a.address} (${refusedAddressReason(a.address)})`).join(", ");
        return callback(
          new OutboundRefused(
            `Refused to connect to ${host}: it resolves only to addresses webhooks may not reach: ${reasons} (set WEBHOOK_ALLOWED_HOSTS or WEBHOOK_ALLOW_PRIVATE to allow it)`,
          ),
          "",
          0,
        );
      }
      if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, [ok]);
      else callback(null, ok.address, ok.family);
    });
  };
}

export interface OutboundResponse {
  status: number;
}

/**
 * POSTs `body` to `url` under the policy; resolves with the status once the answer is read (within
 * `signal`). No redirects are followed (a 3xx is just a status). Failures to reach the receiver
 * (refused, reset, unreachable, a TLS error) all read alike, "no HTTP answer from <origin>", so the
 * error text cannot tell an open port from a closed one; a refusal by the policy is an
 * OutboundRefused.
 */
export function postOutbound(
  url: string,
  body: string,
  headers: Record<string, string>,
  policy: OutboundPolicy,
  signal: AbortSignal,
): Promise<OutboundResponse> {
  const target = new URL(url);
  try {
    checkLiteral(target, policy);
  } catch (err) {
    return Promise.reject(err);
  }
  const client = target.protocol === "https:" ? https : http;
  return new Promise<OutboundResponse>((resolve, reject) => {
    const req = client.request(
      target,
      {
        method: "POST",
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
        lookup: checkedLookup(hostOf(target), policy),
        signal,
        // One connection per delivery: an agent's pooled socket could have been checked for another host.
        agent: false,
      },
      (res) => {
        res.on("data", () => {});
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
        res.on("error", () => reject(new Error(`No complete HTTP answer from ${target.origin}`)));
      },
    );
    req.on("error", (err) => {
      if (err instanceof OutboundRefused || signal.aborted) reject(err instanceof OutboundRefused ? err : signal.reason);
      else reject(new Error(`No HTTP answer from ${target.origin}`));
    });
    req.end(body);
  });
}
