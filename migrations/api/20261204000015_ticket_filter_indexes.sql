-- The ticket list's and the perspective counts' common shapes, flat as an
-- organization grows.
--
-- An assignee's (or the unassigned) tickets in some statuses ("Mine",
-- "Unassigned"), and a queue's: each leads with the column that narrows
-- most, so a status + queue + assignee filter reads the few rows it shows
-- instead of every open ticket of the organization. (organization_id,
-- assignee_id, status) serves what (organization_id, assignee_id) did.
DROP INDEX tickets_assignee_idx;
CREATE INDEX tickets_assignee_status_idx ON tickets (organization_id, assignee_id, status);
CREATE INDEX tickets_queue_status_idx ON tickets (organization_id, queue_id, status);
-- The open tickets with their sort key: a status filter joined with
-- something else ("Escalated": the breached clocks) is answered from the
-- index alone, without a visit to each open ticket's row.
DROP INDEX tickets_org_status_idx;
CREATE INDEX tickets_org_status_idx ON tickets (organization_id, status, updated_at DESC, id DESC);
