//! Interventions (CONTRACT §4, seed 001): definitions under `/interventions`,
//! remote systems opening tickets through `POST /intervention-tickets`, the
//! staff submit that queues the epilog call, and the ticket's intervention
//! view with every epilog attempt.
//!
//! The api never calls a remote itself: a submit writes the epilog call and,
//! in the same transaction, a `command.intervention.epilog` outbox row that
//! the relay sends to `<prefix>.commands`; `tickiti-dispatcher` makes the
//! call, retries it and applies the remote's final object exactly once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickiti_domain::intervention::{
    self, DATA_BAG_MAX, DEFAULT_TIMEOUT_SECONDS, Field, FieldType, PayloadStatus, TEMPLATE_MAX,
    TIMEOUT_RANGE, TITLE_MAX, TemplateKind, UID_MAX,
};
use tickiti_domain::ticket::{BODY_MAX, SUBJECT_MAX};
use tickiti_domain::{Ability, EventType, Priority, Validation, Visibility, new_id};
use tickiti_store::interventions::{self as store, Intervention, NewPayload, Payload};
use tickiti_store::tickets::Ticket;
use tickiti_store::{StoreError, audit, contacts, messages, queues, tickets};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::messages::MessageOut;
use super::tickets::{NewTicket, find_ticket, prepare_ticket};
use crate::events::EventBatch;
use crate::http::extract::{Cursor, NoFilter, PageParams, nullable};
use crate::http::{ApiError, ApiResult, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The intervention routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_interventions, create_intervention))
        .routes(routes!(
            get_intervention,
            update_intervention,
            delete_intervention
        ))
        .routes(routes!(create_intervention_ticket))
        .routes(routes!(get_ticket_intervention))
        .routes(routes!(submit_ticket_intervention))
}

const NOT_FOUND: &str = "INTERVENTION_NOT_FOUND";
/// Longest remote name.
const REMOTE_NAME_MAX: usize = 200;
/// Longest bearer token.
const TOKEN_MAX: usize = 4096;
/// Longest staff message of a submit.
const MESSAGE_MAX: usize = BODY_MAX;

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

fn stored_fields(value: &serde_json::Value) -> Vec<Field> {
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
    /// Unique name: 1 to 64 letters, digits, `_`, `.` or `-`; cannot change later.
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
    pub remote_bearer_token: Option<String>,
    /// Epilog call time-out, 1 to 120 (default 10).
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
    #[schema(value_type = Option<String>)]
    pub remote_bearer_token: Option<Option<String>>,
    /// Epilog call time-out.
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
        super::webhooks::check_url(state, url).await?;
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
    let mut conn = state.db.acquire().await?;
    match store::upsert(&mut conn, &def).await {
        Err(e) if e.is_conflict_on("interventions_name_key") => {
            return Err(ApiError::conflict(
                "INTERVENTION_EXISTS",
                "an intervention with this name exists",
            ));
        }
        other => other?,
    }
    let saved = store::get(&mut conn, org, def.id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
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

/// The `data` member of an intervention ticket request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionDataIn {
    /// The data bag (at most 32 KiB as JSON).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// `POST /intervention-tickets` (seed 001 §2).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionTicketIn {
    /// The end user's address (the ticket's contact).
    #[schema(format = Email, max_length = 254)]
    pub originator_email_address: String,
    /// The intervention's name.
    pub intervention: String,
    /// The remote's unique id of this instance (unique per intervention).
    #[schema(min_length = 1, max_length = 255)]
    pub uid: String,
    /// `{"data": {...}}`.
    pub data: InterventionDataIn,
}

/// The answer to `POST /intervention-tickets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InterventionTicketOut {
    /// The new ticket.
    pub ticket_id: Uuid,
    /// Its per-organization number.
    pub ticket_number: i64,
    /// The intervention's name.
    pub intervention: String,
    /// The remote's id.
    pub uid: String,
    /// Always `pending` for a new ticket.
    pub status: PayloadStatus,
}

