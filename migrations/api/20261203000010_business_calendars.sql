-- Business calendars (CONTRACT §7): the hours SLA targets count. `hours` and
-- `holidays` are kept as the API wrote them (validated on the way in:
-- a known IANA zone, intervals that end after they start and do not overlap).
CREATE TABLE business_calendars (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    time_zone       text NOT NULL,
    hours           jsonb NOT NULL,
    holidays        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX business_calendars_name_key ON business_calendars (organization_id, lower(name));
