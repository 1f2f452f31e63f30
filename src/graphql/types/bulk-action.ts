import { BulkActionRunningError, SelectionTooLargeError } from "../../jobs/errors.ts";
import { BULK_ACTION_EVENT_TYPES, BULK_ACTION_STATUSES, type BulkActionEvent } from "../../jobs/events/index.ts";
import { BULK_ACTIONS, BULK_OUTCOMES, type BulkOutcomeView, type BulkSelectionView } from "../../jobs/history/index.ts";
import { JOB_STATES, type JobState } from "../../jobs/job-view.ts";
import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { JobStateEnum, UserError } from "./errors.ts";
import { JobRef } from "./job.ts";

export const BulkJobActionType = builder.enumType("BulkJobActionType", {
  description:
    "CANCEL: jobs not ended yet (as cancelJob). RETRY: FAILED or CANCELLED jobs still held by the queue (as retryJob). REPLAY: ended jobs, each into a new job `bulk-<selectionId>-<position>` (as replayJob). DISMISS_AUDIT: each job's unresolved failed-job audit rows become DISMISSED.",
  values: BULK_ACTIONS,
});
const BulkActionStatus = builder.enumType("BulkActionStatus", {
  description: "PENDING: a dry run, not confirmed. RUNNING: confirmed, batches under way. DONE: every job has its outcome.",
  values: BULK_ACTION_STATUSES,
});
const BulkJobOutcome = builder.enumType("BulkJobOutcome", {
  description:
    "ACTED: the action was done to the job. SKIPPED: its state then did not allow it (or the job was gone). FAILED: an unexpected error (detail says which).",
  values: BULK_OUTCOMES,
});
const BulkActionEventType = builder.enumType("BulkActionEventType", { values: BULK_ACTION_EVENT_TYPES });

const stateOf = (s: string | null) => (s !== null && (JOB_STATES as readonly string[]).includes(s) ? (s as JobState) : null);

const BulkOutcomeCount = builder
  .objectRef<{ outcome: (typeof BULK_OUTCOMES)[number]; state: string | null; count: number }>("BulkOutcomeCount")
  .implement({
    fields: (t) => ({
      outcome: t.field({ type: BulkJobOutcome, resolve: (c) => c.outcome }),
      state: t.field({
        type: JobStateEnum,
        nullable: true,
        description: "The job's state then; null: it was gone",
        resolve: (c) => stateOf(c.state),
      }),
      count: t.exposeInt("count"),
    }),
  });

const BulkActionJob = builder.objectRef<BulkOutcomeView>("BulkActionJob").implement({
  description: "One job of a frozen selection and what the action did to it",
  fields: (t) => ({
    position: t.exposeInt("seq", { description: "1-based, in selection order (newest first, as `jobs` lists them)" }),
    queue: t.exposeString("queue"),
    jobId: t.exposeID("jobId"),
    outcome: t.field({ type: BulkJobOutcome, nullable: true, description: "Null until its batch ran", resolve: (j) => j.outcome }),
    state: t.field({
      type: JobStateEnum,
      nullable: true,
      description: "The job's state when its batch ran",
      resolve: (j) => stateOf(j.state),
    }),
    detail: t.exposeString("detail", { nullable: true, description: "Why it was skipped or failed; for REPLAY, the new job's id" }),
  }),
});

