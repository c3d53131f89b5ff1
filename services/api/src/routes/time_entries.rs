//! `/tickets/{id}/time-entries` and `/time-entries/{id}`: time spent on
//! tickets. Every change also lands in the ticket's audit trail.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use tickiti_domain::{Ability, EventType, Validation, new_id};
use tickiti_store::time_entries::{self, TimeEntry};
use tickiti_store::{audit, users};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::tickets::find_ticket;
use crate::events::emit;
use crate::http::extract::{Cursor, NoFilter, PageParams, nullable, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The time entry routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_time_entries, create_time_entry))
        .routes(routes!(update_time_entry, delete_time_entry))
}

/// Fewest minutes an entry may record.
pub const MINUTES_MIN: i64 = 1;
/// Most minutes an entry may record (the database's CHECK agrees).
pub const MINUTES_MAX: i64 = 100_000;
/// Longest note.
pub const NOTE_MAX: usize = 2000;

/// A time entry as the API returns it (and as time entry events carry it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeEntryOut {
    /// Id.
    pub id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Who spent the time.
    pub user_id: Uuid,
    /// Minutes spent.
    pub minutes: i32,
    /// What was done.
    pub note: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<TimeEntry> for TimeEntryOut {
    fn from(e: TimeEntry) -> Self {
        TimeEntryOut {
            id: e.id,
            ticket_id: e.ticket_id,
            user_id: e.user_id,
            minutes: e.minutes,
            note: e.note,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new time entry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeEntryIn {
    /// Minutes spent, 1 to 100000.
    pub minutes: i32,
    /// What was done (at most 2000 characters).
    pub note: Option<String>,
    /// Who spent the time (default: the caller); a user of the organization.
    pub user_id: Option<Uuid>,
}

/// Changes to a time entry; `null` clears the note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeEntryPatch {
    /// Minutes spent, 1 to 100000.
    pub minutes: Option<i32>,
    /// What was done.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
    /// Who spent the time.
    pub user_id: Option<Uuid>,
}

const NOT_FOUND: &str = "TIME_ENTRY_NOT_FOUND";

/// The note as stored: trimmed, and an empty one is no note.
fn clean_note(note: Option<&str>) -> Option<String> {
    note.map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

async fn check_user(
    conn: &mut PgConnection,
    org: Uuid,
    user_id: Uuid,
    v: &mut Validation,
) -> ApiResult<()> {
    if users::get(conn, org, user_id).await?.is_none() {
        v.error("user_id", "no such user");
    }
    Ok(())
}

/// A ticket's time entries, oldest first.
#[utoipa::path(get, path = "/tickets/{id}/time-entries", tag = "time entries",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = ListOut<TimeEntryOut>), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn list_time_entries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<TimeEntryOut>>> {
    principal.require(Ability::TicketsRead)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let ticket = find_ticket(&mut conn, &principal, &id, false).await?;
    let page =
        time_entries::list(&mut conn, principal.org(), ticket.id, after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, TimeEntryOut::from)))
}

