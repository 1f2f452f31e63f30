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
    limit: t.exposeInt("limit", { nullable: true, description: "At most this many jobs, then the scheduler stops" }),
    startDate: t.expose("startDate", { type: "DateTime", nullable: true, description: "No job before it" }),
    endDate: t.expose("endDate", { type: "DateTime", nullable: true, description: "No job after it" }),
    declaredInCode: t.exposeBoolean("declaredInCode", {
      description:
        "Declared by a job definition's schedules: workers keep it in place at start and remove it when the code no longer declares it; the API cannot change or remove it",
    }),
  }),
});
