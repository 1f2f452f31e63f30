-- CreateTable
CREATE TABLE "history_quarantine" (
    "id" UUID NOT NULL,
    "kind" TEXT NOT NULL,
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "row" TEXT NOT NULL,
    "error" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "history_quarantine_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "history_quarantine_queue_job_id_idx" ON "history_quarantine"("queue", "job_id");
