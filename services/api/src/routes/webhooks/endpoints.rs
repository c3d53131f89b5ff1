//! Webhook endpoints: create, read, change, delete, and every check of their fields.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::webhook::{self, EndpointStatus, PayloadFormat, UrlProblem, classify_ip};
use tickiti_domain::{Ability, EventType, Validation};
use tickiti_store::webhooks::{self, Endpoint, EndpointChanges, NewEndpoint};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{NOT_FOUND, find_endpoint};
use crate::http::extract::{Cursor, NoFilter, PageParams, nullable, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// `Cache-Control: no-store`, on the one answer that shows a secret.
type NoStore = [(axum::http::HeaderName, axum::http::HeaderValue); 1];
/// Longest description.
pub const DESCRIPTION_MAX: usize = 500;
/// Secret length bounds (characters).
pub const SECRET_MIN: usize = 16;
/// Longest secret.
pub const SECRET_MAX: usize = 256;
/// Most extra headers per endpoint.
pub const HEADERS_MAX: usize = 20;
/// Highest `rate_limit_per_second`.
pub const RATE_LIMIT_MAX: i32 = 10_000;
/// Endpoints one organization may have: each can hold dispatcher slots, so
/// the cap bounds what one tenant asks of every other (issue 12).
pub const MAX_ENDPOINTS_PER_ORG: i64 = 50;

/// An endpoint as the API returns it (never its secret, except once at creation).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookOut {
    /// Id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed event types (`*` for all).
    pub events: Vec<String>,
    /// `active`, `disabled` or `failed`.
    #[schema(value_type = String)]
    pub status: EndpointStatus,
    /// Whether deliveries go out (`status` is `active`).
    pub active: bool,
    /// Why the dispatcher set `failed` or `disabled` (e.g. `410 Gone`).
    pub status_reason: Option<String>,
    /// `nested` or `flat`.
    #[schema(value_type = String)]
    pub payload_format: PayloadFormat,
    /// Free text.
    pub description: Option<String>,
    /// Seconds before each attempt; `null`: the dispatcher's `WEBHOOK_RETRY_SCHEDULE`.
    pub retry_schedule: Option<Vec<i32>>,
    /// Deliveries per second at most (more wait, they do not fail).
    pub rate_limit_per_second: Option<i32>,
    /// Extra static headers sent with every delivery.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// When the secret was last rotated (the previous one signs too for 24 h).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub secret_rotated_at: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Endpoint> for WebhookOut {
    fn from(e: Endpoint) -> Self {
        let status = e.status.parse().unwrap_or(EndpointStatus::Disabled);
        WebhookOut {
            id: e.id,
            url: e.url,
            events: e.events,
            active: status == EndpointStatus::Active,
            status,
            status_reason: e.status_reason,
            payload_format: e.payload_format.parse().unwrap_or(PayloadFormat::Nested),
            description: e.description,
            retry_schedule: e.retry_schedule,
            rate_limit_per_second: e.rate_limit_per_second,
            headers: e.headers,
            secret_rotated_at: e.secret_rotated_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new endpoint, with its secret (shown this once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookCreatedOut {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookOut,
    /// The signing secret: store it now, it is never shown again.
    pub secret: String,
}

/// A delay in a retry schedule: seconds, or a duration such as `"30s"`, `"5m"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Delay {
    /// Seconds, at most a week.
    Seconds(i64),
    /// A duration with a unit (`ms`, `s`, `m`, `h`, `d`), at most a week.
    Text(String),
}

impl utoipa::PartialSchema for Delay {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let week = webhook::MAX_DELAY.as_secs();
        OneOfBuilder::new()
            .description(Some(
                "A delay in a retry schedule, at most a week: seconds, or a duration such as `\"30s\"`, `\"5m\"`.",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("Seconds."))
                    .minimum(Some(0))
                    .maximum(Some(week)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A whole number and a unit (`ms`, `s`, `m`, `h`, `d`)."))
                    .pattern(Some(r"^[0-9]{1,6}(ms|s|m|h|d)$")),
            )
            .into()
    }
}

impl ToSchema for Delay {}

/// The OpenAPI schema of an endpoint's subscription: an event type a
/// webhook can carry, or `*` for all of them.
pub struct WebhookEventName;

impl utoipa::PartialSchema for WebhookEventName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let names = std::iter::once("*").chain(
            EventType::ALL
                .iter()
                .filter(|e| e.is_webhook_event())
                .map(|e| e.as_str()),
        );
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An event type webhooks carry, or `*` for every one."))
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for WebhookEventName {}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// https URL (http where allowed).
    pub url: String,
    /// Event types, or `["*"]`.
    #[schema(value_type = Vec<WebhookEventName>, min_items = 1)]
    pub events: Vec<String>,
    /// Signing secret; generated (`whsec_…`) when absent.
    pub secret: Option<String>,
    /// Start active (default) or disabled.
    pub active: Option<bool>,
    /// `nested` (default) or `flat`.
    #[schema(value_type = Option<String>)]
    pub payload_format: Option<PayloadFormat>,
    /// Free text.
    pub description: Option<String>,
    /// Delay before each attempt (overrides the default schedule), 1 to 20.
    #[schema(min_items = 1, max_items = 20)]
    pub retry_schedule: Option<Vec<Delay>>,
    /// Deliveries per second at most.
    pub rate_limit_per_second: Option<i32>,
    /// Extra static headers.
    #[schema(value_type = Option<Object>)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Changes to an endpoint. A new `secret` rotates it: the old one keeps
/// signing beside it for 24 h. `{"active": true}` re-enables a failed endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// URL.
    pub url: Option<String>,
    /// Event types.
    #[schema(value_type = Option<Vec<WebhookEventName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// New signing secret.
    pub secret: Option<String>,
    /// `true` activates (also a failed endpoint), `false` disables.
    pub active: Option<bool>,
    /// `active` or `disabled` (same as `active`).
    #[schema(value_type = Option<String>)]
    pub status: Option<EndpointStatus>,
    /// `nested` or `flat`.
    #[schema(value_type = Option<String>)]
    pub payload_format: Option<PayloadFormat>,
    /// Free text; `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Retry schedule; `null` returns to the default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<Delay>>, min_items = 1, max_items = 20)]
    pub retry_schedule: Option<Option<Vec<Delay>>>,
    /// Rate limit; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub rate_limit_per_second: Option<Option<i32>>,
    /// Extra static headers (replaces them all).
    #[schema(value_type = Option<Object>)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
}

fn invalid_url(problem: &UrlProblem) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_URL",
        format!("url {problem}"),
    )
}

