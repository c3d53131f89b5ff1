-- Webhooks (CONTRACT §3): endpoints, one delivery per (endpoint, event), and
-- every attempt. The api owns this schema; the dispatcher reads and writes it.

CREATE TABLE webhook_endpoints (
    id                      uuid PRIMARY KEY,
    organization_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    url                     text NOT NULL,
    -- event types, or '*' for all
    events                  text[] NOT NULL,
    -- AES-256-GCM under TICKITI_MASTER_KEY (tickiti-crypto SecretBox): never plaintext
    secret_sealed           bytea NOT NULL,
    -- the secret before the last rotation: still signs until 24 h after rotated_at
    previous_secret_sealed  bytea,
    secret_rotated_at       timestamptz,
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'failed')),
    -- why the dispatcher set 'failed' or 'disabled' (e.g. 410 Gone)
    status_reason           text,
    payload_format          text NOT NULL DEFAULT 'nested' CHECK (payload_format IN ('nested', 'flat')),
    description             text,
    -- seconds before each attempt; NULL: WEBHOOK_RETRY_SCHEDULE
    retry_schedule          integer[] CHECK (retry_schedule IS NULL OR cardinality(retry_schedule) BETWEEN 1 AND 20),
    rate_limit_per_second   integer CHECK (rate_limit_per_second IS NULL OR rate_limit_per_second > 0),
    -- extra static headers: {"Name": "value"}
    headers                 jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org_idx ON webhook_endpoints (organization_id, id DESC);
-- the dispatcher's fan-out: active endpoints of an organization
CREATE INDEX webhook_endpoints_active_idx ON webhook_endpoints (organization_id) WHERE status = 'active';

CREATE TABLE webhook_deliveries (
    -- UUID v7, stable across retries: X-Tickiti-Delivery and webhook-id
    id                  uuid PRIMARY KEY,
    endpoint_id         uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    event_id            uuid NOT NULL,
    event_type          text NOT NULL,
    -- the event envelope; rendered nested or flat at send time
    payload             jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'success', 'retrying', 'failed')),
    -- attempts started so far
    attempt             integer NOT NULL DEFAULT 0,
    -- set while an attempt runs: a worker claimed it until then
    locked_until        timestamptz,
    -- set when its work message was handed to the broker; NULL: waiting to be queued
    queued_at           timestamptz,
    -- asked for by a person (test, resend, recover): one attempt, sent even to a failed endpoint
    manual              boolean NOT NULL DEFAULT false,
    next_attempt_at     timestamptz,
    response_code       integer,
    response_time_ms    integer,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- a re-consumed event never makes a second delivery
    CONSTRAINT webhook_deliveries_endpoint_event_key UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
-- the dispatcher's sweeper: deliveries waiting to be queued
CREATE INDEX webhook_deliveries_unqueued_idx ON webhook_deliveries (created_at)
    WHERE queued_at IS NULL AND status IN ('pending', 'retrying');

CREATE TABLE webhook_attempts (
    id                  uuid PRIMARY KEY,
    delivery_id         uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt             integer NOT NULL,
    response_code       integer,
    response_time_ms    integer,
    -- at most 4 KiB of the receiver's answer
    response_body       text CHECK (octet_length(response_body) <= 4096),
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
