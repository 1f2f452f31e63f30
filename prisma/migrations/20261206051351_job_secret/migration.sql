-- CreateTable
CREATE TABLE "job_secret" (
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "key_id" TEXT NOT NULL,
    "sealed" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "job_secret_pkey" PRIMARY KEY ("queue","job_id")
);

-- CreateIndex
CREATE INDEX "job_secret_key_id_idx" ON "job_secret"("key_id");
