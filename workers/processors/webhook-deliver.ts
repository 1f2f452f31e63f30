import { createHmac } from "node:crypto";
import { UnrecoverableError } from "bullmq";
import { webhookDeliver } from "../../src/jobs/definitions/webhook-deliver.ts";
import { defineProcessor } from "../processor.ts";

/** The header carrying `sha256=<hex HMAC-SHA256 of the raw body>` under WEBHOOK_SECRET. */
export const SIGNATURE_HEADER = "x-signature-256";
/** `<queue>:<job id>`, the same on every attempt, so a receiver can drop repeats. */
export const DELIVERY_ID_HEADER = "x-webhook-id";

/** `sha256=<hex>` over `body`: what a receiver recomputes with the shared secret and compares in constant time. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

const RESERVED_HEADERS = new Set(["content-type", "user-agent", SIGNATURE_HEADER, DELIVERY_ID_HEADER, "content-length", "host"]);

/** 4xx answers worth asking again: the receiver timed out or asked us to slow down. */
const RETRYABLE_4XX = new Set([408, 429]);

export default defineProcessor(webhookDeliver, async ({ url, payload, headers, timeoutMs }, { signal, config, idempotencyKey }) => {
  if (!config.webhookSecret) throw new UnrecoverableError("WEBHOOK_SECRET is not set on this worker: webhooks are never sent unsigned");
  const body = JSON.stringify(payload);
  const timeout = AbortSignal.timeout(timeoutMs);
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      body,
      // A redirect could carry the signed body somewhere the job did not name.
      redirect: "manual",
      signal: AbortSignal.any([signal, timeout]),
      headers: {
        ...Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => !RESERVED_HEADERS.has(name.toLowerCase()))),
        "content-type": "application/json",
        "user-agent": "job-control-api-webhook/1",
        [SIGNATURE_HEADER]: signBody(config.webhookSecret, body),
        [DELIVERY_ID_HEADER]: idempotencyKey,
      },
    });
    // Read the body within the same timeout so a receiver that stalls mid-answer cannot hold the job.
    await response.arrayBuffer();
  } catch (err) {
    if (timeout.aborted && !signal.aborted) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${new URL(url).origin}`);
    throw err;
  }
  if (response.status >= 200 && response.status < 300) return { status: response.status };
  const message = `${url} answered HTTP ${response.status}`;
  if (response.status >= 400 && response.status < 500 && !RETRYABLE_4XX.has(response.status)) throw new UnrecoverableError(message);
  throw new Error(message);
});