/// Record time spent on a ticket.
#[utoipa::path(post, path = "/tickets/{id}/time-entries", tag = "time entries", request_body = TimeEntryIn,
    params(("id" = Uuid, Path)),
    responses((status = 201, body = TimeEntryOut), (status = 404, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn create_time_entry(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(input): Json<TimeEntryIn>,
) -> ApiResult<(StatusCode, axum::Json<TimeEntryOut>)> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let mut v = Validation::new();
    v.range(
        "minutes",
        i64::from(input.minutes),
        MINUTES_MIN,
        MINUTES_MAX,
    );
    v.optional_text("note", input.note.as_deref(), NOTE_MAX);
    let user_id = input.user_id.unwrap_or(principal.user.id);

    let mut tx = db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    check_user(&mut tx, org, user_id, &mut v).await?;
    v.finish().map_err(ApiError::validation)?;
    let now = OffsetDateTime::now_utc();
    let entry = time_entries::insert(
        &mut tx,
        &TimeEntry {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            user_id,
            minutes: input.minutes,
            note: clean_note(input.note.as_deref()),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    let out = TimeEntryOut::from(entry);
    let detail = json!({ "time_entry_id": out.id, "user_id": out.user_id, "minutes": out.minutes, "note": out.note });
    audit::insert(
        &mut tx,
        org,
        ticket.id,
        Some(principal.user.id),
        "time_entry.created",
        &detail,
    )
    .await?;
    emit(&mut tx, &principal, EventType::TimeEntryCreated, &out).await?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Change a time entry.
#[utoipa::path(patch, path = "/time-entries/{id}", tag = "time entries", request_body = TimeEntryPatch,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TimeEntryOut), (status = 404, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(time_entry.id = %id))]
pub async fn update_time_entry(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<TimeEntryPatch>,
) -> ApiResult<axum::Json<TimeEntryOut>> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let id = parse_id(&id, NOT_FOUND, "time entry")?;
    let mut v = Validation::new();
    if let Some(minutes) = patch.minutes {
        v.range("minutes", i64::from(minutes), MINUTES_MIN, MINUTES_MAX);
    }
    v.optional_text("note", patch.note.clone().flatten().as_deref(), NOTE_MAX);

    let mut tx = db.begin().await?;
    let before = time_entries::get(&mut tx, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "time entry"))?;
    if let Some(user_id) = patch.user_id {
        check_user(&mut tx, org, user_id, &mut v).await?;
    }
    v.finish().map_err(ApiError::validation)?;

    let mut after = before.clone();
    if let Some(value) = patch.minutes {
        after.minutes = value;
    }
    if let Some(note) = &patch.note {
        after.note = clean_note(note.as_deref());
    }
    if let Some(user_id) = patch.user_id {
        after.user_id = user_id;
    }
    let changes = diff(&before, &after);
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok(axum::Json(before.into()));
    }
    let saved = time_entries::save(&mut tx, &after).await?;
    let out = TimeEntryOut::from(saved);
    let detail = json!({ "time_entry_id": out.id, "changes": changes });
    audit::insert(
        &mut tx,
        org,
        out.ticket_id,
        Some(principal.user.id),
        "time_entry.updated",
        &detail,
    )
    .await?;
    emit(&mut tx, &principal, EventType::TimeEntryUpdated, &out).await?;
    state.commit(tx).await?;
    Ok(axum::Json(out))
}

/// Field → `{"from", "to"}` for every editable field that differs.
fn diff(before: &TimeEntry, after: &TimeEntry) -> serde_json::Map<String, serde_json::Value> {
    let mut changes = serde_json::Map::new();
    let mut field = |name: &str, from: serde_json::Value, to: serde_json::Value| {
        if from != to {
            changes.insert(name.to_owned(), json!({ "from": from, "to": to }));
        }
    };
    field("minutes", json!(before.minutes), json!(after.minutes));
    field("note", json!(before.note), json!(after.note));
    field("user_id", json!(before.user_id), json!(after.user_id));
    changes
}

/// Delete a time entry.
#[utoipa::path(delete, path = "/time-entries/{id}", tag = "time entries", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(time_entry.id = %id))]
pub async fn delete_time_entry(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let id = parse_id(&id, NOT_FOUND, "time entry")?;
    let mut tx = db.begin().await?;
    let deleted = time_entries::delete(&mut tx, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "time entry"))?;
    let out = TimeEntryOut::from(deleted);
    let detail = json!({ "time_entry_id": out.id, "user_id": out.user_id, "minutes": out.minutes, "note": out.note });
    audit::insert(
        &mut tx,
        org,
        out.ticket_id,
        Some(principal.user.id),
        "time_entry.deleted",
        &detail,
    )
    .await?;
    emit(&mut tx, &principal, EventType::TimeEntryDeleted, &out).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
