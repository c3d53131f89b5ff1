//! `/business-calendars` (CONTRACT §7): the hours service-level targets
//! count, in an IANA time zone, with holidays. Admins manage them; every
//! input is checked by building the domain calendar
//! ([`tickiti_domain::calendar::BusinessCalendar`]), so what is stored is
//! always a calendar the SLA clocks can use.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::calendar::written::{Holiday, OpeningHours, build_calendar};
use tickiti_domain::{Ability, Validation, new_id};
use tickiti_store::StoreError;
use tickiti_store::calendars::{self, Calendar, CalendarFields, NAME_KEY};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The business-calendar routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calendars, create_calendar))
        .routes(routes!(get_calendar, update_calendar, delete_calendar))
}

/// Longest calendar name.
pub const NAME_MAX: usize = 100;

const NOT_FOUND: &str = "CALENDAR_NOT_FOUND";

/// A calendar as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CalendarOut {
    /// Id.
    pub id: Uuid,
    /// Name (unique per organization, case-insensitive).
    pub name: String,
    /// IANA time zone, e.g. `Europe/Helsinki`.
    pub time_zone: String,
    /// Opening intervals, several per weekday allowed.
    pub hours: Vec<OpeningHours>,
    /// Days off.
    pub holidays: Vec<Holiday>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Calendar> for CalendarOut {
    fn from(c: Calendar) -> Self {
        CalendarOut {
            id: c.id,
            name: c.name,
            time_zone: c.time_zone,
            // Written by this module after the same checks: they read back.
            hours: serde_json::from_value(c.hours).unwrap_or_default(),
            holidays: serde_json::from_value(c.holidays).unwrap_or_default(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A new calendar.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarIn {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// IANA time zone.
    #[schema(value_type = tickiti_domain::calendar::IanaTimeZone)]
    pub time_zone: String,
    /// Opening intervals (at most 70); none: the calendar is never open.
    #[schema(max_items = 70)]
    pub hours: Vec<OpeningHours>,
    /// Days off (at most 400).
    #[serde(default)]
    #[schema(max_items = 400)]
    pub holidays: Vec<Holiday>,
}

/// Changes to a calendar; each field given replaces the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarPatch {
    /// Name.
    pub name: Option<String>,
    /// IANA time zone.
    #[schema(value_type = Option<tickiti_domain::calendar::IanaTimeZone>)]
    pub time_zone: Option<String>,
    /// Opening intervals.
    #[schema(max_items = 70)]
    pub hours: Option<Vec<OpeningHours>>,
    /// Days off.
    #[schema(max_items = 400)]
    pub holidays: Option<Vec<Holiday>>,
}

fn conflict_or(error: StoreError) -> ApiError {
    if error.is_conflict_on(NAME_KEY) {
        ApiError::conflict(
            "CALENDAR_NAME_TAKEN",
            "a business calendar with this name exists",
        )
    } else {
        error.into()
    }
}

fn stored(hours: &[OpeningHours], holidays: &[Holiday]) -> (serde_json::Value, serde_json::Value) {
    let holidays: Vec<Holiday> = holidays
        .iter()
        .map(|h| Holiday {
            date: h.date.clone(),
            name: h.name.as_deref().map(str::trim).map(str::to_owned),
        })
        .collect();
    (
        serde_json::to_value(hours).unwrap_or_default(),
        serde_json::to_value(holidays).unwrap_or_default(),
    )
}

/// List business calendars, oldest first (ability `admin`).
#[utoipa::path(get, path = "/business-calendars", tag = "service levels", params(PageParams),
    responses((status = 200, body = ListOut<CalendarOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_calendars(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<CalendarOut>>> {
    principal.require(Ability::Admin)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = calendars::list(&mut conn, principal.org(), after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, CalendarOut::from)))
}

/// Create a business calendar (ability `admin`). An unknown time zone, a
/// malformed time or date, an interval that ends before it starts or two
/// that overlap: 422, nothing stored.
#[utoipa::path(post, path = "/business-calendars", tag = "service levels", request_body = CalendarIn,
    responses((status = 201, body = CalendarOut), (status = 409, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_calendar(
    State(state): State<AppState>,
    principal: Principal,
    Json(input): Json<CalendarIn>,
) -> ApiResult<(StatusCode, axum::Json<CalendarOut>)> {
    principal.require(Ability::Admin)?;
    let mut v = Validation::new();
    v.text("name", &input.name, 1, NAME_MAX);
    build_calendar(&mut v, &input.time_zone, &input.hours, &input.holidays);
    v.finish().map_err(ApiError::validation)?;
    let (hours, holidays) = stored(&input.hours, &input.holidays);
    let mut conn = state.db.acquire().await?;
    let fields = CalendarFields {
        name: input.name.trim(),
        time_zone: input.time_zone.trim(),
        hours: &hours,
        holidays: &holidays,
    };
    let calendar = calendars::insert(&mut conn, new_id(), principal.org(), &fields)
        .await
        .map_err(conflict_or)?;
    Ok((StatusCode::CREATED, axum::Json(calendar.into())))
}

/// Read a business calendar (ability `admin`).
#[utoipa::path(get, path = "/business-calendars/{id}", tag = "service levels", params(("id" = Uuid, Path)),
    responses((status = 200, body = CalendarOut), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(calendar.id = %id))]
pub async fn get_calendar(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CalendarOut>> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "business calendar")?;
    let mut conn = state.db.acquire().await?;
    let calendar = calendars::get(&mut conn, principal.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "business calendar"))?;
    Ok(axum::Json(calendar.into()))
}

/// Change a business calendar (ability `admin`); the result is checked as
/// a whole, as on create.
#[utoipa::path(patch, path = "/business-calendars/{id}", tag = "service levels", request_body = CalendarPatch,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CalendarOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, body = crate::http::error::Problem), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(calendar.id = %id))]
pub async fn update_calendar(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<CalendarPatch>,
) -> ApiResult<axum::Json<CalendarOut>> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "business calendar")?;
    let mut tx = db.begin().await?;
    let current: CalendarOut = calendars::get(&mut tx, principal.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "business calendar"))?
        .into();
    let name = patch.name.unwrap_or(current.name);
    let time_zone = patch.time_zone.unwrap_or(current.time_zone);
    let hours = patch.hours.unwrap_or(current.hours);
    let holidays = patch.holidays.unwrap_or(current.holidays);
    let mut v = Validation::new();
    v.text("name", &name, 1, NAME_MAX);
    build_calendar(&mut v, &time_zone, &hours, &holidays);
    v.finish().map_err(ApiError::validation)?;
    let (hours, holidays) = stored(&hours, &holidays);
    let fields = CalendarFields {
        name: name.trim(),
        time_zone: time_zone.trim(),
        hours: &hours,
        holidays: &holidays,
    };
    let calendar = calendars::update(&mut tx, principal.org(), id, &fields)
        .await
        .map_err(conflict_or)?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "business calendar"))?;
    tx.commit().await?;
    Ok(axum::Json(calendar.into()))
}

/// Delete a business calendar (ability `admin`; 409 `CALENDAR_IN_USE` while a policy counts in it).
#[utoipa::path(delete, path = "/business-calendars/{id}", tag = "service levels", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem),
              (status = 409, description = "CALENDAR_IN_USE", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(calendar.id = %id))]
pub async fn delete_calendar(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::Admin)?;
    let id = parse_id(&id, NOT_FOUND, "business calendar")?;
    let mut conn = state.db.acquire().await?;
    let deleted = calendars::delete(&mut conn, principal.org(), id)
        .await
        .map_err(|e| match e {
            StoreError::InUse { .. } => ApiError::conflict(
                "CALENDAR_IN_USE",
                "an SLA policy counts in this calendar; change or delete the policy first",
            ),
            other => other.into(),
        })?;
    if !deleted {
        return Err(ApiError::not_found(NOT_FOUND, "business calendar"));
    }
    Ok(StatusCode::NO_CONTENT)
}
