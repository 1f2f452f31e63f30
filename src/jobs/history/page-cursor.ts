import { ValidationError } from "../errors.ts";

/**
 * Opaque Relay cursors for keyset pagination. A cursor is the sort key of the last row of a page
 * (never an offset), so a page starts exactly after that row however many rows arrive meanwhile.
 * Each list has its own kind, so a cursor from one list is refused by another instead of silently
 * meaning something else.
 */

/** Position in `jobs`: ordered by createdAt desc, id desc, queue desc (ids are unique only within a queue). */
export interface JobCursor {
  createdAt: Date;
  id: string;
  queue: string;
}

/** Position in `failedJobAudits` / `operatorActions`: ordered by time desc, then the row's uuid desc. */
export interface TimeIdCursor {
  at: Date;
  id: string;
}

type Kind = "job" | "failedJobAudit" | "operatorAction";
const TAGS: Record<Kind, string> = { job: "j", failedJobAudit: "f", operatorAction: "o" };
const MAX_DATE_MS = 8.64e15;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function encode(parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify(parts)).toString("base64url");
}

function badCursor(value: string): ValidationError {
  const shown = value.length > 60 ? `${value.slice(0, 60)}...` : value;
  return ValidationError.at(["after"], `"${shown}" is not a cursor of this list (pass the endCursor of a previous page)`);
}

/** Decodes and checks the shape; throws a ValidationError on `after` for anything else. */
function decode(value: string, kind: Kind, arity: number): (string | number)[] {
  let parts: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(value)) throw new Error("not base64url");
    parts = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
  } catch {
    throw badCursor(value);
  }
  if (
    !Array.isArray(parts) ||
    parts.length !== arity + 1 ||
    parts[0] !== TAGS[kind] ||
    typeof parts[1] !== "number" ||
    !Number.isSafeInteger(parts[1]) ||
    // The range of a JavaScript Date: past it `new Date(ms)` is an Invalid Date.
    Math.abs(parts[1]) > MAX_DATE_MS ||
    !parts.slice(2).every((p) => typeof p === "string" && p.length > 0 && p.length <= 1024)
  ) {
    throw badCursor(value);
  }
  return parts.slice(1) as (string | number)[];
}

export function encodeJobCursor(c: JobCursor): string {
  return encode([TAGS.job, c.createdAt.getTime(), c.queue, c.id]);
}

export function decodeJobCursor(value: string): JobCursor {
  const [ms, queue, id] = decode(value, "job", 3) as [number, string, string];
  return { createdAt: new Date(ms), queue, id };
}

export function encodeTimeIdCursor(kind: "failedJobAudit" | "operatorAction", c: TimeIdCursor): string {
  return encode([TAGS[kind], c.at.getTime(), c.id]);
}

export function decodeTimeIdCursor(kind: "failedJobAudit" | "operatorAction", value: string): TimeIdCursor {
  const [ms, id] = decode(value, kind, 2) as [number, string];
  if (!UUID.test(id)) throw badCursor(value);
  return { at: new Date(ms), id };
}
