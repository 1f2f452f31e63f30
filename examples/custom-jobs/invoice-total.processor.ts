import { defineProcessor } from "../../workers/processor.ts";
import { invoiceTotal } from "./invoice-total.job.ts";

/**
 * The code of `billing.invoice-total`, run by the worker. `data` is typed by the definition's zod
 * schema (and parsed with it again before this runs). Progress is a number 0..100, so the demo
 * page's bars and `useJobProgress` show it as they show demo.sleep's.
 */
export default defineProcessor(invoiceTotal, async ({ invoiceId, currency, lines }, { progress, signal, log }) => {
  let totalCents = 0;
  for (const [i, line] of lines.entries()) {
    signal.throwIfAborted();
    totalCents += line.quantity * line.unitCents;
    await progress(Math.round((100 * (i + 1)) / lines.length));
  }
  await log(`invoice ${invoiceId}: ${lines.length} lines, ${totalCents} cents`);
  return { invoiceId, currency, totalCents };
});
