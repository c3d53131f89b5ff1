//! Webhook test helpers: the dispatcher in-process next to a [`TestApp`]
//! (same database and bus prefix), and a real local HTTP receiver that
//! records every request and answers as told.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tickiti_bus::{Bus, BusConfig};
use tickiti_dispatcher::config::{Config, Environment, Schedule};
use tokio_util::sync::CancellationToken;

use crate::{TestApp, amqp_url, poll_until};

/// A dispatcher configuration for tests: compressed schedule, 2 s time-out,
/// private networks allowed (the receiver is on 127.0.0.1).
pub fn dispatcher_config(prefix: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: String::new(),
        database_max_connections: 10,
        amqp_url: amqp_url(),
        bus_prefix: prefix.to_owned(),
        environment: Environment::Development,
        master_key: None,
        retry_schedule: Schedule(tickiti_domain::webhook::parse_schedule("0s,1s,2s").unwrap()),
        timeout: Duration::from_secs(2),
        allow_private_networks: true,
        log_retention: Duration::from_secs(30 * 86_400),
        concurrency: 64,
        endpoint_concurrency: 8,
        org_concurrency: 32,
        epilog_max_attempts: 4,
        epilog_retry_min: Duration::from_millis(200),
        epilog_retry_max: Duration::from_secs(1),
        smtp_url: None,
        smtp_from: "Tickiti <tickiti@test.example>".to_owned(),
        public_url: "http://tickiti.test".to_owned(),
        notify_email_delay: Duration::from_secs(60),
        heartbeat_interval: Duration::from_millis(500),
    }
}

/// A dispatcher running in this process.
pub struct TestDispatcher {
    /// Its health listener.
    pub addr: SocketAddr,
    /// Its bus prefix.
    pub prefix: String,
    shutdown: CancellationToken,
    finished: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestDispatcher {
    /// Starts a dispatcher beside `app` (its database and prefix).
    pub async fn spawn(app: &TestApp) -> TestDispatcher {
        Self::spawn_with(app.db.clone(), &app.prefix, |_| {}).await
    }

    /// Starts a dispatcher with a changed configuration.
    pub async fn spawn_with(
        db: PgPool,
        prefix: &str,
        change: impl FnOnce(&mut Config),
    ) -> TestDispatcher {
        if std::env::var_os("TEST_LOG").is_some() {
            tickiti_telemetry::init("tickiti-dispatcher", tickiti_telemetry::Output::Stderr);
        }
        let mut config = dispatcher_config(prefix);
        change(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let shutdown = CancellationToken::new();
        let dispatcher = tickiti_dispatcher::serve(listener, db, config, shutdown.clone()).unwrap();
        let this = TestDispatcher {
            addr: dispatcher.addr,
            prefix: prefix.to_owned(),
            shutdown,
            finished: Some(dispatcher.finished),
        };
        assert!(this.wait_ready().await, "the dispatcher did not get ready");
        this
    }

    /// Waits (up to 30 s) until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> bool {
        let client = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        poll_until(
            Duration::from_secs(30),
            || async {
                client
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            },
            |s| *s == 200,
        )
        .await
            == 200
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series of its `/metrics` (`name` with its labels,
    /// as printed); 0 when absent.
    pub async fn counter(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |value| value.trim().parse().unwrap())
    }

    /// Waits until the scan named by `scan` (a `tickiti_scan_passes_total`
    /// label) has finished `passes` more passes: whatever was due when this
    /// was called has been looked at since.
    pub async fn wait_for_scans(&self, scan: &str, passes: u64) {
        let series = format!("tickiti_scan_passes_total{{scan=\"{scan}\"}}");
        let target = self.counter(&series).await + passes;
        let done = poll_until(
            Duration::from_secs(30),
            || self.counter(&series),
            |n| *n >= target,
        )
        .await;
        assert!(done >= target, "{scan}: {done} passes, waited for {target}");
    }

    /// Stops it (like SIGTERM: unfinished deliveries stay unacked) and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(finished) = self.finished.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), finished).await;
        }
    }

