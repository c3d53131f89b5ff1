-- SLA policies (CONTRACT §7): the first matching policy by position applies
-- to a ticket; targets per priority and metric, kept as the API wrote them.
CREATE TABLE sla_policies (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    position        integer NOT NULL,
    -- empty: every queue
    queue_ids       uuid[] NOT NULL,
    -- NULL: around the clock; a calendar in use cannot be deleted
    calendar_id     uuid REFERENCES business_calendars (id) ON DELETE RESTRICT,
    pause_statuses  text[] NOT NULL,
    targets         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sla_policies_name_key ON sla_policies (organization_id, lower(name));
CREATE INDEX sla_policies_org_position_idx ON sla_policies (organization_id, position, id);
