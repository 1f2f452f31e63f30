import { ForbiddenError, InvalidStateError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import { JOB_STATES } from "../../jobs/job-view.ts";
import { builder } from "../builder.ts";

export const ErrorCode = builder.enumType("ErrorCode", {
  values: ["VALIDATION", "NOT_FOUND", "INVALID_STATE", "FORBIDDEN", "CONFLICT", "RATE_LIMITED"] as const,
});

export const JobStateEnum = builder.enumType("JobState", { values: JOB_STATES });

/** Every expected failure implements this: clients can always read `code` and `message`. */
export const UserError = builder.interfaceRef<{ code: string; message: string }>("UserError").implement({
  fields: (t) => ({
    code: t.field({ type: ErrorCode, resolve: (e) => e.code as "VALIDATION" }),
    message: t.exposeString("message"),
  }),
});

const ValidationIssue = builder.objectRef<{ path: string[]; message: string }>("ValidationIssue").implement({
  fields: (t) => ({
    path: t.exposeStringList("path"),
    message: t.exposeString("message"),
  }),
});

builder.objectType(ValidationError, {
  name: "ValidationError",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof ValidationError,
  fields: (t) => ({ issues: t.field({ type: [ValidationIssue], resolve: (e) => e.issues }) }),
});

builder.objectType(NotFoundError, {
  name: "NotFoundError",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof NotFoundError,
  fields: () => ({}),
});

builder.objectType(InvalidStateError, {
  name: "InvalidStateError",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof InvalidStateError,
  fields: (t) => ({
    state: t.field({ type: JobStateEnum, nullable: true, resolve: (e) => e.state as (typeof JOB_STATES)[number] | null }),
  }),
});

builder.objectType(ForbiddenError, {
  name: "ForbiddenError",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof ForbiddenError,
  fields: () => ({}),
});
