//! The one outbound HTTP client of the dispatcher, safe against SSRF.
//!
//! - Every address is vetted with `tickiti_domain::webhook::classify_ip`
//!   (unless private networks are allowed): a literal IP in the URL before
//!   the request, and every DNS answer inside the resolver, so the connection
//!   goes only to an address that was vetted (a second, rebinding DNS answer
//!   is never asked for).
//! - No redirects, no proxies from the environment.
//! - Connect and whole-request time-outs; at most [`BODY_CAP`] bytes of the
//!   answer are read.
//!
//! It is hyper's pooled client (hyper-util) with rustls and the platform's
//! certificate verifier, used directly: reqwest, on the same stack, parses
//! each URL twice more, merges header maps and wraps every request in
//! redirect and retry layers this client has no use for, which cost about
//! a tenth of the dispatcher's time per delivery.
//!
//! `clippy.toml` of this package forbids building an HTTP client anywhere else.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::BuilderVerifierExt as _;
use tickiti_domain::webhook::{self, classify_ip};

/// Bytes of a response body kept in the delivery log.
pub const BODY_CAP: usize = 4096;

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("Tickiti-Webhooks/", env!("CARGO_PKG_VERSION"));

/// What one POST got.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// HTTP status, when one came.
    pub status: Option<u16>,
    /// Up to [`BODY_CAP`] bytes of the body, as text.
    pub body: Option<String>,
    /// `Retry-After` as a wait (given as seconds or as an HTTP-date).
    pub retry_after: Option<Duration>,
    /// Time from sending to the end of reading.
    pub elapsed: Duration,
    /// What went wrong (connect, time-out, refused address…).
    pub error: Option<String>,
}

/// A `Retry-After` value as a wait from `now`: delay-seconds or an
/// HTTP-date (RFC 9110 §10.2.3); a date in the past means no wait.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves with the system resolver and keeps only addresses webhooks may
/// reach; the connector connects to what it answers, nothing else.
#[derive(Debug, Clone, Copy)]
struct VettingResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for VettingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let vetted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| allow_private || classify_ip(addr.ip()).is_none())
                .collect();
            if vetted.is_empty() {
                let class = found
                    .iter()
                    .find_map(|a| classify_ip(a.ip()))
                    .map_or_else(|| "no".to_owned(), |c| c.to_string());
                return Err(format!(
                    "refused: {host} resolves only to {class} addresses, which webhooks may not reach"
                )
                .into());
            }
            Ok(vetted.into_iter())
        })
    }
}

/// The SSRF-safe client; cheap to clone.
#[derive(Debug, Clone)]
pub struct SafeClient {
    client: Client<HttpsConnector<HttpConnector<VettingResolver>>, Full<Bytes>>,
    timeout: Duration,
    allow_private: bool,
    user_agent: HeaderValue,
}

impl SafeClient {
    /// A client with `timeout` for the whole request that keeps up to
    /// `idle_per_host` connections per host open between requests: set it to
    /// the request concurrency, or a host serving many endpoints (a relay, a
    /// Zapier-like service) costs a new connection for most deliveries.
    pub fn new(
        timeout: Duration,
        allow_private: bool,
        idle_per_host: usize,
    ) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new_with_resolver(VettingResolver { allow_private });
        http.enforce_http(false); // https goes through rustls around it
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        #[allow(clippy::disallowed_methods)] // the one place that builds it
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle_per_host)
            .build(https);
        Ok(Self {
            client,
            timeout,
            allow_private,
            user_agent: HeaderValue::from_static(USER_AGENT),
        })
    }

    /// POSTs `body` with `headers`; never fails, the answer says what happened.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> Answer {
        self.send(url, headers, body, self.timeout).await
    }

    /// Like [`SafeClient::post`] with its own whole-request `timeout`
    /// (an intervention's `remote_timeout_seconds`) instead of the client's.
    pub async fn post_with_timeout(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Answer {
        self.send(url, headers, body, timeout).await
    }

    async fn send(&self, url: &str, headers: HeaderMap, body: Bytes, timeout: Duration) -> Answer {
        let started = Instant::now();
        let fail = |error: String| Answer {
            elapsed: started.elapsed(),
            error: Some(error),
            ..Answer::default()
        };
        // The URL was checked when saved; check again (rules or settings may have changed).
        let parsed = match webhook::parse_url(url, false) {
            Ok(parsed) => parsed,
            Err(problem) => return fail(format!("url {problem}")),
        };
        if !self.allow_private
            && let Some(class) = webhook::literal_ip(&parsed).and_then(classify_ip)
        {
            return fail(format!(
                "refused: {class} address, which webhooks may not reach"
            ));
        }
        let uri = match http::Uri::try_from(String::from(parsed)) {
            Ok(uri) => uri,
            Err(error) => return fail(format!("url {error}")),
        };
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(USER_AGENT_HEADER, self.user_agent.clone());
        // The whole exchange, body included, within the time-out.
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            let mut body = response.into_body();
            let mut read = Vec::new();
            let mut error = None;
            while read.len() < BODY_CAP {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            read.extend_from_slice(data);
                        }
                    }
                    Some(Err(e)) => {
                        error = Some(describe(&e));
                        break;
                    }
                    None => break,
                }
            }
            // Dropping a body not read to the end closes its connection.
            Ok::<_, String>((status, retry_after, read, error))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, retry_after, read, error))) => Answer {
                status: Some(status),
                body: Some(cut_utf8(&read, BODY_CAP)),
                retry_after,
                elapsed: started.elapsed(),
                error,
            },
            Ok(Err(error)) => fail(error),
            Err(_) => fail("timed out".to_owned()),
        }
    }
}

/// An error with its causes (the resolver's refusal is a cause).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let connect = std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
    });
    let mut text = if connect {
        "could not connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(1000).collect()
}

/// At most `cap` bytes of `bytes` as text, cut on a character boundary.
fn cut_utf8(bytes: &[u8], cap: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(cap)]);
    let mut end = text.len().min(cap);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn cuts_on_char_boundaries() {
        let long = "é".repeat(3000);
        let cut = cut_utf8(long.as_bytes(), BODY_CAP);
        assert!(cut.len() <= BODY_CAP);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn refuses_private_literals_and_names() {
        let client = SafeClient::new(Duration::from_secs(2), false, 4).unwrap();
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::ffff:127.0.0.1]:9/x",
            "http://localhost:9/x",
        ] {
            let answer = client.post(url, HeaderMap::new(), Bytes::new()).await;
            assert!(answer.status.is_none(), "{url}");
            let error = answer.error.unwrap();
            assert!(error.contains("refused"), "{url}: {error}");
        }
    }
}
