-- CreateEnum
CREATE TYPE "JobState" AS ENUM ('WAITING', 'PRIORITIZED', 'DELAYED', 'ACTIVE', 'WAITING_CHILDREN', 'COMPLETED', 'FAILED', 'CANCELLED');

-- CreateTable
CREATE TABLE "job_history" (
    "queue" TEXT NOT NULL,
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "state" "JobState" NOT NULL,
    "progress" JSONB,
    "attempts_made" INTEGER NOT NULL DEFAULT 0,
    "max_attempts" INTEGER NOT NULL DEFAULT 1,
    "priority" INTEGER NOT NULL DEFAULT 0,
    "delay_ms" INTEGER NOT NULL DEFAULT 0,
    "backoff" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "result" JSONB,
    "failed_reason" TEXT,
    "replay_of_id" TEXT,
    "tenant" TEXT,

    CONSTRAINT "job_history_pkey" PRIMARY KEY ("queue","id")
);

-- CreateTable
CREATE TABLE "failed_job_audit" (
    "id" UUID NOT NULL,
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "job_name" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "failed_reason" TEXT NOT NULL,
    "stacktrace" TEXT[],
    "attempts_made" INTEGER NOT NULL,
    "failed_at" TIMESTAMPTZ(3) NOT NULL,
    "worker_id" TEXT NOT NULL,

    CONSTRAINT "failed_job_audit_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "operator_action" (
    "id" UUID NOT NULL,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "queue" TEXT NOT NULL,
    "job_id" TEXT,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "details" JSONB,

    CONSTRAINT "operator_action_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "job_history_created_at_id_idx" ON "job_history"("created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "job_history_queue_replay_of_id_idx" ON "job_history"("queue", "replay_of_id");

-- CreateIndex
CREATE INDEX "failed_job_audit_failed_at_id_idx" ON "failed_job_audit"("failed_at" DESC, "id" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "failed_job_audit_queue_job_id_failed_at_key" ON "failed_job_audit"("queue", "job_id", "failed_at");

-- CreateIndex
CREATE INDEX "operator_action_at_id_idx" ON "operator_action"("at" DESC, "id" DESC);
