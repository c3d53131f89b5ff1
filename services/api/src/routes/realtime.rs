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

use crate::http::{ApiError, ApiResult, Principal};
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
    principal: Principal,
) -> ApiResult<(StatusCode, axum::Json<RegistrationCreated>)> {
    principal.require(Ability::Admin)?;
    let mut tx = state.db.begin().await?;
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
    principal: Principal,
) -> ApiResult<StatusCode> {
    principal.require(Ability::Admin)?;
    let mut tx = state.db.begin().await?;
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

// --- Perspective counts for browsers -----------------------------------------

/// The counts last sent, by organization and user (None: the shared ones).
type SentCounts = std::collections::HashMap<(Uuid, Option<Uuid>), Vec<(Uuid, i64)>>;

/// Least time between two recounts of one organization: under a burst of
/// changes its counts are recounted (and a frame sent to each of its
/// sockets) at most this often.
const COUNTS_SPACING: Duration = Duration::from_secs(1);
/// How often marked organizations are checked.
const COUNTS_TICK: Duration = Duration::from_millis(50);

/// Keeps browsers' perspective counts current (CONTRACT §5 `perspective.counts`).
///
/// Ticket and message events mark their organization. A marked organization
/// is recounted at the next [`COUNTS_TICK`], unless it was recounted less
/// than [`COUNTS_SPACING`] ago: then once that time is up, however many
/// changes it had meanwhile (coalesced under bursts). A lone change shows
/// within a tick; a burst costs one frame per socket a second, not one per
/// change. Counts that differ from
/// the last ones sent are published to `<prefix>.realtime` as
/// `perspective.counts` for the realtime service to hand on: one frame for
/// the organization's shared perspectives, and one per user for the
/// perspectives that depend on who asks (`assignee_id: "me"`, such as Mine,
/// and private ones), carrying that `user_id`. The queue
/// `<prefix>.api.perspective-counts` is shared by every api process
/// (competing consumers) and deleted with the last one. Counts are derived data: nothing here is durable
/// beyond the queue, and a lost recount is repaired by the next change.
pub async fn perspective_counts(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    let marked: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let events = state.bus.events_exchange();
    let spec = tickiti_bus::ConsumerSpec {
        queue: format!("{}.api.perspective-counts", state.config.bus_prefix),
        bindings: vec![
            (events.clone(), "ticket.*".into()),
            (events, "message.*".into()),
        ],
        // Derived data: gone with the last api process, nothing left behind.
        durable: false,
        auto_delete: true,
        prefetch: 256,
        ..tickiti_bus::ConsumerSpec::default()
    };
    let sink = marked.clone();
    let consumer = state.bus.consume(spec, move |message| {
        #[derive(Deserialize)]
        struct Org {
            organization_id: Uuid,
        }
        if let Ok(org) = serde_json::from_slice::<Org>(&message.payload)
            && let Ok(mut marked) = sink.lock()
        {
            marked.insert(org.organization_id);
        }
        std::future::ready(tickiti_bus::Outcome::Ack)
    });
    let mut last = SentCounts::new();
    let mut recounted: std::collections::HashMap<Uuid, tokio::time::Instant> =
        std::collections::HashMap::new();
    let mut tick = tokio::time::interval(COUNTS_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let due = |org: &Uuid| {
            recounted
                .get(org)
                .is_none_or(|at| now.duration_since(*at) >= COUNTS_SPACING)
        };
        let orgs: Vec<Uuid> = match marked.lock() {
            Ok(mut marked) => {
                let orgs: Vec<Uuid> = marked.iter().copied().filter(due).collect();
                for org in &orgs {
                    marked.remove(org);
                }
                orgs
            }
            Err(_) => continue,
        };
        for org in orgs {
            recounted.insert(org, now);
            if let Err(error) = recount(&state, org, &mut last).await {
                tracing::warn!(%error, organization.id = %org, "perspective recount failed");
            }
        }
        // Bounded memory: forget organizations not recounted for a while.
        recounted.retain(|_, at| now.duration_since(*at) < COUNTS_SPACING);
        if last.len() > 100_000 {
            last.clear();
        }
    }
    consumer.abort();
}

/// Recounts one organization and publishes what changed.
async fn recount(
    state: &AppState,
    org: Uuid,
    last: &mut SentCounts,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tickiti_domain::{AssigneeFilter, TicketFilter};
    use tickiti_store::{perspectives, tickets, users};

    use super::perspectives::stored_filter;

    let mut conn = state.db.acquire().await?;
    // Who sees each count: None for the shared ones (the same for everyone),
    // Some(user) for those that depend on who asks (`assignee_id: "me"`,
    // such as Mine, and private perspectives).
    let mut counted: Vec<(Option<Uuid>, Uuid, TicketFilter, Uuid)> = Vec::new();
    let mut users: Option<Vec<Uuid>> = None;
    for p in perspectives::list_of_organization(&mut conn, org).await? {
        let Some(filter) = stored_filter(&p) else {
            continue;
        };
        match p.user_id {
            Some(owner) => counted.push((Some(owner), p.id, filter, owner)),
            None if filter.assignee == AssigneeFilter::Me => {
                if users.is_none() {
                    let directory = users::directory(&mut conn, org).await?;
                    users = Some(directory.into_iter().map(|(id, _, _)| id).collect());
                }
                for &user in users.iter().flatten() {
                    counted.push((Some(user), p.id, filter.clone(), user));
                }
            }
            None => counted.push((None, p.id, filter, Uuid::nil())),
        }
    }
    let filters: Vec<(&TicketFilter, Uuid)> = counted
        .iter()
        .map(|(_, _, filter, me)| (filter, *me))
        .collect();
    let counts = tickets::count_each(&mut conn, org, &filters).await?;
    drop(conn);
    // Perspectives come in order, so each audience's list keeps it.
    let mut by_audience: std::collections::BTreeMap<Option<Uuid>, Vec<(Uuid, i64)>> =
        std::collections::BTreeMap::new();
    // The shared frame goes out even when the organization has no shared perspective.
    by_audience.insert(None, Vec::new());
    for ((audience, perspective_id, _, _), count) in counted.iter().zip(counts) {
        by_audience
            .entry(*audience)
            .or_default()
            .push((*perspective_id, count));
    }
    let mut outgoing = Vec::new();
    for (audience, counts) in by_audience {
        if last.get(&(org, audience)) != Some(&counts) {
            outgoing.push(counts_message(org, audience, &counts)?);
            last.insert((org, audience), counts);
        }
    }
    if !outgoing.is_empty() {
        let exchange = state.bus.realtime_exchange();
        if let Err(error) = state.bus.publish_to_listeners(&exchange, &outgoing).await {
            // Sent next time something changes.
            last.retain(|(o, _), _| *o != org);
            return Err(error.into());
        }
    }
    Ok(())
}

/// A `perspective.counts` event for the realtime service.
fn counts_message(
    org: Uuid,
    user: Option<Uuid>,
    counts: &[(Uuid, i64)],
) -> Result<tickiti_bus::OutgoingMessage, serde_json::Error> {
    let counts: Vec<serde_json::Value> = counts
        .iter()
        .map(|(id, count)| serde_json::json!({ "perspective_id": id, "count": count }))
        .collect();
    let mut data = serde_json::json!({ "counts": counts });
    if let Some(user) = user {
        data["user_id"] = serde_json::json!(user);
    }
    let id = new_id();
    let envelope = serde_json::json!({
        "id": id,
        "event": "perspective.counts",
        "organization_id": org,
        "occurred_at": OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "data": data,
    });
    Ok(tickiti_bus::OutgoingMessage {
        id,
        routing_key: "perspective.counts".into(),
        payload: serde_json::to_vec(&envelope)?,
        headers: Vec::new(),
    })
}
