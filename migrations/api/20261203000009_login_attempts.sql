-- Sign-in throttling shared by every api process (issue 12): one row per
-- key (an e-mail from one client address, or a client address alone). Each
-- attempt is counted when it starts, so parallel guesses cannot all slip
-- through before the first failure is recorded; a success deletes the row.
CREATE TABLE login_attempts (
    key text PRIMARY KEY,
    attempts integer NOT NULL,
    last_attempt_at timestamptz NOT NULL
);
CREATE INDEX login_attempts_last_idx ON login_attempts (last_attempt_at);