fn data_bag_too_large(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "DATA_BAG_TOO_LARGE",
        format!("{field} is larger than {DATA_BAG_MAX} bytes of JSON"),
    )
}

/// Renders `source`; on failure a clear note instead (for the audit log) and the error.
fn render_or_note(
    kind: TemplateKind,
    source: &str,
    context: &serde_json::Value,
) -> (String, Option<String>) {
    match intervention::render(source, context) {
        Ok(text) => (text, None),
        Err(e) => {
            let note = format!("the {kind} template failed to render: {e}");
            (format!("[{note}]"), Some(note))
        }
    }
}

/// A remote system opens a ticket with an intervention (seed 001 §2).
/// `Idempotency-Key` is required.
#[utoipa::path(post, path = "/intervention-tickets", tag = "interventions", request_body = InterventionTicketIn,
    params(("Idempotency-Key" = String, Header, description = "Required: a retried request with the same key and body gets the first answer")),
    responses((status = 201, body = InterventionTicketOut),
              (status = 400, description = "IDEMPOTENCY_KEY_REQUIRED", body = crate::http::error::Problem),
              (status = 409, description = "INTERVENTION_UID_EXISTS (with the existing `ticket_id`)", body = crate::http::error::Problem),
              (status = 413, description = "DATA_BAG_TOO_LARGE", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED, UNKNOWN_INTERVENTION or INTERVENTION_DISABLED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_intervention_ticket(
    State(state): State<AppState>,
    principal: Principal,
    Json(input): Json<InterventionTicketIn>,
) -> ApiResult<(StatusCode, axum::Json<InterventionTicketOut>)> {
    principal.require(Ability::CreateTicket)?;
    let org = principal.org();
    let mut v = Validation::new();
    let email = input.originator_email_address.trim();
    v.email("originator_email_address", email);
    v.text("uid", &input.uid, 1, UID_MAX);
    v.text("intervention", &input.intervention, 1, 64);
    v.finish().map_err(ApiError::validation)?;
    let data = serde_json::Value::Object(input.data.data);
    if intervention::data_bag_size(&data) > DATA_BAG_MAX {
        return Err(data_bag_too_large("data.data"));
    }

    let mut tx = state.db.begin().await?;
    let def = store::get_by_name(&mut tx, org, &input.intervention)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_INTERVENTION",
                "no intervention has this name",
            )
        })?;
    if !def.enabled {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INTERVENTION_DISABLED",
            "this intervention is disabled and accepts no new tickets",
        ));
    }
    if let Some(ticket_id) = store::ticket_of_uid(&mut tx, def.id, &input.uid).await? {
        return Err(uid_exists(ticket_id));
    }
    let mut events = EventBatch::new(org);
    let (contact, created) = contacts::find_or_insert(&mut tx, org, email, None).await?;
    if created {
        events.push(
            EventType::ContactCreated,
            &super::contacts::ContactOut::from(contact.clone()),
        )?;
    }
    let subject: String = format!("{} ({})", def.title, input.uid)
        .chars()
        .take(SUBJECT_MAX)
        .collect();
    let new = NewTicket {
        subject,
        priority: Priority::Normal,
        queue_id: def.queue_id,
        assignee_id: None,
        contact: &contact,
        tags: Vec::new(),
        audit: json!({ "intervention": def.name, "uid": input.uid }),
    };
    let ticket = prepare_ticket(&mut tx, &principal, &new, &mut events).await?;
    // Its events go out with the rest of the batch below.
    tickets::open(
        &mut tx,
        &tickets::Opening {
            ticket: &ticket,
            new_contact: None,
            actor_user_id: Some(principal.user.id),
            audit: &new.audit,
            message: None,
            events: &[],
        },
    )
    .await?;
    let now = ticket.created_at;
    let inserted = store::insert_payload(
        &mut tx,
        &NewPayload {
            organization_id: org,
            intervention_id: def.id,
            ticket_id: ticket.id,
            uid: &input.uid,
            originator_email: email,
            data: &data,
        },
    )
    .await;
    if let Err(e) = &inserted
        && e.is_conflict_on("intervention_payloads_uid_key")
    {
        // Another request with this uid committed first.
        tx.rollback().await?;
        let mut conn = state.db.acquire().await?;
        let ticket_id = store::ticket_of_uid(&mut conn, def.id, &input.uid).await?;
        return Err(uid_exists(ticket_id.unwrap_or_default()));
    }
    inserted?;
    let payload = store::payload_for_ticket(&mut tx, org, ticket.id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    let context = store::template_context(&ticket, &def, &payload, &data, None);
    let (body, failed) = render_or_note(TemplateKind::Private, &def.template_private, &context);
    if let Some(note) = failed {
        audit::insert(
            &mut tx,
            org,
            ticket.id,
            None,
            "intervention.template_failed",
            &json!({ "template": "private", "error": note }),
        )
        .await?;
    }
    let message = messages::insert(
        &mut tx,
        &messages::Message {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            author_user_id: Some(principal.user.id),
            author_contact_id: None,
            visibility: Visibility::Internal.as_str().to_owned(),
            body: cut(body),
            created_at: now,
        },
    )
    .await?;
    events.push(EventType::MessageCreated, &MessageOut::from(message))?;
    events.push(EventType::InterventionCreated, &payload)?;
    events.append(&mut tx).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InterventionTicketOut {
            ticket_id: ticket.id,
            ticket_number: ticket.number,
            intervention: def.name,
            uid: input.uid,
            status: PayloadStatus::Pending,
        }),
    ))
}

