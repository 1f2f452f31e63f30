import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import type { AccessService } from "../access/access-service.ts";
import type { Transport } from "../access/live-sessions.ts";
import type { Principal } from "../access/principal.ts";
import type { BulkActions, JobControl, JobService, QueueService } from "../jobs/control/index.ts";
import type { EventFeeds } from "../jobs/events/index.ts";
import type { HistoryQueries, JobLoaders, JobStatsQueries } from "../jobs/history/index.ts";
import type { JobView } from "../jobs/job-view.ts";

/** What every resolver gets: the domain services and who is asking. */
export interface Context {
  jobs: JobService;
  /** cancel / retry / replay, each writing an operator action. */
  control: JobControl;
  /** Bulk actions: dry runs over a frozen selection, their confirmation and progress. */
  bulk: BulkActions;
  queues: QueueService;
  feeds: EventFeeds;
  /** Paginated reads of history, failed-job audits and operator actions. */
  history: HistoryQueries;
  /** `jobStats`: finished jobs per hour or day, from the history rollups. */
  stats: JobStatsQueries;
  /** Batched job lookups, made fresh for each request. */
  loaders: JobLoaders;
  /** The API key's name, "admin" (ADMIN_API_KEY), "job-token", or "anonymous" while auth is open. */
  actor: string;
  /** Who is asking: scopes, tenant, queues (src/access/principal.ts). */
  principal: Principal;
  /** API keys and job tokens. */
  access: AccessService;
  /** The WebSocket connection the operation came on (to close it when its key is revoked); undefined over HTTP and SSE. */
  transport?: Transport | undefined;
  /** Counts enqueued jobs per key name (jobs_enqueued_total). */
  countEnqueued: (jobs: readonly JobView[]) => void;
}

export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  DefaultInputFieldRequiredness: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
}>({
  plugins: [ErrorsPlugin],
  defaultFieldNullability: false,
  errors: { directResult: true },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
