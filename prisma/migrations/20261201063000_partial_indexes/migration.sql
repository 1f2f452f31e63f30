-- Hand-written: Prisma's schema cannot express partial indexes (and its diff does not see their
-- predicate). Most jobs have no tenant, are no replay and have not failed: these indexes now hold
-- only the rows their queries can match (`tenant = $1`, `replay_of_id IN (...)` and
-- `failed_reason ILIKE ...` each imply IS NOT NULL), so the common insert or update maintains
-- three fewer index entries.
DROP INDEX "job_history_tenant_created_at_id_queue_idx";
CREATE INDEX "job_history_tenant_created_at_id_queue_idx" ON "job_history"("tenant", "created_at" DESC, "id" DESC, "queue" DESC) WHERE "tenant" IS NOT NULL;

DROP INDEX "job_history_queue_replay_of_id_idx";
CREATE INDEX "job_history_queue_replay_of_id_idx" ON "job_history"("queue", "replay_of_id") WHERE "replay_of_id" IS NOT NULL;

DROP INDEX "job_history_failed_reason_trgm_idx";
CREATE INDEX "job_history_failed_reason_trgm_idx" ON "job_history" USING GIN ("failed_reason" gin_trgm_ops) WHERE "failed_reason" IS NOT NULL;
ALTER INDEX "job_history_failed_reason_trgm_idx" SET (gin_pending_list_limit = 256);
