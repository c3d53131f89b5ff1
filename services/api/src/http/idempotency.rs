//! `Idempotency-Key` on POST (CONTRACT §2): same key and body within 24 h
//! replays the stored answer with `Idempotent-Replayed: true`; the same key
//! with another body is 422 `IDEMPOTENCY_KEY_REUSED`; the same key while the
//! first request runs is 409 `IDEMPOTENCY_KEY_IN_USE`. Keys are scoped per
//! organization, principal and route.
//!
//! The claim, the handler's work and the stored answer are one transaction:
//! the layer opens it, lends it to the handler ([`super::db::Db`] gives a
//! savepoint in it), then stores the answer and commits. A crash anywhere
//! before that commit leaves nothing, so the retry does the work once; a
//! 5xx answer is rolled back with its work, so the retry may try again.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tickiti_store::idempotency::{self, Claim, KeyScope, StoredResponse};

use super::db::SharedTx;
use super::error::{ApiError, ApiResult};
use super::extract::{BODY_LIMIT, body_rejection};
use super::guard::Principal;
use crate::state::AppState;

/// `Idempotency-Key`.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Idempotent-Replayed`.
pub static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
const KEY_MAX: usize = 255;

/// Whether the route demands a key: a request extension a layer may set.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequired;

/// Routes that demand a key (CONTRACT §2: `POST /intervention-tickets`).
pub const KEY_REQUIRED_ROUTES: &[&str] = &["/api/v1/intervention-tickets"];

fn key_required(req: &Request) -> bool {
    req.extensions().get::<KeyRequired>().is_some()
        || req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| KEY_REQUIRED_ROUTES.contains(&p.as_str()))
}

/// The middleware; a route layer, so the matched route is known.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match run(state, req, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(state: AppState, req: Request, next: Next) -> Result<Response, Response> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let key = match req.headers().get(&IDEMPOTENCY_KEY) {
        None if key_required(&req) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_KEY_REQUIRED",
                "this request needs an Idempotency-Key header",
            )
            .into_response());
        }
        None => return Ok(next.run(req).await),
        Some(value) => parse_key(value).map_err(IntoResponse::into_response)?,
    };
    // Without a caller there is no scope; the handler answers 401 itself.
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return Ok(next.run(req).await);
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let scope = KeyScope {
        organization_id: principal.org(),
        principal: principal.key(),
        route: format!("POST {route}"),
        key,
    };

    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| body_rejection(StatusCode::PAYLOAD_TOO_LARGE).into_response())?;
    let fingerprint = tickiti_crypto::sha256(&bytes);

    let begun = async {
        let mut tx = state.db.begin().await?;
        let claim = idempotency::claim(&mut tx, &scope, &fingerprint).await?;
        Ok::<_, ApiError>((tx, claim))
    };
    let (tx, claim) = begun.await.map_err(IntoResponse::into_response)?;
    match claim {
        Claim::Claimed => {}
        Claim::InFlight => {
            return Err(ApiError::conflict(
                "IDEMPOTENCY_KEY_IN_USE",
                "a request with this Idempotency-Key is still being processed",
            )
            .into_response());
        }
        Claim::BodyMismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with a different request body",
            )
            .into_response());
        }
        Claim::Done(stored) => return Ok(replay(&state, stored)),
    }

    let shared = SharedTx::new(tx);
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(shared.clone());
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    // Dropping the transaction rolls the claim and the work back.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    if parts.status.is_server_error() {
        // Rolled back with its work: the client may retry with the same key.
        return Ok(Response::from_parts(parts, axum::body::Body::from(bytes)));
    }
    // Answers are kept sealed under the master key: some show a secret
    // once (a new token, webhook secret, pairing pin or realtime ticket),
    // and the idempotency table must never hold one in plain text. A JSON
    // body never starts with the sealed format's version byte, which tells
    // rows stored before this apart on replay.
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        body: state.secrets.seal(&bytes),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let committed = async {
        let mut tx = shared.finish().await?;
        idempotency::complete(&mut tx, &scope, &stored).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    };
    if let Err(error) = committed.await {
        // Nothing of the request stands: say so rather than answer as if it did.
        tracing::error!(
            ?error,
            "could not commit an idempotent request with its answer"
        );
        return Err(ApiError::busy(
            "the request could not be completed; retry it with the same Idempotency-Key",
        )
        .into_response());
    }
    state.events_written();
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

fn parse_key(value: &HeaderValue) -> ApiResult<String> {
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_MAX)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_IDEMPOTENCY_KEY",
                format!("Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters"),
            )
        })
}

fn replay(state: &AppState, stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let sealed = stored.body.first() == Some(&1);
    let body = if sealed {
        match state.secrets.open(&stored.body) {
            Ok(body) => body,
            Err(error) => return ApiError::internal(&error).into_response(),
        }
    } else {
        stored.body
    };
    let mut response = (status, body).into_response();
    if sealed {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(ct) = stored
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
        .headers_mut()
        .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
    response
}