/// A rendered message never exceeds the body limit.
fn cut(body: String) -> String {
    if body.chars().count() > BODY_MAX {
        body.chars().take(BODY_MAX).collect()
    } else {
        body
    }
}

fn uid_exists(ticket_id: Uuid) -> ApiError {
    ApiError::conflict(
        "INTERVENTION_UID_EXISTS",
        "a ticket with this uid exists for this intervention",
    )
    .with_member("ticket_id", json!(ticket_id))
}

/// A UI field as a ticket shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOut {
    /// `text`, `checkbox`, `label` or `hr`.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Key in the data bag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Caption as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// For `label`: the text with its `{{ data.KEY }}` / `{{ ticket.FIELD }}` tokens resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For `text` and `checkbox`: the value in the data bag.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<serde_json::Value>,
}

/// An epilog call (one per submit that reached an enabled remote).
#[derive(Debug, Serialize, ToSchema)]
pub struct EpilogOut {
    /// Id; also the `Idempotency-Key` of each of its requests.
    pub id: Uuid,
    /// The staff response it reports.
    pub response_id: Uuid,
    /// `pending`, `retrying`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempt: i32,
    /// When the next attempt is due (while `pending` or `retrying`).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: OffsetDateTime,
    /// The last attempt's problem.
    pub last_error: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<store::Epilog> for EpilogOut {
    fn from(e: store::Epilog) -> Self {
        EpilogOut {
            id: e.id,
            response_id: e.response_id,
            status: e.status,
            attempt: e.attempt,
            next_attempt_at: e.next_attempt_at,
            last_error: e.last_error,
            created_at: e.created_at,
        }
    }
}

/// One attempt of an epilog call, as logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpilogAttemptOut {
    /// Id.
    pub id: Uuid,
    /// The call.
    pub epilog_id: Uuid,
    /// 1-based attempt number within the call.
    pub attempt: i32,
    /// `ok`, `final_applied`, `final_already_applied`, `final_rejected`, `retry` or `gave_up`.
    pub outcome: String,
    /// HTTP status, when an answer came.
    pub response_code: Option<i32>,
    /// Duration of the request.
    pub response_time_ms: Option<i32>,
    /// Up to 4 KiB of the answer.
    pub response_body: Option<String>,
    /// What went wrong, or why it is retried.
    pub error: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<store::Attempt> for EpilogAttemptOut {
    fn from(a: store::Attempt) -> Self {
        EpilogAttemptOut {
            id: a.id,
            epilog_id: a.epilog_id,
            attempt: a.attempt,
            outcome: a.outcome,
            response_code: a.response_code,
            response_time_ms: a.response_time_ms,
            response_body: a.response_body,
            error: a.error,
            created_at: a.created_at,
        }
    }
}

/// A ticket's intervention: payload, status, fields and every epilog attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketInterventionOut {
    /// Payload id.
    pub id: Uuid,
    /// The intervention's name.
    pub intervention: String,
    /// Its title.
    pub title: String,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The remote's id.
    pub uid: String,
    /// The originator.
    pub originator_email_address: String,
    /// `pending`, `submitted` or `accepted`.
    pub status: PayloadStatus,
    /// The data bag.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The staff response of the last submit.
    pub response_id: Option<Uuid>,
    /// The remote's final object, once applied.
    #[serde(rename = "final")]
    #[schema(value_type = Option<Object>)]
    pub final_object: Option<serde_json::Value>,
    /// UI fields, labels resolved.
    pub fields: Vec<FieldOut>,
    /// Epilog calls (one per submit), oldest first.
    pub epilogs: Vec<EpilogOut>,
    /// Every attempt of every epilog call, oldest first.
    pub epilog_attempts: Vec<EpilogAttemptOut>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last submit.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<OffsetDateTime>,
    /// When the final object was applied.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<OffsetDateTime>,
}

