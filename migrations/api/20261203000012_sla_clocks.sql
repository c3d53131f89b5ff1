-- Service-level clocks and escalations (CONTRACT §7).

-- One clock per ticket and metric, written in the transaction of the ticket
-- change that moved it. `cycle` counts the metric's cycles on the ticket (a
-- new next-response cycle starts with each contact message after a staff
-- reply); `fire_at` is the next stage's time while one can still fire (the
-- dispatcher's scan walks its index), NULL otherwise; `view` is the clock
-- as ticket answers show it (written with the clock, so reading a ticket
-- list costs no computation per clock).
CREATE TABLE sla_clocks (
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    metric          text NOT NULL CHECK (metric IN ('first_response', 'next_response', 'resolution')),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    cycle           integer NOT NULL,
    policy_id       uuid REFERENCES sla_policies (id) ON DELETE SET NULL,
    within_ms       bigint NOT NULL,
    warn_before_ms  bigint,
    spent_ms        bigint NOT NULL,
    running_since   timestamptz,
    due_at          timestamptz,
    warn_at         timestamptz,
    warned_at       timestamptz,
    breached_at     timestamptz,
    fulfilled_at    timestamptz,
    fire_at         timestamptz,
    view            jsonb NOT NULL,
    PRIMARY KEY (ticket_id, metric)
);
CREATE INDEX sla_clocks_fire_idx ON sla_clocks (fire_at) WHERE fire_at IS NOT NULL;
-- The `escalated=true` filter: tickets with a breached clock not yet met.
CREATE INDEX sla_clocks_escalated_idx ON sla_clocks (organization_id, ticket_id)
    WHERE breached_at IS NOT NULL AND fulfilled_at IS NULL;

-- Every stage that fired, once per ticket, metric, cycle and stage: the
-- unique key is what makes several dispatchers (or a restarted one) fire
-- each stage exactly once.
CREATE TABLE sla_escalations (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    metric          text NOT NULL,
    cycle           integer NOT NULL,
    stage           text NOT NULL CHECK (stage IN ('warning', 'breach', 'manager_attention')),
    policy_id       uuid REFERENCES sla_policies (id) ON DELETE SET NULL,
    due_at          timestamptz,
    fired_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (ticket_id, metric, cycle, stage)
);

-- Queue managers, the "inbox managers" of seed 001.
ALTER TABLE queues ADD COLUMN manager_ids uuid[] NOT NULL DEFAULT '{}';

-- Every organization has an Escalated perspective (new ones get it at creation).
INSERT INTO perspectives (id, organization_id, user_id, name, filters, position)
SELECT gen_random_uuid(), o.id, NULL, 'Escalated',
       '{"status": "new,open,pending,on_hold", "escalated": "true"}'::jsonb,
       COALESCE((SELECT max(p.position) + 1 FROM perspectives p
                 WHERE p.organization_id = o.id AND p.user_id IS NULL), 0)
FROM organizations o
WHERE NOT EXISTS (SELECT 1 FROM perspectives p
                  WHERE p.organization_id = o.id AND p.user_id IS NULL AND lower(p.name) = 'escalated');
