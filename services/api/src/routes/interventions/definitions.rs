//! Intervention definitions: `/interventions`, managed by admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickiti_domain::intervention::{
    self, DEFAULT_TIMEOUT_SECONDS, Field, TEMPLATE_MAX, TIMEOUT_RANGE, TITLE_MAX,
};
use tickiti_domain::{Ability, Validation, new_id};
use tickiti_store::interventions::{self as store, Intervention};
use tickiti_store::{StoreError, queues};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{NOT_FOUND, REMOTE_NAME_MAX, TOKEN_MAX};
use crate::http::extract::{Cursor, NoFilter, PageParams, nullable};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// A definition's templates.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatesIn {
    /// Renders the internal message of a new intervention ticket (required).
    pub private: String,
    /// Renders the staff response of a submit (else the submit's `message`).
    pub public: Option<String>,
    /// Renders the final response when the remote's final object is applied.
    #[serde(rename = "final")]
    pub final_template: Option<String>,
}

/// Changes to the templates; `null` removes `public` or `final`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatesPatch {
    /// New `private` template.
    pub private: Option<String>,
    /// New `public` template; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub public: Option<Option<String>>,
    /// New `final` template; `null` removes it.
    #[serde(default, deserialize_with = "nullable", rename = "final")]
    #[schema(value_type = Option<String>)]
    pub final_template: Option<Option<String>>,
}

/// A definition as the API returns it (never its bearer token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InterventionOut {
    /// Id.
    pub id: Uuid,
    /// Unique, immutable name.
    pub name: String,
    /// Display name.
    pub title: String,
    /// Queue of its tickets.
    pub queue_name: Option<String>,
    /// Notification flag.
    pub notify_inbox_managers: bool,
    /// Escalation flag.
    pub fma_inbox_managers: bool,
    /// The remote system's name.
    pub remote_name: Option<String>,
    /// Where epilog calls go.
    pub remote_epilog_url: Option<String>,
    /// Whether a bearer token is stored (the token itself is write-only).
    pub remote_bearer_token_set: bool,
    /// Epilog call time-out.
    pub remote_timeout_seconds: i32,
    /// Whether submits make epilog calls.
    pub remote_enabled: bool,
    /// Whether remotes may open tickets with it.
    pub enabled: bool,
    /// UI fields.
    pub fields: Vec<Field>,
    /// Templates.
    pub templates: TemplatesIn,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

pub(super) fn stored_fields(value: &serde_json::Value) -> Vec<Field> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