/// Checks the form of `url` and, unless private networks are allowed, where
/// its host resolves (every address must be public). The dispatcher checks
/// the address again when it connects, so a later DNS change cannot slip by.
pub(crate) async fn check_url(state: &AppState, text: &str) -> ApiResult<String> {
    let require_https = state.webhooks.https_required(state.config.environment);
    let url = webhook::parse_url(text, require_https).map_err(|p| invalid_url(&p))?;
    if state.webhooks.allow_private_networks {
        return Ok(url.to_string());
    }
    let addresses: Vec<IpAddr> = match webhook::literal_ip(&url) {
        Some(ip) => vec![ip],
        None => {
            let host = url.host_str().unwrap_or_default().to_owned();
            let port = url.port_or_known_default().unwrap_or(443);
            match tokio::time::timeout(
                Duration::from_secs(3),
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                // Not resolvable now: accepted; the dispatcher vets at send time.
                Ok(Err(error)) => {
                    tracing::info!(%host, %error, "webhook host does not resolve yet");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        }
    };
    if let Some(class) = addresses.into_iter().find_map(classify_ip) {
        return Err(invalid_url(&UrlProblem::Forbidden(class)));
    }
    Ok(url.to_string())
}

/// Unknown or non-subscribable event types answer `INVALID_EVENTS`.
fn check_events(events: &[String]) -> ApiResult<Vec<String>> {
    if events.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_EVENTS",
            "events must name at least one event type (or \"*\")",
        ));
    }
    let unknown: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| {
            *e != "*"
                && !e
                    .parse::<EventType>()
                    .is_ok_and(EventType::is_webhook_event)
        })
        .collect();
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown
            .iter()
            .take(10)
            .map(|e| format!("{:?}", e.chars().take(64).collect::<String>()))
            .collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_EVENTS",
            format!("unknown event types: {}", shown.join(", ")),
        ));
    }
    let unique: BTreeSet<&String> = events.iter().collect();
    Ok(unique.into_iter().cloned().collect())
}

