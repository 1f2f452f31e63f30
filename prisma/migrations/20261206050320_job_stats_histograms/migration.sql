-- jobStats by hour over a month read 720 rollup rows, not ~100 histogram rows per hour: each hour's
-- (and day's) duration histogram moves into its rollup row as one array, with its percentiles kept
-- beside it. The histograms already folded are converted, so no history is re-read.

-- AlterTable
ALTER TABLE "job_stats_hourly" ADD COLUMN     "duration_p50" DOUBLE PRECISION,
ADD COLUMN     "duration_p95" DOUBLE PRECISION,
ADD COLUMN     "duration_p99" DOUBLE PRECISION,
ADD COLUMN     "durations" INTEGER[] DEFAULT ARRAY[]::INTEGER[];

-- A filter's hours side by side in the key (the old order put every name and tenant of a level between
-- two hours of one filter, so a tenant's month scanned every tenant's).
ALTER TABLE "job_stats_hourly" DROP CONSTRAINT "job_stats_hourly_pkey",
ADD CONSTRAINT "job_stats_hourly_pkey" PRIMARY KEY ("queue","level","name","tenant","hour");

-- CreateTable
CREATE TABLE "job_stats_daily" (
    "queue" TEXT NOT NULL,
    "level" SMALLINT NOT NULL,
    "name" TEXT NOT NULL,
    "tenant" TEXT NOT NULL DEFAULT '',
    "day" TIMESTAMPTZ(3) NOT NULL,
    "completed" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,
    "cancelled" INTEGER NOT NULL DEFAULT 0,
    "durations" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "duration_p50" DOUBLE PRECISION,
    "duration_p95" DOUBLE PRECISION,
    "duration_p99" DOUBLE PRECISION,

    CONSTRAINT "job_stats_daily_pkey" PRIMARY KEY ("queue","level","name","tenant","day")
);


