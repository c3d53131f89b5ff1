//! Tickets, their filters and the optimistic-concurrency `version`.

use sqlx::types::Json;
use sqlx::{PgConnection, QueryBuilder};
use tickiti_domain::sla::{ClockView, MetricClock};
use tickiti_domain::ticket::{ContactRef, TicketOut};
use tickiti_domain::{
    AssigneeFilter, EventEnvelope, Priority, TicketFilter, TicketOrder, TicketStatus,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::contacts::Contact;
use crate::messages::Message;
use crate::{Page, Result};

/// A ticket with its contact's name and address.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Ticket {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Per-organization number.
    pub number: i64,
    /// Code, e.g. `ACME-42`.
    pub code: String,
    /// Subject line.
    pub subject: String,
    /// Status spelling.
    pub status: String,
    /// Priority spelling.
    pub priority: String,
    /// Queue.
    pub queue_id: Option<Uuid>,
    /// Assigned user.
    pub assignee_id: Option<Uuid>,
    /// Contact.
    pub contact_id: Uuid,
    /// Contact's name.
    pub contact_name: Option<String>,
    /// Contact's address.
    pub contact_email: String,
    /// Tags, lower-case.
    pub tags: Vec<String>,
    /// Bumped by every change, for `ETag`/`If-Match`.
    pub version: i32,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Its service-level clocks as answers show them (CONTRACT §7).
    pub sla: Json<Vec<ClockView>>,
}

