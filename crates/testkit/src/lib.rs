//! The one test harness: start the api in-process on a random port against
//! a fresh database (`#[sqlx::test]` makes one per test) and a unique bus
//! prefix, create organizations and tokens, and tap the events exchange.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_api::config::{Config, Environment, RateLimit, WebhookConfig};
use tickiti_bus::{Bus, BusConfig, ConsumerSpec, IncomingMessage, Outcome};
use tickiti_domain::{Ability, Role};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod smtp;
pub mod webhooks;

/// Calls `probe` every 50 ms until `done` holds for its answer or `timeout`
/// passes; returns the last answer (so the caller's assertion shows it).
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The broker tests use (`AMQP_URL`, else the local default).
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| tickiti_bus::DEFAULT_AMQP_URL.to_owned())
}

/// The URL of a test's database (`sqlx::test` made it on the server
/// `DATABASE_URL` names), for a service started as a child process.
pub fn database_url(db: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = db
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_owned();
    let server = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(server, _)| server);
    format!("{server}/{name}")
}

/// Starts a service binary told to listen on port 0 and reads its JSON log
/// until it says where it listens (its first `listening` line,
/// [`tickiti_telemetry::parse_listening`]): no
/// port is picked in advance, so no other process can take it meanwhile.
/// The log keeps being drained (echoed to stderr, so failures show it);
/// `listen_variable` names the variable to set (`TICKITI_LISTEN`, …).
pub fn spawn_listening(
    command: &mut std::process::Command,
    listen_variable: &str,
) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead as _;

    // The `listening` line is at info level: keep it whatever the filter.
    let filter = command
        .get_envs()
        .find(|(key, _)| *key == "RUST_LOG")
        .and_then(|(_, value)| value.map(|v| v.to_string_lossy().into_owned()))
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let mut child = command
        .env(listen_variable, "127.0.0.1:0")
        .env(
            "RUST_LOG",
            format!("{filter},{}=info", tickiti_telemetry::LISTENING_TARGET),
        )
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("{line}");
            if let Some((_, addr)) = tickiti_telemetry::parse_listening(&line)
                && let Some(found) = found.take()
            {
                let _ = found.send(addr);
            }
        }
    });
    let Ok(addr) = address.recv_timeout(Duration::from_secs(30)) else {
        // Not left running (holding the test's database) after the panic.
        let _ = child.kill();
        let _ = child.wait();
        panic!("the service did not say where it listens within 30 s");
    };
    (child, addr)
}

/// A bus prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test_{}", Uuid::now_v7().simple())
}

/// A configuration for tests: random port, unique prefix, no rate limit.
pub fn test_config(prefix: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: String::new(),
        amqp_url: amqp_url(),
        bus_prefix: prefix.to_owned(),
        environment: Environment::Development,
        master_key: None,
        rate_limit: RateLimit::Off,
        database_max_connections: 10,
        database_statement_timeout: std::time::Duration::from_secs(10),
        request_timeout: std::time::Duration::from_secs(30),
        realtime: Default::default(),
        access: Default::default(),
        worker_silence: std::time::Duration::from_secs(60),
    }
}

/// Webhook settings for tests: private networks allowed (receivers run on 127.0.0.1).
pub fn test_webhook_config() -> WebhookConfig {
    WebhookConfig {
        allow_private_networks: true,
        require_https: Some(false),
    }
}

/// An api running in this process.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database.
    pub db: PgPool,
    /// Its bus prefix.
    pub prefix: String,
    /// An HTTP client (no cookie store).
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

/// An organization made for a test, with an admin holding a `*` token.
#[derive(Debug, Clone)]
pub struct TestOrg {
    /// Organization id.
    pub id: Uuid,
    /// The admin's user id.
    pub admin_id: Uuid,
    /// The admin's e-mail.
    pub admin_email: String,
    /// The admin's password.
    pub admin_password: String,
    /// A `*` token of the admin.
    pub token: String,
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// Starts the api on a fresh (already migrated) database.
    pub async fn spawn(db: PgPool) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// Starts the api with a changed configuration.
    pub async fn spawn_with(db: PgPool, change: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_full(db, |config, _| change(config)).await
    }