fn check_secret(v: &mut Validation, secret: &str) {
    let len = secret.chars().count();
    if !(SECRET_MIN..=SECRET_MAX).contains(&len) {
        v.error(
            "secret",
            format!("must be {SECRET_MIN} to {SECRET_MAX} characters"),
        );
    } else if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        v.error("secret", "must not contain spaces or control characters");
    }
}

fn check_schedule(v: &mut Validation, delays: &[Delay]) -> Vec<i32> {
    let mut seconds = Vec::with_capacity(delays.len());
    for (i, delay) in delays.iter().enumerate() {
        let field = format!("retry_schedule[{i}]");
        let parsed = match delay {
            Delay::Seconds(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| "must not be negative".to_owned()),
            Delay::Text(text) => tickiti_domain::duration::parse_duration(text),
        };
        match parsed {
            Ok(d) if d.subsec_nanos() != 0 => v.error(field, "must be whole seconds"),
            Ok(d) if d > webhook::MAX_DELAY => v.error(field, "must be at most 7 days"),
            Ok(d) => seconds.push(i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
            Err(message) => v.error(field, message),
        }
    }
    if delays.is_empty() || delays.len() > webhook::MAX_ATTEMPTS {
        v.error(
            "retry_schedule",
            format!("must have 1 to {} attempts", webhook::MAX_ATTEMPTS),
        );
    }
    seconds
}

/// Headers the dispatcher sets itself, or that would break the request.
fn reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "host"
            | "content-type"
            | "content-length"
            | "content-encoding"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authorization"
            | "user-agent"
            | "traceparent"
            | "tracestate"
    ) || name.starts_with("x-tickiti-")
        || name.starts_with("webhook-")
}

fn check_headers(
    v: &mut Validation,
    headers: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    if headers.len() > HEADERS_MAX {
        v.error("headers", format!("at most {HEADERS_MAX} headers"));
    }
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let token_ok = !name.is_empty()
            && name.len() <= 100
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token_ok {
            v.error(&field, "is not a valid header name");
        } else if reserved_header(name) {
            v.error(&field, "is set by Tickiti and cannot be overridden");
        }
        match value.as_str() {
            Some(text)
                if text.len() <= 1000
                    && text
                        .bytes()
                        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) => {}
            Some(_) => v.error(&field, "must be at most 1000 visible ASCII characters"),
            None => v.error(&field, "must be a string"),
        }
    }
    serde_json::Value::Object(headers.clone())
}

fn check_rate_limit(v: &mut Validation, rate: i32) {
    v.range(
        "rate_limit_per_second",
        i64::from(rate),
        1,
        i64::from(RATE_LIMIT_MAX),
    );
}

/// List webhook endpoints, newest first.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(PageParams),
    responses((status = 200, body = ListOut<WebhookOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<WebhookOut>>> {
    principal.require(Ability::WebhooksManage)?;
    let before = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = webhooks::list(&mut conn, principal.org(), before, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, WebhookOut::from)))
}

/// Create a webhook endpoint; the answer carries its secret, this once.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = WebhookCreatedOut),
              (status = 409, description = "LIMIT_REACHED: the organization has its most endpoints", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED, INVALID_URL or INVALID_EVENTS", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_webhook(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Json(input): Json<WebhookIn>,
) -> ApiResult<(StatusCode, NoStore, axum::Json<WebhookCreatedOut>)> {
    principal.require(Ability::WebhooksManage)?;
    let events = check_events(&input.events)?;
    let mut v = Validation::new();
    if let Some(secret) = &input.secret {
        check_secret(&mut v, secret);
    }
    v.optional_text("description", input.description.as_deref(), DESCRIPTION_MAX);
    let schedule = input
        .retry_schedule
        .as_deref()
        .map(|delays| check_schedule(&mut v, delays));
    if let Some(rate) = input.rate_limit_per_second {
        check_rate_limit(&mut v, rate);
    }
    let headers = input
        .headers
        .as_ref()
        .map_or_else(|| serde_json::json!({}), |h| check_headers(&mut v, h));
    v.finish().map_err(ApiError::validation)?;
    let url = check_url(&state, &input.url).await?;

    let secret = input
        .secret
        .unwrap_or_else(tickiti_crypto::generate_webhook_secret);
    let sealed = state.secrets.seal_str(&secret);
    let status = if input.active.unwrap_or(true) {
        EndpointStatus::Active
    } else {
        EndpointStatus::Disabled
    };
    let mut tx = db.begin().await?;
    if webhooks::count_for_insert(&mut tx, principal.org()).await? >= MAX_ENDPOINTS_PER_ORG {
        return Err(ApiError::conflict(
            "LIMIT_REACHED",
            format!(
                "an organization has at most {MAX_ENDPOINTS_PER_ORG} webhook endpoints; delete one first"
            ),
        ));
    }
    let endpoint = webhooks::insert(
        &mut tx,
        &NewEndpoint {
            id: tickiti_domain::new_id(),
            organization_id: principal.org(),
            url: &url,
            events: &events,
            secret_sealed: &sealed,
            status: status.as_str(),
            payload_format: input
                .payload_format
                .unwrap_or(PayloadFormat::Nested)
                .as_str(),
            description: input.description.as_deref().map(str::trim),
            retry_schedule: schedule.as_deref(),
            rate_limit_per_second: input.rate_limit_per_second,
            headers: &headers,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        // The secret is shown once: no cache keeps it (and the idempotency
        // layer stores this answer sealed).
        [(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        )],
        axum::Json(WebhookCreatedOut {
            webhook: endpoint.into(),
            secret,
        }),
    ))
}

