import { ForbiddenError, InvalidStateError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import type { JobView } from "../../jobs/job-view.ts";
import { withUnavailable } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { actingAs, assertJobVisible, assertQueueVisible } from "../tenancy.ts";
import { JobRef } from "../types/job.ts";

const JobActionSuccess = builder.objectRef<{ job: JobView }>("JobActionSuccess").implement({
  fields: (t) => ({ job: t.field({ type: JobRef, resolve: (r) => r.job }) }),
});

export const BulkActionSuccess = builder.objectRef<{ count: number }>("BulkActionSuccess").implement({
  fields: (t) => ({ count: t.exposeInt("count") }),
});

// The errors plugin builds one union per result name, so the fields sharing JobActionResult share it.
const jobActionErrors = {
  types: [NotFoundError, InvalidStateError, ValidationError, ForbiddenError],
  union: { name: "JobActionResult" },
  result: { name: "JobActionSuccess" },
};

/** The errors of BulkActionResult, shared by every field answering it. */
export const bulkActionErrors = {
  types: [NotFoundError, ValidationError, ForbiddenError],
  union: { name: "BulkActionResult" },
  result: { name: "BulkActionSuccess" },
};

builder.mutationFields((t) => ({
  cancelJob: t.field({
    type: JobActionSuccess,
    errors: jobActionErrors,
    description:
      "WAITING / PRIORITIZED / DELAYED: taken out of the queue, recorded as CANCELLED. ACTIVE: the processor's AbortSignal fires on whichever worker runs it; the job ends CANCELLED with no further attempts (the answer comes when it has, or after CANCEL_WAIT_MS with its state then). COMPLETED / FAILED / CANCELLED: InvalidStateError.",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }), reason: t.arg.string() },
    resolve: async (_root, args, ctx) => {
      await assertJobVisible(ctx.principal, ctx.jobs, args.queue, String(args.id));
      return { job: await ctx.control.cancel(args.queue, String(args.id), args.reason, actingAs(ctx.principal)) };
    },
  }),
  retryJob: t.field({
    type: JobActionSuccess,
    errors: jobActionErrors,
    description: "A FAILED or CANCELLED job still held by the queue goes back to WAITING with the same id and a fresh set of attempts.",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      await assertJobVisible(ctx.principal, ctx.jobs, args.queue, String(args.id));
      return { job: await ctx.control.retry(args.queue, String(args.id), actingAs(ctx.principal)) };
    },
  }),
  retryFailedJobs: t.field({
    type: BulkActionSuccess,
    description: "Every FAILED job of the queue (at most `limit`; cancelled ones excluded) goes back to WAITING.",
    args: { queue: t.arg.string({ required: true }), limit: t.arg.int({ defaultValue: 1000 }) },
    errors: bulkActionErrors,
    resolve: async (_root, args, ctx) => {
      assertQueueVisible(ctx.principal, args.queue);
      return { count: await ctx.control.retryFailed(args.queue, args.limit ?? 1000, actingAs(ctx.principal), ctx.principal.tenant) };
    },
  }),
  replayJob: t.field({
    type: JobActionSuccess,
    errors: jobActionErrors,
    description:
      "Enqueues a NEW job (new id) with the original's name and options, read from the queue or, once the original has left Redis, from history. `data` replaces the payload; `dataPatch` is an RFC 7386 merge patch over it. The new job's replayOf is the original.",
    args: {
      queue: t.arg.string({ required: true }),
      id: t.arg.id({ required: true }),
      data: t.arg({ type: "JSON" }),
      dataPatch: t.arg({ type: "JSON" }),
    },
    resolve: async (_root, args, ctx) => {
      await assertJobVisible(ctx.principal, ctx.jobs, args.queue, String(args.id));
      // An argument left out is `undefined`; an explicit null is a payload of null (and then invalid).
      // The replay is an enqueue: a history row that cannot be committed is UNAVAILABLE (nothing enqueued).
      return {
        job: await withUnavailable(() =>
          ctx.control.replay(args.queue, String(args.id), args.data, args.dataPatch, actingAs(ctx.principal)),
        ),
      };
    },
  }),
}));