-- Hand-written below (Prisma's diff sees neither functions nor triggers).
--
-- A histogram is a dense integer array: element i (1-based) counts bucket i - 1 of job_stats_bucket
-- (bucket 0: under 1 ms; bucket b >= 1: [1.05^(b-1), 1.05^b) ms). Arrays of one key add element-wise,
-- so an hour's, a day's or a month's histogram is the sum of smaller ones (a mergeable sketch).

-- a + b element-wise (the longer one's tail kept); NULL elements count as 0.
CREATE FUNCTION "job_stats_hist_add"(a int[], b int[]) RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  long int[] := a;
  short int[] := b;
BEGIN
  IF COALESCE(cardinality(a), 0) < COALESCE(cardinality(b), 0) THEN
    long := b;
    short := a;
  END IF;
  IF COALESCE(cardinality(short), 0) = 0 THEN RETURN COALESCE(long, '{}'); END IF;
  FOR i IN 1 .. cardinality(short) LOOP
    long[i] := COALESCE(long[i], 0) + COALESCE(short[i], 0);
  END LOOP;
  RETURN long;
END $$;

-- The dense histogram of sparse (bucket, count) pairs; a bucket may come more than once (they add up).
CREATE FUNCTION "job_stats_hist_of"(buckets smallint[], counts bigint[]) RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  top int := COALESCE((SELECT max(b) FROM unnest(buckets) AS b), -1);
  r int[];
BEGIN
  IF top < 0 THEN RETURN '{}'; END IF;
  r := array_fill(0, ARRAY[top + 1]);
  FOR i IN 1 .. cardinality(buckets) LOOP
    IF buckets[i] IS NOT NULL THEN r[buckets[i] + 1] := r[buckets[i] + 1] + counts[i]; END IF;
  END LOOP;
  RETURN r;
END $$;

-- Duration p50, p95 and p99 (ms) from a histogram, as percentile_cont reads them from the rows: with n
-- durations, percentile p lies at rank r = p * (n - 1) between the elements floor(r) and floor(r) + 1
-- (0-based, ascending), interpolated. Each element is estimated inside the bucket that holds it (which
-- the counts say exactly): the k-th of c elements in [low, high) at low + (high - low) * (k + 0.5) / c.
-- An estimate in the right bucket is within 5% of the true value (1 ms absolute in bucket 0), and so is
-- their interpolation: |estimate - percentile_cont| <= 0.05 * percentile_cont + 1 ms. NULL with no
-- durations. The same function reads the rollup rows' percentiles and the totals of any range.
CREATE FUNCTION "job_stats_quantiles"(h bigint[]) RETURNS float8[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  total bigint := 0;
  c bigint;
  i int := 0;
  before bigint := 0;
  low float8;
  width float8;
  -- The elements (0-based, ascending values) percentile_cont reads for p50, p95, p99: lo and lo + 1.
  r50 float8; r95 float8; r99 float8;
  k1 bigint; k2 bigint; k3 bigint; k4 bigint; k5 bigint; k6 bigint;
  v1 float8; v2 float8; v3 float8; v4 float8; v5 float8; v6 float8;
BEGIN
  IF h IS NULL THEN RETURN NULL; END IF;
  FOREACH c IN ARRAY h LOOP
    IF c > 0 THEN total := total + c; END IF;
  END LOOP;
  IF total = 0 THEN RETURN NULL; END IF;
  r50 := 0.5 * (total - 1); r95 := 0.95 * (total - 1); r99 := 0.99 * (total - 1);
  k1 := floor(r50); k2 := LEAST(k1 + 1, total - 1);
  k3 := floor(r95); k4 := LEAST(k3 + 1, total - 1);
  k5 := floor(r99); k6 := LEAST(k5 + 1, total - 1);
  FOREACH c IN ARRAY h LOOP
    i := i + 1;
    CONTINUE WHEN c IS NULL OR c <= 0;
    -- Nothing to estimate below the median's bucket.
    IF k1 < before + c THEN
      -- Bucket i - 1: [0, 1) ms for i = 1, else [1.05^(i-2), 1.05^(i-1)).
      IF i = 1 THEN low := 0; width := 1; ELSE low := 1.05::float8 ^ (i - 2); width := low * 0.05; END IF;
      IF v1 IS NULL AND k1 < before + c THEN v1 := low + width * LEAST(1, (k1 - before + 0.5)::float8 / c); END IF;
      IF v2 IS NULL AND k2 < before + c THEN v2 := low + width * LEAST(1, (k2 - before + 0.5)::float8 / c); END IF;
      IF v3 IS NULL AND k3 < before + c THEN v3 := low + width * LEAST(1, (k3 - before + 0.5)::float8 / c); END IF;
      IF v4 IS NULL AND k4 < before + c THEN v4 := low + width * LEAST(1, (k4 - before + 0.5)::float8 / c); END IF;
      IF v5 IS NULL AND k5 < before + c THEN v5 := low + width * LEAST(1, (k5 - before + 0.5)::float8 / c); END IF;
      IF v6 IS NULL AND k6 < before + c THEN v6 := low + width * LEAST(1, (k6 - before + 0.5)::float8 / c); EXIT; END IF;
    END IF;
    before := before + c;
  END LOOP;
  RETURN ARRAY[v1 + (r50 - k1) * (v2 - v1), v3 + (r95 - k3) * (v4 - v3), v5 + (r99 - k5) * (v6 - v5)];
END $$;

-- A rollup row's percentiles follow its histogram.
CREATE FUNCTION "job_stats_set_quantiles"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  q float8[];
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.durations IS NOT DISTINCT FROM OLD.durations THEN RETURN NEW; END IF;
  q := job_stats_quantiles(NEW.durations::bigint[]);
  NEW.duration_p50 := q[1];
  NEW.duration_p95 := q[2];
  NEW.duration_p99 := q[3];
  RETURN NEW;
END $$;

CREATE TRIGGER "job_stats_hourly_quantiles" BEFORE INSERT OR UPDATE ON job_stats_hourly
  FOR EACH ROW EXECUTE FUNCTION job_stats_set_quantiles();
CREATE TRIGGER "job_stats_daily_quantiles" BEFORE INSERT OR UPDATE ON job_stats_daily
  FOR EACH ROW EXECUTE FUNCTION job_stats_set_quantiles();

-- Adds contributions to the rollups, in key order (concurrent writers lock rows in the same order):
-- per key and hour (and day), the counts by state and the histogram of the durations.
CREATE OR REPLACE FUNCTION "job_stats_apply"(deltas job_stats_delta[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(deltas) = 0 THEN RETURN; END IF;
  INSERT INTO job_stats_hourly AS s (queue, level, name, tenant, hour, completed, failed, cancelled, durations)
  SELECT g.queue, g.level, g.name, g.tenant, g.hour,
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'COMPLETED'), 0),
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'FAILED'), 0),
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'CANCELLED'), 0),
    job_stats_hist_of(array_agg(g.bucket ORDER BY g.bucket, g.state), array_agg(g.n ORDER BY g.bucket, g.state))
  FROM (SELECT d.queue, d.level, d.name, d.tenant, d.hour, d.state, d.bucket, sum(d.sign) AS n
    FROM job_stats_levels(deltas) AS d
    GROUP BY d.queue, d.level, d.name, d.tenant, d.hour, d.state, d.bucket
    HAVING sum(d.sign) <> 0) AS g
  GROUP BY g.queue, g.level, g.name, g.tenant, g.hour
  ORDER BY g.queue, g.level, g.name, g.tenant, g.hour
  ON CONFLICT (queue, level, hour, name, tenant) DO UPDATE SET completed = s.completed + EXCLUDED.completed,
    failed = s.failed + EXCLUDED.failed, cancelled = s.cancelled + EXCLUDED.cancelled,
    durations = job_stats_hist_add(s.durations, EXCLUDED.durations);

  INSERT INTO job_stats_daily AS s (queue, level, name, tenant, day, completed, failed, cancelled, durations)
  SELECT g.queue, g.level, g.name, g.tenant, date_trunc('day', g.hour, 'UTC'),
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'COMPLETED'), 0),
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'FAILED'), 0),
    COALESCE(sum(g.n) FILTER (WHERE g.state = 'CANCELLED'), 0),
    job_stats_hist_of(array_agg(g.bucket ORDER BY g.bucket, g.state), array_agg(g.n ORDER BY g.bucket, g.state))
  FROM (SELECT d.queue, d.level, d.name, d.tenant, d.hour, d.state, d.bucket, sum(d.sign) AS n
    FROM job_stats_levels(deltas) AS d
    GROUP BY d.queue, d.level, d.name, d.tenant, d.hour, d.state, d.bucket
    HAVING sum(d.sign) <> 0) AS g
  GROUP BY g.queue, g.level, g.name, g.tenant, 5
  ORDER BY g.queue, g.level, g.name, g.tenant, 5
  ON CONFLICT (queue, level, day, name, tenant) DO UPDATE SET completed = s.completed + EXCLUDED.completed,
    failed = s.failed + EXCLUDED.failed, cancelled = s.cancelled + EXCLUDED.cancelled,
    durations = job_stats_hist_add(s.durations, EXCLUDED.durations);