/// Read a webhook endpoint.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookOut), (status = 404, description = "WEBHOOK_NOT_FOUND", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<WebhookOut>> {
    principal.require(Ability::WebhooksManage)?;
    let endpoint = find_endpoint(&state, principal.org(), &id).await?;
    Ok(axum::Json(endpoint.into()))
}

/// Change a webhook endpoint (a new `secret` rotates it; `{"active": true}` re-enables it).
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", request_body = WebhookPatch, params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED, INVALID_URL or INVALID_EVENTS", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn update_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<WebhookPatch>,
) -> ApiResult<axum::Json<WebhookOut>> {
    principal.require(Ability::WebhooksManage)?;
    let id = parse_id(&id, NOT_FOUND, "webhook")?;
    let events = patch.events.as_deref().map(check_events).transpose()?;
    let mut v = Validation::new();
    if let Some(secret) = &patch.secret {
        check_secret(&mut v, secret);
    }
    v.optional_text(
        "description",
        patch.description.clone().flatten().as_deref(),
        DESCRIPTION_MAX,
    );
    let schedule = patch
        .retry_schedule
        .as_ref()
        .map(|s| s.as_deref().map(|delays| check_schedule(&mut v, delays)));
    if let Some(Some(rate)) = patch.rate_limit_per_second {
        check_rate_limit(&mut v, rate);
    }
    let headers = patch.headers.as_ref().map(|h| check_headers(&mut v, h));
    let status = match (patch.active, patch.status) {
        (Some(_), Some(_)) => {
            v.error("status", "give either active or status, not both");
            None
        }
        (Some(true), None) | (None, Some(EndpointStatus::Active)) => Some(EndpointStatus::Active),
        (Some(false), None) | (None, Some(EndpointStatus::Disabled)) => {
            Some(EndpointStatus::Disabled)
        }
        (None, Some(EndpointStatus::Failed)) => {
            v.error(
                "status",
                "only the dispatcher sets failed; use active or disabled",
            );
            None
        }
        (None, None) => None,
    };
    v.finish().map_err(ApiError::validation)?;
    let url = match &patch.url {
        Some(url) => Some(check_url(&state, url).await?),
        None => None,
    };
    let sealed = patch.secret.as_deref().map(|s| state.secrets.seal_str(s));
    let changes = EndpointChanges {
        url: url.as_deref(),
        events: events.as_deref(),
        secret_sealed: sealed.as_deref(),
        status: status.map(EndpointStatus::as_str),
        payload_format: patch.payload_format.map(PayloadFormat::as_str),
        description: patch
            .description
            .as_ref()
            .map(|d| d.as_deref().map(str::trim)),
        retry_schedule: schedule.as_ref().map(|s| s.as_deref()),
        rate_limit_per_second: patch.rate_limit_per_second,
        headers: headers.as_ref(),
    };
    let mut conn = state.db.acquire().await?;
    let endpoint = webhooks::update(&mut conn, principal.org(), id, &changes)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "webhook"))?;
    Ok(axum::Json(endpoint.into()))
}

/// Delete a webhook endpoint and its delivery log.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::WebhooksManage)?;
    let id = parse_id(&id, NOT_FOUND, "webhook")?;
    let mut conn = state.db.acquire().await?;
    if webhooks::delete(&mut conn, principal.org(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(NOT_FOUND, "webhook"))
    }
}
