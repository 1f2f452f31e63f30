import { z } from "zod";
import { defineJob } from "../define-job.ts";
import { JOB_STATES } from "../job-view.ts";

/** A plain file name: no directories, no leading dot, ending in `.csv`. */
export const REPORT_FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,195}\.csv$/;

/**
 * `report.csv`: writes the history rows matching a filter (queue, states, created range) as CSV to
 * `<REPORT_DIR>/<fileName>`, newest first, reporting `{ rows }` written as progress.
 */
export const reportCsv = defineJob({
  queue: "report",
  name: "csv",
  description:
    "Streams job history rows matching { queue?, states?, createdFrom?, createdTo? } as CSV into REPORT_DIR/fileName; progress is { rows } written; returns { file, rows }.",
  schema: z
    .object({
      fileName: z.string().regex(REPORT_FILE_NAME, "must be a plain file name ending in .csv (letters, digits, . _ -; no directories)"),
      queue: z.string().min(1).max(200).optional(),
      states: z.array(z.enum(JOB_STATES)).min(1).optional(),
      createdFrom: z.iso.datetime({ offset: true }).optional(),
      createdTo: z.iso.datetime({ offset: true }).optional(),
    })
    .strict()
    .refine((v) => !v.createdFrom || !v.createdTo || Date.parse(v.createdFrom) <= Date.parse(v.createdTo), {
      message: "createdFrom must not be after createdTo",
      path: ["createdFrom"],
    }),
  defaults: { attempts: 3, backoff: { type: "exponential", delayMs: 2_000 }, concurrency: 2 },
});