async fn load_view(
    conn: &mut sqlx::PgConnection,
    ticket: &Ticket,
    def: &Intervention,
    payload: Payload,
) -> ApiResult<TicketInterventionOut> {
    let context = store::template_context(ticket, def, &payload, &payload.data, None);
    let fields = stored_fields(&def.fields)
        .into_iter()
        .map(|f| FieldOut {
            text: (f.kind == FieldType::Label)
                .then(|| {
                    f.label
                        .as_deref()
                        .map(|l| intervention::resolve_label(l, &context))
                })
                .flatten(),
            value: f.key.as_ref().and_then(|k| payload.data.get(k).cloned()),
            kind: f.kind,
            key: f.key,
            label: f.label,
        })
        .collect();
    let epilogs = store::epilogs_of(conn, payload.id).await?;
    let epilogs = epilogs.into_iter().map(EpilogOut::from).collect();
    let epilog_attempts = store::attempts_of(conn, payload.id).await?;
    let epilog_attempts = epilog_attempts
        .into_iter()
        .map(EpilogAttemptOut::from)
        .collect();
    Ok(TicketInterventionOut {
        id: payload.id,
        intervention: payload.intervention,
        title: def.title.clone(),
        ticket_id: payload.ticket_id,
        uid: payload.uid,
        originator_email_address: payload.originator_email_address,
        status: payload.status.parse().unwrap_or(PayloadStatus::Pending),
        data: payload.data,
        response_id: payload.response_id,
        final_object: payload.final_object,
        fields,
        epilogs,
        epilog_attempts,
        created_at: payload.created_at,
        submitted_at: payload.submitted_at,
        accepted_at: payload.accepted_at,
    })
}

