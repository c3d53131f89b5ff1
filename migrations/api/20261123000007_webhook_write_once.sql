-- Deliveries are written once, when their first attempt has an answer,
-- instead of being inserted at the fan-out and updated after the attempt
-- (an insert and a non-HOT update of every index per delivery). What makes
-- that safe is the event row: the fan-out stores the event (and acks its
-- message) before any first attempt is sent, and the event stays unsettled
-- until the sweeper has checked, once the first attempts' lease has run
-- out, that every subscribed endpoint has its delivery row; those missing
-- (a dispatcher died mid-attempt) are created then and queued. Delivery
-- ids are derived from (event, endpoint), so a redone delivery keeps its id.
--
-- Unsettled events are listed here, a narrow row each, inserted with the
-- event and deleted when settled: webhook_events (with the ~1 KB payload)
-- stays insert-only instead of being rewritten by an update per event.
-- No foreign key: written with its event, deleted before it is pruned.
CREATE TABLE webhook_fanouts (
    -- when the event was fanned out: the first attempts' lease counts from then
    created_at          timestamptz NOT NULL DEFAULT now(),
    event_id            uuid NOT NULL,
    PRIMARY KEY (created_at, event_id)
);

-- Attempts are read only by delivery (oldest first) and deleted with it:
-- one index serves both, instead of a primary key on the id alone that
-- nothing looks up plus a second index, written for every attempt.
ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey;
DROP INDEX webhook_attempts_delivery_idx;
ALTER TABLE webhook_attempts ADD PRIMARY KEY (delivery_id, id);

-- The delivery log's two foreign keys cost a lookup and a row lock per row
-- written (about a quarter of Postgres's time per delivery) and protected
-- only deletion, which the code now does itself: deleting an endpoint
-- deletes its deliveries and their attempts in the same statement, pruning
-- deletes a delivery's attempts with it, and a retry whose endpoint is gone
-- deletes its delivery. The attempt log checks every delivery it writes
-- against its endpoint in the same statement.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_fkey;
ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_delivery_id_fkey;
