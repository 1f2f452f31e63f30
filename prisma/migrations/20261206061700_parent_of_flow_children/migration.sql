-- Flows (issue #20): a child of `enqueueFlow` knows its parent (queue and id: a flow spans queues)
-- and what its final failure does to that parent (BullMQ's failParentOnFailure & co., kept for
-- replays of the tree).
ALTER TABLE "job_history" ADD COLUMN     "parent_id" TEXT,
ADD COLUMN     "parent_policy" TEXT,
ADD COLUMN     "parent_queue" TEXT;

-- Hand-written predicate (as in partial_indexes): most jobs have no parent, so the index holds only
-- flow children. `Job.children`, `childrenCounts` and the tree walks of cancel and replay use it.
CREATE INDEX "job_history_parent_queue_parent_id_created_at_id_queue_idx" ON "job_history"("parent_queue", "parent_id", "created_at" DESC, "id" DESC, "queue" DESC) WHERE "parent_id" IS NOT NULL;

-- The write path (migration history_write_functions) learns the three fields. The columns were
-- added last, in the order above: job_history_rows returns them in that order.
ALTER TYPE "job_history_write" ADD ATTRIBUTE "parentQueue" text, ADD ATTRIBUTE "parentId" text, ADD ATTRIBUTE "parentPolicy" text;

CREATE OR REPLACE FUNCTION "job_history_rows"(rows jsonb) RETURNS SETOF job_history LANGUAGE sql STABLE AS $$
  SELECT r."queue", r."id", r."name", COALESCE(r."data", 'null'::jsonb), r."state"::"JobState", r."progress",
    r."attemptsMade", r."maxAttempts", r."priority", COALESCE(r."delayMs", 0), r."backoff",
    to_timestamp(r."createdAt" / 1000.0), to_timestamp(r."startedAt" / 1000.0), to_timestamp(r."finishedAt" / 1000.0),
    now(), r."result", r."failedReason", r."replayOfId", r."tenant", r."parentId", r."parentPolicy", r."parentQueue"
  FROM jsonb_populate_recordset(NULL::"job_history_write", rows) AS r
$$;

-- A job's parent never changes: a later write that does not know it (a view built without it) keeps it.
CREATE OR REPLACE FUNCTION "job_history_upsert"(rows jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_history SELECT * FROM job_history_rows(rows)
  ON CONFLICT (queue, id) DO UPDATE SET state = EXCLUDED.state, progress = EXCLUDED.progress,
    attempts_made = EXCLUDED.attempts_made, max_attempts = EXCLUDED.max_attempts, priority = EXCLUDED.priority,
    started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, updated_at = now(), result = EXCLUDED.result,
    failed_reason = EXCLUDED.failed_reason, replay_of_id = EXCLUDED.replay_of_id, tenant = EXCLUDED.tenant,
    parent_queue = COALESCE(EXCLUDED.parent_queue, job_history.parent_queue),
    parent_id = COALESCE(EXCLUDED.parent_id, job_history.parent_id);
END $$;

-- The parent policy is an enqueue option only the API knows, like delay and backoff.
CREATE OR REPLACE FUNCTION "job_history_insert"(rows jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_history SELECT * FROM job_history_rows(rows)
  ON CONFLICT (queue, id) DO UPDATE SET delay_ms = EXCLUDED.delay_ms, backoff = EXCLUDED.backoff,
    parent_policy = EXCLUDED.parent_policy,
    parent_queue = COALESCE(EXCLUDED.parent_queue, job_history.parent_queue),
    parent_id = COALESCE(EXCLUDED.parent_id, job_history.parent_id);
END $$;
