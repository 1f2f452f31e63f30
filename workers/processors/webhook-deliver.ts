import { createHmac } from "node:crypto";
import { UnrecoverableError } from "bullmq";
import { webhookDeliver } from "../../src/jobs/definitions/webhook-deliver.ts";
import { OutboundRefused, postOutbound } from "../outbound.ts";
import { defineProcessor } from "../processor.ts";

/** The header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` under WEBHOOK_SECRET. */
export const SIGNATURE_HEADER = "x-signature-256";
/** Unix seconds when this attempt was signed: part of what is signed, so an old delivery can be refused. */
export const TIMESTAMP_HEADER = "x-webhook-timestamp";
/** `<queue>:<job id>`, the same on every attempt, so a receiver can drop repeats. */
export const DELIVERY_ID_HEADER = "x-webhook-id";

/**
 * `sha256=<hex>` over `<timestamp>.<body>` (as Stripe and Svix sign): what a receiver recomputes
 * with the shared secret and compares in constant time, after checking the timestamp is recent.
 */
export function signBody(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

const RESERVED_HEADERS = new Set([
  "content-type",
  "user-agent",
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  DELIVERY_ID_HEADER,
  "content-length",
  "host",
  "transfer-encoding",
  "connection",
]);

/** 4xx answers worth asking again: the receiver timed out or asked us to slow down. */
const RETRYABLE_4XX = new Set([408, 429]);

export default defineProcessor(webhookDeliver, async ({ url, payload, headers, timeoutMs }, { signal, config, idempotencyKey }) => {
  if (!config.webhookSecret) throw new UnrecoverableError("WEBHOOK_SECRET is not set on this worker: webhooks are never sent unsigned");
  const body = JSON.stringify(payload);
  const timeout = AbortSignal.timeout(timeoutMs);
  const timestamp = Math.floor(Date.now() / 1000);
  const policy = { allowPrivate: config.webhookAllowPrivate, allowedHosts: config.webhookAllowedHosts };
  let response: { status: number };
  try {
    // Redirects are not followed: one could carry the signed body somewhere the job did not name.
    response = await postOutbound(
      url,
      body,
      {
        ...Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => !RESERVED_HEADERS.has(name.toLowerCase()))),
        "content-type": "application/json",
        "user-agent": "job-control-api-webhook/1",
        [TIMESTAMP_HEADER]: String(timestamp),
        [SIGNATURE_HEADER]: signBody(config.webhookSecret, timestamp, body),
        [DELIVERY_ID_HEADER]: idempotencyKey,
      },
      policy,
      AbortSignal.any([signal, timeout]),
    );
  } catch (err) {
    // Refused by the outbound policy: asking again will not change the address.
    if (err instanceof OutboundRefused) throw new UnrecoverableError(err.message);
    if (timeout.aborted && !signal.aborted) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${new URL(url).origin}`);
    throw err;
  }
  if (response.status >= 200 && response.status < 300) return { status: response.status };
  const message = `${new URL(url).origin} answered HTTP ${response.status}`;
  if (response.status >= 400 && response.status < 500 && !RETRYABLE_4XX.has(response.status)) throw new UnrecoverableError(message);
  throw new Error(message);
});
