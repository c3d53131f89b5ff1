-- Where Postgres spends a webhook delivery's time: EXPLAIN ANALYZE of the
-- dispatcher's two writes (tickiti_store::webhooks::insert_events and
-- finish_attempts, same shape) for 256 events x 10 endpoints, each in its
-- own transaction as in the dispatcher. The "Trigger for constraint" lines
-- are the foreign-key checks.
--
-- It EMPTIES the database it runs in: use the development database only.
--   eval "$(scripts/dev-db)"
--   psql "$DATABASE_URL" -f tools/bench/sql/explain-webhook-writes.sql
-- Run it a few times; the first run sees empty indexes.
\set ON_ERROR_STOP on
TRUNCATE organizations CASCADE;
INSERT INTO organizations (id, name, code_prefix)
VALUES ('00000000-0000-7000-8000-000000000001', 'Bench', 'BEN');
INSERT INTO webhook_endpoints (id, organization_id, url, events, secret_sealed)
SELECT ('00000000-0000-7000-8000-0000000001' || g)::uuid,
       '00000000-0000-7000-8000-000000000001', 'http://receiver/' || g, '{ticket.created}', '\x00'
FROM generate_series(10, 19) g;

BEGIN;
CREATE TEMP TABLE bench_events ON COMMIT DROP AS
SELECT gen_random_uuid() AS id, n FROM generate_series(1, 256) n;
-- The fan-out: the batch's events only, each listed as unsettled.
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH stored AS (
    INSERT INTO webhook_events (id, organization_id, payload)
    SELECT ev.id, '00000000-0000-7000-8000-000000000001',
           jsonb_build_object('id', ev.id, 'event', 'ticket.created', 'data', repeat('x', 900))
    FROM bench_events ev
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO webhook_fanouts (event_id) SELECT id FROM stored;
COMMIT;

-- The attempt log: every (event, endpoint) first attempt creates its
-- delivery row with its answer and logs the attempt.
BEGIN;
CREATE TEMP TABLE bench_input ON COMMIT DROP AS
SELECT gen_random_uuid() AS attempt_id, gen_random_uuid() AS delivery_id, 1 AS attempt,
       'success' AS status, NULL::timestamptz AS next_attempt_at, 200 AS response_code,
       3 AS response_time_ms, 'ok' AS response_body, NULL::text AS error,
       ep.id AS endpoint_id, ep.organization_id, e.id AS event_id, 'ticket.created' AS event_type
FROM webhook_fanouts f JOIN webhook_events e ON e.id = f.event_id
CROSS JOIN webhook_endpoints ep;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH input AS (SELECT * FROM bench_input),
created AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type,
        status, attempt, next_attempt_at, response_code, response_time_ms, error)
    SELECT i.delivery_id, i.endpoint_id, i.organization_id, i.event_id, i.event_type,
        i.status, i.attempt, i.next_attempt_at, i.response_code, i.response_time_ms, i.error
    FROM input i
    WHERE i.event_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM webhook_endpoints ep WHERE ep.id = i.endpoint_id)
    ON CONFLICT DO NOTHING
    RETURNING id
), logged AS (
    INSERT INTO webhook_attempts (id, delivery_id, attempt, response_code, response_time_ms,
        response_body, error)
    SELECT i.attempt_id, i.delivery_id, i.attempt, i.response_code, i.response_time_ms,
        i.response_body, i.error
    FROM input i
    WHERE i.delivery_id IN (SELECT id FROM created)
       OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = i.delivery_id)
)
SELECT count(*) FROM created;
DELETE FROM webhook_fanouts;
COMMIT;
