//! `/perspectives`: saved ticket filters, in the ticket list's own filter
//! names (plus `assignee_id: "me"`). Shared ones (no owner) are seen by the
//! whole organization and changed only by admins; private ones belong to
//! their creator. Every organization starts with "All open", "Mine" and
//! "Unassigned".

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::filter::TicketFilterParams;
use tickiti_domain::{Ability, FieldError, TicketFilter, Validation, new_id};
use tickiti_store::perspectives::{self, Perspective};
use tickiti_store::tickets;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The perspective routes. `/perspectives/counts` is a static segment, which
/// axum's router prefers over the `/perspectives/{id}` capture.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_perspectives, create_perspective))
        .routes(routes!(count_perspectives))
        .routes(routes!(update_perspective, delete_perspective))
}

/// Longest perspective name.
pub const NAME_MAX: usize = 100;
/// Shared perspectives per organization.
pub const MAX_SHARED: i64 = 50;
/// Private perspectives per user.
pub const MAX_PRIVATE: i64 = 30;
/// Perspectives per organization in all (shared and everyone's private).
pub const MAX_PER_ORG: i64 = 1_000;

/// A perspective as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PerspectiveOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The ticket filter, in the ticket list's parameter names.
    #[schema(value_type = TicketFilterParams)]
    pub filters: serde_json::Value,
    /// Seen by the whole organization (changed only by admins).
    pub shared: bool,
    /// Owner of a private perspective; `null` when shared.
    pub user_id: Option<Uuid>,
    /// Sort position (ascending).
    pub position: i32,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Perspective> for PerspectiveOut {
    fn from(p: Perspective) -> Self {
        PerspectiveOut {
            id: p.id,
            name: p.name,
            filters: p.filters,
            shared: p.user_id.is_none(),
            user_id: p.user_id,
            position: p.position,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A new perspective.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerspectiveIn {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// The ticket filter (default: every ticket).
    #[serde(default)]
    pub filters: TicketFilterParams,
    /// Share with the whole organization (needs the `admin` ability); default private.
    #[serde(default)]
    pub shared: bool,
    /// Sort position (default: after the last one the caller sees).
    pub position: Option<i32>,
}

/// Changes to a perspective (`shared` is fixed at creation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerspectivePatch {
    /// Display name.
    pub name: Option<String>,
    /// The ticket filter (replaces the whole filter).
    pub filters: Option<TicketFilterParams>,
    /// Sort position.
    pub position: Option<i32>,
}

/// How many tickets one perspective holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PerspectiveCountOut {
    /// Perspective.
    pub perspective_id: Uuid,
    /// Tickets matching its filter for the caller.
    pub count: i64,
}

/// The counts of every perspective the caller sees.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PerspectiveCountsOut {
    /// One entry per perspective, in perspective order.
    pub data: Vec<PerspectiveCountOut>,
}

const NOT_FOUND: &str = "PERSPECTIVE_NOT_FOUND";

/// Validates a filter, reporting its fields as `filters.<name>`.
fn check_filters(params: &TicketFilterParams, v: &mut Validation) {
    if let Err(errors) = params.parse() {
        for FieldError { field, message } in errors {
            v.error(format!("filters.{field}"), message);
        }
    }
}

/// A filter as stored: only the names that are set.
fn store_filters(params: &TicketFilterParams) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(params)
}

/// A serialization failure, answered as 500.
fn internal(error: serde_json::Error) -> ApiError {
    ApiError::internal(&error)
}

