//! `/sla-policies` (CONTRACT §7): targets per priority and metric, for some
//! queues or all, counted in a business calendar or around the clock, with
//! the statuses that pause them. Admins manage them; the first matching
//! policy by `position` applies to a ticket.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::duration::parse_duration;
use tickiti_domain::sla::SlaTarget;
use tickiti_domain::{Ability, TicketStatus, Validation, new_id};
use tickiti_store::sla_policies::{self, NAME_KEY, Policy, PolicyFields};
use tickiti_store::{PgConnection, StoreError, calendars, queues};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The SLA policy routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, update_policy, delete_policy))
}

/// Longest policy name.
pub const NAME_MAX: usize = 100;
/// Most targets in a policy (4 priorities × 3 metrics).
pub const TARGETS_MAX: usize = 12;
/// Most queues a policy names.
pub const QUEUES_MAX: usize = 100;
/// The longest target (a year).
pub const WITHIN_MAX: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

const NOT_FOUND: &str = "SLA_POLICY_NOT_FOUND";

/// The statuses that pause by default.
fn default_pause() -> Vec<TicketStatus> {
    vec![TicketStatus::Pending, TicketStatus::OnHold]
}

/// A policy as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyOut {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Matching order: the first matching policy applies.
    pub position: i32,
    /// Queues it applies to; empty: every queue.
    pub queue_ids: Vec<Uuid>,
    /// Business calendar; null: around the clock.
    pub calendar_id: Option<Uuid>,
    /// Statuses in which the clocks stop.
    pub pause_statuses: Vec<TicketStatus>,
    /// Targets.
    pub targets: Vec<SlaTarget>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Policy> for PolicyOut {
    fn from(p: Policy) -> Self {
        PolicyOut {
            id: p.id,
            name: p.name,
            position: p.position,
            queue_ids: p.queue_ids,
            calendar_id: p.calendar_id,
            // Written by this module after the same checks: they read back.
            pause_statuses: p
                .pause_statuses
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            targets: serde_json::from_value(p.targets).unwrap_or_default(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// Matching order (default 0).
    #[serde(default)]
    pub position: i32,
    /// Queues (at most 100); empty or absent: every queue.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub queue_ids: Vec<Uuid>,
    /// Business calendar; absent or null: around the clock.
    #[serde(default)]
    pub calendar_id: Option<Uuid>,
    /// Statuses that pause the clocks (default `["pending","on_hold"]`; not `solved` or `closed`).
    #[serde(default = "default_pause")]
    pub pause_statuses: Vec<TicketStatus>,
    /// Targets, 1 to 12, one per priority and metric.
    #[schema(min_items = 1, max_items = 12)]
    pub targets: Vec<SlaTarget>,
}

/// Changes to a policy; each field given replaces the stored one
/// (`calendar_id: null` makes it around the clock).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// Name.
    pub name: Option<String>,
    /// Matching order.
    pub position: Option<i32>,
    /// Queues.
    #[schema(max_items = 100)]
    pub queue_ids: Option<Vec<Uuid>>,
    /// Business calendar.
    #[serde(default, deserialize_with = "crate::http::extract::nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub calendar_id: Option<Option<Uuid>>,
    /// Pause statuses.
    pub pause_statuses: Option<Vec<TicketStatus>>,
    /// Targets.
    #[schema(min_items = 1, max_items = 12)]
    pub targets: Option<Vec<SlaTarget>>,
}

/// The whole policy, checked: targets well formed and one per priority and
/// metric, pause statuses open ones, queues and calendar of this organization.
/// A policy as it would be stored, before the checks.
struct Draft<'a> {
    name: &'a str,
    queue_ids: &'a [Uuid],
    calendar_id: Option<Uuid>,
    pause_statuses: &'a [TicketStatus],
    targets: &'a [SlaTarget],
}

async fn check(
    conn: &mut PgConnection,
    org: Uuid,
    v: &mut Validation,
    draft: &Draft<'_>,
) -> ApiResult<()> {
    let Draft {
        name,
        queue_ids,
        calendar_id,
        pause_statuses,
        targets,
    } = *draft;
    v.text("name", name, 1, NAME_MAX);
    if targets.is_empty() || targets.len() > TARGETS_MAX {
        v.error("targets", format!("1 to {TARGETS_MAX} targets"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        if !seen.insert((t.priority, t.metric)) {
            v.error(
                format!("targets[{i}]"),
                "a second target for this priority and metric",
            );
        }
        let within = match parse_duration(&t.within) {
            Ok(d) if d.is_zero() || d > WITHIN_MAX => {
                v.error(
                    format!("targets[{i}].within"),
                    "more than zero and at most 366 days",
                );
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                v.error(format!("targets[{i}].within"), message);
                None
            }
        };
        if let Some(warn) = &t.warn_before {
            match (parse_duration(warn), within) {
                (Err(message), _) => v.error(format!("targets[{i}].warn_before"), message),
                (Ok(w), Some(within)) if w.is_zero() || w >= within => v.error(
                    format!("targets[{i}].warn_before"),
                    "more than zero and shorter than within",
                ),
                _ => {}
            }
        }
    }
    for (i, status) in pause_statuses.iter().enumerate() {
        if matches!(status, TicketStatus::Solved | TicketStatus::Closed) {
            v.error(
                format!("pause_statuses[{i}]"),
                "solved and closed tickets have no running clocks",
            );
        }
    }
    if queue_ids.len() > QUEUES_MAX {
        v.error("queue_ids", format!("at most {QUEUES_MAX} queues"));
    } else {
        for (i, id) in queue_ids.iter().enumerate() {
            if queues::get(conn, org, *id).await?.is_none() {
                v.error(format!("queue_ids[{i}]"), "no such queue");
            }
        }
    }
    if let Some(id) = calendar_id
        && calendars::get(conn, org, id).await?.is_none()
    {
        v.error("calendar_id", "no such business calendar");
    }
    Ok(())
}

fn conflict_or(error: StoreError) -> ApiError {
    match error {
        e if e.is_conflict_on(NAME_KEY) => ApiError::conflict(
            "SLA_POLICY_NAME_TAKEN",
            "an SLA policy with this name exists",
        ),
        // The calendar went between the check and the write.
        StoreError::InUse { .. } => {
            ApiError::invalid_field("calendar_id", "no such business calendar")
        }
        e => e.into(),
    }
}

fn statuses(pause: &[TicketStatus]) -> Vec<String> {
    let mut out: Vec<String> = pause.iter().map(|s| s.as_str().to_owned()).collect();
    out.dedup();
    out
}

/// List SLA policies, oldest first (ability `admin`).
#[utoipa::path(get, path = "/sla-policies", tag = "service levels", params(PageParams),
    responses((status = 200, body = ListOut<PolicyOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_policies(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<PolicyOut>>> {
    principal.require(Ability::Admin)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = sla_policies::list(&mut conn, principal.org(), after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, PolicyOut::from)))
}

/// Create an SLA policy (ability `admin`). A malformed duration, an unknown
/// metric or priority, a warning not shorter than its target, two targets
/// for one priority and metric, an unknown queue or calendar: 422, nothing stored.
#[utoipa::path(post, path = "/sla-policies", tag = "service levels", request_body = PolicyIn,
    responses((status = 201, body = PolicyOut), (status = 409, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_policy(
    db: Db,
    principal: Principal,
    Json(input): Json<PolicyIn>,
) -> ApiResult<(StatusCode, axum::Json<PolicyOut>)> {
    principal.require(Ability::Admin)?;
    let org = principal.org();
    let mut tx = db.begin().await?;
    let mut v = Validation::new();
    let draft = Draft {
        name: &input.name,
        queue_ids: &input.queue_ids,
        calendar_id: input.calendar_id,
        pause_statuses: &input.pause_statuses,
        targets: &input.targets,
    };
    check(&mut tx, org, &mut v, &draft).await?;
    v.finish().map_err(ApiError::validation)?;
    let targets = serde_json::to_value(&input.targets).map_err(|e| ApiError::internal(&e))?;
    let fields = PolicyFields {
        name: input.name.trim(),
        position: input.position,
        queue_ids: &input.queue_ids,
        calendar_id: input.calendar_id,
        pause_statuses: &statuses(&input.pause_statuses),
        targets: &targets,
    };
    let policy = sla_policies::insert(&mut tx, new_id(), org, &fields)
        .await
        .map_err(conflict_or)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(policy.into())))
}

/// Read an SLA policy (ability `admin`).
#[utoipa::path(get, path = "/sla-policies/{id}", tag = "service levels", params(("id" = Uuid, Path)),
    responses((status = 200, body = PolicyOut), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(policy.id = %id))]
pub async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PolicyOut>> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "SLA policy")?;
    let mut conn = state.db.acquire().await?;
    let policy = sla_policies::get(&mut conn, principal.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "SLA policy"))?;
    Ok(axum::Json(policy.into()))
}

