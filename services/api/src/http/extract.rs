//! Request extractors that answer bad input with the contract's problems
//! instead of axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tickiti_domain::FieldError;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// Largest request body accepted (CONTRACT §2: over 1 MiB answers 413).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How much of an oversized body is read and discarded before the 413.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;
/// How long an oversized body may take to be discarded.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The outermost body layer: reads the body (up to [`BODY_LIMIT`]) before
/// anything else runs, and answers an oversized one with a 413 problem only
/// after reading the rest of it.
///
/// A server that answers early and closes the connection while the client is
/// still sending leaves unread bytes in its socket, and the kernel then
/// resets the connection (RFC 9112 §9.6 calls for a lingering close for this
/// reason): the client often sees the reset before the 413. So the rest is
/// drained, up to [`DRAIN_LIMIT`] and [`DRAIN_TIME`]; a body larger or
/// slower still gets the 413 with `Connection: close`, a client that abusive
/// may see a reset.
pub async fn limit_body(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use futures::StreamExt as _;

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    let mut oversized = declared.is_some_and(|len| len > BODY_LIMIT as u64);
    while !oversized {
        match stream.next().await {
            None => {
                let req = Request::from_parts(parts, axum::body::Body::from(kept.freeze()));
                return next.run(req).await;
            }
            Some(Ok(chunk)) if kept.len() + chunk.len() <= BODY_LIMIT => {
                kept.extend_from_slice(&chunk)
            }
            Some(Ok(_)) => oversized = true,
            Some(Err(_)) => return body_rejection(StatusCode::BAD_REQUEST).into_response(),
        }
    }
    drop(kept);
    let drained = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0usize;
        while let Some(chunk) = stream.next().await {
            read += chunk.map_err(|_| ())?.len();
            if read > DRAIN_LIMIT {
                return Err(());
            }
        }
        Ok(())
    })
    .await;
    let mut response = body_rejection(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    if !matches!(drained, Ok(Ok(()))) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A JSON body, parsed strictly: malformed JSON is 400 `INVALID_JSON`;
/// unknown fields, wrong types and bad enum values are 422 with the field's
/// path; NUL characters anywhere are 422 (Postgres text cannot hold them).
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            });
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection.status()))?;
        if !content_type_ok {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        parse_json(&bytes).map(Json)
    }
}

/// Maps a failure to read the body to a problem (413 when over the limit).
pub fn body_rejection(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {BODY_LIMIT} bytes"),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "the body could not be read",
        )
    }
}

/// Parses and checks a JSON document into `T` (see [`Json`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))?;
    if let Some(path) = find_nul(&value, String::new()) {
        return Err(ApiError::invalid_field(
            &path,
            "must not contain NUL characters",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::validation(vec![FieldError::new(field, e.into_inner().to_string())])
    })
}

/// The path of the first string (or key) holding a NUL character.
fn find_nul(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(key))
            } else {
                find_nul(item, join(key))
            }
        }),
        _ => None,
    }
}

/// Deserializer for PATCH fields that tell "absent" (outer `None`) from
/// `null` (inner `None`). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Deserializer for a `true`/`false` query parameter (a query string
/// carries text). Use with `#[serde(default, deserialize_with = "query_bool")]`.
pub fn query_bool<'de, D>(deserializer: D) -> Result<Option<bool>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<String>::deserialize(deserializer)?.as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(serde::de::Error::custom("must be true or false")),
    }
}

/// Parses an id from the path; a malformed id answers the same 404 as a missing one.
pub fn parse_id(raw: &str, code: &'static str, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(code, what))
}

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// A list's `limit`: 1 to [`MAX_LIMIT`] rows. The OpenAPI document takes
/// its bounds from here, so what it states is what the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(i64);

impl PageSize {
    /// Parses a `limit` query value.
    pub fn parse(text: &str) -> Result<PageSize, String> {
        match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(PageSize(n)),
            _ => Err(format!("must be an integer from 1 to {MAX_LIMIT}")),
        }
    }

    /// The number of rows.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl utoipa::PartialSchema for PageSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .into()
    }
}

impl utoipa::ToSchema for PageSize {}

/// Where a list continues: after an id, or (for lists whose order changes) at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Continue after this id.
    After(Uuid),
    /// Continue at this offset.
    Offset(i64),
    /// Continue after this sort value and id, in this order (the ticket list).
    Key(
        tickiti_domain::TicketOrder,
        tickiti_store::tickets::TicketKey,
    ),
}

