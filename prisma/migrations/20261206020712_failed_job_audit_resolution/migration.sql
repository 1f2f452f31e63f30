-- CreateEnum
CREATE TYPE "FailedJobResolution" AS ENUM ('RETRIED', 'REPLAYED', 'DISMISSED');

-- AlterTable
ALTER TABLE "failed_job_audit" ADD COLUMN     "resolution" "FailedJobResolution",
ADD COLUMN     "resolved_at" TIMESTAMPTZ(3),
ADD COLUMN     "resolved_by" TEXT;

-- CreateIndex
CREATE INDEX "failed_job_audit_resolved_at_failed_at_id_idx" ON "failed_job_audit"("resolved_at", "failed_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "failed_job_audit_queue_resolved_at_failed_at_id_idx" ON "failed_job_audit"("queue", "resolved_at", "failed_at" DESC, "id" DESC);
