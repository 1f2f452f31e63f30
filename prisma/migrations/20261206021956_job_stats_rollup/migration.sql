-- CreateTable
CREATE TABLE "job_stats_hourly" (
    "queue" TEXT NOT NULL,
    "level" SMALLINT NOT NULL,
    "name" TEXT NOT NULL,
    "tenant" TEXT NOT NULL DEFAULT '',
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "completed" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,
    "cancelled" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "job_stats_hourly_pkey" PRIMARY KEY ("queue","level","hour","name","tenant")
);

-- CreateTable
CREATE TABLE "job_stats_duration" (
    "queue" TEXT NOT NULL,
    "level" SMALLINT NOT NULL,
    "name" TEXT NOT NULL,
    "tenant" TEXT NOT NULL DEFAULT '',
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "bucket" SMALLINT NOT NULL,
    "count" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "job_stats_duration_pkey" PRIMARY KEY ("queue","level","hour","bucket","name","tenant")
);

-- CreateTable
CREATE TABLE "job_stats_pending" (
    "id" BIGSERIAL NOT NULL,
    "queue" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "tenant" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "state" TEXT NOT NULL,
    "bucket" SMALLINT,
    "sign" INTEGER NOT NULL,

    CONSTRAINT "job_stats_pending_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "job_stats_duration_daily" (
    "queue" TEXT NOT NULL,
    "level" SMALLINT NOT NULL,
    "name" TEXT NOT NULL,
    "tenant" TEXT NOT NULL DEFAULT '',
    "day" TIMESTAMPTZ(3) NOT NULL,
    "bucket" SMALLINT NOT NULL,
    "count" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "job_stats_duration_daily_pkey" PRIMARY KEY ("queue","level","day","bucket","name","tenant")
);


-- Hand-written below (Prisma's diff sees neither functions, types nor triggers).
--
-- The rollups equal an aggregate of job_history's terminal rows (COMPLETED, FAILED, CANCELLED with a
-- finished_at) at all times: statement-level triggers with transition tables add each statement's new
-- terminal rows and subtract its old ones, so a write of a finished job counts once, a repeated write
-- of the same row nets to nothing (and writes nothing), a retry (terminal -> WAITING) takes the job
-- out, and a retention delete too. One aggregated upsert per statement, whatever its row count.

-- One row's contribution: +1 (new row) or -1 (old row), its hour (UTC) and duration bucket.
CREATE TYPE "job_stats_delta" AS (
  "queue" text, "name" text, "tenant" text, "hour" timestamptz, "state" text, "bucket" smallint, "sign" int
);

-- The duration bucket of a finished job: 0 under 1 ms (or no start), b >= 1 for [1.05^(b-1), 1.05^b) ms.
CREATE FUNCTION "job_stats_bucket"(started timestamptz, finished timestamptz) RETURNS smallint LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN started IS NULL THEN NULL
    WHEN extract(epoch FROM finished - started) * 1000 < 1 THEN 0
    ELSE LEAST(32767, 1 + floor(ln(extract(epoch FROM finished - started) * 1000) / ln(1.05)))::smallint
  END
$$;

CREATE FUNCTION "job_stats_delta_of"(r job_history, sign int) RETURNS job_stats_delta LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW(r.queue, r.name, COALESCE(r.tenant, ''), date_trunc('hour', r.finished_at, 'UTC'), r.state::text,
    job_stats_bucket(r.started_at, r.finished_at), sign)::job_stats_delta
$$;

-- Each contribution at the four levels a row adds up (0: name and tenant, 1: name, every tenant;
-- 2: tenant, every name; 3: the whole queue), so a query reads only rows of its own level.
CREATE FUNCTION "job_stats_levels"(deltas job_stats_delta[])
RETURNS TABLE (queue text, level smallint, name text, tenant text, hour timestamptz, state text, bucket smallint, sign int)
LANGUAGE sql IMMUTABLE AS $$
  SELECT d.queue, l.level, CASE WHEN l.level IN (0, 1) THEN d.name ELSE '' END,
    CASE WHEN l.level IN (0, 2) THEN d.tenant ELSE '' END, d.hour, d.state, d.bucket, d.sign
  FROM unnest(deltas) AS d CROSS JOIN (VALUES (0::smallint), (1::smallint), (2::smallint), (3::smallint)) AS l(level)
