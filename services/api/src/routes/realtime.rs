//! `/realtime`: pairing with the realtime service ("Tonic") and browser
//! tokens for it (CONTRACT §5, seed 000).
//!
//! Pairing: `POST /realtime/registration` makes a node key and a one-time
//! 8-digit pin, hands the key and the pin's argon2id hash to the realtime
//! service's private listener (`REALTIME_ADMIN_URL`) and shows the pin once.
//! The operator enters it with `tickiti-realtime pair PIN`; the next `GET`
//! sees the pairing bound. The node key is kept sealed under the master key.
//! `DELETE` unbinds: the realtime service forgets the key, so every browser
//! token signed with it stops working at once.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_crypto::realtime::{self as rt, BrowserClaims};
use tickiti_domain::{Ability, new_id};
use tickiti_store::realtime::{self as store, Registration};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::{ApiError, ApiResult, Db, Principal};
use crate::state::AppState;

/// How long a pin may be entered (CONTRACT §5).
pub const PIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a browser token may be used for a hello. Browsers reuse it for
/// reconnects and fetch a new one after a 4401.
pub const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Header with the proof of the node key on an unbind (see the realtime service).
const UNBIND_PROOF_HEADER: &str = "x-tickiti-unbind-proof";

/// The realtime routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            create_registration,
            get_registration,
            delete_registration
        ))
        .routes(routes!(create_realtime_ticket))
}

/// A started pairing: the pin is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationCreated {
    /// The one-time 8-digit pin to enter with `tickiti-realtime pair PIN`.
    pub pin: String,
    /// Until when the pin may be entered (10 minutes).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Always `pending`.
    pub status: String,
}

/// The pairing's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationOut {
    /// `unbound`, `pending` or `bound`.
    pub status: String,
    /// Where browsers connect (when bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The pairing's install id (pending or bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_id: Option<Uuid>,
    /// Until when the pin may be entered (pending).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was bound.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub bound_at: Option<OffsetDateTime>,
    /// Why an earlier pairing ended unbound: `expired` or `voided` (5 wrong pins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RegistrationOut {
    fn unbound(reason: Option<&str>) -> Self {
        Self {
            status: "unbound".into(),
            public_url: None,
            install_id: None,
            expires_at: None,
            bound_at: None,
            reason: reason.map(str::to_owned),
        }
    }
}

/// A browser token for the realtime service.
#[derive(Debug, Serialize, ToSchema)]
pub struct RealtimeTicketOut {
    /// The websocket URL to open.
    pub url: String,
    /// Send it in the hello frame: `{"type":"hello","token":"..."}`.
    pub token: String,
    /// Until when it may be used for a hello.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// The one client for the realtime service's private listener.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

fn admin_url(state: &AppState, path: &str) -> String {
    format!(
        "{}{path}",
        state.config.realtime.admin_url.trim_end_matches('/')
    )
}

fn unreachable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "realtime service unreachable");
    // 409, not 502: the request cannot be done in the install's current
    // state (no realtime service where REALTIME_ADMIN_URL points), and the
    // api answers 5xx only for its own faults.
    ApiError::new(
        StatusCode::CONFLICT,
        "REALTIME_UNREACHABLE",
        "the realtime service's private listener (REALTIME_ADMIN_URL) did not answer as expected",
    )
}

fn open_key(state: &AppState, registration: &Registration) -> ApiResult<[u8; 32]> {
    let bytes = state
        .secrets
        .open(&registration.node_key_sealed)
        .map_err(|e| ApiError::internal(&e))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the stored node key is not 32 bytes",
        )
    })
}

#[derive(Deserialize)]
struct RemotePairing {
    state: String,
}

/// What the realtime service says of a pairing: its state, None when it does not know it.
async fn remote_state(state: &AppState, install_id: Uuid) -> Result<Option<String>, ApiError> {
    let response = client()
        .get(admin_url(state, &format!("/pairing/{install_id}")))
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(unreachable(&response.status()));
    }
    let pairing: RemotePairing = response.json().await.map_err(|e| unreachable(&e))?;
    Ok(Some(pairing.state))
}

/// The registration as it stands now: a pending one is checked with the
/// realtime service (bound there → bound here; expired, voided or
/// replaced → forgotten, with the reason).
async fn current(state: &AppState) -> ApiResult<Result<Registration, Option<&'static str>>> {
    let mut conn = state.db.acquire().await?;
    let Some(registration) = store::get(&mut conn, false).await? else {
        return Ok(Err(None));
    };
    if registration.status == "bound" {
        return Ok(Ok(registration));
    }
    let expired_here = registration.pin_expires_at <= OffsetDateTime::now_utc();
    let remote = remote_state(state, registration.install_id).await;
    let outcome = match remote.as_ref().map(Option::as_deref) {
        Ok(Some("bound")) => {
            return match store::mark_bound(&mut conn, registration.install_id).await? {
                Some(bound) => Ok(Ok(bound)),
                // Changed meanwhile (unbound or re-paired): read again.
                None => Ok(store::get(&mut conn, false)
                    .await?
                    .filter(|r| r.status == "bound")
                    .ok_or(None)),
            };
        }
        Ok(Some("voided")) => Some("voided"),
        Ok(Some("pending")) | Err(_) if !expired_here => return Ok(Ok(registration)),
        Ok(Some(other)) if other != "pending" && other != "expired" => Some("replaced"),
        Ok(None) => Some("replaced"),
        _ => Some("expired"),
    };
    store::delete(&mut conn, registration.install_id).await?;
    Ok(Err(outcome))
}

