-- Interventions (CONTRACT §4, seed 001): definitions, one payload per
-- intervention ticket, the epilog calls made when staff submit, and every
-- attempt of those calls. The api owns this schema; the dispatcher makes the
-- epilog calls and applies final objects.

CREATE TABLE interventions (
    id                      uuid PRIMARY KEY,
    organization_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- immutable after creation (the api refuses a change)
    name                    text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    title                   text NOT NULL,
    -- where its tickets go; NULL: no queue (or the queue was deleted)
    queue_id                uuid REFERENCES queues (id) ON DELETE SET NULL,
    notify_inbox_managers   boolean NOT NULL DEFAULT false,
    fma_inbox_managers      boolean NOT NULL DEFAULT false,
    remote_name             text,
    remote_epilog_url       text,
    -- AES-256-GCM under TICKITI_MASTER_KEY (tickiti-crypto SecretBox): never plaintext
    remote_bearer_token_sealed bytea,
    remote_timeout_seconds  integer NOT NULL DEFAULT 10 CHECK (remote_timeout_seconds BETWEEN 1 AND 120),
    remote_enabled          boolean NOT NULL DEFAULT false,
    -- refused by POST /intervention-tickets when false
    enabled                 boolean NOT NULL DEFAULT true,
    -- [{"type": "text"|"checkbox"|"label"|"hr", "key"?, "label"?}]
    fields                  jsonb NOT NULL DEFAULT '[]',
    -- MiniJinja sources, checked when saved
    template_private        text NOT NULL,
    template_public         text,
    template_final          text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX interventions_name_key ON interventions (organization_id, name);

CREATE TABLE intervention_payloads (
    id                      uuid PRIMARY KEY,
    organization_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- a definition with payloads cannot be deleted (disable it instead)
    intervention_id         uuid NOT NULL REFERENCES interventions (id) ON DELETE RESTRICT,
    ticket_id               uuid NOT NULL UNIQUE REFERENCES tickets (id) ON DELETE CASCADE,
    -- the remote system's id of this instance
    uid                     text NOT NULL,
    originator_email        text NOT NULL,
    -- the data bag (the request's data.data), edited by staff
    data                    jsonb NOT NULL,
    status                  text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'submitted', 'accepted')),
    -- the staff response of the last submit: a final object must name it
    response_id             uuid,
    -- the remote's final object, once applied
    final                   jsonb,
    submitted_at            timestamptz,
    accepted_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT intervention_payloads_uid_key UNIQUE (intervention_id, uid)
);

-- One epilog call per submit; its attempts below.
CREATE TABLE intervention_epilogs (
    id                      uuid PRIMARY KEY,
    organization_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    payload_id              uuid NOT NULL REFERENCES intervention_payloads (id) ON DELETE CASCADE,
    response_id             uuid NOT NULL,
    -- the data bag as submitted (the body of every attempt)
    data                    jsonb NOT NULL,
    status                  text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    -- attempts started so far
    attempt                 integer NOT NULL DEFAULT 0,
    next_attempt_at         timestamptz NOT NULL DEFAULT now(),
    -- set while an attempt runs: a dispatcher claimed it until then
    locked_until            timestamptz,
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intervention_epilogs_payload_idx ON intervention_epilogs (payload_id, id);
-- the dispatcher's sweeper: calls that are due
CREATE INDEX intervention_epilogs_open_idx ON intervention_epilogs (next_attempt_at)
    WHERE status IN ('pending', 'retrying');

CREATE TABLE intervention_epilog_attempts (
    id                      uuid PRIMARY KEY,
    epilog_id               uuid NOT NULL REFERENCES intervention_epilogs (id) ON DELETE CASCADE,
    payload_id              uuid NOT NULL REFERENCES intervention_payloads (id) ON DELETE CASCADE,
    attempt                 integer NOT NULL,
    -- ok, final_applied, final_already_applied, final_rejected, retry, gave_up
    outcome                 text NOT NULL,
    response_code           integer,
    response_time_ms        integer,
    -- at most 4 KiB of the remote's answer
    response_body           text CHECK (octet_length(response_body) <= 4096),
    error                   text,
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intervention_epilog_attempts_payload_idx ON intervention_epilog_attempts (payload_id, id);