impl From<Ticket> for TicketOut {
    fn from(t: Ticket) -> Self {
        TicketOut {
            id: t.id,
            number: t.number,
            code: t.code,
            subject: t.subject,
            // The database's CHECK constraints admit only these spellings.
            status: t.status.parse().unwrap_or(TicketStatus::Open),
            priority: t.priority.parse().unwrap_or(Priority::Normal),
            queue_id: t.queue_id,
            assignee_id: t.assignee_id,
            contact_id: t.contact_id,
            contact: ContactRef {
                id: t.contact_id,
                name: t.contact_name,
                email: t.contact_email,
            },
            tags: t.tags,
            version: t.version,
            sla: t.sla.0,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Everything opening a ticket writes.
#[derive(Debug)]
pub struct Opening<'a> {
    /// The ticket, version 1; its `created_at` (equal to `updated_at`) also
    /// stamps the audit entry.
    pub ticket: &'a Ticket,
    /// Its contact, when new (otherwise the contact exists already), with
    /// its own `created_at` (also its `updated_at`).
    pub new_contact: Option<&'a Contact>,
    /// Who opened it, for the `ticket.created` audit entry.
    pub actor_user_id: Option<Uuid>,
    /// The audit entry's detail.
    pub audit: &'a serde_json::Value,
    /// Its first message.
    pub message: Option<&'a Message>,
    /// Events for the outbox (may be empty when the caller appends them later
    /// in its transaction).
    pub events: &'a [EventEnvelope],
    /// Its service-level clocks ([`crate::sla_clocks::opening`]).
    pub clocks: &'a [MetricClock],
}

/// Writes an opening in one statement: one round trip instead of one per
/// row, and atomic without a transaction of its own (the foreign keys of the
/// ticket and message on a new contact are checked at the statement's end).
/// A new contact whose address another request just took fails with a
/// conflict on [`contacts::EMAIL_KEY`](crate::contacts::EMAIL_KEY).
pub async fn open(conn: &mut PgConnection, opening: &Opening<'_>) -> Result<()> {
    let ticket = opening.ticket;
    let contact = opening.new_contact;
    let message = opening.message;
    let events = crate::outbox::Rows::of(opening.events)?;
    let k = crate::sla_clocks::Rows::of(opening.clocks);
    sqlx::query!(
        "WITH new_contact AS (
             INSERT INTO contacts (id, organization_id, email, name, created_at, updated_at)
             SELECT $13, $2, $14, $15, $28, $28 WHERE $13::uuid IS NOT NULL
         ), ticket AS (
             INSERT INTO tickets (id, organization_id, number, code, subject, status, priority,
                                  queue_id, assignee_id, contact_id, tags, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
         ), audit AS (
             INSERT INTO ticket_audit (id, organization_id, ticket_id, actor_user_id, action, changes, created_at)
             VALUES ($16, $2, $1, $17, 'ticket.created', $18, $12)
         ), message AS (
             INSERT INTO messages (id, organization_id, ticket_id, author_user_id, author_contact_id,
                                   visibility, body, created_at)
             SELECT $19, $2, $1, $20, $21, $22, $23, $29 WHERE $19::uuid IS NOT NULL
         ), clocks AS (
             INSERT INTO sla_clocks (ticket_id, organization_id, metric, cycle, policy_id, within_ms,
                                     warn_before_ms, spent_ms, running_since, due_at, warn_at,
                                     warned_at, breached_at, fulfilled_at, fire_at, view)
             SELECT $1, $2, * FROM UNNEST($30::text[], $31::int[], $32::uuid[], $33::bigint[],
                                          $34::bigint[], $35::bigint[], $36::timestamptz[],
                                          $37::timestamptz[], $38::timestamptz[], $39::timestamptz[],
                                          $40::timestamptz[], $41::timestamptz[], $42::timestamptz[],
                                          $43::jsonb[])
         )
         INSERT INTO outbox (id, organization_id, event_type, payload)
         SELECT * FROM UNNEST($24::uuid[], $25::uuid[], $26::text[], $27::jsonb[])",
        ticket.id,
        ticket.organization_id,
        ticket.number,
        ticket.code,
        ticket.subject,
        ticket.status,
        ticket.priority,
        ticket.queue_id,
        ticket.assignee_id,
        ticket.contact_id,
        &ticket.tags,
        ticket.created_at,
        contact.map(|c| c.id),
        contact.map(|c| c.email.as_str()),
        contact.and_then(|c| c.name.as_deref()),
        tickiti_domain::new_id(),
        opening.actor_user_id,
        opening.audit,
        message.map(|m| m.id),
        message.and_then(|m| m.author_user_id),
        message.and_then(|m| m.author_contact_id),
        message.map(|m| m.visibility.as_str()),
        message.map(|m| m.body.as_str()),
        &events.ids,
        &events.organization_ids,
        &events.types,
        &events.payloads,
        contact.map(|c| c.created_at),
        message.map(|m| m.created_at),
        &k.metrics,
        &k.cycles,
        &k.policy_ids as &[Option<Uuid>],
        &k.within_ms,
        &k.warn_before_ms as &[Option<i64>],
        &k.spent_ms,
        &k.running_since as &[Option<OffsetDateTime>],
        &k.due_at as &[Option<OffsetDateTime>],
        &k.warn_at as &[Option<OffsetDateTime>],
        &k.warned_at as &[Option<OffsetDateTime>],
        &k.breached_at as &[Option<OffsetDateTime>],
        &k.fulfilled_at as &[Option<OffsetDateTime>],
        &k.fire_at as &[Option<OffsetDateTime>],
        &k.views
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A ticket of the organization; `lock` takes a row lock until the
/// transaction ends (read-modify-write without lost updates).
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<Ticket>> {
    // FOR UPDATE OF t: lock the ticket, not its contact.
    let row = if lock {
        sqlx::query_as!(
            Ticket,
            "SELECT t.id, t.organization_id, t.number, t.code, t.subject, t.status, t.priority,
                    t.queue_id, t.assignee_id, t.contact_id, c.name AS contact_name, c.email AS contact_email,
                    t.tags, t.version, t.created_at, t.updated_at,
                    COALESCE((SELECT jsonb_agg(k.view ORDER BY k.metric) FROM sla_clocks k WHERE k.ticket_id = t.id), '[]') AS \"sla!: Json<Vec<ClockView>>\"
             FROM tickets t JOIN contacts c ON c.id = t.contact_id
             WHERE t.organization_id = $1 AND t.id = $2
             FOR UPDATE OF t",
            organization_id,
            id
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_as!(
            Ticket,
            "SELECT t.id, t.organization_id, t.number, t.code, t.subject, t.status, t.priority,
                    t.queue_id, t.assignee_id, t.contact_id, c.name AS contact_name, c.email AS contact_email,
                    t.tags, t.version, t.created_at, t.updated_at,
                    COALESCE((SELECT jsonb_agg(k.view ORDER BY k.metric) FROM sla_clocks k WHERE k.ticket_id = t.id), '[]') AS \"sla!: Json<Vec<ClockView>>\"
             FROM tickets t JOIN contacts c ON c.id = t.contact_id
             WHERE t.organization_id = $1 AND t.id = $2",
            organization_id,
            id
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row)
}

/// Writes a ticket's editable fields back, bumping `version` and
/// `updated_at`; returns the stored ticket.
pub async fn save(conn: &mut PgConnection, ticket: &Ticket) -> Result<Ticket> {
    let row = sqlx::query!(
        "UPDATE tickets SET subject = $3, status = $4, priority = $5, queue_id = $6,
                assignee_id = $7, tags = $8, version = version + 1, updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING version, updated_at",
        ticket.organization_id,
        ticket.id,
        ticket.subject,
        ticket.status,
        ticket.priority,
        ticket.queue_id,
        ticket.assignee_id,
        &ticket.tags
    )
    .fetch_one(conn)
    .await?;
    Ok(Ticket {
        version: row.version,
        updated_at: row.updated_at,
        ..ticket.clone()
    })
}

/// Marks a ticket changed without changing a field (a message was added
/// or removed); its new version, `None` when there is no such ticket.
pub async fn touch(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<i32>> {
    let version = sqlx::query_scalar!(
        "UPDATE tickets SET version = version + 1, updated_at = now()
         WHERE organization_id = $1 AND id = $2 RETURNING version",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(version)
}

/// Deletes a ticket and, by cascade, its messages, mentions and time entries.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM tickets WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The filter's parameters in the shape the static SQL below takes.
struct FilterArgs {
    statuses: Option<Vec<String>>,
    priorities: Option<Vec<String>>,
    unassigned: bool,
    assignee: Option<Uuid>,
}

impl FilterArgs {
    fn new(filter: &TicketFilter, me: Uuid) -> Self {
        let (unassigned, assignee) = match filter.assignee {
            AssigneeFilter::Any => (false, None),
            AssigneeFilter::Me => (false, Some(me)),
            AssigneeFilter::Unassigned => (true, None),
            AssigneeFilter::User(id) => (false, Some(id)),
        };
        FilterArgs {
            statuses: filter
                .status
                .as_ref()
                .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect()),
            priorities: filter
                .priority
                .as_ref()
                .map(|p| p.iter().map(|p| p.as_str().to_owned()).collect()),
            unassigned,
            assignee,
        }
    }
}

/// Where a ticket list continues: the last row's sort value and id, in the
/// filter's [`TicketOrder`] (a time in microseconds since the epoch, or the
/// priority's rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketKey {
    /// The sort value of the last row seen.
    pub value: i64,
    /// Its id, the tie-breaker.
    pub id: Uuid,
}

impl TicketKey {
    /// The key of `ticket` in `order`.
    pub fn of(order: TicketOrder, ticket: &Ticket) -> TicketKey {
        let micros =
            |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
        let value = match order {
            TicketOrder::LastActivity => micros(ticket.updated_at),
            TicketOrder::Newest | TicketOrder::Oldest => micros(ticket.created_at),
            TicketOrder::Priority => priority_rank(&ticket.priority),
        };
        TicketKey {
            value,
            id: ticket.id,
        }
    }

    fn time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.value) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The priority's place in `-priority` order, as the SQL below computes it.
fn priority_rank(priority: &str) -> i64 {
    match priority {
        "urgent" => 3,
        "high" => 2,
        "normal" => 1,
        _ => 0,
    }
}

const PRIORITY_RANK_SQL: &str = "(CASE t.priority WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 \
     WHEN 'normal' THEN 1 ELSE 0 END)";

/// Appends the filter's conditions on `tickets t` (only those it has, so
/// each shape gets a plan of its own that can use the index made for it).
fn push_conditions(
    sql: &mut QueryBuilder<sqlx::Postgres>,
    organization_id: Uuid,
    filter: &TicketFilter,
    me: Uuid,
) {
    let args = FilterArgs::new(filter, me);
    sql.push("t.organization_id = ").push_bind(organization_id);
    if let Some(statuses) = args.statuses {
        sql.push(" AND t.status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
    if let Some(priorities) = args.priorities {
        sql.push(" AND t.priority = ANY(")
            .push_bind(priorities)
            .push(")");
    }
    if let Some(queue) = filter.queue_id {
        sql.push(" AND t.queue_id = ").push_bind(queue);
    }
    if args.unassigned {
        sql.push(" AND t.assignee_id IS NULL");
    }
    if let Some(assignee) = args.assignee {
        sql.push(" AND t.assignee_id = ").push_bind(assignee);
    }
    if let Some(contact) = filter.contact_id {
        sql.push(" AND t.contact_id = ").push_bind(contact);
    }
    if let Some(tag) = &filter.tag {
        sql.push(" AND t.tags @> ARRAY[")
            .push_bind(tag.clone())
            .push("::text]");
    }
    if let Some(q) = &filter.q {
        // The matching ids from each GIN index, not a test of every ticket
        // of the organization against its messages.
        sql.push(" AND t.id IN (SELECT s.id FROM tickets s WHERE s.organization_id = ")
            .push_bind(organization_id)
            .push(" AND s.search @@ websearch_to_tsquery('simple', ")
            .push_bind(q.clone())
            .push(") UNION ALL SELECT m.ticket_id FROM messages m WHERE m.organization_id = ")
            .push_bind(organization_id)
            .push(" AND m.search @@ websearch_to_tsquery('simple', ")
            .push_bind(q.clone())
            .push("))");
    }
    if let Some(since) = filter.updated_since {
        sql.push(" AND t.updated_at >= ").push_bind(since);
    }
    if filter.escalated {
        sql.push(" AND t.id IN (SELECT k.ticket_id FROM sla_clocks k WHERE k.organization_id = ")
            .push_bind(organization_id)
            .push(" AND k.breached_at IS NOT NULL AND k.fulfilled_at IS NULL)");
    }
}

/// A page of the organization's tickets matching `filter`, in its order,
/// after `after`. `me` resolves `assignee_id=me`.
///
/// Built per request with only the conditions the filter has, so each shape
/// gets a plan of its own (one statement with every condition behind an
/// `IS NULL` test is planned once for all of them, and badly), and walks the
/// index of its order (a keyset on the sort value and the id, not an offset).
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    filter: &TicketFilter,
    me: Uuid,
    after: Option<TicketKey>,
    limit: i64,
) -> Result<Page<Ticket>> {
    let (key, direction) = match filter.order {
        TicketOrder::LastActivity => ("t.updated_at", "DESC"),
        TicketOrder::Newest => ("t.created_at", "DESC"),
        TicketOrder::Oldest => ("t.created_at", "ASC"),
        TicketOrder::Priority => (PRIORITY_RANK_SQL, "DESC"),
    };
    // The page's tickets first, then their contacts and clocks: joined
    // before the limit, a filter matching thousands ("Escalated") would
    // look up every match's contact to show fifty.
    let mut sql = QueryBuilder::new(
        "SELECT t.id, t.organization_id, t.number, t.code, t.subject, t.status, t.priority,
                t.queue_id, t.assignee_id, t.contact_id, c.name AS contact_name, c.email AS contact_email,
                t.tags, t.version, t.created_at, t.updated_at,
                COALESCE((SELECT jsonb_agg(k.view ORDER BY k.metric) FROM sla_clocks k WHERE k.ticket_id = t.id), '[]') AS sla
         FROM (SELECT t.id, t.organization_id, t.number, t.code, t.subject, t.status, t.priority,
                      t.queue_id, t.assignee_id, t.contact_id, t.tags, t.version, t.created_at, t.updated_at
               FROM tickets t
               WHERE ",
    );
    push_conditions(&mut sql, organization_id, filter, me);
    if let Some(after) = after {
        let beyond = if direction == "DESC" { "<" } else { ">" };
        sql.push(format_args!(" AND ({key}, t.id) {beyond} ("));
        match filter.order {
            TicketOrder::Priority => sql.push_bind(after.value),
            _ => sql.push_bind(after.time()),
        };
        sql.push(", ").push_bind(after.id).push(")");
    }
    sql.push(format_args!(
        " ORDER BY {key} {direction}, t.id {direction} LIMIT "
    ))
    .push_bind(limit + 1);
    sql.push(format_args!(
        ") t JOIN contacts c ON c.id = t.contact_id ORDER BY {key} {direction}, t.id {direction}"
    ));
    // Planned for these values every time: a cached generic plan would pick
    // one access path for every organization's size and every assignee.
    let rows = sql
        .build_query_as::<Ticket>()
        .persistent(false)
        .fetch_all(conn)
        .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

/// How many of the organization's tickets match each filter (`me` resolves
/// `assignee_id=me`), in one statement however many filters: counting all of
/// an organization's perspectives is one round trip, not one per perspective.
/// Each count is a subquery with only its filter's conditions, as in
/// [`list`], so each uses the index made for its shape.
pub async fn count_each(
    conn: &mut PgConnection,
    organization_id: Uuid,
    filters: &[(&TicketFilter, Uuid)],
) -> Result<Vec<i64>> {
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = QueryBuilder::new("SELECT ARRAY[");
    for (i, (filter, me)) in filters.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(SELECT count(*) FROM tickets t WHERE ");
        push_conditions(&mut sql, organization_id, filter, *me);
        sql.push(")");
    }
    sql.push("]::bigint[]");
    let counts: Vec<i64> = sql
        .build_query_scalar()
        .persistent(false)
        .fetch_one(conn)
        .await?;
    Ok(counts)
}
