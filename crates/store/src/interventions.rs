//! Interventions (CONTRACT §4): definitions, payloads (one per intervention
//! ticket), epilog calls and their attempt log. The api writes definitions,
//! payloads and epilog requests; the dispatcher claims epilog calls, logs
//! attempts and applies final objects.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A definition row. `remote_bearer_token_sealed` never leaves the services.
#[derive(Debug, Clone)]
pub struct Intervention {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Unique, immutable name.
    pub name: String,
    /// Display name.
    pub title: String,
    /// Target queue.
    pub queue_id: Option<Uuid>,
    /// Its name (joined).
    pub queue_name: Option<String>,
    /// Notification flag.
    pub notify_inbox_managers: bool,
    /// Escalation flag.
    pub fma_inbox_managers: bool,
    /// The remote system's name.
    pub remote_name: Option<String>,
    /// Where epilog calls go.
    pub remote_epilog_url: Option<String>,
    /// The bearer token, sealed.
    pub remote_bearer_token_sealed: Option<Vec<u8>>,
    /// Epilog call time-out.
    pub remote_timeout_seconds: i32,
    /// Whether epilog calls are made.
    pub remote_enabled: bool,
    /// Whether remotes may open tickets with it.
    pub enabled: bool,
    /// UI fields (JSON array).
    pub fields: serde_json::Value,
    /// `private` template.
    pub template_private: String,
    /// `public` template.
    pub template_public: Option<String>,
    /// `final` template.
    pub template_final: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Inserts a definition, or writes every changeable field of the existing
/// one with this id back (never its name or organization).
/// `interventions_name_key` refuses a new definition with a taken name.
pub async fn upsert(conn: &mut PgConnection, i: &Intervention) -> Result<()> {
    sqlx::query!(
        "INSERT INTO interventions (id, organization_id, name, title, queue_id, notify_inbox_managers,
             fma_inbox_managers, remote_name, remote_epilog_url, remote_bearer_token_sealed,
             remote_timeout_seconds, remote_enabled, enabled, fields, template_private,
             template_public, template_final)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, queue_id = EXCLUDED.queue_id,
             notify_inbox_managers = EXCLUDED.notify_inbox_managers,
             fma_inbox_managers = EXCLUDED.fma_inbox_managers, remote_name = EXCLUDED.remote_name,
             remote_epilog_url = EXCLUDED.remote_epilog_url,
             remote_bearer_token_sealed = EXCLUDED.remote_bearer_token_sealed,
             remote_timeout_seconds = EXCLUDED.remote_timeout_seconds,
             remote_enabled = EXCLUDED.remote_enabled, enabled = EXCLUDED.enabled,
             fields = EXCLUDED.fields, template_private = EXCLUDED.template_private,
             template_public = EXCLUDED.template_public, template_final = EXCLUDED.template_final,
             updated_at = now()
         WHERE interventions.organization_id = EXCLUDED.organization_id",
        i.id,
        i.organization_id,
        i.name,
        i.title,
        i.queue_id,
        i.notify_inbox_managers,
        i.fma_inbox_managers,
        i.remote_name,
        i.remote_epilog_url,
        i.remote_bearer_token_sealed,
        i.remote_timeout_seconds,
        i.remote_enabled,
        i.enabled,
        i.fields,
        i.template_private,
        i.template_public,
        i.template_final
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A definition of the organization by name.
pub async fn get_by_name(
    conn: &mut PgConnection,
    organization_id: Uuid,
    name: &str,
) -> Result<Option<Intervention>> {
    find(conn, organization_id, Uuid::nil(), name).await
}

/// A definition of the organization by id.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Intervention>> {
    find(conn, organization_id, id, "").await
}

/// By id or by name (the nil id and the empty name match no row).
async fn find(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    name: &str,
) -> Result<Option<Intervention>> {
    let row = sqlx::query_as!(
        Intervention,
        "SELECT i.id, i.organization_id, i.name, i.title, i.queue_id, q.name AS \"queue_name?\",
                i.notify_inbox_managers, i.fma_inbox_managers, i.remote_name, i.remote_epilog_url,
                i.remote_bearer_token_sealed, i.remote_timeout_seconds, i.remote_enabled, i.enabled,
                i.fields, i.template_private, i.template_public, i.template_final,
                i.created_at, i.updated_at
         FROM interventions i LEFT JOIN queues q ON q.id = i.queue_id
         WHERE i.organization_id = $1 AND (i.id = $2 OR i.name = $3)",
        organization_id,
        id,
        name
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of definitions, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Intervention>> {
    let rows = sqlx::query_as!(
        Intervention,
        "SELECT i.id, i.organization_id, i.name, i.title, i.queue_id, q.name AS \"queue_name?\",
                i.notify_inbox_managers, i.fma_inbox_managers, i.remote_name, i.remote_epilog_url,
                i.remote_bearer_token_sealed, i.remote_timeout_seconds, i.remote_enabled, i.enabled,
                i.fields, i.template_private, i.template_public, i.template_final,
                i.created_at, i.updated_at
         FROM interventions i LEFT JOIN queues q ON q.id = i.queue_id
         WHERE i.organization_id = $1 AND ($2::uuid IS NULL OR i.id > $2)
         ORDER BY i.id
         LIMIT $3",
        organization_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |i| i.id))
}

/// Deletes a definition; `StoreError::InUse` while payloads refer to it.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM interventions WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An intervention instance on a ticket (also the data of `intervention.*` events).
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    /// Id.
    pub id: Uuid,
    /// Organization.
    #[serde(skip)]
    pub organization_id: Uuid,
    /// Definition id.
    #[serde(skip)]
    pub intervention_id: Uuid,
    /// Definition name.
    pub intervention: String,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The remote's id of this instance.
    pub uid: String,
    /// Who asked (the ticket's contact).
    pub originator_email_address: String,
    /// The data bag.
    pub data: serde_json::Value,
    /// `pending`, `submitted` or `accepted`.
    pub status: String,
    /// The staff response of the last submit.
    pub response_id: Option<Uuid>,
    /// The remote's final object, once applied.
    #[serde(rename = "final")]
    pub final_object: Option<serde_json::Value>,
    /// Last submit.
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<OffsetDateTime>,
    /// When the final object was applied.
    #[serde(with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A new payload.
#[derive(Debug, Clone)]
pub struct NewPayload<'a> {
    /// Organization.
    pub organization_id: Uuid,
    /// Definition.
    pub intervention_id: Uuid,
    /// Ticket (created in the same transaction).
    pub ticket_id: Uuid,
    /// Remote id (`intervention_payloads_uid_key` refuses a second one).
    pub uid: &'a str,
    /// Originator.
    pub originator_email: &'a str,
    /// Data bag.
    pub data: &'a serde_json::Value,
}

/// Inserts a payload; returns its id.
pub async fn insert_payload(conn: &mut PgConnection, p: &NewPayload<'_>) -> Result<Uuid> {
    let id = tickiti_domain::new_id();
    sqlx::query!(
        "INSERT INTO intervention_payloads (id, organization_id, intervention_id, ticket_id, uid, originator_email, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        p.organization_id,
        p.intervention_id,
        p.ticket_id,
        p.uid,
        p.originator_email,
        p.data
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// The ticket that already holds this `uid` of the definition.
pub async fn ticket_of_uid(
    conn: &mut PgConnection,
    intervention_id: Uuid,
    uid: &str,
) -> Result<Option<Uuid>> {
    let row = sqlx::query_scalar!(
        "SELECT ticket_id FROM intervention_payloads WHERE intervention_id = $1 AND uid = $2",
        intervention_id,
        uid
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// The payload of a ticket; `lock` holds it until the transaction ends.
pub async fn payload_for_ticket(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    lock: bool,
) -> Result<Option<Payload>> {
    if !lock {
        return find_payload(conn, organization_id, Uuid::nil(), ticket_id).await;
    }
    let row = sqlx::query_as!(
        Payload,
        "SELECT p.id, p.organization_id, p.intervention_id, i.name AS intervention, p.ticket_id, p.uid,
                p.originator_email AS originator_email_address, p.data, p.status, p.response_id,
                p.final AS final_object, p.submitted_at, p.accepted_at, p.created_at, p.updated_at
         FROM intervention_payloads p JOIN interventions i ON i.id = p.intervention_id
         WHERE p.organization_id = $1 AND p.ticket_id = $2
         FOR UPDATE OF p",
        organization_id,
        ticket_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A payload of the organization by id.
pub async fn payload(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Payload>> {
    find_payload(conn, organization_id, id, Uuid::nil()).await
}

/// By payload id or by ticket id (the nil id matches no row).
async fn find_payload(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    ticket_id: Uuid,
) -> Result<Option<Payload>> {
    let row = sqlx::query_as!(
        Payload,
        "SELECT p.id, p.organization_id, p.intervention_id, i.name AS intervention, p.ticket_id, p.uid,
                p.originator_email AS originator_email_address, p.data, p.status, p.response_id,
                p.final AS final_object, p.submitted_at, p.accepted_at, p.created_at, p.updated_at
         FROM intervention_payloads p JOIN interventions i ON i.id = p.intervention_id
         WHERE p.organization_id = $1 AND (p.id = $2 OR p.ticket_id = $3)",
        organization_id,
        id,
        ticket_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Stores a staff submit: the edited data bag and the response it posted.
pub async fn submit(
    conn: &mut PgConnection,
    id: Uuid,
    data: &serde_json::Value,
    response_id: Uuid,
) -> Result<()> {
    sqlx::query!(
        "UPDATE intervention_payloads
         SET data = $2, status = 'submitted', response_id = $3, submitted_at = now(), updated_at = now()
         WHERE id = $1",
        id,
        data,
        response_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a submitted payload accepted with its final object, but only while
/// it is `submitted` for `response_id`: of any number of concurrent or
/// repeated calls, exactly one gets `true`.
pub async fn accept(
    conn: &mut PgConnection,
    id: Uuid,
    response_id: Uuid,
    final_object: &serde_json::Value,
) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE intervention_payloads
         SET status = 'accepted', final = $3, accepted_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'submitted' AND response_id = $2",
        id,
        response_id,
        final_object
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An epilog call.
#[derive(Debug, Clone)]
pub struct Epilog {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Payload.
    pub payload_id: Uuid,
    /// The staff response it reports.
    pub response_id: Uuid,
    /// The data bag sent.
    pub data: serde_json::Value,
    /// `pending`, `retrying`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts started.
    pub attempt: i32,
    /// When the next attempt is due.
    pub next_attempt_at: OffsetDateTime,
    /// Claimed by a dispatcher until then.
    pub locked_until: Option<OffsetDateTime>,
    /// The last attempt's problem.
    pub last_error: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Records an epilog call for a submit; returns its id.
pub async fn insert_epilog(
    conn: &mut PgConnection,
    organization_id: Uuid,
    payload_id: Uuid,
    response_id: Uuid,
    data: &serde_json::Value,
) -> Result<Uuid> {
    let id = tickiti_domain::new_id();
    sqlx::query!(
        "INSERT INTO intervention_epilogs (id, organization_id, payload_id, response_id, data)
         VALUES ($1, $2, $3, $4, $5)",
        id,
        organization_id,
        payload_id,
        response_id,
        data
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Writes the `command.intervention.epilog` outbox row for an epilog call
/// (relayed to `<prefix>.commands`), in the caller's transaction.
pub async fn request_epilog(
    conn: &mut PgConnection,
    organization_id: Uuid,
    epilog_id: Uuid,
) -> Result<()> {
    let mut fields = serde_json::Map::new();
    fields.insert("epilog_id".into(), epilog_id.to_string().into());
    crate::outbox::append_command(
        conn,
        organization_id,
        tickiti_domain::intervention::EPILOG_COMMAND,
        fields,
    )
    .await
}

/// An epilog call by id.
pub async fn epilog(conn: &mut PgConnection, id: Uuid) -> Result<Option<Epilog>> {
    let row = sqlx::query_as!(
        Epilog,
        "SELECT id, organization_id, payload_id, response_id, data, status, attempt, next_attempt_at,
                locked_until, last_error, created_at
         FROM intervention_epilogs WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// The epilog calls of a payload, oldest first.
pub async fn epilogs_of(conn: &mut PgConnection, payload_id: Uuid) -> Result<Vec<Epilog>> {
    let rows = sqlx::query_as!(
        Epilog,
        "SELECT id, organization_id, payload_id, response_id, data, status, attempt, next_attempt_at,
                locked_until, last_error, created_at
         FROM intervention_epilogs WHERE payload_id = $1 ORDER BY id",
        payload_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Claims the next attempt of an open, due, unclaimed call for `lease_seconds`;
/// the attempt number, or `None` when it is not this caller's to make now.
pub async fn claim_epilog(
    conn: &mut PgConnection,
    id: Uuid,
    lease_seconds: f64,
) -> Result<Option<i32>> {
    let attempt = sqlx::query_scalar!(
        "UPDATE intervention_epilogs
         SET attempt = attempt + 1, locked_until = now() + make_interval(secs => $2), updated_at = now()
         WHERE id = $1 AND status IN ('pending', 'retrying') AND next_attempt_at <= now()
           AND (locked_until IS NULL OR locked_until < now())
         RETURNING attempt",
        id,
        lease_seconds
    )
    .fetch_optional(conn)
    .await?;
    Ok(attempt)
}

/// Ends an attempt: the call's new `status`, when the next is due and the
/// last problem; releases the claim (a call ended meanwhile stays ended).
pub async fn finish_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    next_attempt_at: OffsetDateTime,
    last_error: Option<&str>,
) -> Result<()> {
    sqlx::query!(
        "UPDATE intervention_epilogs
         SET status = $2, next_attempt_at = $3, last_error = $4, locked_until = NULL, updated_at = now()
         WHERE id = $1 AND status IN ('pending', 'retrying')",
        id,
        status,
        next_attempt_at,
        last_error
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the open calls of a payload: a new submit supersedes them (an
/// attempt in flight still logs itself but leaves the call ended).
pub async fn supersede_epilogs(conn: &mut PgConnection, payload_id: Uuid) -> Result<u64> {
    let done = sqlx::query!(
        "UPDATE intervention_epilogs
         SET status = 'failed', last_error = 'superseded by a later submit', updated_at = now()
         WHERE payload_id = $1 AND status IN ('pending', 'retrying')",
        payload_id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Open calls that are due and that no worker holds, most overdue first.
pub async fn due_epilogs(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>> {
    let rows = sqlx::query_scalar!(
        "SELECT id FROM intervention_epilogs
         WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
           AND (locked_until IS NULL OR locked_until < now())
         ORDER BY next_attempt_at
         LIMIT $1",
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// One attempt of an epilog call, as logged.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Id.
    pub id: Uuid,
    /// The call.
    pub epilog_id: Uuid,
    /// Payload.
    pub payload_id: Uuid,
    /// 1-based attempt number of the call.
    pub attempt: i32,
    /// `ok`, `final_applied`, `final_already_applied`, `final_rejected`, `retry` or `gave_up`.
    pub outcome: String,
    /// HTTP status, when one came.
    pub response_code: Option<i32>,
    /// Duration.
    pub response_time_ms: Option<i32>,
    /// Up to 4 KiB of the answer.
    pub response_body: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// When.
    pub created_at: OffsetDateTime,
}

/// Logs an attempt.
pub async fn insert_attempt(conn: &mut PgConnection, a: &Attempt) -> Result<()> {
    sqlx::query!(
        "INSERT INTO intervention_epilog_attempts (id, epilog_id, payload_id, attempt, outcome,
             response_code, response_time_ms, response_body, error, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        a.id,
        a.epilog_id,
        a.payload_id,
        a.attempt,
        a.outcome,
        a.response_code,
        a.response_time_ms,
        a.response_body,
        a.error,
        a.created_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every attempt of a payload's calls, oldest first.
pub async fn attempts_of(conn: &mut PgConnection, payload_id: Uuid) -> Result<Vec<Attempt>> {
    let rows = sqlx::query_as!(
        Attempt,
        "SELECT id, epilog_id, payload_id, attempt, outcome, response_code, response_time_ms,
                response_body, error, created_at
         FROM intervention_epilog_attempts WHERE payload_id = $1 ORDER BY id",
        payload_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The variables every template and label sees: `data` (the bag), `ticket`,
/// `intervention` (definition and instance). `extra` members (a final
/// object's fields, a submit's `message`) are added at the top level.
pub fn template_context(
    ticket: &crate::tickets::Ticket,
    definition: &Intervention,
    payload: &Payload,
    data: &serde_json::Value,
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> serde_json::Value {
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let mut context = serde_json::Map::new();
    if let Some(extra) = extra {
        context.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    context.insert("data".into(), data.clone());
    context.insert(
        "ticket".into(),
        serde_json::json!({
            "id": ticket.id,
            "number": ticket.number,
            "code": ticket.code,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "queue_id": ticket.queue_id,
            "assignee_id": ticket.assignee_id,
            "contact": {"id": ticket.contact_id, "name": ticket.contact_name, "email": ticket.contact_email},
            "tags": ticket.tags,
            "created_at": rfc3339(ticket.created_at),
        }),
    );
    context.insert(
        "intervention".into(),
        serde_json::json!({
            "name": definition.name,
            "title": definition.title,
            "remote_name": definition.remote_name,
            "uid": payload.uid,
            "status": payload.status,
            "originator_email_address": payload.originator_email_address,
            "response_id": payload.response_id,
        }),
    );
    serde_json::Value::Object(context)
}
