-- CreateTable
CREATE TABLE "job_log" (
    "queue" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "line" TEXT NOT NULL,

    CONSTRAINT "job_log_pkey" PRIMARY KEY ("queue","job_id","seq")
);


-- Hand-written below (Prisma's diff sees neither functions nor triggers).

-- Appends a batch of log lines (JSON array of {queue, jobId, seq, at (epoch ms), line}); `seq` is the
-- line's number in the job's Redis log (1-based). Keeps at most 1,000 lines and 65,536 bytes of lines
-- per job: a line past either bound is dropped (it stays in Redis while the job does). A repeated line
-- (same seq) is ignored.
CREATE FUNCTION "job_log_append"(rows jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_log (queue, job_id, seq, at, line)
  SELECT r.queue, r."jobId", r.seq, to_timestamp(r.at / 1000.0), r.line
  FROM (
    SELECT r.*, sum(octet_length(r.line)) OVER (PARTITION BY r.queue, r."jobId" ORDER BY r.seq) AS running
    FROM jsonb_to_recordset(rows) AS r(queue text, "jobId" text, seq int, at float8, line text)
  ) AS r
  WHERE r.seq BETWEEN 1 AND 1000
    AND r.running + COALESCE((SELECT sum(octet_length(l.line)) FROM job_log l WHERE l.queue = r.queue AND l.job_id = r."jobId"), 0) <= 65536
  ON CONFLICT DO NOTHING;
END $$;

-- A job's lines go with its history row (retention).
CREATE FUNCTION "job_log_on_history_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM job_log l USING old_rows o WHERE l.queue = o.queue AND l.job_id = o.id;
  RETURN NULL;
END $$;

CREATE TRIGGER "job_log_delete" AFTER DELETE ON job_history
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION job_log_on_history_delete();
