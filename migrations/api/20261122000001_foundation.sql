-- Foundation schema: organizations, people, tickets and everything hanging off them,
-- the audit trail, idempotency keys and the transactional outbox.
-- Ids are UUID v7 made in Rust (Postgres 15 has no uuidv7()).

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- prefix of ticket codes, e.g. ACME in ACME-42
    code_prefix text NOT NULL CHECK (code_prefix ~ '^[A-Z0-9]{1,10}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                     uuid PRIMARY KEY,
    organization_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email                  text NOT NULL,
    name                   text NOT NULL,
    password_hash          text NOT NULL,
    role                   text NOT NULL CHECK (role IN ('admin', 'agent')),
    realtime_notifications boolean NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- an e-mail signs in to exactly one account
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_org_idx ON users (organization_id);

CREATE TABLE api_tokens (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL,
    -- SHA-256 of the secret: tokens carry 256 random bits, so a fast hash is enough
    token_hash      bytea NOT NULL UNIQUE,
    -- first characters of the token, to tell tokens apart in a list
    token_prefix    text NOT NULL,
    abilities       text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value
    id_hash         bytea PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE queues (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX queues_name_key ON queues (organization_id, lower(name));

CREATE TABLE contacts (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL,
    name            text,
    company         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_email_key ON contacts (organization_id, lower(email));

CREATE TABLE tickets (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    number          bigint NOT NULL,
    code            text NOT NULL,
    subject         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed')),
    priority        text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    queue_id        uuid REFERENCES queues (id),
    assignee_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    contact_id      uuid NOT NULL REFERENCES contacts (id),
    tags            text[] NOT NULL DEFAULT '{}',
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    search          tsvector GENERATED ALWAYS AS (to_tsvector('simple', subject)) STORED,
    UNIQUE (organization_id, number)
);
CREATE INDEX tickets_org_id_idx ON tickets (organization_id, id DESC);
CREATE INDEX tickets_org_status_idx ON tickets (organization_id, status);
CREATE INDEX tickets_assignee_idx ON tickets (organization_id, assignee_id);
CREATE INDEX tickets_contact_idx ON tickets (contact_id);
CREATE INDEX tickets_tags_idx ON tickets USING gin (tags);
CREATE INDEX tickets_search_idx ON tickets USING gin (search);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    author_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    author_contact_id uuid REFERENCES contacts (id) ON DELETE SET NULL,
    visibility      text NOT NULL CHECK (visibility IN ('public', 'internal')),
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    search          tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
CREATE INDEX messages_ticket_idx ON messages (ticket_id, id);
CREATE INDEX messages_search_idx ON messages USING gin (search);

CREATE TABLE mentions (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    message_id      uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    author_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    UNIQUE (message_id, user_id)
);
CREATE INDEX mentions_user_idx ON mentions (user_id, acknowledged_at, id DESC);

CREATE TABLE time_entries (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    minutes         integer NOT NULL CHECK (minutes BETWEEN 1 AND 100000),
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX time_entries_ticket_idx ON time_entries (ticket_id, id);

CREATE TABLE perspectives (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- NULL: shared with the whole organization; else private to this user
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL,
    filters         jsonb NOT NULL,
    position        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX perspectives_org_idx ON perspectives (organization_id, position, id);

CREATE TABLE ticket_audit (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    ticket_id       uuid NOT NULL,
    actor_user_id   uuid REFERENCES users (id) ON DELETE SET NULL,
    action          text NOT NULL,
    changes         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- no foreign key on ticket_id: the trail outlives a deleted ticket
CREATE INDEX ticket_audit_ticket_idx ON ticket_audit (ticket_id, id);

CREATE TABLE idempotency_keys (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- "token:<id>" or "user:<id>": whoever sent the request
    principal       text NOT NULL,
    route           text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    -- NULL while the first request is still in flight
    response_status smallint,
    response_body   bytea,
    response_content_type text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, principal, route, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Transactional outbox: written in the same transaction as the change,
-- published by the relay, marked only after the broker confirmed.
CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