    /// Starts the api with changed configuration and webhook settings (by
    /// default tests allow private networks, so local receivers work).
    pub async fn spawn_full(
        db: PgPool,
        change: impl FnOnce(&mut Config, &mut WebhookConfig),
    ) -> TestApp {
        let prefix = unique_prefix();
        let mut config = test_config(&prefix);
        let mut webhooks = test_webhook_config();
        change(&mut config, &mut webhooks);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let shutdown = CancellationToken::new();
        let api = tickiti_api::serve_with(listener, db.clone(), config, webhooks, shutdown.clone())
            .unwrap();
        TestApp {
            addr: api.addr,
            db,
            prefix,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    /// The absolute URL of `path` (e.g. `/api/v1/tickets`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Creates an organization with an admin and a `*` token.
    pub async fn org(&self, name: &str) -> TestOrg {
        let email = format!("admin-{}@example.com", Uuid::now_v7().simple());
        let (id, admin_id) =
            tickiti_api::accounts::create_organization(&self.db, name, &email, PASSWORD)
                .await
                .unwrap();
        let (_, token) =
            tickiti_api::accounts::create_token(&self.db, &email, "test", &[Ability::All])
                .await
                .unwrap();
        TestOrg {
            id,
            admin_id,
            admin_email: email,
            admin_password: PASSWORD.to_owned(),
            token,
        }
    }

    /// Adds a user to `org` and returns (user id, e-mail, a token with `abilities`).
    pub async fn user(
        &self,
        org: &TestOrg,
        name: &str,
        role: Role,
        abilities: &[Ability],
    ) -> (Uuid, String, String) {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase().replace(' ', "."),
            Uuid::now_v7().simple()
        );
        let id = tickiti_api::accounts::create_user(&self.db, org.id, &email, name, PASSWORD, role)
            .await
            .unwrap();
        let (_, token) = tickiti_api::accounts::create_token(&self.db, &email, "test", abilities)
            .await
            .unwrap();
        (id, email, token)
    }

    /// Sends a JSON request with a bearer token; returns status, headers and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// `GET` with a token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// `POST` JSON with a token.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `POST` JSON with a token and an `Idempotency-Key`.
    pub async fn post_with_key(&self, path: &str, token: &str, key: &str, body: Value) -> Reply {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body);
        Reply::read(request.send().await.unwrap()).await
    }

    /// `PATCH` JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    /// `DELETE` with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, token, None).await
    }

    /// Creates a ticket for a new contact and returns it.
    pub async fn ticket(&self, token: &str, subject: &str) -> Value {
        let reply = self
            .post(
                "/api/v1/tickets",
                token,
                json!({ "subject": subject, "contact": { "email": "customer@example.com", "name": "Customer" } }),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body
    }

    /// The status `/readyz` answers now.
    pub async fn readyz(&self) -> u16 {
        self.client
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits (up to 30 s) until `/readyz` answers `want`; whether it did.
    pub async fn wait_ready(&self, want: u16) -> bool {
        poll_until(
            Duration::from_secs(30),
            || self.readyz(),
            |status| *status == want,
        )
        .await
            == want
    }

    /// Events still waiting in the outbox.
    pub async fn unpublished_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Stops the api.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // The prefix's exchanges would outlive the test on the shared broker
        // (hundreds a run). Deleted here, on a thread with a runtime of its
        // own (this may run inside the test's), and waited for: nextest runs
        // each test as a process that exits right after.
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(delete_exchanges(&prefix));
        })
        .join();
    }
}

/// Deletes the exchanges of `prefix` (best effort: gives up after 2 s
/// without a broker, e.g. in a fault test that failed with it stopped).
async fn delete_exchanges(prefix: &str) {
    let config = BusConfig {
        amqp_url: amqp_url(),
        prefix: prefix.to_owned(),
        connection_name: "tickiti-test-cleanup".into(),
    };
    if let Some(bus) = Bus::connect_briefly(config, Duration::from_secs(2)).await {
        let _ = bus.delete_topology().await;
    }
}

/// A response, read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// JSON body (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl Reply {
    /// Reads a response.
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `code`.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// Collects every event (and command) published to a prefix's events (and commands) exchange, through a
/// durable queue of its own (so a broker restart loses nothing).
pub struct EventTap {
    bus: Bus,
    queue: String,
    received: Arc<Mutex<Vec<IncomingMessage>>>,
    shutdown: CancellationToken,
}

impl EventTap {
    /// Binds the tap; events published after this returns are all collected.
    pub async fn bind(prefix: &str) -> EventTap {
        let shutdown = CancellationToken::new();
        let bus = Bus::start(
            BusConfig {
                amqp_url: amqp_url(),
                prefix: prefix.to_owned(),
                connection_name: "tickiti-test-tap".into(),
            },
            shutdown.clone(),
        );
        assert!(
            bus.wait_connected(Duration::from_secs(10)).await,
            "RabbitMQ is not reachable"
        );
        let queue = format!("{prefix}.test.tap");
        let spec = ConsumerSpec {
            queue: queue.clone(),
            // Commands travel through the outbox too: see both.
            bindings: vec![
                (bus.events_exchange(), "#".into()),
                (bus.commands_exchange(), "#".into()),
            ],
            prefetch: 256,
            ..ConsumerSpec::default()
        };
        bus.declare_queue(&spec).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        bus.consume(spec, move |message| {
            let sink = sink.clone();
            async move {
                sink.lock().await.push(message);
                Outcome::Ack
            }
        });
        EventTap {
            bus,
            queue,
            received,
            shutdown,
        }
    }

    /// Waits until `count` events arrived (or `timeout`); returns what arrived, as JSON.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(timeout, |events| events.len() >= count)
            .await
    }

    /// Waits until the events so far satisfy `done` (or `timeout`); returns them.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        poll_until(timeout, || self.events(), |events| done(events)).await
    }

    /// Every event so far, as JSON envelopes.
    pub async fn events(&self) -> Vec<Value> {
        self.received
            .lock()
            .await
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap_or(Value::Null))
            .collect()
    }

    /// Deletes the tap's queue and the prefix's exchanges.
    pub async fn cleanup(self) {
        let _ = self.bus.delete_queue(&self.queue).await;
        let _ = self.bus.delete_topology().await;
        self.shutdown.cancel();
    }
}
