-- CreateTable
CREATE TABLE "bulk_selection" (
    "id" UUID NOT NULL,
    "action" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'PENDING',
    "actor" TEXT NOT NULL,
    "tenant" TEXT,
    "scope_queues" TEXT[],
    "queues" TEXT[],
    "filter" JSONB NOT NULL,
    "total" INTEGER NOT NULL,
    "processed" INTEGER NOT NULL DEFAULT 0,
    "acted" INTEGER NOT NULL DEFAULT 0,
    "skipped" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "confirmed_at" TIMESTAMPTZ(3),
    "confirmed_by" TEXT,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "bulk_selection_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "bulk_selection_job" (
    "selection_id" UUID NOT NULL,
    "seq" INTEGER NOT NULL,
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "claimed_state" TEXT,
    "outcome" TEXT,
    "state" TEXT,
    "detail" TEXT,

    CONSTRAINT "bulk_selection_job_pkey" PRIMARY KEY ("selection_id","seq")
);

-- CreateIndex
CREATE INDEX "bulk_selection_status_idx" ON "bulk_selection"("status");

-- CreateIndex
CREATE INDEX "bulk_selection_expires_at_idx" ON "bulk_selection"("expires_at");

-- AddForeignKey
ALTER TABLE "bulk_selection_job" ADD CONSTRAINT "bulk_selection_job_selection_id_fkey" FOREIGN KEY ("selection_id") REFERENCES "bulk_selection"("id") ON DELETE CASCADE ON UPDATE CASCADE;
