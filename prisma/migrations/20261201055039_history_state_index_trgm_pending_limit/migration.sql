-- CreateIndex
CREATE INDEX "job_history_state_created_at_id_queue_idx" ON "job_history"("state", "created_at" DESC, "id" DESC, "queue" DESC);

-- Hand-written (Prisma cannot express index storage parameters; it does not diff them either).
-- A search reads the whole GIN pending list of both trigram indexes, whatever it looks for: at the
-- default 4 MB limit that is up to ~500 pages per index per search, several ms. 256 kB bounds it to
-- 32 pages; inserts then merge their entries into the index in smaller, more frequent batches.
ALTER INDEX "job_history_id_trgm_idx" SET (gin_pending_list_limit = 256);
ALTER INDEX "job_history_failed_reason_trgm_idx" SET (gin_pending_list_limit = 256);
