//! Notifications (CONTRACT §8): derived from a change's events in the
//! change's transaction, read and marked read by their person, e-mailed by
//! the dispatcher.

use sqlx::PgConnection;
use tickiti_domain::notification::{self, Candidate, Channels, NotificationKind, NotificationOut};
use tickiti_domain::{EventEnvelope, EventType};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A notification row with its ticket's code and subject (for the title).
#[derive(Debug, Clone)]
pub struct Notification {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Whom it tells.
    pub user_id: Uuid,
    /// Kind (a [`NotificationKind`] spelling).
    pub kind: String,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The ticket's code.
    pub code: String,
    /// The ticket's subject (as it is now).
    pub subject: String,
    /// Listed in the app.
    pub in_app: bool,
    /// When.
    pub created_at: OffsetDateTime,
    /// When read in the app.
    pub read_at: Option<OffsetDateTime>,
}

impl From<Notification> for NotificationOut {
    fn from(n: Notification) -> Self {
        // The column's CHECK admits only the kinds.
        let kind = n.kind.parse().unwrap_or(NotificationKind::MessageCreated);
        NotificationOut {
            id: n.id,
            user_id: n.user_id,
            kind,
            ticket_id: n.ticket_id,
            title: notification::title(kind, &n.code, &n.subject),
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

/// Writes the notifications `events` cause (none for their `actor`'s own
/// change) and returns the `notification.created` events for the outbox.
/// Recipients are resolved against the tickets as this transaction sees
/// them, so they must be written already. [`crate::outbox::append`] calls
/// this: every path that records a change notifies the same way.
pub async fn derive(
    conn: &mut PgConnection,
    events: &[EventEnvelope],
    actor: Option<Uuid>,
) -> Result<Vec<EventEnvelope>> {
    let candidates: Vec<(Uuid, Candidate)> = events
        .iter()
        .filter_map(|e| notification::candidate(e).map(|c| (e.organization_id, c)))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Candidates::default();
    for (org, candidate) in candidates {
        c.event_ids.push(candidate.event_id);
        c.organization_ids.push(org);
        c.kinds.push(candidate.kind.as_str().to_owned());
        c.ranks.push(candidate.kind.rank());
        c.ticket_ids.push(candidate.ticket_id);
        c.user_ids.push(candidate.user_id);
        c.to_assignee.push(candidate.to_assignee);
        c.to_managers.push(candidate.to_managers);
        c.not_users.push(candidate.not_user);
    }
    // One statement: whom each candidate names (a user, the ticket's
    // assignee, its queue's managers), less the actor; an intervention tells
    // its managers only when its definition asks; the person's preferences;
    // one notification per person and ticket (the kind that ranks first).
    let rows = sqlx::query_as!(
        Notification,
        r#"WITH c AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::uuid[],
                                  $6::uuid[], $7::bool[], $8::bool[], $9::uuid[])
                 AS c(event_id, organization_id, kind, rank, ticket_id, user_id, to_assignee,
                      to_managers, not_user)
         ), told AS (
             SELECT c.event_id, c.organization_id, c.kind, c.rank, c.ticket_id, r.user_id
             FROM c
             JOIN tickets t ON t.id = c.ticket_id AND t.organization_id = c.organization_id
             LEFT JOIN queues q ON q.id = t.queue_id
             CROSS JOIN LATERAL (
                 SELECT c.user_id WHERE c.user_id IS NOT NULL
                 UNION SELECT t.assignee_id WHERE c.to_assignee AND t.assignee_id IS NOT NULL
                 UNION SELECT m FROM unnest(q.manager_ids) AS m WHERE c.to_managers
             ) AS r (user_id)
             WHERE r.user_id IS DISTINCT FROM $10
               AND r.user_id IS DISTINCT FROM c.not_user
               AND (c.kind <> 'intervention.created' OR EXISTS (
                   SELECT 1 FROM intervention_payloads p JOIN interventions i ON i.id = p.intervention_id
                   WHERE p.ticket_id = t.id AND (i.notify_inbox_managers OR i.fma_inbox_managers)))
         ), chosen AS (
             SELECT DISTINCT ON (told.user_id, told.ticket_id)
                    told.event_id, told.organization_id, told.user_id, told.kind, told.ticket_id,
                    coalesce(p.in_app, true) AS in_app,
                    coalesce(p.email, true) AND NOT u.realtime_notifications AS email
             FROM told
             JOIN users u ON u.id = told.user_id AND u.organization_id = told.organization_id
             LEFT JOIN notification_preferences p ON p.user_id = u.id AND p.kind = told.kind
             WHERE coalesce(p.in_app, true) OR (coalesce(p.email, true) AND NOT u.realtime_notifications)
             ORDER BY told.user_id, told.ticket_id, told.rank
         ), written AS (
             INSERT INTO notifications (id, organization_id, user_id, kind, ticket_id, event_id,
                                        in_app, email_status)
             SELECT tickiti_uuid_v7(), organization_id, user_id, kind, ticket_id, event_id, in_app,
                    CASE WHEN email THEN 'pending' ELSE 'none' END
             FROM chosen
             ON CONFLICT (event_id, user_id) DO NOTHING
             RETURNING id, organization_id, user_id, kind, ticket_id, in_app, created_at, read_at
         )
         SELECT w.id, w.organization_id, w.user_id, w.kind, w.ticket_id, t.code, t.subject, w.in_app, w.created_at,
                w.read_at
         FROM written w JOIN tickets t ON t.id = w.ticket_id"#,
        &c.event_ids,
        &c.organization_ids,
        &c.kinds,
        &c.ranks,
        &c.ticket_ids,
        &c.user_ids as &[Option<Uuid>],
        &c.to_assignee,
        &c.to_managers,
        &c.not_users as &[Option<Uuid>],
        actor
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .filter(|n| n.in_app)
        .map(|n| {
            let organization_id = n.organization_id;
            crate::event(
                EventType::NotificationCreated,
                organization_id,
                &NotificationOut::from(n),
            )
        })
        .collect()
}

/// Candidates as the parallel arrays of the `UNNEST` in [`derive`].
#[derive(Default)]
struct Candidates {
    event_ids: Vec<Uuid>,
    organization_ids: Vec<Uuid>,
    kinds: Vec<String>,
    ranks: Vec<i32>,
    ticket_ids: Vec<Uuid>,
    user_ids: Vec<Option<Uuid>>,
    to_assignee: Vec<bool>,
    to_managers: Vec<bool>,
    not_users: Vec<Option<Uuid>>,
}

/// A page of a person's notifications, newest first (`unread`: only those
/// not read yet).
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    unread: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Page<Notification>> {
    let rows = sqlx::query_as!(
        Notification,
        "SELECT n.id, n.organization_id, n.user_id, n.kind, n.ticket_id, t.code, t.subject, n.in_app, n.created_at,
                n.read_at
         FROM notifications n JOIN tickets t ON t.id = n.ticket_id
         WHERE n.user_id = $1 AND n.in_app
           AND (NOT $2 OR n.read_at IS NULL)
           AND ($3::uuid IS NULL OR n.id < $3)
         ORDER BY n.id DESC
         LIMIT $4",
        user_id,
        unread,
        before,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |n| n.id))
}

/// How many of a person's notifications are unread.
pub async fn unread_count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM notifications
           WHERE user_id = $1 AND in_app AND read_at IS NULL"#,
        user_id
    )
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Marks one of a person's notifications read; the notification and
/// whether this call read it (None: not theirs or not there).
pub async fn mark_read(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<(Notification, bool)>> {
    let row = sqlx::query!(
        r#"WITH before AS (
               SELECT id, read_at FROM notifications
               WHERE id = $2 AND user_id = $1 AND in_app
               FOR UPDATE
           ), read AS (
               UPDATE notifications n SET read_at = now()
               FROM before b WHERE n.id = b.id AND b.read_at IS NULL
               RETURNING n.id
           )
           SELECT n.id, n.organization_id, n.user_id, n.kind, n.ticket_id, t.code, t.subject, n.in_app,
                  n.created_at, coalesce(b.read_at, now()) AS "read_at!",
                  EXISTS (SELECT 1 FROM read) AS "changed!"
           FROM before b JOIN notifications n ON n.id = b.id JOIN tickets t ON t.id = n.ticket_id"#,
        user_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        (
            Notification {
                id: r.id,
                organization_id: r.organization_id,
                user_id: r.user_id,
                kind: r.kind,
                ticket_id: r.ticket_id,
                code: r.code,
                subject: r.subject,
                in_app: r.in_app,
                created_at: r.created_at,
                read_at: Some(r.read_at),
            },
            r.changed,
        )
    }))
}

