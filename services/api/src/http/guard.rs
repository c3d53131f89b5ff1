//! What every request passes before its handler: a request id, the rate
//! limit, authentication and the CSRF check.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use subtle::ConstantTimeEq as _;
use tickiti_domain::{Ability, Role, ability::effective_abilities};
use tickiti_store::users::User;
use uuid::Uuid;

use super::client::client_key;
use super::error::{ApiError, ApiResult, PROBLEM_JSON};
use crate::config::RateLimit;
use crate::state::AppState;

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Name of the staff session cookie.
pub const SESSION_COOKIE: &str = "tickiti_session";
/// `X-CSRF-Token`: required with the session cookie on unsafe methods.
pub static CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The request's id, as an extension for handlers and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives every request an id (the client's `X-Request-Id` when it is sane),
/// echoes it on the answer and writes it into problem bodies as `request_id`.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, http.method = %req.method(), http.target = %req.uri().path());
    let response = tracing::Instrument::instrument(next.run(req), span).await;
    let mut response = add_request_id_to_problem(response, &id).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

async fn add_request_id_to_problem(response: Response, id: &str) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == PROBLEM_JSON.as_bytes());
    if !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Problem bodies are small documents this crate wrote itself.
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("request_id".into(), id.into());
            parts.headers.remove(header::CONTENT_LENGTH);
            serde_json::Value::Object(map).to_string().into()
        }
        _ => bytes,
    };
    Response::from_parts(parts, axum::body::Body::from(body))
}

type KeyedLimiter = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Per-token (or per-IP) request budget with the `RateLimit-*` headers
/// (draft-ietf-httpapi-ratelimit-headers) on every answer.
pub struct RateLimiter {
    limiter: Option<(KeyedLimiter, u32, Duration)>,
    clock: DefaultClock,
}

impl RateLimiter {
    /// A limiter for the configured budget.
    pub fn new(limit: RateLimit) -> Self {
        let limiter = match limit {
            RateLimit::Off => None,
            RateLimit::Per { count, period } => NonZeroU32::new(count)
                .and_then(|burst| Quota::with_period(period / count).map(|q| q.allow_burst(burst)))
                .map(|quota| {
                    (
                        governor::RateLimiter::keyed(quota)
                            .with_middleware::<StateInformationMiddleware>(),
                        count,
                        period,
                    )
                }),
        };
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Forgets keys whose budget is full again, so memory stays bounded.
    pub fn forget_idle_keys(&self) {
        if let Some((limiter, ..)) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Spends one request of `key`'s budget: the headers to send, or the 429.
    fn check(&self, key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let Some((limiter, count, period)) = &self.limiter else {
            return Ok(Vec::new());
        };
        let per_request = *period / *count;
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // Time until the budget is full again.
                let reset = per_request * (count - remaining);
                Ok(rate_headers(*count, remaining, reset))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!(
                        "rate limit of {count} requests per {}s exceeded",
                        period.as_secs()
                    ),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after));
                for (name, value) in rate_headers(*count, 0, wait) {
                    error = error.with_header(name, value);
                }
                Err(error)
            }
        }
    }
}

fn rate_headers(limit: u32, remaining: u32, reset: Duration) -> Vec<(HeaderName, HeaderValue)> {
    let reset = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(remaining),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(reset),
        ),
    ]
}

/// Who is calling and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user (directly, or behind the token).
    pub user: User,
    /// The user's role.
    pub role: Role,
    /// The token used, when not a browser session.
    pub token_id: Option<Uuid>,
    /// Abilities of the token intersected with the role's.
    pub abilities: Vec<Ability>,
    /// The session's CSRF token, when signed in with the session cookie.
    pub csrf_token: Option<String>,
}

impl Principal {
    /// The caller's organization.
    pub fn org(&self) -> Uuid {
        self.user.organization_id
    }

