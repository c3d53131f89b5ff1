//! Deliveries over https: the dispatcher speaks TLS through rustls, trusts
//! what the platform trusts and nothing else. A small TLS server with a
//! certificate from a test CA (`fixtures/tls`, valid for `localhost` and
//! `127.0.0.1` until 2126) stands for the receiver.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sqlx::PgPool;
use tickiti_dispatcher::client::SafeClient;
use tickiti_testkit::TestApp;
use tickiti_testkit::webhooks::TestDispatcher;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// A TLS server answering every request `200 ok`; what it got (the request
/// head, as text) comes out of the channel. A failed handshake sends nothing.
async fn tls_receiver() -> (u16, mpsc::UnboundedReceiver<String>) {
    let certs = CertificateDer::pem_file_iter(format!("{FIXTURES}/server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, heads) = (acceptor.clone(), heads.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // One request per connection is all these tests send at once.
                let mut read = Vec::new();
                let mut buffer = [0u8; 4096];
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&read).into_owned());
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, received)
}

#[tokio::test]
async fn a_certificate_the_platform_does_not_trust_is_refused() {
    // This process trusts the machine's roots (SSL_CERT_FILE may name the
    // system bundle), which do not include the test CA.
    assert!(
        std::env::var("SSL_CERT_FILE").map_or(true, |file| !file.starts_with(FIXTURES)),
        "run without the test CA in SSL_CERT_FILE"
    );
    let (port, mut received) = tls_receiver().await;
    let client = SafeClient::new(Duration::from_secs(5), true, 4).unwrap();
    let answer = client
        .post(
            &format!("https://localhost:{port}/in"),
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
        )
        .await;
    assert_eq!(answer.status, None, "{answer:?}");
    let error = answer.error.unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(
        received.try_recv().is_err(),
        "no request may cross a refused handshake"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_delivery_goes_over_tls_to_a_trusted_receiver(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (port, mut received) = tls_receiver().await;
    let org = app.org("Secure").await;
    let reply = app
        .post(
            "/api/v1/webhooks",
            &org.token,
            json!({ "url": format!("https://localhost:{port}/in"), "events": ["ticket.created"] }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    TestDispatcher::declare_queues(&app.prefix).await;
    // The real binary, trusting the test CA the way an operator adds one
    // (SSL_CERT_FILE, read by the platform verifier on Linux).
    let mut dispatcher = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickiti-dispatcher"))
        .env("DATABASE_URL", tickiti_testkit::database_url(&db))
        .env("AMQP_URL", tickiti_testkit::amqp_url())
        .env("TICKITI_BUS_PREFIX", &app.prefix)
        .env("DISPATCHER_LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("SSL_CERT_FILE", format!("{FIXTURES}/ca.pem"))
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let ticket = app.ticket(&org.token, "over TLS").await;
    let head = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("no delivery arrived over TLS")
        .unwrap();
    assert!(head.starts_with("POST /in HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("x-tickiti-event: ticket.created"), "{head}");
    assert!(head.contains("webhook-signature: v1,"), "{head}");
    // And the log says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT d.status FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
             WHERE e.payload->'data'->>'id' = $1",
        )
        .bind(ticket["id"].as_str().unwrap())
        .fetch_optional(&db)
        .await
        .unwrap();
        if status.as_deref() == Some("success") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery was not logged as a success: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dispatcher.start_kill().unwrap();
    let _ = dispatcher.wait().await;
    TestDispatcher::cleanup(&app.prefix).await;
}
