import { lexicographicSortSchema } from "graphql";
import { guardSchema } from "./access-guard.ts";
import { builder } from "./builder.ts";
import "./types/scalars.ts";
import "./types/errors.ts";
import "./types/job.ts";
import "./types/job-scheduler.ts";
import "./types/queue.ts";
import "./types/access.ts";
import "./types/bulk-action.ts";
import "./mutations/enqueue.ts";
import "./mutations/enqueue-flow.ts";
import "./mutations/job-actions.ts";
import "./mutations/failed-job-inbox.ts";
import "./mutations/queue-actions.ts";
import "./mutations/bulk-actions.ts";
import "./queries/jobs.ts";
import "./types/job-flow.ts";
import "./queries/audit-trail.ts";
import "./queries/job-stats.ts";
import "./subscriptions/job-events.ts";

/**
 * The schema, built once per process from the files above (each registers its own fields), every
 * root field behind its access check (access-guard.ts).
 */
export const schema = guardSchema(lexicographicSortSchema(builder.toSchema()));
