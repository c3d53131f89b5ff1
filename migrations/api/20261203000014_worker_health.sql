-- Worker health (CONTRACT §8): each dispatcher and realtime process reports
-- in over the bus; the api keeps the last report of each. `reported_down`
-- is set by the one statement that finds a process silent for too long
-- (it emits `system.worker_health` "down" in its transaction, so exactly
-- once however many api processes watch), and cleared, with an "up" event,
-- by the next report of that process.
CREATE TABLE worker_heartbeats (
    process_id    text PRIMARY KEY,
    service       text NOT NULL,
    hostname      text NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    reported_down boolean NOT NULL DEFAULT false
);
