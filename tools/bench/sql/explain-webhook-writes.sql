-- Where Postgres spends a webhook delivery's time: EXPLAIN ANALYZE of the
-- dispatcher's two writes (tickiti_store::webhooks::insert_claimed and
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
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH event AS (
    SELECT ev.id, '00000000-0000-7000-8000-000000000001'::uuid AS organization_id,
           'ticket.created' AS type,
           jsonb_build_object('id', ev.id, 'data', repeat('x', 900)) AS payload, ev.n
    FROM bench_events ev
), stored AS (
    INSERT INTO webhook_events (id, organization_id, payload)
    SELECT e.id, e.organization_id, e.payload FROM event e
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type,
    attempt, locked_until, queued_at, next_attempt_at)
SELECT gen_random_uuid(), ep.id, e.organization_id, e.id, e.type,
    1, now() + interval '70 s', now(), now()
FROM event e CROSS JOIN webhook_endpoints ep
ON CONFLICT (event_id, endpoint_id) DO NOTHING;
COMMIT;

BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH input AS (
    SELECT gen_random_uuid() AS attempt_id, d.id AS delivery_id, 1 AS attempt,
           'success' AS status, NULL::timestamptz AS next_attempt_at, 200 AS response_code,
           3 AS response_time_ms, 'ok' AS response_body, NULL::text AS error
    FROM webhook_deliveries d WHERE d.status = 'pending'
), logged AS (
    INSERT INTO webhook_attempts (id, delivery_id, attempt, response_code, response_time_ms,
        response_body, error)
    SELECT i.attempt_id, i.delivery_id, i.attempt, i.response_code, i.response_time_ms,
        i.response_body, i.error
    FROM input i JOIN webhook_deliveries d ON d.id = i.delivery_id
)
UPDATE webhook_deliveries d SET status = i.status, next_attempt_at = i.next_attempt_at,
    locked_until = NULL, queued_at = NULL, response_code = i.response_code,
    response_time_ms = i.response_time_ms, error = i.error, updated_at = now()
FROM input i WHERE d.id = i.delivery_id AND d.attempt = i.attempt;
COMMIT;