impl From<Intervention> for InterventionOut {
    fn from(i: Intervention) -> Self {
        InterventionOut {
            id: i.id,
            fields: stored_fields(&i.fields),
            name: i.name,
            title: i.title,
            queue_name: i.queue_name,
            notify_inbox_managers: i.notify_inbox_managers,
            fma_inbox_managers: i.fma_inbox_managers,
            remote_name: i.remote_name,
            remote_epilog_url: i.remote_epilog_url,
            remote_bearer_token_set: i.remote_bearer_token_sealed.is_some(),
            remote_timeout_seconds: i.remote_timeout_seconds,
            remote_enabled: i.remote_enabled,
            enabled: i.enabled,
            templates: TemplatesIn {
                private: i.template_private,
                public: i.template_public,
                final_template: i.template_final,
            },
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// A new definition.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionIn {
    /// Unique name: 1 to 64 letters, digits, `_`, `.` or `-`, starting with
    /// a letter or digit; cannot change later.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    pub name: String,
    /// Display name.
    pub title: String,
    /// Name of an existing queue for its tickets.
    pub queue_name: Option<String>,
    /// Notification flag (default false).
    pub notify_inbox_managers: Option<bool>,
    /// Escalation flag (default false).
    pub fma_inbox_managers: Option<bool>,
    /// The remote system's name.
    pub remote_name: Option<String>,
    /// Where epilog calls go (https where required).
    pub remote_epilog_url: Option<String>,
    /// Sent as `Authorization: Bearer …` with epilog calls; stored encrypted, never returned.
    #[schema(pattern = r"^[!-~]{1,4096}$")]
    pub remote_bearer_token: Option<String>,
    /// Epilog call time-out, 1 to 120 (default 10).
    #[schema(minimum = 1, maximum = 120)]
    pub remote_timeout_seconds: Option<i32>,
    /// Make epilog calls on submit (default false; needs `remote_epilog_url`).
    pub remote_enabled: Option<bool>,
    /// Accept new intervention tickets (default true).
    pub enabled: Option<bool>,
    /// UI fields.
    pub fields: Option<Vec<Field>>,
    /// Templates (`private` required).
    pub templates: TemplatesIn,
}

/// Changes to a definition; `name` may be repeated but not changed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionPatch {
    /// Must equal the current name (names are immutable).
    pub name: Option<String>,
    /// Display name.
    pub title: Option<String>,
    /// Queue name; `null`: none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub queue_name: Option<Option<String>>,
    /// Notification flag.
    pub notify_inbox_managers: Option<bool>,
    /// Escalation flag.
    pub fma_inbox_managers: Option<bool>,
    /// The remote system's name; `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub remote_name: Option<Option<String>>,
    /// Epilog URL; `null` clears. Changing it while a bearer token is set
    /// needs `remote_bearer_token` in the same patch (422 otherwise): the old
    /// URL's token is never sent to a new one.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub remote_epilog_url: Option<Option<String>>,
    /// New bearer token; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[!-~]{1,4096}$")]
    pub remote_bearer_token: Option<Option<String>>,
    /// Epilog call time-out, 1 to 120.
    #[schema(minimum = 1, maximum = 120)]
    pub remote_timeout_seconds: Option<i32>,
    /// Make epilog calls on submit.
    pub remote_enabled: Option<bool>,
    /// Accept new intervention tickets.
    pub enabled: Option<bool>,
    /// UI fields (replaces them all).
    pub fields: Option<Vec<Field>>,
    /// Template changes.
    pub templates: Option<TemplatesPatch>,
}

/// 422 `INVALID_TEMPLATE` naming the template, the line and the reason.
fn invalid_template(field: &str, error: &intervention::TemplateError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_TEMPLATE",
        format!("{field} does not parse: {error}"),
    )
    .with_member(
        "template_error",
        json!({ "template": field, "line": error.line, "reason": error.reason }),
    )
}

/// Checks a template's length and syntax.
fn check_template(field: &str, source: &str, required: bool) -> ApiResult<()> {
    if source.chars().count() > TEMPLATE_MAX {
        return Err(ApiError::invalid_field(
            field,
            format!("must be at most {TEMPLATE_MAX} characters"),
        ));
    }
    if required && source.trim().is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    intervention::check_template(source).map_err(|e| invalid_template(field, &e))
}

fn check_token(v: &mut Validation, token: &str) {
    if token.is_empty() || token.len() > TOKEN_MAX {
        v.error(
            "remote_bearer_token",
            format!("must be 1 to {TOKEN_MAX} characters"),
        );
    } else if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        v.error(
            "remote_bearer_token",
            "must be visible ASCII without spaces",
        );
    }
}

async fn resolve_queue(
    state: &AppState,
    org: Uuid,
    name: Option<&str>,
    v: &mut Validation,
) -> ApiResult<Option<Uuid>> {
    let Some(name) = name else { return Ok(None) };
    let mut conn = state.db.acquire().await?;
    match queues::find_by_name(&mut conn, org, name.trim()).await? {
        Some(queue) => Ok(Some(queue.id)),
        None => {
            v.error("queue_name", "no such queue");
            Ok(None)
        }
    }
}

/// The rules every saved definition meets (after a create or a patch).
async fn check_definition(state: &AppState, def: &Intervention) -> ApiResult<()> {
    check_template("templates.private", &def.template_private, true)?;
    if let Some(public) = &def.template_public {
        check_template("templates.public", public, false)?;
    }
    if let Some(final_template) = &def.template_final {
        check_template("templates.final", final_template, false)?;
    }
    let mut v = Validation::new();
    v.text("title", &def.title, 1, TITLE_MAX);
    v.optional_text("remote_name", def.remote_name.as_deref(), REMOTE_NAME_MAX);
    v.range(
        "remote_timeout_seconds",
        i64::from(def.remote_timeout_seconds),
        TIMEOUT_RANGE.0,
        TIMEOUT_RANGE.1,
    );
    intervention::check_fields(&mut v, &stored_fields(&def.fields));
    if def.remote_enabled && def.remote_epilog_url.is_none() {
        v.error(
            "remote_epilog_url",
            "is required while remote_enabled is true",
        );
    }
    v.finish().map_err(ApiError::validation)?;
    if let Some(url) = &def.remote_epilog_url {
        crate::routes::webhooks::check_url(state, url).await?;
    }
    Ok(())
}

