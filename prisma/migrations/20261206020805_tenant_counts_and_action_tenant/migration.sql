-- Tenants (issue #15). Partial indexes by hand (Prisma's schema cannot express the predicate and its
-- diff does not see it): most rows have no tenant, and a tenant-bound key's queries all say
-- `tenant = $1`, so rows without one stay out of these indexes and cost nothing to write.

-- The tenant of the key that took an operator action (null: a key bound to no tenant).
ALTER TABLE "operator_action" ADD COLUMN "tenant" TEXT;

-- `Queue.counts` for a tenant-bound key: counts per state from this index alone.
CREATE INDEX "job_history_tenant_queue_state_idx" ON "job_history"("tenant", "queue", "state") WHERE "tenant" IS NOT NULL;

-- `operatorActions` of a tenant-bound key, newest first.
CREATE INDEX "operator_action_tenant_at_id_idx" ON "operator_action"("tenant", "at" DESC, "id" DESC) WHERE "tenant" IS NOT NULL;
