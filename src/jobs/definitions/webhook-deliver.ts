import { z } from "zod";
import { defineJob } from "../define-job.ts";

/**
 * `webhook.deliver`: POSTs `payload` as JSON to `url`, signed with HMAC-SHA256 (`WEBHOOK_SECRET`) over
 * `<timestamp>.<body>`; never to loopback, private, link-local or metadata addresses unless allowed.
 * A non-2xx answer or a timeout is retried with exponential backoff; a 4xx other than 408 and 429
 * fails at once (the receiver said no; asking again will not change that).
 */
export const webhookDeliver = defineJob({
  queue: "webhook",
  name: "deliver",
  description:
    'POSTs `payload` as JSON to `url` with `X-Webhook-Timestamp: <unix seconds>` and `X-Signature-256: sha256=<hex HMAC of "<timestamp>.<body>">`. Non-2xx and timeouts retry with backoff; 4xx other than 408/429 fails without retries; a URL whose address is loopback, private, link-local or metadata fails at once (WEBHOOK_ALLOW_PRIVATE, WEBHOOK_ALLOWED_HOSTS).',
  schema: z
    .object({
      url: z
        .string()
        .max(2_048)
        .refine((v) => {
          try {
            return ["http:", "https:"].includes(new URL(v).protocol);
          } catch {
            return false;
          }
        }, "must be an http:// or https:// URL"),
      payload: z.json(),
      /** Extra request headers; the signature, id and content-type headers cannot be replaced. */
      headers: z
        .record(z.string(), z.string().max(4_096))
        .check((ctx) => {
          for (const name of Object.keys(ctx.value)) {
            if (!/^[A-Za-z0-9-]{1,100}$/.test(name)) {
              ctx.issues.push({
                code: "custom",
                input: name,
                message: `header name ${JSON.stringify(name)} may only have letters, digits and -`,
              });
            }
          }
        })
        .optional(),
      timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    })
    .strict(),
  defaults: { attempts: 5, backoff: { type: "exponential", delayMs: 1_000 }, concurrency: 20 },
  // Headers carry credentials (Authorization, API keys): sent as given, shown nowhere.
  secret: ["headers"],
});
