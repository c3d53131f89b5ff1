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
//! `clippy.toml` of this package forbids building a reqwest client anywhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
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

/// Resolves with the system resolver and keeps only addresses webhooks may reach.
#[derive(Debug)]
struct VettingResolver {
    allow_private: bool,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
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
            Ok(Box::new(vetted.into_iter()) as Addrs)
        })
    }
}

/// The SSRF-safe client; cheap to clone.
#[derive(Debug, Clone)]
pub struct SafeClient {
    client: reqwest::Client,
    allow_private: bool,
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
        #[allow(clippy::disallowed_methods)] // the one place that builds it
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle_per_host)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(VettingResolver { allow_private }))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// POSTs `body` with `headers`; never fails, the answer says what happened.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> Answer {
        self.send(url, headers, body, None).await
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
        self.send(url, headers, body, Some(timeout)).await
    }

    async fn send(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Answer {
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
        let mut request = self.client.post(parsed).headers(headers).body(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let sent = request.send().await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return fail(describe(&error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let mut body = Vec::new();
        let mut error = None;
        while body.len() < BODY_CAP {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        // Dropping the response closes a connection whose body was not read to the end.
        drop(response);
        Answer {
            status: Some(status),
            body: Some(cut_utf8(&body, BODY_CAP)),
            retry_after,
            elapsed: started.elapsed(),
            error,
        }
    }
}

/// A reqwest error with its causes (the resolver's refusal is a cause).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
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