    /// 403 unless the caller holds `ability`.
    pub fn require(&self, ability: Ability) -> ApiResult<()> {
        if self.abilities.contains(&ability) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this request needs the {ability} ability"
            )))
        }
    }

    /// The caller as idempotency records and the rate limit key it: the
    /// token, or the user of a session.
    pub fn key(&self) -> String {
        match self.token_id {
            Some(id) => format!("token:{id}"),
            None => format!("user:{}", self.user.id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// The credentials a request carries, before they are checked.
enum Credentials {
    Bearer(String),
    Session(String),
    None,
}

fn credentials(req: &Request) -> Credentials {
    if let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or_default()
            .trim();
        return Credentials::Bearer(token.to_owned());
    }
    session_cookie(req.headers()).map_or(Credentials::None, Credentials::Session)
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

/// The `Set-Cookie` value of the session cookie: `HttpOnly`, `SameSite=Lax`,
/// the whole site, `Secure` when asked; an empty value with `max_age` zero
/// clears it.
pub fn session_set_cookie(
    value: &str,
    max_age: time::Duration,
    secure: bool,
) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
    let cookie = cookie::Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(max_age)
        .secure(secure)
        .build();
    HeaderValue::from_str(&cookie.to_string())
}

/// The client's limit key (its address, see [`super::client`]), for
/// handlers that limit by client, such as sign-in.
#[derive(Debug, Clone)]
pub struct ClientKey(pub String);

/// Resolves the caller (if any) into a [`Principal`] extension, then spends
/// one request of its budget: the principal's when the credentials hold,
/// else the client address's (so an unknown cookie or a made-up token gets
/// no budget of its own). Bad credentials answer 401; a session on an
/// unsafe method must send its CSRF token.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = ClientKey(client_key(&req, &state.config.access.trusted_proxies.0));
    let creds = credentials(&req);
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let csrf_sent = req
        .headers()
        .get(&CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let csrf_sent = unsafe_method.then_some(csrf_sent);
    let outcome = resolve(&state, &creds, csrf_sent).await;
    let limit_key = match &outcome {
        Ok(Some(principal)) => principal.key(),
        _ => format!("addr:{}", client.0),
    };
    let rate_headers = match state.rate_limiter.check(&limit_key) {
        Ok(headers) => headers,
        Err(error) => return error.into_response(),
    };
    req.extensions_mut().insert(client);
    let mut response = match outcome {
        Ok(principal) => {
            if let Some(principal) = principal {
                req.extensions_mut().insert(principal);
            }
            next.run(req).await
        }
        Err(error) => error.into_response(),
    };
    for (name, value) in rate_headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Bounds a request's time: past `limit` its handler is dropped (an open
/// transaction rolls back with it, so nothing is half done) and the answer
/// is 503 `TIMEOUT` with `Retry-After`.
pub async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?limit, "request ran past its time limit");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TIMEOUT",
                format!(
                    "the request took longer than {} s and was abandoned; retry it (with the same Idempotency-Key, to be safe)",
                    limit.as_secs_f64()
                ),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            .into_response()
        }
    }
}

/// Every API answer is private to its caller and some carry a secret shown
/// once (a new token, a pairing pin, a realtime ticket): no cache may keep
/// one (RFC 9111 §5.2.2.5).
pub async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `csrf_sent` is `Some` on unsafe methods: the `X-CSRF-Token` sent, if any.
async fn resolve(
    state: &AppState,
    creds: &Credentials,
    csrf_sent: Option<Option<String>>,
) -> ApiResult<Option<Principal>> {
    // Anonymous requests take no connection: /healthz answers while the database is down.
    match creds {
        Credentials::None => Ok(None),
        Credentials::Bearer(token) => {
            let mut conn = state.db.acquire().await?;
            let found =
                tickiti_store::tokens::authenticate(&mut conn, &tickiti_crypto::token_hash(token))
                    .await?;
            let Some((token, user)) = found else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_TOKEN",
                    "the bearer token is not valid",
                ));
            };
            let role: Role = user.role.parse().map_err(|e| ApiError::internal(&e))?;
            let token_abilities: Vec<Ability> = token
                .abilities
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            Ok(Some(Principal {
                abilities: effective_abilities(role, Some(&token_abilities)),
                role,
                token_id: Some(token.id),
                user,
                csrf_token: None,
            }))
        }
        Credentials::Session(cookie) => {
            let mut conn = state.db.acquire().await?;
            let found = tickiti_store::sessions::authenticate(
                &mut conn,
                &tickiti_crypto::token_hash(cookie),
            )
            .await?;
            let Some((user, csrf)) = found else {
                // An expired cookie is no identity at all; routes that need one answer 401.
                return Ok(None);
            };
            // Compared in constant time: the answer must not tell how much
            // of a guess was right.
            if let Some(sent) = csrf_sent
                && !bool::from(sent.unwrap_or_default().as_bytes().ct_eq(csrf.as_bytes()))
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "CSRF_FAILED",
                    "unsafe requests with the session cookie need its X-CSRF-Token header",
                ));
            }
            let role: Role = user.role.parse().map_err(|e| ApiError::internal(&e))?;
            Ok(Some(Principal {
                abilities: effective_abilities(role, None),
                role,
                token_id: None,
                user,
                csrf_token: Some(csrf),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_set_read_and_cleared() {
        let set = session_set_cookie("abc", time::Duration::hours(12), true)
            .unwrap_or_else(|_| unreachable!());
        let set = set.to_str().unwrap_or_default();
        for part in [
            "tickiti_session=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=43200",
            "Secure",
        ] {
            assert!(set.split("; ").any(|p| p == part), "{part} in {set}");
        }
        let clear =
            session_set_cookie("", time::Duration::ZERO, false).unwrap_or_else(|_| unreachable!());
        let clear = clear.to_str().unwrap_or_default();
        assert!(
            clear.contains("Max-Age=0") && !clear.contains("Secure"),
            "{clear}"
        );

        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; tickiti_session=xyz; other=1"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("xyz"));
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark"));
        assert_eq!(session_cookie(&headers), None);
    }
}