/// A stored filter, parsed; `None` (logged) if it no longer parses.
pub(crate) fn stored_filter(p: &Perspective) -> Option<TicketFilter> {
    let parsed = serde_json::from_value::<TicketFilterParams>(p.filters.clone())
        .map_err(|e| e.to_string())
        .and_then(|params| {
            params.parse().map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    match parsed {
        Ok(filter) => Some(filter),
        Err(error) => {
            tracing::warn!(perspective.id = %p.id, %error, "stored perspective filter does not parse; skipped");
            None
        }
    }
}

/// The ability that changing a perspective needs: `admin` for a shared one, `tickets:write` for a private one.
fn write_ability(shared: bool) -> Ability {
    if shared {
        Ability::Admin
    } else {
        Ability::TicketsWrite
    }
}

/// The perspectives the caller sees (shared ones and their own), by position.
#[utoipa::path(get, path = "/perspectives", tag = "perspectives", params(PageParams),
    responses((status = 200, body = ListOut<PerspectiveOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_perspectives(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<PerspectiveOut>>> {
    principal.require(Ability::TicketsRead)?;
    // Ordered by position, not id: an offset cursor.
    let offset = Cursor::offset(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let all = perspectives::list_visible(&mut conn, principal.org(), principal.user.id).await?;
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(query.limit).unwrap_or(0);
    let mut data: Vec<PerspectiveOut> = all
        .into_iter()
        .skip(start)
        .take(limit.saturating_add(1))
        .map(PerspectiveOut::from)
        .collect();
    let next_cursor = if data.len() > limit {
        data.truncate(limit);
        Some(Cursor::Offset(offset.saturating_add(query.limit)).encode())
    } else {
        None
    };
    Ok(axum::Json(ListOut { data, next_cursor }))
}

/// Create a perspective: private (`tickets:write`) or shared (`admin`).
#[utoipa::path(post, path = "/perspectives", tag = "perspectives", request_body = PerspectiveIn,
    responses((status = 201, body = PerspectiveOut), (status = 403, body = crate::http::error::Problem),
              (status = 409, description = "LIMIT_REACHED: 50 shared per organization, 30 private per user, 1 000 in all", body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_perspective(
    db: Db,
    principal: Principal,
    Json(input): Json<PerspectiveIn>,
) -> ApiResult<(StatusCode, axum::Json<PerspectiveOut>)> {
    principal.require(write_ability(input.shared))?;
    let org = principal.org();
    let mut v = Validation::new();
    v.text("name", &input.name, 1, NAME_MAX);
    check_filters(&input.filters, &mut v);
    v.finish().map_err(ApiError::validation)?;
    let mut tx = db.begin().await?;
    let owner = (!input.shared).then_some(principal.user.id);
    let (all, same_owner) = perspectives::count_for_insert(&mut tx, org, owner).await?;
    // Every change recounts perspectives: their number is bounded.
    let refusal = if all >= MAX_PER_ORG {
        Some(format!(
            "an organization has at most {MAX_PER_ORG} perspectives"
        ))
    } else if input.shared && same_owner >= MAX_SHARED {
        Some(format!(
            "an organization has at most {MAX_SHARED} shared perspectives"
        ))
    } else if !input.shared && same_owner >= MAX_PRIVATE {
        Some(format!(
            "a user has at most {MAX_PRIVATE} private perspectives"
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        return Err(ApiError::conflict(
            "LIMIT_REACHED",
            format!("{refusal}; delete one first"),
        ));
    }
    let position = match input.position {
        Some(position) => position,
        None => perspectives::list_visible(&mut tx, org, principal.user.id)
            .await?
            .iter()
            .map(|p| p.position)
            .max()
            .map_or(0, |last| last.saturating_add(1)),
    };
    let now = OffsetDateTime::now_utc();
    let perspective = perspectives::insert(
        &mut tx,
        &Perspective {
            id: new_id(),
            organization_id: org,
            user_id: owner,
            name: input.name.trim().to_owned(),
            filters: store_filters(&input.filters).map_err(internal)?,
            position,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(perspective.into())))
}

/// How many tickets each perspective the caller sees holds (`assignee_id: "me"` is the caller).
#[utoipa::path(get, path = "/perspectives/counts", tag = "perspectives",
    responses((status = 200, body = PerspectiveCountsOut)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn count_perspectives(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<PerspectiveCountsOut>> {
    principal.require(Ability::TicketsRead)?;
    let org = principal.org();
    let mut conn = state.db.acquire().await?;
    let visible = perspectives::list_visible(&mut conn, org, principal.user.id).await?;
    let counted: Vec<(Uuid, TicketFilter)> = visible
        .iter()
        .filter_map(|p| Some((p.id, stored_filter(p)?)))
        .collect();
    let filters: Vec<(&TicketFilter, Uuid)> = counted
        .iter()
        .map(|(_, filter)| (filter, principal.user.id))
        .collect();
    let counts = tickets::count_each(&mut conn, org, &filters).await?;
    let data = counted
        .iter()
        .zip(counts)
        .map(|((perspective_id, _), count)| PerspectiveCountOut {
            perspective_id: *perspective_id,
            count,
        })
        .collect();
    Ok(axum::Json(PerspectiveCountsOut { data }))
}

/// Change a perspective the caller sees (shared ones need `admin`).
#[utoipa::path(patch, path = "/perspectives/{id}", tag = "perspectives", request_body = PerspectivePatch,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PerspectiveOut), (status = 403, body = crate::http::error::Problem),
              (status = 404, body = crate::http::error::Problem), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(perspective.id = %id))]
pub async fn update_perspective(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<PerspectivePatch>,
) -> ApiResult<axum::Json<PerspectiveOut>> {
    let id = parse_id(&id, NOT_FOUND, "perspective")?;
    let mut v = Validation::new();
    if let Some(name) = &patch.name {
        v.text("name", name, 1, NAME_MAX);
    }
    if let Some(filters) = &patch.filters {
        check_filters(filters, &mut v);
    }
    let mut tx = db.begin().await?;
    let mut perspective =
        perspectives::get_visible(&mut tx, principal.org(), principal.user.id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(NOT_FOUND, "perspective"))?;
    principal.require(write_ability(perspective.user_id.is_none()))?;
    v.finish().map_err(ApiError::validation)?;
    if let Some(name) = &patch.name {
        perspective.name = name.trim().to_owned();
    }
    if let Some(filters) = &patch.filters {
        perspective.filters = store_filters(filters).map_err(internal)?;
    }
    if let Some(position) = patch.position {
        perspective.position = position;
    }
    let saved = perspectives::save(&mut tx, &perspective).await?;
    tx.commit().await?;
    Ok(axum::Json(saved.into()))
}

/// Delete a perspective the caller sees (shared ones need `admin`).
#[utoipa::path(delete, path = "/perspectives/{id}", tag = "perspectives", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = crate::http::error::Problem), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(perspective.id = %id))]
pub async fn delete_perspective(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, NOT_FOUND, "perspective")?;
    let mut tx = db.begin().await?;
    let perspective = perspectives::get_visible(&mut tx, principal.org(), principal.user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "perspective"))?;
    principal.require(write_ability(perspective.user_id.is_none()))?;
    if !perspectives::delete(&mut tx, principal.org(), perspective.id).await? {
        return Err(ApiError::not_found(NOT_FOUND, "perspective"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
