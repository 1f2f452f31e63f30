-- Hand-written (durable enqueue, issue #18): rows of jobs whose id the API's counter just issued.
-- Unlike job_history_insert, an existing row is never touched: it means the id was issued before (a
-- Redis that came back with an older counter, e.g. AOF everysec losing its last second), so the
-- function returns the (queue, id) pairs it did NOT insert, and the API gives those jobs new ids.
CREATE FUNCTION "job_history_insert_fresh"(rows jsonb) RETURNS TABLE (q text, i text) LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  WITH wanted AS (SELECT * FROM job_history_rows(rows)),
       inserted AS (
         INSERT INTO job_history SELECT * FROM wanted ON CONFLICT ON CONSTRAINT job_history_pkey DO NOTHING
         RETURNING job_history.queue, job_history.id
       )
  SELECT w.queue, w.id FROM wanted w
  WHERE NOT EXISTS (SELECT 1 FROM inserted n WHERE n.queue = w.queue AND n.id = w.id);
END $$;