    /// Declares the dispatcher's queues for `prefix` (so events published
    /// before a dispatcher process is up wait in its durable queue).
    pub async fn declare_queues(prefix: &str) {
        let bus = Bus::connect_briefly(
            BusConfig {
                amqp_url: amqp_url(),
                prefix: prefix.to_owned(),
                connection_name: "tickiti-test-declare".into(),
            },
            Duration::from_secs(10),
        )
        .await
        .expect("RabbitMQ is not reachable");
        tickiti_dispatcher::topology::Queues::new(prefix)
            .declare(&bus)
            .await
            .unwrap();
    }

    /// Deletes the dispatcher's queues and the prefix's exchanges.
    pub async fn cleanup(prefix: &str) {
        let config = BusConfig {
            amqp_url: amqp_url(),
            prefix: prefix.to_owned(),
            connection_name: "tickiti-test-cleanup".into(),
        };
        if let Some(bus) = Bus::connect_briefly(config, Duration::from_secs(10)).await {
            for queue in tickiti_dispatcher::topology::Queues::new(prefix).all() {
                let _ = bus.delete_queue(&queue).await;
            }
            let _ = bus.delete_topology().await;
        }
    }
}

impl Drop for TestDispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 `ok`.
    Ok,
    /// This status, with this body.
    Status(u16),
    /// 429 or 503 with `Retry-After: <secs>`.
    RetryAfter(u16, u64),
    /// Waits this long before answering 200.
    Hang(Duration),
    /// 302 to this location.
    Redirect(String),
    /// Whatever the function answers for the request (e.g. a JSON body
    /// echoing a field of the request), with `Content-Type: application/json`.
    Respond(Responder),
}

/// What [`Behaviour::Respond`] answers: `(delay, status, body)` for a request.
pub type RespondFn = dyn Fn(&Received) -> (Duration, u16, String) + Send + Sync;

/// A shared answering function; two are equal when they are the same function.
#[derive(Clone)]
pub struct Responder(pub Arc<RespondFn>);

impl Responder {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&Received) -> (Duration, u16, String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder(..)")
    }
}

impl PartialEq for Responder {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Responder {}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    behaviour: Option<Behaviour>,
    /// Paths with their own behaviour.
    per_path: Vec<(String, Behaviour)>,
}

/// A local HTTP server on 127.0.0.1 that records requests.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    shutdown: CancellationToken,
}

impl Receiver {
    /// Starts a receiver answering 200.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shutdown = CancellationToken::new();
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = handler_state.clone();
                async move { answer(&state, uri.path(), headers, body).await }
            },
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Receiver {
            addr,
            state,
            shutdown,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every path so from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = Some(behaviour);
    }

    /// Answers `path` so from now on.
    pub fn behave_at(&self, path: &str, behaviour: Behaviour) {
        let mut state = self.state.lock().unwrap();
        state.per_path.retain(|(p, _)| p != path);
        state.per_path.push((path.to_owned(), behaviour));
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests to `path` so far.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done` holds for the requests so far (or `timeout`); returns them.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        poll_until(timeout, || async { self.received() }, |r| done(r)).await
    }

    /// Stops listening.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

async fn answer(
    state: &Mutex<ReceiverState>,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        path: path.to_owned(),
        headers,
        body,
        at: Instant::now(),
    };
    let behaviour = {
        let mut state = state.lock().unwrap();
        state.received.push(received.clone());
        state
            .per_path
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .or_else(|| state.behaviour.clone())
            .unwrap_or(Behaviour::Ok)
    };
    match behaviour {
        Behaviour::Ok => (StatusCode::OK, "ok").into_response(),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            format!("status {code} on purpose"),
        )
            .into_response(),
        Behaviour::RetryAfter(code, secs) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Behaviour::Hang(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, "late").into_response()
        }
        Behaviour::Redirect(to) => (StatusCode::FOUND, [("location", to)], "").into_response(),
        Behaviour::Respond(responder) => {
            let (delay, status, body) = (responder.0)(&received);
            tokio::time::sleep(delay).await;
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
                .into_response()
        }
    }
}