/// Change an SLA policy (ability `admin`); the result is checked as a whole.
#[utoipa::path(patch, path = "/sla-policies/{id}", tag = "service levels", request_body = PolicyPatch,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PolicyOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, body = crate::http::error::Problem), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(policy.id = %id))]
pub async fn update_policy(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<PolicyPatch>,
) -> ApiResult<axum::Json<PolicyOut>> {
    principal.require(Ability::Admin)?;
    let org = principal.org();
    let id = parse_id(&id, NOT_FOUND, "SLA policy")?;
    let mut tx = db.begin().await?;
    let current: PolicyOut = sla_policies::get(&mut tx, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "SLA policy"))?
        .into();
    let name = patch.name.unwrap_or(current.name);
    let position = patch.position.unwrap_or(current.position);
    let queue_ids = patch.queue_ids.unwrap_or(current.queue_ids);
    let calendar_id = patch.calendar_id.unwrap_or(current.calendar_id);
    let pause = patch.pause_statuses.unwrap_or(current.pause_statuses);
    let targets = patch.targets.unwrap_or(current.targets);
    let mut v = Validation::new();
    let draft = Draft {
        name: &name,
        queue_ids: &queue_ids,
        calendar_id,
        pause_statuses: &pause,
        targets: &targets,
    };
    check(&mut tx, org, &mut v, &draft).await?;
    v.finish().map_err(ApiError::validation)?;
    let targets = serde_json::to_value(&targets).map_err(|e| ApiError::internal(&e))?;
    let fields = PolicyFields {
        name: name.trim(),
        position,
        queue_ids: &queue_ids,
        calendar_id,
        pause_statuses: &statuses(&pause),
        targets: &targets,
    };
    let policy = sla_policies::update(&mut tx, org, id, &fields)
        .await
        .map_err(conflict_or)?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "SLA policy"))?;
    tx.commit().await?;
    Ok(axum::Json(policy.into()))
}

/// Delete an SLA policy (ability `admin`).
#[utoipa::path(delete, path = "/sla-policies/{id}", tag = "service levels", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(policy.id = %id))]
pub async fn delete_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "SLA policy")?;
    let mut conn = state.db.acquire().await?;
    if !sla_policies::delete(&mut conn, principal.org(), id).await? {
        return Err(ApiError::not_found(NOT_FOUND, "SLA policy"));
    }
    Ok(StatusCode::NO_CONTENT)
}
