import type { OperatorActionView } from "../../jobs/history/index.ts";
import { builder } from "../builder.ts";

/** One row per control action taken through the API (enqueue excluded). */
export const OperatorActionRef = builder.objectRef<OperatorActionView>("OperatorAction").implement({
  description: "One row per control action taken through the API (enqueue excluded)",
  fields: (t) => ({
    id: t.exposeID("id"),
    actor: t.exposeString("actor", { description: 'The API key\'s name, or "anonymous" where auth is off' }),
    action: t.exposeString("action", { description: 'e.g. "cancelJob", "retryJob", "replayJob", "pauseQueue"' }),
    queue: t.exposeString("queue"),
    jobId: t.exposeID("jobId", { nullable: true }),
    at: t.expose("at", { type: "DateTime" }),
    details: t.expose("details", { type: "JSON", nullable: true }),
    selectionId: t.exposeID("selectionId", {
      nullable: true,
      description:
        "A bulk action's selection (bulkJobAction): its rows, one per queue it touched with that queue's counts, share it; null for other actions",
    }),
  }),
});