$$;

-- Adds contributions to the rollups, in key order (concurrent writers lock rows in the same order).
CREATE FUNCTION "job_stats_apply"(deltas job_stats_delta[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(deltas) = 0 THEN RETURN; END IF;
  INSERT INTO job_stats_hourly AS s (queue, level, name, tenant, hour, completed, failed, cancelled)
  SELECT d.queue, d.level, d.name, d.tenant, d.hour,
    COALESCE(sum(d.sign) FILTER (WHERE d.state = 'COMPLETED'), 0),
    COALESCE(sum(d.sign) FILTER (WHERE d.state = 'FAILED'), 0),
    COALESCE(sum(d.sign) FILTER (WHERE d.state = 'CANCELLED'), 0)
  FROM job_stats_levels(deltas) AS d
  GROUP BY d.queue, d.level, d.hour, d.name, d.tenant
  HAVING COALESCE(sum(d.sign) FILTER (WHERE d.state = 'COMPLETED'), 0) <> 0
    OR COALESCE(sum(d.sign) FILTER (WHERE d.state = 'FAILED'), 0) <> 0
    OR COALESCE(sum(d.sign) FILTER (WHERE d.state = 'CANCELLED'), 0) <> 0
  ORDER BY d.queue, d.level, d.hour, d.name, d.tenant
  ON CONFLICT (queue, level, hour, name, tenant) DO UPDATE SET completed = s.completed + EXCLUDED.completed,
    failed = s.failed + EXCLUDED.failed, cancelled = s.cancelled + EXCLUDED.cancelled;

  INSERT INTO job_stats_duration AS s (queue, level, name, tenant, hour, bucket, count)
  SELECT d.queue, d.level, d.name, d.tenant, d.hour, d.bucket, sum(d.sign)
  FROM job_stats_levels(deltas) AS d
  WHERE d.bucket IS NOT NULL
  GROUP BY d.queue, d.level, d.hour, d.bucket, d.name, d.tenant
  HAVING sum(d.sign) <> 0
  ORDER BY d.queue, d.level, d.hour, d.bucket, d.name, d.tenant
  ON CONFLICT (queue, level, hour, bucket, name, tenant) DO UPDATE SET count = s.count + EXCLUDED.count;

  INSERT INTO job_stats_duration_daily AS s (queue, level, name, tenant, day, bucket, count)
  SELECT d.queue, d.level, d.name, d.tenant, date_trunc('day', d.hour, 'UTC'), d.bucket, sum(d.sign)
  FROM job_stats_levels(deltas) AS d
  WHERE d.bucket IS NOT NULL
  GROUP BY d.queue, d.level, 5, d.bucket, d.name, d.tenant
  HAVING sum(d.sign) <> 0
  ORDER BY d.queue, d.level, 5, d.bucket, d.name, d.tenant
  ON CONFLICT (queue, level, day, bucket, name, tenant) DO UPDATE SET count = s.count + EXCLUDED.count;
END $$;

-- Each statement's rows are summed per (queue, name, tenant, hour, state, duration bucket) and appended
-- to job_stats_pending: one plain insert per statement on the write path (a repeated write of the same
-- row nets to nothing and appends nothing). job_stats_fold() moves them into the rollups.
CREATE FUNCTION "job_stats_on_write"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO job_stats_pending (queue, name, tenant, hour, state, bucket, sign)
      SELECT d.queue, d.name, d.tenant, d.hour, d.state, d.bucket, sum(d.sign)
      FROM (
        SELECT r.queue, r.name, COALESCE(r.tenant, '') AS tenant, date_trunc('hour', r.finished_at, 'UTC') AS hour,
          r.state::text AS state, job_stats_bucket(r.started_at, r.finished_at) AS bucket, 1 AS sign
        FROM new_rows r WHERE r.finished_at IS NOT NULL AND r.state IN ('COMPLETED', 'FAILED', 'CANCELLED')
      ) AS d
      GROUP BY d.queue, d.name, d.tenant, d.hour, d.state, d.bucket
      HAVING sum(d.sign) <> 0;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO job_stats_pending (queue, name, tenant, hour, state, bucket, sign)
      SELECT d.queue, d.name, d.tenant, d.hour, d.state, d.bucket, sum(d.sign)
      FROM (
        SELECT r.queue, r.name, COALESCE(r.tenant, '') AS tenant, date_trunc('hour', r.finished_at, 'UTC') AS hour,
          r.state::text AS state, job_stats_bucket(r.started_at, r.finished_at) AS bucket, 1 AS sign
        FROM new_rows r WHERE r.finished_at IS NOT NULL AND r.state IN ('COMPLETED', 'FAILED', 'CANCELLED')
        UNION ALL
        SELECT r.queue, r.name, COALESCE(r.tenant, '') AS tenant, date_trunc('hour', r.finished_at, 'UTC') AS hour,
          r.state::text AS state, job_stats_bucket(r.started_at, r.finished_at) AS bucket, -1 AS sign
        FROM old_rows r WHERE r.finished_at IS NOT NULL AND r.state IN ('COMPLETED', 'FAILED', 'CANCELLED')
      ) AS d
      GROUP BY d.queue, d.name, d.tenant, d.hour, d.state, d.bucket
      HAVING sum(d.sign) <> 0;
  ELSE
    INSERT INTO job_stats_pending (queue, name, tenant, hour, state, bucket, sign)
      SELECT d.queue, d.name, d.tenant, d.hour, d.state, d.bucket, sum(d.sign)
      FROM (
        SELECT r.queue, r.name, COALESCE(r.tenant, '') AS tenant, date_trunc('hour', r.finished_at, 'UTC') AS hour,
          r.state::text AS state, job_stats_bucket(r.started_at, r.finished_at) AS bucket, -1 AS sign
        FROM old_rows r WHERE r.finished_at IS NOT NULL AND r.state IN ('COMPLETED', 'FAILED', 'CANCELLED')
      ) AS d
      GROUP BY d.queue, d.name, d.tenant, d.hour, d.state, d.bucket
      HAVING sum(d.sign) <> 0;
  END IF;
  RETURN NULL;
END $$;

-- Folds up to `batch` pending contributions into the rollups; returns how many it took. Concurrent
-- folds take disjoint rows (SKIP LOCKED), so any number of callers may run it at once.
CREATE FUNCTION "job_stats_fold"(batch int DEFAULT 100000) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  deltas job_stats_delta[];
  taken int;
BEGIN
  WITH picked AS (
    SELECT id FROM job_stats_pending ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED
  ), gone AS (
    DELETE FROM job_stats_pending p USING picked WHERE p.id = picked.id
    RETURNING p.queue, p.name, p.tenant, p.hour, p.state, p.bucket, p.sign
  )
  SELECT count(*)::int, ARRAY(
    SELECT ROW(g.queue, g.name, g.tenant, g.hour, g.state, g.bucket, sum(g.sign))::job_stats_delta
    FROM gone g GROUP BY g.queue, g.name, g.tenant, g.hour, g.state, g.bucket HAVING sum(g.sign) <> 0)
  INTO taken, deltas
  FROM gone;
  PERFORM job_stats_apply(deltas);
  RETURN taken;
END $$;

CREATE TRIGGER "job_stats_insert" AFTER INSERT ON job_history
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION job_stats_on_write();
CREATE TRIGGER "job_stats_update" AFTER UPDATE ON job_history
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION job_stats_on_write();
CREATE TRIGGER "job_stats_delete" AFTER DELETE ON job_history
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION job_stats_on_write();

-- The rows already there, through the same function.
SELECT job_stats_apply(ARRAY(
  SELECT job_stats_delta_of(r, 1) FROM job_history r
  WHERE r.finished_at IS NOT NULL AND r.state IN ('COMPLETED', 'FAILED', 'CANCELLED')));