async fn find_payload(
    conn: &mut sqlx::PgConnection,
    org: Uuid,
    ticket_id: Uuid,
    lock: bool,
) -> ApiResult<(Payload, Intervention)> {
    let payload = store::payload_for_ticket(conn, org, ticket_id, lock)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention of this ticket"))?;
    let def = store::get(conn, org, payload.intervention_id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    Ok((payload, def))
}

/// The ticket's intervention: payload, status, resolved fields, epilog calls and attempts.
#[utoipa::path(get, path = "/tickets/{id}/intervention", tag = "interventions", params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketInterventionOut),
              (status = 404, description = "TICKET_NOT_FOUND or INTERVENTION_NOT_FOUND", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn get_ticket_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TicketInterventionOut>> {
    principal.require(Ability::TicketsRead)?;
    // One snapshot: the payload's status and the attempt log agree even while
    // the dispatcher commits an attempt.
    let mut tx = state
        .db
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let ticket = find_ticket(&mut tx, &principal, &id, false).await?;
    let (payload, def) = find_payload(&mut tx, principal.org(), ticket.id, false).await?;
    let view = load_view(&mut tx, &ticket, &def, payload).await?;
    tx.commit().await?;
    Ok(axum::Json(view))
}

/// A staff submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitIn {
    /// The edited data bag (replaces the stored one; at most 32 KiB as JSON).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// The response text; required unless the intervention has a `public`
    /// template (which sees it as `message`).
    pub message: Option<String>,
}

/// Staff submit: stores the data bag, posts the response (the `public`
/// template, else `message`), emits `intervention.submitted` and queues the
/// epilog call (when the remote is enabled).
#[utoipa::path(post, path = "/tickets/{id}/intervention/submit", tag = "interventions", request_body = SubmitIn,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketInterventionOut),
              (status = 404, description = "TICKET_NOT_FOUND or INTERVENTION_NOT_FOUND", body = crate::http::error::Problem),
              (status = 409, description = "INTERVENTION_ACCEPTED", body = crate::http::error::Problem),
              (status = 413, description = "DATA_BAG_TOO_LARGE", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED or TEMPLATE_RENDER_FAILED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn submit_ticket_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(input): Json<SubmitIn>,
) -> ApiResult<axum::Json<TicketInterventionOut>> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let data = serde_json::Value::Object(input.data);
    if intervention::data_bag_size(&data) > DATA_BAG_MAX {
        return Err(data_bag_too_large("data"));
    }
    let mut v = Validation::new();
    if let Some(message) = &input.message {
        v.text("message", message, 1, MESSAGE_MAX);
    }
    v.finish().map_err(ApiError::validation)?;

    let mut tx = state.db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    let (payload, def) = find_payload(&mut tx, org, ticket.id, true).await?;
    if payload.status == PayloadStatus::Accepted.as_str() {
        return Err(ApiError::conflict(
            "INTERVENTION_ACCEPTED",
            "the remote already accepted this intervention; it cannot be submitted again",
        ));
    }
    let body = match (&def.template_public, &input.message) {
        (Some(source), message) => {
            let mut extra = serde_json::Map::new();
            extra.insert("message".into(), json!(message));
            let context = store::template_context(&ticket, &def, &payload, &data, Some(&extra));
            intervention::render(source, &context).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "TEMPLATE_RENDER_FAILED",
                    format!("the public template failed to render: {e}"),
                )
            })?
        }
        (None, Some(message)) => message.clone(),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "message",
                "is required: this intervention has no public template",
            ));
        }
    };
    if body.trim().is_empty() {
        return Err(ApiError::invalid_field("message", "the response is empty"));
    }
    let message = messages::insert(
        &mut tx,
        &messages::Message {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            author_user_id: Some(principal.user.id),
            author_contact_id: None,
            visibility: Visibility::Public.as_str().to_owned(),
            body: cut(body),
            created_at: OffsetDateTime::now_utc(),
        },
    )
    .await?;
    store::submit(&mut tx, payload.id, &data, message.id).await?;
    // Calls for an earlier response stop: the remote hears about the latest.
    store::supersede_epilogs(&mut tx, payload.id).await?;
    let epilog_id = if def.remote_enabled && def.remote_epilog_url.is_some() {
        let epilog_id = store::insert_epilog(&mut tx, org, payload.id, message.id, &data).await?;
        store::request_epilog(&mut tx, org, epilog_id).await?;
        Some(epilog_id)
    } else {
        None
    };
    audit::insert(
        &mut tx,
        org,
        ticket.id,
        Some(principal.user.id),
        "intervention.submitted",
        &json!({ "response_id": message.id, "epilog_id": epilog_id }),
    )
    .await?;
    let (payload, def) = find_payload(&mut tx, org, ticket.id, false).await?;
    let mut events = EventBatch::new(org);
    let message = MessageOut::from(message);
    events.push(EventType::MessageCreated, &message)?;
    events.push(EventType::TicketMessageCreated, &message)?;
    events.push(EventType::InterventionSubmitted, &payload)?;
    events.append(&mut tx).await?;
    let view = load_view(&mut tx, &ticket, &def, payload).await?;
    state.commit(tx).await?;
    Ok(axum::Json(view))
}
