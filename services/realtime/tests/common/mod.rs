//! The realtime test harness: the real api (testkit) and the realtime
//! service in-process on one test database and one bus prefix, paired as
//! an operator would pair them, and websocket clients (tokio-tungstenite).
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_realtime::{Config, Realtime};
use tickiti_testkit::{TestApp, TestOrg, amqp_url, poll_until};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Starts a realtime process on `db` (sharing the api's test database: its
/// migrations keep their own table) with `prefix`, on the given listeners.
pub async fn start_realtime_on(
    db: &PgPool,
    prefix: &str,
    listener: TcpListener,
    admin: TcpListener,
    change: impl FnOnce(&mut Config),
) -> Realtime {
    tickiti_realtime::migrator().run(db).await.unwrap();
    let mut config = Config::for_test("", &amqp_url(), prefix);
    change(&mut config);
    let rt = tickiti_realtime::serve(
        listener,
        admin,
        db.clone(),
        config,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(
        rt.wait_subscribed(Duration::from_secs(15)).await,
        "the realtime process never bound its queue (is RabbitMQ up?)"
    );
    rt
}

/// Starts another realtime process on the same database and prefix.
pub async fn start_realtime(
    db: &PgPool,
    prefix: &str,
    change: impl FnOnce(&mut Config),
) -> Realtime {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_realtime_on(db, prefix, listener, admin, change).await
}

/// The api and one realtime process pointed at each other (not yet paired).
pub struct Stack {
    /// The api.
    pub app: TestApp,
    /// The realtime process the api's REALTIME_ADMIN_URL points at.
    pub rt: Realtime,
    /// The shared test database.
    pub db: PgPool,
}

impl Stack {
    /// Starts both; `change` adjusts the realtime settings (e.g. shorter timeouts).
    pub async fn start(db: PgPool, change: impl FnOnce(&mut Config)) -> Stack {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let app = TestApp::spawn_with(db.clone(), |config| {
            config.realtime.admin_url = admin_url;
            config.realtime.public_url = public_url;
        })
        .await;
        let rt = start_realtime_on(&db, &app.prefix, listener, admin, change).await;
        Stack { app, rt, db }
    }

    /// Starts both and pairs them; returns the stack and an organization.
    pub async fn paired(db: PgPool, change: impl FnOnce(&mut Config)) -> (Stack, TestOrg) {
        let stack = Stack::start(db, change).await;
        let org = stack.app.org("Acme").await;
        stack.pair(&org).await;
        (stack, org)
    }

    /// Pairs as an admin of `org` and an operator would: start, enter the pin, see it bound.
    pub async fn pair(&self, org: &TestOrg) -> Uuid {
        let reply = self
            .app
            .post("/api/v1/realtime/registration", &org.token, json!({}))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let pin = reply.body["pin"].as_str().unwrap().to_owned();
        let install_id = tickiti_realtime::pairing::confirm(&self.db, &pin)
            .await
            .unwrap();
        let seen = self
            .app
            .get("/api/v1/realtime/registration", &org.token)
            .await;
        assert_eq!(seen.body["status"], "bound", "{}", seen.body);
        self.wait_binding(&self.rt, Some(install_id)).await;
        install_id
    }

    /// Waits until `rt` has installed the pairing `install_id` (None: unbound).
    pub async fn wait_binding(&self, rt: &Realtime, install_id: Option<Uuid>) {
        let got = poll_until(
            Duration::from_secs(10),
            || async { rt.ctx.hub.binding().map(|b| b.install_id) },
            |got| *got == install_id,
        )
        .await;
        assert_eq!(
            got, install_id,
            "the realtime process did not follow the pairing"
        );
    }

    /// A browser token for `token`'s user: (url, browser token).
    pub async fn browser_token(&self, token: &str) -> (String, String) {
        let reply = self
            .app
            .post("/api/v1/realtime/ticket", token, json!({}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        (
            reply.body["url"].as_str().unwrap().to_owned(),
            reply.body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A client of `rt` (default: the stack's) for `token`'s user, past the welcome.
    pub async fn client(&self, token: &str) -> (Client, Value) {
        self.client_of(&self.rt, token).await
    }

    /// A welcomed client of a given realtime process.
    pub async fn client_of(&self, rt: &Realtime, token: &str) -> (Client, Value) {
        let (_, browser) = self.browser_token(token).await;
        let mut client = Client::connect(&rt.ws_url()).await;
        let welcome = client.hello(&browser, None).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (client, welcome)
    }
}

/// A websocket client as a browser would be.
pub struct Client {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a client read.
#[derive(Debug)]
pub enum Got {
    /// A JSON text frame.
    Frame(Value),
    /// The server closed with this code.
    Closed(Option<u16>),
    /// Nothing within the time.
    Nothing,
}

impl Client {
    /// Opens a websocket.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap();
        Client { ws }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// Sends the hello and returns the server's first answer (a welcome, or a close as `{"closed": code}`).
    pub async fn hello(&mut self, token: &str, resume: Option<Value>) -> Value {
        let mut hello = json!({ "type": "hello", "token": token });
        if let Some(resume) = resume {
            hello["resume"] = resume;
        }
        self.send(hello).await;
        match self.next(Duration::from_secs(5)).await {
            Got::Frame(frame) => frame,
            Got::Closed(code) => json!({ "closed": code }),
            Got::Nothing => json!({ "nothing": true }),
        }
    }

    /// The next text frame or close, skipping pings and pongs.
    pub async fn next(&mut self, timeout: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next {
                Err(_) => return Got::Nothing,
                Ok(None) => return Got::Closed(None),
                Ok(Some(Err(_))) => return Got::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Got::Frame(serde_json::from_str(text.as_str()).unwrap());
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Got::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next frame; panics on anything else.
    pub async fn frame(&mut self) -> Value {
        match self.next(Duration::from_secs(10)).await {
            Got::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next event frame named `event`, skipping others; panics after 10 s.
    pub async fn event(&mut self, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Got::Frame(frame) if frame["event"] == event => return frame,
                Got::Frame(_) => {}
                other => panic!("waiting for {event}, got {other:?}"),
            }
        }
    }

    /// Every frame until `quiet` passes without one (or the socket closes).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Got::Frame(frame) = self.next(quiet).await {
            frames.push(frame);
        }
        frames
    }

    /// Reads until the server closes; its close code (None: no close frame).
    pub async fn closed(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Got::Frame(_) => {}
                Got::Closed(code) => return code,
                Got::Nothing => panic!("the server did not close within {timeout:?}"),
            }
        }
    }
}

/// The bound node key, read from the realtime service's database (tests forge tokens with it).
pub async fn node_key(db: &PgPool) -> [u8; 32] {
    let key: Vec<u8> =
        sqlx::query_scalar("SELECT node_key FROM realtime_pairings WHERE state = 'bound'")
            .fetch_one(db)
            .await
            .unwrap();
    key.try_into().unwrap()
}