export const BulkActionRef = builder.objectRef<BulkSelectionView>("BulkAction").implement({
  description:
    "A bulk action's frozen selection (a dry run) and, once confirmed, its run: the jobs are those the filter matched at the dry run, whatever it matches later.",
  fields: (t) => ({
    selectionId: t.exposeID("id", { description: "Pass it to confirmBulkJobAction and bulkActionEvents" }),
    action: t.field({ type: BulkJobActionType, resolve: (s) => s.action }),
    status: t.field({ type: BulkActionStatus, resolve: (s) => s.status }),
    count: t.exposeInt("total", { description: "Jobs in the selection" }),
    queues: t.exposeStringList("queues", { description: "Queues of the selected jobs" }),
    filter: t.expose("filter", { type: "JSON", description: "The filter as given to the dry run" }),
    processed: t.exposeInt("processed", { description: "Jobs with an outcome so far (acted + skipped + failed)" }),
    acted: t.exposeInt("acted"),
    skipped: t.exposeInt("skipped"),
    failed: t.exposeInt("failed"),
    outcomeCounts: t.field({
      type: [BulkOutcomeCount],
      description: "Jobs per outcome and state then: which were skipped because they had completed, were cancelled, were gone...",
      resolve: (s, _args, ctx) => ctx.bulk.outcomeCounts(s.id),
    }),
    sample: t.field({
      type: [JobRef],
      description: "The first `first` jobs of the selection (1-100), as they are now",
      args: { first: t.arg.int({ defaultValue: 20 }) },
      resolve: (s, args, ctx) =>
        withGraphQLErrors(async () => {
          const refs = await ctx.bulk.sample(s.id, args.first ?? 20);
          const rows = await ctx.history.getMany(refs);
          const found = refs.flatMap((r) => {
            const row = rows.get(`${r.queue}\u0000${r.id}`);
            return row ? [row] : [];
          });
          return ctx.loaders.refresh(found);
        }),
    }),
    jobs: t.field({
      type: [BulkActionJob],
      description:
        "The selection's jobs after `afterPosition`, in order, with their outcomes (optionally one outcome only); `first` 1-1000",
      args: {
        outcome: t.arg({ type: BulkJobOutcome }),
        first: t.arg.int({ defaultValue: 100 }),
        afterPosition: t.arg.int({ defaultValue: 0 }),
      },
      resolve: (s, args, ctx) =>
        withGraphQLErrors(() =>
          ctx.bulk.outcomes(s.id, { outcome: args.outcome, first: args.first ?? 100, afterSeq: args.afterPosition ?? 0 }),
        ),
    }),
    selectedBy: t.exposeString("actor", { description: "The key that made the dry run" }),
    confirmedBy: t.exposeString("confirmedBy", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    expiresAt: t.expose("expiresAt", {
      type: "DateTime",
      description:
        "PENDING: confirm before then (BULK_SELECTION_TTL_MS after the dry run). DONE: kept until then (24 h). RUNNING: kept while it runs",
    }),
    confirmedAt: t.expose("confirmedAt", { type: "DateTime", nullable: true }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true }),
  }),
});

export const BulkActionEventRef = builder.objectRef<BulkActionEvent>("BulkActionEvent").implement({
  description: "A bulk action's counts: first as they are (SNAPSHOT), then after each batch (PROGRESS), last DONE",
  fields: (t) => ({
    id: t.exposeString("id", { description: "Increases with every batch (`<processed>-0`; DONE `<processed>-1`)" }),
    type: t.field({ type: BulkActionEventType, resolve: (e) => e.type }),
    selectionId: t.exposeID("selectionId"),
    status: t.field({ type: BulkActionStatus, resolve: (e) => e.status }),
    count: t.exposeInt("total"),
    processed: t.exposeInt("processed"),
    acted: t.exposeInt("acted"),
    skipped: t.exposeInt("skipped"),
    failed: t.exposeInt("failed"),
    at: t.expose("at", { type: "DateTime" }),
  }),
});

builder.objectType(SelectionTooLargeError, {
  name: "SelectionTooLargeError",
  description: "The filter matches more jobs than BULK_MAX_SELECTION: nothing was selected; narrow the filter",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof SelectionTooLargeError,
  fields: (t) => ({
    count: t.exposeInt("count", { description: "Jobs the filter matches" }),
    max: t.exposeInt("max", { description: "BULK_MAX_SELECTION" }),
  }),
});

builder.objectType(BulkActionRunningError, {
  name: "BulkActionRunningError",
  description: "Another bulk action is running on one of the selection's queues (one at a time per queue)",
  interfaces: [UserError],
  isTypeOf: (e) => e instanceof BulkActionRunningError,
  fields: (t) => ({ queue: t.exposeString("queue") }),
});
