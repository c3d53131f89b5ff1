-- The ticket list's orders (CONTRACT §2 `sort`): last activity first is the
-- default, so each order walks an index of its own key, then the id (the
-- keyset cursor's tie-breaker).
CREATE INDEX tickets_org_updated_idx ON tickets (organization_id, updated_at DESC, id DESC);
CREATE INDEX tickets_org_created_idx ON tickets (organization_id, created_at, id);
