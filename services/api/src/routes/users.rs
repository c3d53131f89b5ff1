//! `/me` and `/users`: the organization's staff. Password hashes never leave
//! the store.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tickiti_domain::{Ability, Role, Validation};
use tickiti_store::organizations;
use tickiti_store::users::{self, User, UserChanges};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The user routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user))
}

/// Longest display name.
pub const NAME_MAX: usize = 200;

/// A user as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: Uuid,
    /// Sign-in address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `admin` or `agent`.
    pub role: Role,
    /// Quiet in-app notifications instead of e-mail.
    pub realtime_notifications: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        UserOut {
            id: u.id,
            email: u.email,
            name: u.name,
            // The database's CHECK constraint admits only these spellings.
            role: u.role.parse().unwrap_or(Role::Agent),
            realtime_notifications: u.realtime_notifications,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// The caller's organization, as `/me` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganizationRef {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
}

/// The caller: the user, what this request may do, and the organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MeOut {
    /// The user.
    #[serde(flatten)]
    pub user: UserOut,
    /// Effective abilities: the token's (all, for a session) that the role also grants.
    pub abilities: Vec<Ability>,
    /// The organization.
    pub organization: OrganizationRef,
    /// The session's `X-CSRF-Token` (only when signed in with the session
    /// cookie): a reloaded tab reads it here instead of signing in again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Changes to a user. `name` and `realtime_notifications`: the user or an
/// admin; `role`: admins only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Display name.
    pub name: Option<String>,
    /// Role (needs the `admin` ability; the last admin cannot be demoted).
    pub role: Option<Role>,
    /// Quiet in-app notifications instead of e-mail.
    pub realtime_notifications: Option<bool>,
}

const NOT_FOUND: &str = "USER_NOT_FOUND";

/// The caller, their effective abilities and their organization.
#[utoipa::path(get, path = "/me", tag = "users",
    responses((status = 200, body = MeOut), (status = 401, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_me(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<MeOut>> {
    let mut conn = state.db.acquire().await?;
    let organization = organizations::get(&mut conn, principal.org())
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(axum::Json(MeOut {
        user: principal.user.clone().into(),
        abilities: principal.abilities.clone(),
        organization: OrganizationRef {
            id: organization.id,
            name: organization.name,
        },
        csrf_token: principal.csrf_token.clone(),
    }))
}

/// The organization's users, oldest first.
#[utoipa::path(get, path = "/users", tag = "users", params(PageParams),
    responses((status = 200, body = ListOut<UserOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<UserOut>>> {
    principal.require(Ability::TicketsRead)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = users::list(&mut conn, principal.org(), after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, UserOut::from)))
}

/// A new colleague, added by an admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// Their sign-in e-mail, unique across the install.
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@.\s\x00-\x1f\x7f-\x9f][^@\s\x00-\x1f\x7f-\x9f]*\.[^@.\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub email: String,
    /// Display name, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Their first password (8 to 1024 characters); they sign in with it.
    #[schema(min_length = 8, max_length = 1024, pattern = r"^\S.{6,}\S$")]
    pub password: String,
    /// `agent` (the default) or `admin`.
    pub role: Option<Role>,
}

/// Add a user to the caller's organization (ability `admin`). The password
/// is stored as an argon2id hash only.
#[utoipa::path(post, path = "/users", tag = "users", request_body = UserIn,
    responses((status = 201, body = UserOut), (status = 403, body = crate::http::error::Problem),
              (status = 409, description = "EMAIL_TAKEN", body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_user(
    db: Db,
    principal: Principal,
    Json(input): Json<UserIn>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<UserOut>)> {
    principal.require(Ability::Admin)?;
    let mut tx = db.begin().await?;
    let id = crate::accounts::add_user(
        &mut tx,
        principal.org(),
        &input.email,
        &input.name,
        &input.password,
        input.role.unwrap_or(Role::Agent),
    )
    .await?;
    let user = users::get(&mut tx, principal.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "user"))?;
    tx.commit().await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(user.into())))
}

/// Change a user: one's own name and notification flag, or (ability
/// `admin`) anyone's, including the role.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserPatch, params(("id" = Uuid, Path)),
    responses((status = 200, body = UserOut), (status = 403, body = crate::http::error::Problem),
              (status = 404, body = crate::http::error::Problem), (status = 409, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(user.id = %id))]
pub async fn update_user(
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<UserPatch>,
) -> ApiResult<axum::Json<UserOut>> {
    let org = principal.org();
    let id = parse_id(&id, NOT_FOUND, "user")?;
    let mut v = Validation::new();
    if let Some(name) = &patch.name {
        v.text("name", name, 1, NAME_MAX);
    }
    v.finish().map_err(ApiError::validation)?;

    let mut tx = db.begin().await?;
    // Another organization's id answers 404 before any 403 can tell it exists.
    let target = users::get(&mut tx, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "user"))?;
    if target.id != principal.user.id || patch.role.is_some() {
        principal.require(Ability::Admin)?;
    }
    let current_role: Role = target.role.parse().unwrap_or(Role::Agent);
    if current_role == Role::Admin
        && patch.role.is_some_and(|r| r != Role::Admin)
        && users::count_admins_locked(&mut tx, org).await? <= 1
    {
        return Err(ApiError::conflict(
            "LAST_ADMIN",
            "this is the organization's last admin; promote another user first",
        ));
    }
    let changes = UserChanges {
        name: patch.name.as_deref().map(str::trim),
        role: patch.role.map(Role::as_str),
        realtime_notifications: patch.realtime_notifications,
    };
    let user = users::update(&mut tx, org, id, &changes)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "user"))?;
    tx.commit().await?;
    Ok(axum::Json(user.into()))
}