/// Marks every unread notification of a person read; the ids it read and
/// when (one time for all, the transaction's).
pub async fn mark_all_read(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(Vec<Uuid>, OffsetDateTime)> {
    let rows = sqlx::query!(
        r#"UPDATE notifications SET read_at = now()
           WHERE user_id = $1 AND in_app AND read_at IS NULL
           RETURNING id, read_at AS "read_at!""#,
        user_id
    )
    .fetch_all(conn)
    .await?;
    let read_at = rows
        .first()
        .map_or_else(OffsetDateTime::now_utc, |r| r.read_at);
    Ok((rows.into_iter().map(|r| r.id).collect(), read_at))
}

/// A person's channels for every kind (the defaults where none was set).
pub async fn preferences(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<(NotificationKind, Channels)>> {
    let rows = sqlx::query!(
        "SELECT kind, in_app, email FROM notification_preferences WHERE user_id = $1",
        user_id
    )
    .fetch_all(conn)
    .await?;
    Ok(NotificationKind::ALL
        .iter()
        .map(|kind| {
            let set = rows.iter().find(|r| r.kind == kind.as_str());
            let channels = set.map_or_else(Channels::default, |r| Channels {
                in_app: r.in_app,
                email: r.email,
            });
            (*kind, channels)
        })
        .collect())
}

/// Stores a person's channels for the given kinds (the others keep theirs).
pub async fn set_preferences(
    conn: &mut PgConnection,
    user_id: Uuid,
    changes: &[(NotificationKind, Channels)],
) -> Result<()> {
    let kinds: Vec<String> = changes.iter().map(|(k, _)| k.as_str().to_owned()).collect();
    let in_app: Vec<bool> = changes.iter().map(|(_, c)| c.in_app).collect();
    let email: Vec<bool> = changes.iter().map(|(_, c)| c.email).collect();
    sqlx::query!(
        "INSERT INTO notification_preferences (user_id, kind, in_app, email)
         SELECT $1, * FROM UNNEST($2::text[], $3::bool[], $4::bool[])
         ON CONFLICT (user_id, kind) DO UPDATE SET in_app = EXCLUDED.in_app, email = EXCLUDED.email",
        user_id,
        &kinds,
        &in_app,
        &email
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A notification whose e-mail is due, with what the e-mail says.
#[derive(Debug, Clone)]
pub struct DueEmail {
    /// The notification.
    pub id: Uuid,
    /// Kind (a [`NotificationKind`] spelling).
    pub kind: String,
    /// The ticket.
    pub ticket_id: Uuid,
    /// The ticket's code.
    pub code: String,
    /// The ticket's subject.
    pub subject: String,
    /// The person's address.
    pub email: String,
    /// The person's name.
    pub name: String,
    /// When it was read in the app (then the e-mail is dropped).
    pub read_at: Option<OffsetDateTime>,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// When the notification was made.
    pub created_at: OffsetDateTime,
}

/// Claims up to `limit` e-mails due (held back `delay` after their
/// notification, retries at their time): each is leased for `lease`, so
/// several dispatchers take different ones and one that dies mid-send
/// leaves its e-mail to be tried again when the lease ends. Counts the
/// attempt.
pub async fn claim_emails(
    conn: &mut PgConnection,
    delay: std::time::Duration,
    lease: std::time::Duration,
    limit: i64,
) -> Result<Vec<DueEmail>> {
    let rows = sqlx::query_as!(
        DueEmail,
        "WITH due AS (
             SELECT id FROM notifications
             WHERE email_status = 'pending'
               AND created_at <= now() - make_interval(secs => $1)
               AND (email_retry_at IS NULL OR email_retry_at <= now())
             ORDER BY created_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         UPDATE notifications n
         SET email_attempts = n.email_attempts + 1,
             email_retry_at = now() + make_interval(secs => $2)
         FROM due, users u, tickets t
         WHERE n.id = due.id AND u.id = n.user_id AND t.id = n.ticket_id
         RETURNING n.id, n.kind, n.ticket_id, t.code, t.subject, u.email, u.name, n.read_at,
                   n.email_attempts AS attempts, n.created_at",
        delay.as_secs_f64(),
        lease.as_secs_f64(),
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// What became of a claimed e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// Accepted by the SMTP server.
    Sent,
    /// Read in the app while held back: not sent.
    Dropped,
    /// No `SMTP_URL` is configured: not sent.
    Unsent,
    /// Refused for good, or out of attempts.
    Failed(String),
    /// Failed for now: tried again at the time.
    Retry {
        /// When.
        at: OffsetDateTime,
        /// Why it failed.
        error: String,
    },
}

/// Records what became of a claimed e-mail.
pub async fn finish_email(conn: &mut PgConnection, id: Uuid, outcome: &EmailOutcome) -> Result<()> {
    let (status, retry_at, error) = match outcome {
        EmailOutcome::Sent => ("sent", None, None),
        EmailOutcome::Dropped => ("dropped", None, None),
        EmailOutcome::Unsent => ("unsent", None, Some("no SMTP_URL configured")),
        EmailOutcome::Failed(e) => ("failed", None, Some(e.as_str())),
        EmailOutcome::Retry { at, error } => ("pending", Some(*at), Some(error.as_str())),
    };
    sqlx::query!(
        "UPDATE notifications
         SET email_status = $2, email_retry_at = $3, email_error = $4,
             email_sent_at = CASE WHEN $2 = 'sent' THEN now() END
         WHERE id = $1",
        id,
        status,
        retry_at,
        error
    )
    .execute(conn)
    .await?;
    Ok(())
}
