import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { UnrecoverableError } from "bullmq";
import { REPORT_FILE_NAME, reportCsv } from "../../src/jobs/definitions/report-csv.ts";
import { type JobState, splitData } from "../../src/jobs/job-view.ts";
import { defineProcessor } from "../processor.ts";

/** Columns of a report, in order (names as in job_history). */
export const REPORT_COLUMNS = [
  "queue",
  "id",
  "name",
  "state",
  "attempts_made",
  "created_at",
  "started_at",
  "finished_at",
  "failed_reason",
  "tenant",
] as const;

const PAGE = 1_000;

/**
 * One CSV field (RFC 4180). A text starting with = + - @ is prefixed with `'`, so a spreadsheet
 * opening the report does not run a job's failure message as a formula.
 */
export function csvField(value: string | number | Date | null): string {
  if (value === null) return "";
  let text = value instanceof Date ? value.toISOString() : String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * The file a report goes to: REPORT_DIR/fileName, refused (without retries) unless it stays inside
 * REPORT_DIR. The schema already allows only plain names; this is the second lock on the door.
 */
export function reportPath(dir: string, fileName: string): string {
  const root = path.resolve(dir);
  const file = path.resolve(root, fileName);
  if (!REPORT_FILE_NAME.test(fileName) || path.dirname(file) !== root) {
    throw new UnrecoverableError(`fileName ${JSON.stringify(fileName)} would leave the report directory`);
  }
  return file;
}

export default defineProcessor(reportCsv, async (filter, { config, db, progress, signal, job }) => {
  // A tenant's report holds that tenant's jobs only (the job carries the tenant of the key that enqueued it).
  const tenant = splitData(job.data).meta.tenant;
  const file = reportPath(config.reportDir, filter.fileName);
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  // Written beside the target and renamed at the end: a reader never sees half a report, and a
  // retried attempt starts over instead of appending.
  const partial = `${file}.${process.pid}.partial`;
  const out = fs.createWriteStream(partial, { encoding: "utf8" });
  const write = async (line: string) => {
    if (!out.write(line)) await once(out, "drain");
  };
  const where = {
    ...(tenant ? { tenant } : {}),
    ...(filter.queue ? { queue: filter.queue } : {}),
    ...(filter.states ? { state: { in: filter.states as JobState[] } } : {}),
    ...(filter.createdFrom || filter.createdTo
      ? {
          createdAt: {
            ...(filter.createdFrom ? { gte: new Date(filter.createdFrom) } : {}),
            ...(filter.createdTo ? { lte: new Date(filter.createdTo) } : {}),
          },
        }
      : {}),
  };
  let rows = 0;
  try {
    await write(`${REPORT_COLUMNS.join(",")}\r\n`);
    let cursor: { createdAt: Date; id: string; queue: string } | undefined;
    for (;;) {
      signal.throwIfAborted();
      // Keyset pages over the (created_at desc, id desc) index: memory stays flat however many rows match.
      const page = await db.jobHistory.findMany({
        where: cursor
          ? {
              AND: [
                where,
                {
                  OR: [
                    { createdAt: { lt: cursor.createdAt } },
                    { createdAt: cursor.createdAt, id: { lt: cursor.id } },
                    { createdAt: cursor.createdAt, id: cursor.id, queue: { lt: cursor.queue } },
                  ],
                },
              ],
            }
          : where,
        orderBy: [{ createdAt: "desc" }, { id: "desc" }, { queue: "desc" }],
        take: PAGE,
      });
      for (const r of page) {
        await write(
          `${[r.queue, r.id, r.name, r.state, r.attemptsMade, r.createdAt, r.startedAt, r.finishedAt, r.failedReason, r.tenant].map(csvField).join(",")}\r\n`,
        );
      }
      rows += page.length;
      await progress({ rows });
      const last = page.at(-1);
      if (!last || page.length < PAGE) break;
      cursor = { createdAt: last.createdAt, id: last.id, queue: last.queue };
    }
    out.end();
    await once(out, "finish");
    await fs.promises.rename(partial, file);
  } catch (err) {
    out.destroy();
    await fs.promises.rm(partial, { force: true });
    throw err;
  }
  return { file: path.basename(file), rows };
});
