-- The install's pairing with its realtime service (CONTRACT §5, seed 000).
-- One row at most: an install is paired with one realtime service (any
-- number of its processes share the pairing). The organization whose admin
-- paired owns it: only its admins may re-pair or unbind; every organization's
-- staff get browser tokens from it.
--
-- The node key signs browser tokens; it is stored sealed (AES-256-GCM under
-- TICKITI_MASTER_KEY, tickiti_crypto::SecretBox). The pin is never stored:
-- it is shown once, and only its slow hash goes to the realtime service.
CREATE TABLE realtime_registrations (
    install_id      uuid PRIMARY KEY,
    singleton       boolean NOT NULL DEFAULT true CHECK (singleton),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'bound')),
    node_key_sealed bytea NOT NULL,
    pin_expires_at  timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    bound_at        timestamptz,
    CONSTRAINT realtime_registrations_singleton UNIQUE (singleton)
);
