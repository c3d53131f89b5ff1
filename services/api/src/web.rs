//! The staff web app (CONTRACT §6): the files of `services/api/web/`,
//! embedded in the binary.
//!
//! The app is plain ES modules (Preact and htm vendored, see
//! `scripts/vendor-web`), so there is no build step: a release build embeds
//! the folder as it is, a debug build reads it from disk on every request
//! (rust-embed's default), so an edit shows on reload.
//!
//! One layer, outside authentication and rate limiting, decides what a
//! request is for: `GET`/`HEAD` of anything but the API's own paths is the
//! app. A path with a file extension is a file (404 when there is none); any
//! other path is one of the app's screens (`/tickets/…`), which
//! `index.html` routes in the browser. `/api/docs` is the API reference
//! (Swagger UI, vendored, over the generated OpenAPI document).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::http::ApiError;

#[derive(Embed)]
#[folder = "web/"]
#[exclude = "vendor/SHA256SUMS"]
struct Files;

/// What the app layer needs: the policy sent with every file.
#[derive(Clone, Debug)]
pub struct WebApp {
    csp: HeaderValue,
}

impl WebApp {
    /// The app served with a policy that lets it talk to this origin and to
    /// the realtime service at `realtime_public_url` (its websocket).
    pub fn new(realtime_public_url: &str) -> WebApp {
        let realtime = reqwest::Url::parse(realtime_public_url)
            .map(|url| url.origin().ascii_serialization())
            .ok()
            .filter(|origin| origin != "null");
        let csp = content_security_policy(realtime.as_deref());
        WebApp {
            csp: HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(
                "default-src 'self'; object-src 'none'; base-uri 'none'",
            )),
        }
    }
}

/// A strict policy: scripts, styles and everything else from this origin
/// only (no inline script, no `eval`), no framing, no plugins.
fn content_security_policy(realtime_origin: Option<&str>) -> String {
    let connect = match realtime_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// The API reference's page, served by this layer although it is under `/api/`.
const API_DOCS: &str = "/api/docs";

/// Paths the API answers; everything else a browser GETs is the app.
fn is_api_path(path: &str) -> bool {
    (path.starts_with("/api/") && path.trim_end_matches('/') != API_DOCS)
        || matches!(path, "/api" | "/healthz" | "/readyz" | "/metrics")
}

/// The layer: the app's files and screens, or on to the API.
pub async fn serve(State(app): State<WebApp>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !matches!(*req.method(), Method::GET | Method::HEAD) || is_api_path(path) {
        return next.run(req).await;
    }
    let name = path.trim_start_matches('/');
    let file = if name.is_empty() {
        Files::get("index.html")
    } else if path.trim_end_matches('/') == API_DOCS {
        Files::get("docs/index.html")
    } else {
        match Files::get(name) {
            Some(file) => Some(file),
            // A screen of the app, not a file.
            None if !name.rsplit('/').next().unwrap_or("").contains('.') => {
                Files::get("index.html")
            }
            None => None,
        }
    };
    let Some(file) = file else {
        return ApiError::new(StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND", "no such file")
            .into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // Revalidated on every load (an upgrade shows at once), cheap by ETag.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, app.csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sent| sent.split(',').any(|tag| tag.trim() == etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, file.data.into_owned()).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_realtime_origin_and_nothing_inline() {
        let app = WebApp::new("wss://rt.example.com:8443/ws");
        let csp = app.csp.to_str().unwrap_or_default();
        assert!(
            csp.contains("connect-src 'self' wss://rt.example.com:8443;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let app = WebApp::new("not a url");
        assert!(
            app.csp
                .to_str()
                .unwrap_or_default()
                .contains("connect-src 'self';")
        );
    }

    #[test]
    fn api_paths_are_not_the_app() {
        assert!(is_api_path("/api/v1/tickets"));
        assert!(is_api_path("/healthz"));
        assert!(!is_api_path("/tickets/123"));
        assert!(!is_api_path("/apis"));
        assert!(!is_api_path("/api/docs"));
        assert!(!is_api_path("/api/docs/"));
        assert!(is_api_path("/api/docs/x"));
    }

    #[test]
    fn the_app_is_embedded() {
        assert!(Files::get("index.html").is_some());
        assert!(Files::get("vendor/preact.module.js").is_some());
        assert!(Files::get("vendor/SHA256SUMS").is_none());
    }
}