impl Cursor {
    /// The opaque string handed to clients.
    pub fn encode(self) -> String {
        let raw = match self {
            Cursor::After(id) => format!("id:{id}"),
            Cursor::Offset(n) => format!("offset:{n}"),
            Cursor::Key(order, key) => format!("key:{}:{}:{}", order.as_str(), key.value, key.id),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(text: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        if let Some(id) = raw.strip_prefix("id:") {
            return Uuid::parse_str(id).ok().map(Cursor::After);
        }
        if let Some(key) = raw.strip_prefix("key:") {
            let mut parts = key.splitn(3, ':');
            let order = parts.next()?.parse().ok()?;
            let value = parts.next()?.parse().ok()?;
            let id = Uuid::parse_str(parts.next()?).ok()?;
            return Some(Cursor::Key(
                order,
                tickiti_store::tickets::TicketKey { value, id },
            ));
        }
        raw.strip_prefix("offset:")?
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .map(Cursor::Offset)
    }

    /// The id to continue after (an offset cursor here is refused).
    pub fn after_id(cursor: Option<Self>) -> ApiResult<Option<Uuid>> {
        match cursor {
            None => Ok(None),
            Some(Cursor::After(id)) => Ok(Some(id)),
            Some(Cursor::Offset(_) | Cursor::Key(..)) => Err(ApiError::invalid_field(
                "cursor",
                "is not a cursor of this list",
            )),
        }
    }

    /// Where a ticket list in `order` continues (a cursor of another order
    /// or list is refused).
    pub fn ticket_key(
        cursor: Option<Self>,
        order: tickiti_domain::TicketOrder,
    ) -> ApiResult<Option<tickiti_store::tickets::TicketKey>> {
        match cursor {
            None => Ok(None),
            Some(Cursor::Key(of, key)) if of == order => Ok(Some(key)),
            Some(_) => Err(ApiError::invalid_field(
                "cursor",
                "is not a cursor of this list in this order",
            )),
        }
    }

    /// The offset to continue at (an id cursor here is refused).
    pub fn offset(cursor: Option<Self>) -> ApiResult<i64> {
        match cursor {
            None => Ok(0),
            Some(Cursor::Offset(n)) => Ok(n),
            Some(Cursor::After(_) | Cursor::Key(..)) => Err(ApiError::invalid_field(
                "cursor",
                "is not a cursor of this list",
            )),
        }
    }
}

/// A list request's query string: `limit` and `cursor`, and the list's own
/// filters `F` (unknown parameters are refused like unknown body fields).
#[derive(Debug, Clone)]
pub struct ListQuery<F> {
    /// Page size, 1..=200.
    pub limit: i64,
    /// Where to continue.
    pub cursor: Option<Cursor>,
    /// The list's filters.
    pub filter: F,
}

/// A list without filters of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for ListQuery<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
                .map_err(|e| ApiError::invalid_field("query", e.to_string()))?;
        let mut errors = Vec::new();
        let mut limit = DEFAULT_LIMIT;
        let mut cursor = None;
        let mut rest = serde_json::Map::new();
        for (key, value) in pairs {
            if value.contains('\0') {
                errors.push(FieldError::new(key, "must not contain NUL characters"));
                continue;
            }
            match key.as_str() {
                "limit" => match PageSize::parse(&value) {
                    Ok(size) => limit = size.get(),
                    Err(message) => errors.push(FieldError::new("limit", message)),
                },
                "cursor" => match Cursor::decode(&value) {
                    Some(c) => cursor = Some(c),
                    None => {
                        errors.push(FieldError::new("cursor", "is not a cursor this API issued"))
                    }
                },
                _ => {
                    rest.insert(key, serde_json::Value::String(value));
                }
            }
        }
        let filter =
            serde_path_to_error::deserialize(serde_json::Value::Object(rest)).map_err(|e| {
                let field = e.path().to_string();
                FieldError::new(
                    if field == "." { "query".into() } else { field },
                    e.into_inner().to_string(),
                )
            });
        let filter = match filter {
            Ok(filter) if errors.is_empty() => filter,
            Ok(_) => return Err(ApiError::validation(errors)),
            Err(e) => {
                errors.push(e);
                return Err(ApiError::validation(errors));
            }
        };
        Ok(ListQuery {
            limit,
            cursor,
            filter,
        })
    }
}

/// Query parameters shared by every list, for the OpenAPI document
/// ([`ListQuery`] parses them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1..=200 (default 50).
    #[param(inline)]
    pub limit: Option<PageSize>,
    /// Opaque cursor from the previous page's `next_cursor`.
    #[param(pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// One page of a list: `{"data": [...], "next_cursor": ...}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ListOut<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> ListOut<T> {
    /// A list page from a store page, mapping each row.
    pub fn from_page<R>(page: tickiti_store::Page<R>, map: impl FnMut(R) -> T) -> Self {
        ListOut {
            data: page.items.into_iter().map(map).collect(),
            next_cursor: page.next_after.map(|id| Cursor::After(id).encode()),
        }
    }
}
