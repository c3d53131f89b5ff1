-- tickiti-realtime's own database: its pairings with a Tickiti install
-- (CONTRACT §5). Migrations are tracked in _sqlx_realtime_migrations, so this
-- set can share a database with the api's (tests, small installs).
--
-- state: pending (waiting for `tickiti-realtime pair PIN`), bound (the one
-- pairing whose node key signs browser tokens), expired (10 minutes passed),
-- voided (5 wrong pins), replaced (a newer pairing request), unbound (the api
-- unbound it, or another pairing was bound), cancelled (the api withdrew it
-- while pending).
--
-- The node key is kept in clear: the realtime service has no master key of
-- its own (TICKITI_MASTER_KEY belongs to the api and dispatcher), this
-- database is private to it, and unpairing revokes the key. The pin is kept
-- only as an argon2id hash and cleared once the pairing ends.
CREATE TABLE realtime_pairings (
    install_id  uuid PRIMARY KEY,
    node_key    bytea NOT NULL CHECK (octet_length(node_key) = 32),
    pin_hash    text NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'bound', 'expired', 'voided', 'replaced', 'unbound', 'cancelled')),
    attempts    integer NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    bound_at    timestamptz,
    ended_at    timestamptz
);

-- At most one pairing waits for its pin, and at most one is bound.
CREATE UNIQUE INDEX realtime_pairings_one_pending ON realtime_pairings ((true)) WHERE state = 'pending';
CREATE UNIQUE INDEX realtime_pairings_one_bound ON realtime_pairings ((true)) WHERE state = 'bound';