END $$;

-- The histograms already folded, converted (the quantile triggers fill the percentiles).
INSERT INTO job_stats_hourly AS s (queue, level, name, tenant, hour, durations)
SELECT queue, level, name, tenant, hour, job_stats_hist_of(array_agg(bucket), array_agg(count::bigint))
FROM job_stats_duration
GROUP BY queue, level, name, tenant, hour
ORDER BY queue, level, name, tenant, hour
ON CONFLICT (queue, level, hour, name, tenant) DO UPDATE SET durations = EXCLUDED.durations;

INSERT INTO job_stats_daily (queue, level, name, tenant, day, completed, failed, cancelled)
SELECT queue, level, name, tenant, date_trunc('day', hour, 'UTC'), sum(completed), sum(failed), sum(cancelled)
FROM job_stats_hourly
GROUP BY queue, level, 5, name, tenant;

INSERT INTO job_stats_daily AS s (queue, level, name, tenant, day, durations)
SELECT queue, level, name, tenant, day, job_stats_hist_of(array_agg(bucket), array_agg(count::bigint))
FROM job_stats_duration_daily
GROUP BY queue, level, name, tenant, day
ORDER BY queue, level, name, tenant, day
ON CONFLICT (queue, level, day, name, tenant) DO UPDATE SET durations = EXCLUDED.durations;

-- DropTable
DROP TABLE "job_stats_duration";

-- DropTable
DROP TABLE "job_stats_duration_daily";
