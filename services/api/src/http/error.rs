//! The one error type at the HTTP edge, answered as `application/problem+json`
//! (RFC 9457) with the contract's stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tickiti_domain::FieldError;
use tickiti_store::StoreError;

/// Media type of error bodies (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. Build it with the constructors; `code` is stable API.
/// Boxed, so `Result<T, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// Extra members merged into the problem (e.g. the current ticket on 412).
    extra: Option<(&'static str, serde_json::Value)>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// The problem document (RFC 9457 members plus `code`, `errors`, `request_id`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` identifies the problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Reason phrase of the status.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code, e.g. `TICKET_NOT_FOUND`.
    pub code: String,
    /// What went wrong, for a human.
    pub detail: String,
    /// Invalid fields (422 `VALIDATION_FAILED`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's `X-Request-Id` (added on the way out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            headers: Vec::new(),
        }))
    }

    /// 404 with a resource-specific code (an id of another organization answers exactly the same).
    pub fn not_found(code: &'static str, what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    /// 422 `VALIDATION_FAILED` listing the invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            detail,
        );
        error.0.errors = errors;
        error
    }

    /// 422 `VALIDATION_FAILED` for one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// 400 `INVALID_JSON`.
    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_JSON", detail)
    }

    /// 401 `UNAUTHENTICATED`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "a valid bearer token or session is required",
        )
    }

    /// 403 `FORBIDDEN` for a missing ability.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", detail)
    }

    /// 409 with a code.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 `BUSY` with `Retry-After: 1`: at capacity; the request may be retried.
    pub fn busy(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "BUSY", detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// 500 `INTERNAL`: logged here with its cause, told to the client without it.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source(), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "an internal error occurred; it has been logged",
        )
    }

    /// Adds a member to the problem document.
    pub fn with_member(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.0.extra = Some((name, value));
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let problem = Problem {
            kind: "about:blank".into(),
            title: this.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: this.status.as_u16(),
            code: this.code.to_owned(),
            detail: this.detail,
            errors: this.errors,
            request_id: None,
        };
        let mut body = serde_json::to_value(&problem).unwrap_or_default();
        if let (Some((name, value)), Some(map)) = (this.extra, body.as_object_mut()) {
            map.insert(name.to_owned(), value);
        }
        let mut response = (
            this.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body.to_string(),
        )
            .into_response();
        for (name, value) in this.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The one mapping of database refusals to answers. A handler that knows
/// what a constraint means maps it first (with its own code); whatever
/// reaches this edge is still the client's conflict, never a 500.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { constraint, .. } => {
                tracing::info!(%constraint, "unique constraint refused a write");
                ApiError::conflict("CONFLICT", "a record with these values exists already")
            }
            StoreError::InUse { constraint, .. } => {
                tracing::info!(%constraint, "a reference refused a write");
                ApiError::conflict(
                    "IN_USE",
                    "the record refers to, or is referred to by, another that does not allow this",
                )
            }
            StoreError::Database(error) => error.into(),
        }
    }
}

/// SQLSTATE 57014 `query_canceled` (the `statement_timeout`) and 55P03
/// `lock_not_available` (`lock_timeout`).
const TIMED_OUT_STATES: [&str; 2] = ["57014", "55P03"];

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let timed_out = error
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| TIMED_OUT_STATES.contains(&code.as_ref()));
        match error {
            // Every pooled connection stayed busy for the acquire timeout,
            // or a statement ran past its time: load, not a defect. The
            // client may retry.
            sqlx::Error::PoolTimedOut => ApiError::busy("the database is busy; retry shortly"),
            _ if timed_out => {
                tracing::warn!(%error, "a statement ran past its time-out");
                ApiError::busy("the database took too long; retry shortly")
            }
            error => ApiError::internal(&error),
        }
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;
