import type { SchedulerView } from "../../jobs/control/index.ts";
import { builder } from "../builder.ts";

export const JobSchedulerRef = builder.objectRef<SchedulerView>("JobScheduler").implement({
  fields: (t) => ({
    id: t.exposeID("id"),
    queue: t.exposeString("queue"),
    name: t.exposeString("name"),
    data: t.expose("data", { type: "JSON" }),
    pattern: t.exposeString("pattern", { nullable: true, description: "Cron pattern" }),
    everyMs: t.exposeInt("everyMs", { nullable: true }),
    tz: t.exposeString("tz", { nullable: true }),
    nextRunAt: t.expose("nextRunAt", { type: "DateTime", nullable: true }),
    tenant: t.exposeString("tenant", { nullable: true, description: "The tenant of the key that created it; its jobs carry it too" }),
  }),
});