fn registration_out(state: &AppState, registration: &Registration) -> RegistrationOut {
    let bound = registration.status == "bound";
    RegistrationOut {
        status: registration.status.clone(),
        public_url: bound.then(|| state.config.realtime.public_url.clone()),
        install_id: Some(registration.install_id),
        expires_at: (!bound).then_some(registration.pin_expires_at),
        bound_at: registration.bound_at,
        reason: None,
    }
}

/// Start pairing with the realtime service: answers the one-time pin (admin).
#[utoipa::path(post, path = "/realtime/registration", tag = "realtime",
    responses((status = 201, body = RegistrationCreated), (status = 403, body = crate::http::error::Problem),
              (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_registration(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
) -> ApiResult<(StatusCode, axum::Json<RegistrationCreated>)> {
    principal.require(Ability::Admin)?;
    let mut tx = db.begin().await?;
    if let Some(existing) = store::get(&mut tx, true).await? {
        if existing.status == "bound" {
            return Err(ApiError::conflict(
                "REALTIME_ALREADY_PAIRED",
                "the realtime service is paired; unbind it first (DELETE /api/v1/realtime/registration)",
            ));
        }
        if existing.organization_id != principal.org()
            && existing.pin_expires_at > OffsetDateTime::now_utc()
        {
            return Err(ApiError::conflict(
                "REALTIME_PAIRING_PENDING",
                "another organization's pairing is waiting for its pin",
            ));
        }
    }
    let install_id = new_id();
    let node_key = rt::generate_node_key();
    let pin = rt::generate_pin();
    let hash_of = pin.clone();
    let pin_hash = tokio::task::spawn_blocking(move || rt::hash_pin(&hash_of))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    let now = OffsetDateTime::now_utc();
    let expires_at = (now + PIN_TTL)
        .replace_nanosecond(0)
        .unwrap_or(now + PIN_TTL);
    let response = client()
        .post(admin_url(&state, "/pairing"))
        .json(&serde_json::json!({
            "install_id": install_id,
            "node_key": rt::encode_node_key(&node_key),
            "pin_hash": pin_hash,
            "expires_at": expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::internal(&e))?,
        }))
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    if !response.status().is_success() {
        return Err(unreachable(&response.status()));
    }
    store::replace_pending(
        &mut tx,
        install_id,
        principal.org(),
        principal.user.id,
        &state.secrets.seal(&node_key),
        expires_at,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%install_id, "realtime pairing started");
    Ok((
        StatusCode::CREATED,
        axum::Json(RegistrationCreated {
            pin,
            expires_at,
            status: "pending".into(),
        }),
    ))
}

/// The pairing's state: `unbound`, `pending` or `bound` with the `public_url` (admin).
#[utoipa::path(get, path = "/realtime/registration", tag = "realtime",
    responses((status = 200, body = RegistrationOut), (status = 403, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_registration(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<RegistrationOut>> {
    principal.require(Ability::Admin)?;
    Ok(axum::Json(match current(&state).await? {
        Ok(registration) => registration_out(&state, &registration),
        Err(reason) => RegistrationOut::unbound(reason),
    }))
}

/// Unbind (or cancel a pending pairing): every browser token stops working (admin of the pairing's organization).
#[utoipa::path(delete, path = "/realtime/registration", tag = "realtime",
    responses((status = 204), (status = 403, body = crate::http::error::Problem),
              (status = 404, body = crate::http::error::Problem), (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn delete_registration(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
) -> ApiResult<StatusCode> {
    principal.require(Ability::Admin)?;
    let mut tx = db.begin().await?;
    let registration = store::get(&mut tx, true)
        .await?
        .ok_or_else(|| ApiError::not_found("REALTIME_NOT_PAIRED", "realtime pairing"))?;
    if registration.organization_id != principal.org() {
        return Err(ApiError::forbidden(
            "the realtime service was paired by another organization",
        ));
    }
    let key = open_key(&state, &registration)?;
    let response = client()
        .delete(admin_url(
            &state,
            &format!("/pairing/{}", registration.install_id),
        ))
        .header(
            UNBIND_PROOF_HEADER,
            rt::unbind_proof(&key, registration.install_id),
        )
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    // 404: the realtime service does not know this pairing (its database was
    // reset): nothing there to unbind.
    if !(response.status().is_success() || response.status() == reqwest::StatusCode::NOT_FOUND) {
        return Err(unreachable(&response.status()));
    }
    store::delete(&mut tx, registration.install_id).await?;
    tx.commit().await?;
    tracing::info!(install_id = %registration.install_id, "realtime pairing ended");
    Ok(StatusCode::NO_CONTENT)
}

/// A short-lived token for the realtime websocket, signed with the node key.
#[utoipa::path(post, path = "/realtime/ticket", tag = "realtime",
    responses((status = 200, body = RealtimeTicketOut), (status = 409, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_realtime_ticket(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<RealtimeTicketOut>> {
    let registration = current(&state).await?.map_err(|_| {
        ApiError::conflict(
            "REALTIME_NOT_PAIRED",
            "the realtime service is not paired; pages refresh over REST",
        )
    })?;
    let key = open_key(&state, &registration)?;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let expires_at = now + TOKEN_TTL;
    let mut scopes = Vec::new();
    if principal.abilities.contains(&Ability::TicketsRead) {
        scopes.push(rt::scope::TICKETS.to_owned());
    }
    if principal.abilities.contains(&Ability::Admin) {
        scopes.push(rt::scope::ADMIN.to_owned());
    }
    let claims = BrowserClaims {
        iid: registration.install_id,
        org: principal.org(),
        sub: principal.user.id,
        name: principal.user.name.clone(),
        scopes,
        iat: now.unix_timestamp(),
        exp: expires_at.unix_timestamp(),
    };
    Ok(axum::Json(RealtimeTicketOut {
        url: state.config.realtime.public_url.clone(),
        token: rt::sign_token(&key, &claims),
        expires_at,
    }))
}