async fn find_definition(state: &AppState, org: Uuid, name: &str) -> ApiResult<Intervention> {
    let mut conn = state.db.acquire().await?;
    store::get_by_name(&mut conn, org, name)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))
}

/// List intervention definitions, oldest first.
#[utoipa::path(get, path = "/interventions", tag = "interventions", params(PageParams),
    responses((status = 200, body = ListOut<InterventionOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_interventions(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<InterventionOut>>> {
    principal.require(Ability::InterventionsManage)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = store::list(&mut conn, principal.org(), after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, InterventionOut::from)))
}

/// Create an intervention definition. Templates are checked: one that does
/// not parse answers 422 `INVALID_TEMPLATE` with the template, line and reason.
#[utoipa::path(post, path = "/interventions", tag = "interventions", request_body = InterventionIn,
    responses((status = 201, body = InterventionOut),
              (status = 409, description = "INTERVENTION_EXISTS", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED, INVALID_TEMPLATE or INVALID_URL", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_intervention(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Json(input): Json<InterventionIn>,
) -> ApiResult<(StatusCode, axum::Json<InterventionOut>)> {
    principal.require(Ability::InterventionsManage)?;
    let org = principal.org();
    let mut v = Validation::new();
    if !intervention::valid_name(&input.name) {
        v.error(
            "name",
            "must be 1 to 64 letters, digits, _, . or -, starting with a letter or digit",
        );
    }
    if let Some(token) = &input.remote_bearer_token {
        check_token(&mut v, token);
    }
    let queue_id = resolve_queue(&state, org, input.queue_name.as_deref(), &mut v).await?;
    v.finish().map_err(ApiError::validation)?;
    let now = OffsetDateTime::now_utc();
    let def = Intervention {
        id: new_id(),
        organization_id: org,
        name: input.name,
        title: input.title.trim().to_owned(),
        queue_id,
        queue_name: None,
        notify_inbox_managers: input.notify_inbox_managers.unwrap_or(false),
        fma_inbox_managers: input.fma_inbox_managers.unwrap_or(false),
        remote_name: input.remote_name.map(|s| s.trim().to_owned()),
        remote_epilog_url: input.remote_epilog_url,
        remote_bearer_token_sealed: input
            .remote_bearer_token
            .as_deref()
            .map(|t| state.secrets.seal_str(t)),
        remote_timeout_seconds: input
            .remote_timeout_seconds
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        remote_enabled: input.remote_enabled.unwrap_or(false),
        enabled: input.enabled.unwrap_or(true),
        fields: serde_json::to_value(input.fields.unwrap_or_default())
            .map_err(|e| ApiError::internal(&e))?,
        template_private: input.templates.private,
        template_public: input.templates.public,
        template_final: input.templates.final_template,
        created_at: now,
        updated_at: now,
    };
    check_definition(&state, &def).await?;
    let mut tx = db.begin().await?;
    match store::upsert(&mut tx, &def).await {
        Err(e) if e.is_conflict_on("interventions_name_key") => {
            return Err(ApiError::conflict(
                "INTERVENTION_EXISTS",
                "an intervention with this name exists",
            ));
        }
        other => other?,
    }
    let saved = store::get(&mut tx, org, def.id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(saved.into())))
}

/// Read an intervention definition.
#[utoipa::path(get, path = "/interventions/{name}", tag = "interventions", params(("name" = String, Path)),
    responses((status = 200, body = InterventionOut), (status = 404, description = "INTERVENTION_NOT_FOUND", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<InterventionOut>> {
    principal.require(Ability::InterventionsManage)?;
    Ok(axum::Json(
        find_definition(&state, principal.org(), &name)
            .await?
            .into(),
    ))
}

/// Change an intervention definition. `name` cannot change (422).
#[utoipa::path(patch, path = "/interventions/{name}", tag = "interventions", request_body = InterventionPatch,
    params(("name" = String, Path)),
    responses((status = 200, body = InterventionOut), (status = 404, body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED (also for a changed name), INVALID_TEMPLATE or INVALID_URL", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn update_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Json(patch): Json<InterventionPatch>,
) -> ApiResult<axum::Json<InterventionOut>> {
    principal.require(Ability::InterventionsManage)?;
    let org = principal.org();
    let mut def = find_definition(&state, org, &name).await?;
    let mut v = Validation::new();
    if patch.name.as_ref().is_some_and(|n| *n != def.name) {
        v.error("name", "is immutable: it cannot change after creation");
    }
    if let Some(Some(token)) = &patch.remote_bearer_token {
        check_token(&mut v, token);
    }
    // The token was given for one URL: it must not follow the calls to
    // another one unless the caller says so.
    if patch
        .remote_epilog_url
        .as_ref()
        .is_some_and(|url| *url != def.remote_epilog_url)
        && def.remote_bearer_token_sealed.is_some()
        && patch.remote_bearer_token.is_none()
    {
        v.error(
            "remote_bearer_token",
            "is required when remote_epilog_url changes: the token set for the old URL is not \
             sent to a new one (give the new URL's token, or null for none)",
        );
    }
    if let Some(queue_name) = &patch.queue_name {
        def.queue_id = resolve_queue(&state, org, queue_name.as_deref(), &mut v).await?;
    }
    v.finish().map_err(ApiError::validation)?;
    if let Some(title) = patch.title {
        def.title = title.trim().to_owned();
    }
    if let Some(flag) = patch.notify_inbox_managers {
        def.notify_inbox_managers = flag;
    }
    if let Some(flag) = patch.fma_inbox_managers {
        def.fma_inbox_managers = flag;
    }
    if let Some(remote_name) = patch.remote_name {
        def.remote_name = remote_name.map(|s| s.trim().to_owned());
    }
    if let Some(url) = patch.remote_epilog_url {
        def.remote_epilog_url = url;
    }
    if let Some(token) = patch.remote_bearer_token {
        def.remote_bearer_token_sealed = token.as_deref().map(|t| state.secrets.seal_str(t));
    }
    if let Some(timeout) = patch.remote_timeout_seconds {
        def.remote_timeout_seconds = timeout;
    }
    if let Some(flag) = patch.remote_enabled {
        def.remote_enabled = flag;
    }
    if let Some(flag) = patch.enabled {
        def.enabled = flag;
    }
    if let Some(fields) = patch.fields {
        def.fields = serde_json::to_value(fields).map_err(|e| ApiError::internal(&e))?;
    }
    if let Some(templates) = patch.templates {
        if let Some(private) = templates.private {
            def.template_private = private;
        }
        if let Some(public) = templates.public {
            def.template_public = public;
        }
        if let Some(final_template) = templates.final_template {
            def.template_final = final_template;
        }
    }
    check_definition(&state, &def).await?;
    let mut conn = state.db.acquire().await?;
    store::upsert(&mut conn, &def).await?;
    let saved = store::get(&mut conn, org, def.id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    Ok(axum::Json(saved.into()))
}

/// Delete an intervention definition (409 `INTERVENTION_IN_USE` once tickets use it: disable it instead).
#[utoipa::path(delete, path = "/interventions/{name}", tag = "interventions", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem),
              (status = 409, description = "INTERVENTION_IN_USE", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn delete_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::InterventionsManage)?;
    let def = find_definition(&state, principal.org(), &name).await?;
    let mut conn = state.db.acquire().await?;
    match store::delete(&mut conn, principal.org(), def.id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(NOT_FOUND, "intervention")),
        Err(StoreError::InUse { .. }) => Err(ApiError::conflict(
            "INTERVENTION_IN_USE",
            "tickets use this intervention; disable it with PATCH {\"enabled\": false} instead",
        )),
        Err(e) => Err(e.into()),
    }
}
