-- The dispatcher now sends an event's first attempts itself, right after
-- creating the deliveries with that attempt claimed (see
-- tickiti_store::webhooks::insert_claimed). A sender that dies leaves its
-- claims to run out; the sweeper finds them through this index.
CREATE INDEX webhook_deliveries_claims_idx ON webhook_deliveries (locked_until)
    WHERE locked_until IS NOT NULL AND status IN ('pending', 'retrying');

-- Nothing looks deliveries up by event alone any more (the unique
-- (endpoint_id, event_id) key serves the fan-out); one index less to write
-- per delivery.
DROP INDEX webhook_deliveries_event_idx;

-- Pruning walks the primary key (UUID v7 ids are in creation order) and
-- nothing else reads deliveries by creation time alone.
DROP INDEX webhook_deliveries_created_idx;
