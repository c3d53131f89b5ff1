-- Each event's envelope is stored once, however many endpoints it goes to.
-- It used to be copied into every delivery row, and every update of a
-- delivery (claim, attempt recorded) copied it again: with ten endpoints an
-- event's payload was written twenty times. Now a delivery row stays narrow.
CREATE TABLE webhook_events (
    -- the event's id (the outbox id; UUID v7 for api events)
    id                  uuid PRIMARY KEY,
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- the event envelope; rendered nested or flat at send time
    payload             jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO webhook_events (id, organization_id, payload, created_at)
SELECT DISTINCT ON (event_id) event_id, organization_id, payload, created_at
FROM webhook_deliveries
ORDER BY event_id, created_at;

ALTER TABLE webhook_deliveries DROP COLUMN payload;

-- The same uniqueness with the event first: pruning finds an event's
-- remaining deliveries through it, and new keys land at the index's right
-- edge (event ids grow with time) instead of all over it. No foreign key to
-- webhook_events: its check would lock the event row once per delivery;
-- deliveries are written together with their event, and pruning removes an
-- event only once no delivery refers to it.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_event_key;
ALTER TABLE webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_event_endpoint_key UNIQUE (event_id, endpoint_id);

-- A delivery's organization is its endpoint's, and deleting an organization
-- deletes its endpoints and, through them, their deliveries: this second
-- check (and lock of the organization's row) per delivery protected nothing.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_organization_id_fkey;
