import { z } from "zod";
import { defineJob } from "../../src/jobs/define-job.ts";

/**
 * `billing.invoice-total`: adds up an invoice's lines. A job type is data: queue, name, payload
 * schema and defaults. The API imports this file to validate `enqueueJob` and to publish the
 * payload's JSON Schema (`Queue.jobTypes`); it never imports the processor.
 */
export const invoiceTotal = defineJob({
  queue: "billing",
  name: "invoice-total",
  description: "Adds up an invoice's lines (quantity x unit price, in cents) and returns the total.",
  schema: z
    .object({
      invoiceId: z.string().min(1).max(64),
      currency: z.enum(["EUR", "USD", "GBP"]),
      lines: z
        .array(
          z
            .object({
              description: z.string().max(200),
              quantity: z.number().int().min(1).max(1_000_000),
              unitCents: z.number().int().min(0).max(100_000_000),
            })
            .strict(),
        )
        .min(1)
        .max(1000),
    })
    .strict(),
  defaults: { attempts: 3, backoff: { type: "exponential", delayMs: 1000 }, concurrency: 5 },
});
