import { canSeeJob } from "../../access/principal.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import type { JobView } from "../../jobs/job-view.ts";
import { withUnavailable } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { enqueueFor } from "../tenancy.ts";
import { JobTokenRef, jobTokenFor } from "../types/access.ts";
import { JobRef } from "../types/job.ts";

const BackoffType = builder.enumType("BackoffType", { values: ["FIXED", "EXPONENTIAL"] as const });

export const BackoffInput = builder.inputType("BackoffInput", {
  fields: (t) => ({
    type: t.field({ type: BackoffType, required: true }),
    delayMs: t.int({ required: true }),
  }),
});

export const EnqueueJobInput = builder.inputType("EnqueueJobInput", {
  fields: (t) => ({
    queue: t.string({ required: true }),
    name: t.string({ required: true }),
    data: t.field({ type: "JSON", required: true }),
    priority: t.int({ description: "1 is highest; omit for plain FIFO" }),
    delayMs: t.int(),
    attempts: t.int(),
    backoff: t.field({ type: BackoffInput }),
    jobId: t.id({ description: "Idempotency key: a second enqueue with the same jobId returns the existing job" }),
    tenant: t.string({
      description:
        "Only keys not bound to a tenant may set it; a tenant-bound key's own tenant is always used (naming another is a ForbiddenError)",
    }),
  }),
});

const EnqueueJobSuccess = builder.objectRef<{ job: JobView }>("EnqueueJobSuccess").implement({
  fields: (t) => ({
    job: t.field({ type: JobRef, resolve: (r) => r.job }),
    jobToken: t.field({
      type: JobTokenRef,
      nullable: true,
      description: "A browser token for this one job, minted only when selected; null when the caller lacks READ. ttlSeconds: 1 to 86400.",
      args: { ttlSeconds: t.arg.int({ defaultValue: 3600 }) },
      resolve: (r, args, ctx) => jobTokenFor(ctx, r.job, args.ttlSeconds),
    }),
  }),
});

builder.mutationField("enqueueJob", (t) =>
  t.field({
    type: EnqueueJobSuccess,
    args: { input: t.arg({ type: EnqueueJobInput, required: true }) },
    errors: { types: [ValidationError, NotFoundError, ForbiddenError], union: { name: "EnqueueJobResult" } },
    resolve: async (_root, { input }, ctx) => {
      // An UnavailableError (the history row could not be committed; nothing enqueued) is a GraphQL
      // error with extensions.code UNAVAILABLE and its message, not a masked one.
      const job = await withUnavailable(() =>
        ctx.jobs.enqueue(
          enqueueFor(ctx.principal, { ...input, data: input.data, jobId: input.jobId == null ? null : String(input.jobId) }),
          {},
          (j) => canSeeJob(ctx.principal, j),
        ),
      );
      ctx.countEnqueued([job]);
      return { job };
    },
  }),
);

const EnqueueJobsSuccess = builder.objectRef<{ jobs: JobView[] }>("EnqueueJobsSuccess").implement({
  fields: (t) => ({ jobs: t.field({ type: [JobRef], resolve: (r) => r.jobs }) }),
});

builder.mutationField("enqueueJobs", (t) =>
  t.field({
    type: EnqueueJobsSuccess,
    description:
      "All or nothing: when any input is invalid, nothing is enqueued and each issue's path starts with the input's index. One addBulk per queue.",
    args: { inputs: t.arg({ type: [EnqueueJobInput], required: true }) },
    errors: { types: [ValidationError, NotFoundError, ForbiddenError], union: { name: "EnqueueJobsResult" } },
    resolve: async (_root, { inputs }, ctx) => {
      const jobs = await withUnavailable(() =>
        ctx.jobs.enqueueMany(
          inputs.map((input, i) =>
            enqueueFor(ctx.principal, { ...input, data: input.data, jobId: input.jobId == null ? null : String(input.jobId) }, [
              `inputs[${i}]`,
            ]),
          ),
          {},
          (j) => canSeeJob(ctx.principal, j),
        ),
      );
      ctx.countEnqueued(jobs);
      return { jobs };
    },
  }),
);
