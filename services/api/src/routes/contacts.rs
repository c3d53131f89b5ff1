//! `/contacts`: the people tickets are about, unique by e-mail per organization.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::validation::EMAIL_MAX;
use tickiti_domain::{Ability, EventType, Validation, new_id};
use tickiti_store::StoreError;
use tickiti_store::contacts::{self, Contact, ContactChanges, EMAIL_KEY};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::events::emit;
use crate::http::extract::{Cursor, PageParams, nullable, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The contact routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, create_contact))
        .routes(routes!(get_contact, update_contact, delete_contact))
}

/// A contact as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactOut {
    /// Id.
    pub id: Uuid,
    /// Address (unique per organization).
    pub email: String,
    /// Name.
    pub name: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Contact> for ContactOut {
    fn from(c: Contact) -> Self {
        ContactOut {
            id: c.id,
            email: c.email,
            name: c.name,
            company: c.company,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A new contact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    /// Address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Name.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Company.
    #[schema(max_length = 200)]
    pub company: Option<String>,
}

/// Changes to a contact; `null` clears name or company.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// Address.
    pub email: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// Company.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
}

/// Filters of the contact list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContactFilter {
    /// Part of the name, e-mail or company.
    pub q: Option<String>,
}

const NOT_FOUND: &str = "CONTACT_NOT_FOUND";

fn conflict_or(error: StoreError) -> ApiError {
    if error.is_conflict_on(EMAIL_KEY) {
        ApiError::conflict(
            "CONTACT_EMAIL_TAKEN",
            "a contact with this e-mail address exists",
        )
    } else {
        error.into()
    }
}

/// List contacts, newest first.
#[utoipa::path(get, path = "/contacts", tag = "contacts", params(PageParams, ContactFilter),
    responses((status = 200, body = ListOut<ContactOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_contacts(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<ContactFilter>,
) -> ApiResult<axum::Json<ListOut<ContactOut>>> {
    principal.require(Ability::ContactsRead)?;
    let before = Cursor::after_id(query.cursor)?;
    let q = query
        .filter
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid_field(
            "q",
            "must be at most 200 characters",
        ));
    }
    let mut conn = state.db.acquire().await?;
    let page = contacts::list(&mut conn, principal.org(), q, before, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, ContactOut::from)))
}

/// Create a contact.
#[utoipa::path(post, path = "/contacts", tag = "contacts", request_body = ContactIn,
    responses((status = 201, body = ContactOut), (status = 409, body = crate::http::error::Problem),
              (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_contact(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Json(input): Json<ContactIn>,
) -> ApiResult<(StatusCode, axum::Json<ContactOut>)> {
    principal.require(Ability::ContactsWrite)?;
    let mut v = Validation::new();
    v.email("email", input.email.trim());
    v.optional_text("name", input.name.as_deref(), 200);
    v.optional_text("company", input.company.as_deref(), 200);
    v.finish().map_err(ApiError::validation)?;
    let mut tx = db.begin().await?;
    let contact = contacts::insert(
        &mut tx,
        new_id(),
        principal.org(),
        input.email.trim(),
        input.name.as_deref().map(str::trim),
        input.company.as_deref().map(str::trim),
    )
    .await
    .map_err(conflict_or)?;
    let out = ContactOut::from(contact);
    emit(&mut tx, &principal, EventType::ContactCreated, &out).await?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Read a contact.
#[utoipa::path(get, path = "/contacts/{id}", tag = "contacts", params(("id" = Uuid, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_contact(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ContactOut>> {
    principal.require(Ability::ContactsRead)?;
    let id = parse_id(&id, NOT_FOUND, "contact")?;
    let mut conn = state.db.acquire().await?;
    let contact = contacts::get(&mut conn, principal.org(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "contact"))?;
    Ok(axum::Json(contact.into()))
}

/// Change a contact.
#[utoipa::path(patch, path = "/contacts/{id}", tag = "contacts", request_body = ContactPatch, params(("id" = Uuid, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn update_contact(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<ContactPatch>,
) -> ApiResult<axum::Json<ContactOut>> {
    principal.require(Ability::ContactsWrite)?;
    let id = parse_id(&id, NOT_FOUND, "contact")?;
    let mut v = Validation::new();
    if let Some(email) = &patch.email {
        v.email("email", email.trim());
        v.text("email", email, 1, EMAIL_MAX);
    }
    v.optional_text("name", patch.name.clone().flatten().as_deref(), 200);
    v.optional_text("company", patch.company.clone().flatten().as_deref(), 200);
    v.finish().map_err(ApiError::validation)?;
    let changes = ContactChanges {
        email: patch.email.as_deref().map(str::trim),
        name: patch.name.as_ref().map(|n| n.as_deref().map(str::trim)),
        company: patch.company.as_ref().map(|c| c.as_deref().map(str::trim)),
    };
    let mut tx = db.begin().await?;
    let contact = contacts::update(&mut tx, principal.org(), id, &changes)
        .await
        .map_err(conflict_or)?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "contact"))?;
    let out = ContactOut::from(contact);
    emit(&mut tx, &principal, EventType::ContactUpdated, &out).await?;
    state.commit(tx).await?;
    Ok(axum::Json(out))
}

/// Delete a contact (refused with 409 `CONTACT_IN_USE` while tickets refer to it).
#[utoipa::path(delete, path = "/contacts/{id}", tag = "contacts", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem), (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn delete_contact(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::ContactsWrite)?;
    let id = parse_id(&id, NOT_FOUND, "contact")?;
    let mut tx = db.begin().await?;
    let deleted = contacts::delete(&mut tx, principal.org(), id)
        .await
        .map_err(|e| match e {
            StoreError::InUse { .. } => {
                ApiError::conflict("CONTACT_IN_USE", "tickets still refer to this contact")
            }
            other => other.into(),
        })?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "contact"))?;
    emit(
        &mut tx,
        &principal,
        EventType::ContactDeleted,
        &ContactOut::from(deleted),
    )
    .await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
