//! `/queues`: where tickets wait for a team; names are unique per organization.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::{Ability, Validation, new_id};
use tickiti_store::StoreError;
use tickiti_store::queues::{self, NAME_KEY, Queue};
use tickiti_store::{PgConnection, users};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, nullable, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The queue routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(update_queue, delete_queue))
}

/// Longest queue name.
pub const NAME_MAX: usize = 100;
/// Longest queue description.
pub const DESCRIPTION_MAX: usize = 2000;

/// A queue as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueOut {
    /// Id.
    pub id: Uuid,
    /// Name (unique per organization, case-insensitive).
    pub name: String,
    /// What the queue is for.
    pub description: Option<String>,
    /// Its managers: notified of its new tickets, intervention tickets and
    /// escalations (CONTRACT §7, §8).
    pub manager_ids: Vec<Uuid>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Queue> for QueueOut {
    fn from(q: Queue) -> Self {
        QueueOut {
            id: q.id,
            name: q.name,
            description: q.description,
            manager_ids: q.manager_ids,
            created_at: q.created_at,
            updated_at: q.updated_at,
        }
    }
}

/// A new queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueIn {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// What the queue is for.
    pub description: Option<String>,
    /// Its managers (users of the organization, at most 50).
    #[serde(default)]
    #[schema(max_items = 50)]
    pub manager_ids: Vec<Uuid>,
}

/// Changes to a queue; `null` clears the description.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// Name.
    pub name: Option<String>,
    /// Description.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Its managers (replaces the list).
    #[schema(max_items = 50)]
    pub manager_ids: Option<Vec<Uuid>>,
}

/// Most managers a queue has.
pub const MANAGERS_MAX: usize = 50;

const NOT_FOUND: &str = "QUEUE_NOT_FOUND";

/// Each manager must be a user of the organization, named once.
async fn check_managers(
    conn: &mut PgConnection,
    org: Uuid,
    ids: &[Uuid],
    v: &mut Validation,
) -> ApiResult<()> {
    if ids.len() > MANAGERS_MAX {
        v.error("manager_ids", format!("at most {MANAGERS_MAX} managers"));
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !seen.insert(*id) {
            v.error(format!("manager_ids[{i}]"), "named twice");
        } else if users::get(conn, org, *id).await?.is_none() {
            v.error(format!("manager_ids[{i}]"), "no such user");
        }
    }
    Ok(())
}

fn conflict_or(error: StoreError) -> ApiError {
    if error.is_conflict_on(NAME_KEY) {
        ApiError::conflict("QUEUE_NAME_TAKEN", "a queue with this name exists")
    } else {
        error.into()
    }
}

/// List queues, oldest first.
#[utoipa::path(get, path = "/queues", tag = "queues", params(PageParams),
    responses((status = 200, body = ListOut<QueueOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_queues(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<QueueOut>>> {
    principal.require(Ability::TicketsRead)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = queues::list(&mut conn, principal.org(), after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, QueueOut::from)))
}

/// Create a queue (ability `admin`).
#[utoipa::path(post, path = "/queues", tag = "queues", request_body = QueueIn,
    responses((status = 201, body = QueueOut), (status = 409, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_queue(
    db: Db,
    principal: Principal,
    Json(input): Json<QueueIn>,
) -> ApiResult<(StatusCode, axum::Json<QueueOut>)> {
    principal.require(Ability::Admin)?;
    let mut v = Validation::new();
    v.text("name", &input.name, 1, NAME_MAX);
    v.optional_text("description", input.description.as_deref(), DESCRIPTION_MAX);
    let mut tx = db.begin().await?;
    check_managers(&mut tx, principal.org(), &input.manager_ids, &mut v).await?;
    v.finish().map_err(ApiError::validation)?;
    let queue = queues::insert(
        &mut tx,
        new_id(),
        principal.org(),
        input.name.trim(),
        input.description.as_deref().map(str::trim),
        &input.manager_ids,
    )
    .await
    .map_err(conflict_or)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(queue.into())))
}

/// Change a queue's name, description or managers (ability `admin`).
#[utoipa::path(patch, path = "/queues/{id}", tag = "queues", request_body = QueuePatch, params(("id" = Uuid, Path)),
    responses((status = 200, body = QueueOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, body = crate::http::error::Problem), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(queue.id = %id))]
pub async fn update_queue(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<QueuePatch>,
) -> ApiResult<axum::Json<QueueOut>> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "queue")?;
    let mut v = Validation::new();
    if let Some(name) = &patch.name {
        v.text("name", name, 1, NAME_MAX);
    }
    v.optional_text(
        "description",
        patch.description.clone().flatten().as_deref(),
        DESCRIPTION_MAX,
    );
    let mut tx = db.begin().await?;
    if let Some(ids) = &patch.manager_ids {
        check_managers(&mut tx, principal.org(), ids, &mut v).await?;
    }
    v.finish().map_err(ApiError::validation)?;
    let queue = queues::update(
        &mut tx,
        principal.org(),
        id,
        patch.name.as_deref().map(str::trim),
        patch
            .description
            .as_ref()
            .map(|d| d.as_deref().map(str::trim)),
        patch.manager_ids.as_deref(),
    )
    .await
    .map_err(conflict_or)?
    .ok_or_else(|| ApiError::not_found(NOT_FOUND, "queue"))?;
    tx.commit().await?;
    Ok(axum::Json(queue.into()))
}

/// Delete a queue (ability `admin`; refused with 409 `QUEUE_IN_USE` while tickets are in it).
#[utoipa::path(delete, path = "/queues/{id}", tag = "queues", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem), (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(queue.id = %id))]
pub async fn delete_queue(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "queue")?;
    let mut tx = db.begin().await?;
    let deleted = queues::delete(&mut tx, principal.org(), id)
        .await
        .map_err(|e| match e {
            StoreError::InUse { .. } => {
                ApiError::conflict("QUEUE_IN_USE", "tickets are still in this queue")
            }
            other => other.into(),
        })?;
    if !deleted {
        return Err(ApiError::not_found(NOT_FOUND, "queue"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
