import { canSeeJob } from "../../access/principal.ts";
import type { FlowNodeInput } from "../../jobs/control/index.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import type { JobView } from "../../jobs/job-view.ts";
import { withUnavailable } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { enqueueFor } from "../tenancy.ts";
import { JobTokenRef, jobTokenFor } from "../types/access.ts";
import { JobRef } from "../types/job.ts";
import { BackoffInput } from "./enqueue.ts";

/** A node of FlowInput as Pothos hands it over (the shape of the input type below). */
interface FlowInputShape {
  queue: string;
  name: string;
  data?: unknown;
  priority?: number | null;
  delayMs?: number | null;
  attempts?: number | null;
  backoff?: { type: "FIXED" | "EXPONENTIAL"; delayMs: number } | null;
  jobId?: string | number | null;
  tenant?: string | null;
  failParentOnFailure?: boolean | null;
  ignoreDependencyOnFailure?: boolean | null;
  removeDependencyOnFailure?: boolean | null;
  children?: FlowInputShape[] | null;
}

export const FlowInput = builder.inputRef<FlowInputShape>("FlowInput").implement({
  description:
    "A job of a flow and its children (BullMQ FlowProducer): the job runs once every child has finished. The same fields as EnqueueJobInput, plus children and, on a child, what its final failure does to its parent (at most one; none: the parent keeps waiting until the child is retried).",
  fields: (t) => ({
    queue: t.string({ required: true }),
    name: t.string({ required: true }),
    // Pothos types a required JSON field as `unknown`, which no property of the explicit shape of a
    // recursive input ref accepts: the cast says only that (the schema still has `data: JSON!`).
    data: t.field({ type: "JSON", required: true }) as never,
    priority: t.int({ description: "1 is highest; omit for plain FIFO" }),
    delayMs: t.int(),
    attempts: t.int(),
    backoff: t.field({ type: BackoffInput }),
    jobId: t.id({
      description: "On the root: idempotency key (a known root returns that job, nothing added). On a child: an id of your choice, unused",
    }),
    tenant: t.string({ description: "On the root only (every job of a flow has the root's tenant); as on EnqueueJobInput" }),
    children: t.field({ type: [FlowInput], description: "Jobs this one waits for, in any queues; omit for a job without children" }),
    failParentOnFailure: t.boolean({ description: "On a child: its final failure fails the parent at once" }),
    ignoreDependencyOnFailure: t.boolean({
      description: "On a child: its final failure counts as done; the parent runs, and sees it among childrenCounts.ignored",
    }),
    removeDependencyOnFailure: t.boolean({ description: "On a child: its final failure removes it from the parent's dependencies" }),
  }),
});

const EnqueueFlowSuccess = builder.objectRef<{ jobs: JobView[] }>("EnqueueFlowSuccess").implement({
  fields: (t) => ({
    job: t.field({ type: JobRef, description: "The root of the flow", resolve: (r) => r.jobs[0] as JobView }),
    jobs: t.field({
      type: [JobRef],
      description: "Every job of the flow, the root first, each parent before its children (the order of the input)",
      resolve: (r) => r.jobs,
    }),
    jobToken: t.field({
      type: JobTokenRef,
      nullable: true,
      description: "A browser token for the root job (its jobEvents carry CHILD_COMPLETED / CHILD_FAILED), as on EnqueueJobSuccess",
      args: { ttlSeconds: t.arg.int({ defaultValue: 3600 }) },
      resolve: (r, args, ctx) => jobTokenFor(ctx, r.jobs[0] as JobView, args.ttlSeconds),
    }),
  }),
});

builder.mutationField("enqueueFlow", (t) =>
  t.field({
    type: EnqueueFlowSuccess,
    description:
      "A parent job with children (nested, across queues), all or nothing: each issue's path leads into the tree (`children.2.data.steps`). At most MAX_FLOW_NODES jobs on MAX_FLOW_DEPTH levels.",
    args: { input: t.arg({ type: FlowInput, required: true }) },
    errors: { types: [ValidationError, NotFoundError, ForbiddenError], union: { name: "EnqueueFlowResult" } },
    resolve: async (_root, { input }, ctx) => {
      // Every node through the same access check as enqueueJob: a queue the key may not use answers
      // as an unknown one (with its path), and a tenant-bound key's tenant goes on every node.
      // Recursion as deep as the input, which the input guard bounds (MAX_DATA_DEPTH).
      const scoped = (node: FlowInputShape, path: string[]): FlowNodeInput => ({
        ...enqueueFor(ctx.principal, { ...node, data: node.data, jobId: node.jobId == null ? null : String(node.jobId) }, path),
        children: node.children?.map((child, i) => scoped(child, [...path, "children", String(i)])) ?? null,
      });
      const jobs = await withUnavailable(() => ctx.jobs.enqueueFlow(scoped(input, []), {}, (j) => canSeeJob(ctx.principal, j)));
      ctx.countEnqueued(jobs);
      return { jobs };
    },
  }),
);
