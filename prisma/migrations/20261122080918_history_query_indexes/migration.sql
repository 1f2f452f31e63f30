-- CreateExtension (hand-written: see the note in schema.prisma)
CREATE EXTENSION IF NOT EXISTS "pg_trgm";

-- DropIndex
DROP INDEX "job_history_created_at_id_idx";

-- CreateIndex
CREATE INDEX "failed_job_audit_queue_failed_at_id_idx" ON "failed_job_audit"("queue", "failed_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "failed_job_audit_queue_job_id_failed_at_id_idx" ON "failed_job_audit"("queue", "job_id", "failed_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "job_history_created_at_id_queue_idx" ON "job_history"("created_at" DESC, "id" DESC, "queue" DESC);

-- CreateIndex
CREATE INDEX "job_history_queue_created_at_id_idx" ON "job_history"("queue", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "job_history_queue_state_created_at_id_idx" ON "job_history"("queue", "state", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "job_history_tenant_created_at_id_queue_idx" ON "job_history"("tenant", "created_at" DESC, "id" DESC, "queue" DESC);

-- CreateIndex
CREATE INDEX "job_history_data_idx" ON "job_history" USING GIN ("data" jsonb_path_ops);

-- CreateIndex
CREATE INDEX "job_history_id_trgm_idx" ON "job_history" USING GIN ("id" gin_trgm_ops);

-- CreateIndex
CREATE INDEX "job_history_failed_reason_trgm_idx" ON "job_history" USING GIN ("failed_reason" gin_trgm_ops);

-- CreateIndex
CREATE INDEX "operator_action_queue_at_id_idx" ON "operator_action"("queue", "at" DESC, "id" DESC);
