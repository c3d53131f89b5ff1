//! Staff sign-in with a session cookie (`HttpOnly`, `SameSite=Lax`) and a
//! CSRF token that unsafe requests under the cookie must echo in `X-CSRF-Token`.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::users::UserOut;
use crate::http::guard::{ClientKey, session_cookie, session_set_cookie};
use crate::http::sign_in;
use crate::http::{ApiError, ApiResult, Json};
use crate::state::AppState;

/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::hours(12);

/// The auth routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    /// Sign-in address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A successful sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginOut {
    /// Who signed in.
    pub user: UserOut,
    /// Send as `X-CSRF-Token` on unsafe requests that use the cookie.
    pub csrf_token: String,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
        "e-mail or password is wrong",
    )
}

/// Sign in; sets the session cookie. Wrong e-mail and wrong password answer
/// alike. Attempts are throttled per account and client address, and per
/// client address (429 with `Retry-After`); when too many password checks
/// run at once the answer is 503 with `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginIn,
    responses((status = 200, body = LoginOut), (status = 401, body = crate::http::error::Problem),
              (status = 429, body = crate::http::error::Problem),
              (status = 503, body = crate::http::error::Problem)))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    Extension(ClientKey(client)): Extension<ClientKey>,
    Json(input): Json<LoginIn>,
) -> ApiResult<Response> {
    if input.email.len() > 254 || input.password.len() > 1024 {
        return Err(invalid_credentials());
    }
    let email = sign_in::normalize_email(&input.email);
    // No connection is held through the password check: a flood of sign-ins
    // must not take the pool every other request needs.
    let found = {
        let mut conn = state.db.acquire().await?;
        sign_in::begin(&mut conn, &email, &client).await?;
        tickiti_store::users::find_for_login(&mut conn, &email).await?
    };
    // Hash even for an unknown address, so timing does not tell which exist.
    let phc = found.as_ref().map_or_else(
        || tickiti_crypto::dummy_password_hash().to_owned(),
        |(_, h)| h.clone(),
    );
    let verified = state.password_checks.verify(input.password, phc).await?;
    let Some((user, _)) = found.filter(|_| verified) else {
        return Err(invalid_credentials());
    };
    let mut conn = state.db.acquire().await?;
    sign_in::succeeded(&mut conn, &email, &client).await?;

    let cookie_value = tickiti_crypto::generate_token("");
    let csrf_token = tickiti_crypto::generate_token("");
    tickiti_store::sessions::insert(
        &mut conn,
        &tickiti_crypto::token_hash(&cookie_value),
        user.id,
        user.organization_id,
        &csrf_token,
        OffsetDateTime::now_utc() + SESSION_LIFETIME,
    )
    .await?;
    let cookie = session_set_cookie(
        &cookie_value,
        SESSION_LIFETIME,
        state.config.secure_cookies(),
    )
    .map_err(|e| ApiError::internal(&e))?;
    let body = LoginOut {
        user: UserOut::from(user),
        csrf_token,
    };
    Ok(([(header::SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

/// Sign out: ends the session and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(value) = session_cookie(&headers) {
        let mut conn = state.db.acquire().await?;
        tickiti_store::sessions::delete(&mut conn, &tickiti_crypto::token_hash(&value)).await?;
    }
    let clear = session_set_cookie("", Duration::ZERO, state.config.secure_cookies())
        .map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}
