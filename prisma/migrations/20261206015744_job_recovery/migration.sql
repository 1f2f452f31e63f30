-- CreateTable
CREATE TABLE "job_recovery" (
    "id" UUID NOT NULL,
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "state" "JobState" NOT NULL,
    "attempts_made" INTEGER NOT NULL,
    "delay_ms" INTEGER NOT NULL,
    "redis_run_id" TEXT NOT NULL,
    "pass_id" UUID NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "job_recovery_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "job_recovery_queue_job_id_at_idx" ON "job_recovery"("queue", "job_id", "at" DESC);

-- CreateIndex
CREATE INDEX "job_recovery_at_idx" ON "job_recovery"("at" DESC);
