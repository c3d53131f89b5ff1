-- Notifications (CONTRACT §8).

-- A time-ordered id (UUID v7) made by Postgres 15, which has no `uuidv7()`:
-- notifications are inserted by one statement that finds their recipients,
-- so their ids cannot come from the application, and lists page by id.
-- A random v4 id with its first 48 bits replaced by the Unix time in
-- milliseconds and its version nibble turned from 4 into 7.
CREATE FUNCTION tickiti_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- One row per person told of one change: written in the change's own
-- transaction (with the `notification.created` event for the person's
-- browsers), so a committed change has its notifications and a rolled-back
-- one has none. `event_id` is the event that caused it: the unique key makes
-- deriving twice from one event harmless. `in_app` says whether the
-- notification is listed and framed (the person's preference); the e-mail
-- columns are the dispatcher's: `pending` rows are sent once
-- `NOTIFY_EMAIL_DELAY` after `created_at` (dropped if read by then),
-- retried at `email_retry_at`.
CREATE TABLE notifications (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('ticket.assigned', 'ticket.created', 'message.created',
                                                  'mention.created', 'escalation.warning',
                                                  'escalation.breach', 'intervention.created')),
    ticket_id       uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL,
    in_app          boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,
    email_status    text NOT NULL CHECK (email_status IN ('none', 'pending', 'sent', 'dropped', 'failed', 'unsent')),
    email_attempts  integer NOT NULL DEFAULT 0,
    email_retry_at  timestamptz,
    email_error     text,
    email_sent_at   timestamptz,
    UNIQUE (event_id, user_id)
);
-- A person's list, newest first; the unread count.
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC) WHERE in_app;
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE in_app AND read_at IS NULL;
-- The dispatcher's scan: only e-mails still to send (a small set).
CREATE INDEX notifications_email_idx ON notifications (created_at) WHERE email_status = 'pending';
CREATE INDEX notifications_ticket_idx ON notifications (ticket_id);

-- Per person and kind: which channels (no row: both on).
CREATE TABLE notification_preferences (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    text NOT NULL,
    in_app  boolean NOT NULL,
    email   boolean NOT NULL,
    PRIMARY KEY (user_id, kind)
);
