//! Browser sockets against the real api and realtime service: the
//! handshake, who sees what, resume, every limit with its close code,
//! several processes behind one address, and locks across them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Got, Stack, node_key, start_realtime};
use futures::StreamExt as _;
use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_bus::{Bus, BusConfig, OutgoingMessage};
use tickiti_crypto::realtime::{BrowserClaims, scope, sign_token};
use tickiti_domain::{Ability, Role};
use tickiti_testkit::poll_until;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const QUIET: Duration = Duration::from_millis(700);

fn short_timing(config: &mut tickiti_realtime::Config) {
    config.hello_timeout = Duration::from_millis(400);
    config.ping_interval = Duration::from_millis(250);
    config.idle_timeout = Duration::from_millis(1200);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn events_reach_their_organization_only(db: PgPool) {
    let (stack, acme) = Stack::paired(db, |_| {}).await;
    let globex = stack.app.org("Globex").await;
    let (mut a, _) = stack.client(&acme.token).await;
    let (mut b, _) = stack.client(&globex.token).await;

    let ticket = stack.app.ticket(&acme.token, "Printer on fire").await;
    let created = a.event("ticket.created").await;
    assert_eq!(created["type"], "event");
    assert_eq!(created["data"]["id"], ticket["id"]);
    assert!(created["offset"].as_u64().unwrap() >= 1);
    let reply = stack
        .app
        .post(
            &format!(
                "/api/v1/tickets/{}/messages",
                ticket["id"].as_str().unwrap()
            ),
            &acme.token,
            json!({ "body": "on it" }),
        )
        .await;
    assert_eq!(reply.status, 201);
    let message = a.event("message.created").await;
    assert_eq!(message["data"]["ticket_id"], ticket["id"]);
    // Contact events are for integrators; ticket.message.created repeats message.created.
    let rest = a.drain(QUIET).await;
    for frame in &rest {
        let event = frame["event"].as_str().unwrap_or_default();
        assert!(
            !event.starts_with("contact.") && event != "ticket.message.created",
            "{frame}"
        );
    }

    // Globex saw none of it, but sees its own.
    stack.app.ticket(&globex.token, "Globex's own").await;
    // (Its own perspective counts come too; they are Globex's.)
    let frames: Vec<Value> = b
        .drain(Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|f| f["event"] != "perspective.counts")
        .collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["data"]["subject"], "Globex's own");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn mentions_go_to_the_mentioned_user_only(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (_, ann_email, ann) = stack
        .app
        .user(&org, "Ann Lee", Role::Agent, &[Ability::All])
        .await;
    let (_, _, bob) = stack
        .app
        .user(&org, "Bob Roe", Role::Agent, &[Ability::All])
        .await;
    let (mut ann_socket, _) = stack.client(&ann).await;
    let (mut bob_socket, _) = stack.client(&bob).await;
    let ticket = stack.app.ticket(&org.token, "Mentions").await;
    stack
        .app
        .post(
            &format!(
                "/api/v1/tickets/{}/messages",
                ticket["id"].as_str().unwrap()
            ),
            &org.token,
            json!({ "body": format!("@{ann_email} please look"), "visibility": "internal" }),
        )
        .await;
    let mention = ann_socket.event("mention.created").await;
    assert!(mention["data"]["user_id"].is_string());
    let bobs = bob_socket.drain(QUIET).await;
    assert!(bobs.iter().any(|f| f["event"] == "message.created"));
    assert!(
        !bobs.iter().any(|f| f["event"] == "mention.created"),
        "{bobs:?}"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn forged_expired_and_missing_tokens_close_4401(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), short_timing).await;
    let key = node_key(&db).await;
    let (_, good) = stack.browser_token(&org.token).await;
    let install_id = stack.rt.ctx.hub.binding().unwrap().install_id;
    let claims = |exp: i64| BrowserClaims {
        iid: install_id,
        org: org.id,
        sub: org.admin_id,
        name: "Admin".into(),
        scopes: vec![scope::TICKETS.into()],
        iat: 0,
        exp,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = sign_token(&key, &claims(now - 1));
    // A valid signature over other claims, spliced: forged.
    let other = sign_token(&key, &claims(now + 60));
    let (payload, _) = other.split_once('.').unwrap();
    let (_, tag) = good.split_once('.').unwrap();
    let forged = format!("{payload}.{tag}");
    for token in [expired.as_str(), forged.as_str(), "", "not.a.token"] {
        let mut client = Client::connect(&stack.rt.ws_url()).await;
        assert_eq!(
            client.hello(token, None).await,
            json!({ "closed": 4401 }),
            "{token}"
        );
    }
    // Something other than a hello first is refused too.
    let mut client = Client::connect(&stack.rt.ws_url()).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(4401));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_open_socket_closes_4401_when_its_token_expires(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let key = node_key(&db).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = BrowserClaims {
        iid: stack.rt.ctx.hub.binding().unwrap().install_id,
        org: org.id,
        sub: org.admin_id,
        name: "Admin".into(),
        scopes: vec![scope::TICKETS.into()],
        iat: now,
        exp: now + 4,
    };
    let mut client = Client::connect(&stack.rt.ws_url()).await;
    let welcome = client.hello(&sign_token(&key, &claims), None).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // Frames still flow while the token is valid...
    stack.app.ticket(&org.token, "before expiry").await;
    assert_eq!(
        client.event("ticket.created").await["data"]["subject"],
        "before expiry"
    );
    // ...and the socket closes when it runs out (the idle timeout is 60 s).
    assert_eq!(client.closed(Duration::from_secs(10)).await, Some(4401));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn no_hello_in_time_closes_4408(db: PgPool) {
    let (stack, _org) = Stack::paired(db, short_timing).await;
    let mut client = Client::connect(&stack.rt.ws_url()).await;
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(4408));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn ping_pong_and_oversized_frames_close_1009(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (mut client, _) = stack.client(&org.token).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.frame().await, json!({ "type": "pong" }));
    client.send(json!({ "type": "nonsense" })).await;
    assert_eq!(
        client.frame().await["type"],
        "error",
        "bad frames are answered, not fatal"
    );
    client
        .send(json!({ "type": "ping", "pad": "x".repeat(20 * 1024) }))
        .await;
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(1009));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn more_than_twenty_frames_a_second_close_4029(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (mut client, _) = stack.client(&org.token).await;
    for _ in 0..25 {
        client.send(json!({ "type": "ping" })).await;
    }
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(4029));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_server_pings_and_a_silent_client_is_closed_1001(db: PgPool) {
    let (stack, org) = Stack::paired(db, short_timing).await;
    // A client that reads answers the pings (tungstenite pongs) and stays.
    let (mut alive, _) = stack.client(&org.token).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, alive.ws.next()).await {
        match message {
            Message::Ping(_) => pings += 1,
            Message::Close(frame) => panic!("closed while answering pings: {frame:?}"),
            _ => {}
        }
    }
    assert!(pings >= 3, "server pings: {pings}");
    // A client that neither sends nor answers is closed as idle.
    // (Reading would answer the pings: it waits, unread, until the server
    // has dropped it and the reader that stopped reading.)
    let (mut silent, _) = stack.client(&org.token).await;
    let dropped = poll_until(
        Duration::from_secs(10),
        || async { stack.rt.ctx.hub.connections() },
        |n| *n == 0,
    )
    .await;
    assert_eq!(dropped, 0, "idle sockets still open");
    assert_eq!(silent.closed(Duration::from_secs(5)).await, Some(1001));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_client_that_does_not_read_is_closed_4008(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (_, token) = stack.browser_token(&org.token).await;
    // A small receive window, so the kernel does not buffer megabytes for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(stack.rt.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        stack.rt.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut client = Client { ws };
    assert_eq!(client.hello(&token, None).await["type"], "welcome");

    // Big events straight onto the events exchange, as the relay would publish them.
    let stop = CancellationToken::new();
    let bus = Bus::start(
        BusConfig {
            amqp_url: tickiti_testkit::amqp_url(),
            prefix: stack.app.prefix.clone(),
            connection_name: "test-publisher".into(),
        },
        stop.clone(),
    );
    assert!(bus.wait_connected(Duration::from_secs(10)).await);
    let blob = "x".repeat(100 * 1024);
    let messages: Vec<OutgoingMessage> = (0..40)
        .map(|_| {
            let id = Uuid::now_v7();
            OutgoingMessage {
                id,
                routing_key: "ticket.updated".into(),
                payload: json!({
                    "id": id, "event": "ticket.updated", "organization_id": org.id,
                    "occurred_at": "2026-11-22T00:00:00Z", "data": { "blob": blob },
                })
                .to_string()
                .into_bytes(),
                headers: Vec::new(),
            }
        })
        .collect();
    bus.publish_confirmed(&bus.events_exchange(), &messages)
        .await
        .unwrap();
    stop.cancel();
    // The server gives up on it (memory stays bounded); reading now shows why.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if stack.rt.ctx.hub.connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow socket was not dropped");
    assert_eq!(client.closed(Duration::from_secs(10)).await, Some(4008));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn resume_replays_missed_frames_in_order_or_says_not_recovered(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (mut client, welcome) = stack.client(&org.token).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let first = stack.app.ticket(&org.token, "one").await;
    let seen = client.event("ticket.created").await;
    assert_eq!(seen["data"]["id"], first["id"]);
    let last_seen = client
        .drain(QUIET)
        .await
        .last()
        .map_or(seen["offset"].as_u64().unwrap(), |f| {
            f["offset"].as_u64().unwrap()
        });
    drop(client);

    // Changes while the browser is away; another tab sees them go through
    // the realtime process.
    let (_, token) = stack.browser_token(&org.token).await;
    let mut other_tab = Client::connect(&stack.rt.ws_url()).await;
    other_tab.hello(&token, None).await;
    let id = first["id"].as_str().unwrap();
    for subject in ["two", "three"] {
        let reply = stack
            .app
            .patch(
                &format!("/api/v1/tickets/{id}"),
                &org.token,
                json!({ "subject": subject }),
            )
            .await;
        assert_eq!(reply.status, 200);
        let seen = other_tab.event("ticket.updated").await;
        assert_eq!(seen["data"]["subject"], subject, "{seen}");
    }

    let mut back = Client::connect(&stack.rt.ws_url()).await;
    let welcome = back
        .hello(&token, Some(json!({ "epoch": epoch, "offset": last_seen })))
        .await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let missed = back.drain(QUIET).await;
    let offsets: Vec<u64> = missed
        .iter()
        .map(|f| f["offset"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (last_seen + 1..=welcome["offset"].as_u64().unwrap()).collect();
    assert_eq!(
        offsets, expected,
        "every missed frame, in order: {missed:?}"
    );
    let subjects: Vec<&Value> = missed
        .iter()
        .filter(|f| f["event"] == "ticket.updated")
        .map(|f| &f["data"]["subject"])
        .collect();
    assert_eq!(subjects, vec!["two", "three"]);

    // Live frames follow the replay.
    stack
        .app
        .patch(
            &format!("/api/v1/tickets/{id}"),
            &org.token,
            json!({ "subject": "four" }),
        )
        .await;
    let live = back.event("ticket.updated").await;
    assert!(live["offset"].as_u64().unwrap() > *offsets.last().unwrap());

    // An epoch this process never issued: not recovered.
    let mut stranger = Client::connect(&stack.rt.ws_url()).await;
    let welcome = stranger
        .hello(&token, Some(json!({ "epoch": "gone", "offset": 3 })))
        .await;
    assert_eq!(welcome["recovered"], false, "{welcome}");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn two_processes_every_client_gets_every_event_once(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let second = start_realtime(&db, &stack.app.prefix, |_| {}).await;
    let install_id = stack.rt.ctx.hub.binding().unwrap().install_id;
    stack.wait_binding(&second, Some(install_id)).await;
    let mut clients = Vec::new();
    for rt in [&stack.rt, &second, &stack.rt, &second] {
        clients.push(stack.client_of(rt, &org.token).await.0);
    }
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(stack.app.ticket(&org.token, &format!("t{n}")).await["id"].clone());
    }
    for client in &mut clients {
        let mut got = Vec::new();
        while got.len() < ids.len() {
            match client.next(Duration::from_secs(10)).await {
                Got::Frame(frame) if frame["event"] == "ticket.created" => {
                    got.push(frame["data"]["id"].clone());
                }
                Got::Frame(_) => {}
                other => panic!("missing events: {other:?} after {got:?}"),
            }
        }
        let extra: Vec<Value> = client
            .drain(QUIET)
            .await
            .into_iter()
            .filter(|f| f["event"] == "ticket.created")
            .collect();
        assert!(extra.is_empty(), "duplicates: {extra:?}");
        assert_eq!(got, ids, "every event once, in commit order");
    }
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn locks_are_shared_between_processes(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let second = start_realtime(&db, &stack.app.prefix, |_| {}).await;
    let install_id = stack.rt.ctx.hub.binding().unwrap().install_id;
    stack.wait_binding(&second, Some(install_id)).await;
    let (nathan_id, _, nathan) = stack
        .app
        .user(&org, "Nathan", Role::Agent, &[Ability::All])
        .await;
    let (_, _, olga) = stack
        .app
        .user(&org, "Olga", Role::Agent, &[Ability::All])
        .await;
    let (mut n, _) = stack.client_of(&stack.rt, &nathan).await;
    let (mut o, _) = stack.client_of(&second, &olga).await;
    let ticket = Uuid::now_v7();

    n.send(json!({ "type": "lock", "ticket_id": ticket })).await;
    for client in [&mut n, &mut o] {
        let acquired = client.event("lock.acquired").await;
        assert_eq!(acquired["data"]["ticket_id"], json!(ticket));
        assert_eq!(
            acquired["data"]["user"],
            json!({ "id": nathan_id, "name": "Nathan" })
        );
        assert!(acquired["data"]["expires_at"].is_string());
    }
    // Olga, on the other process, cannot take it while Nathan holds it.
    o.send(json!({ "type": "lock", "ticket_id": ticket })).await;
    let denied = loop {
        let frame = o.frame().await;
        if frame["type"] == "lock.denied" {
            break frame;
        }
    };
    assert_eq!(denied["type"], "lock.denied", "{denied}");
    assert_eq!(denied["user"]["id"], json!(nathan_id));
    // A renewal makes no new lock frame (other frames, e.g. counts, may come).
    n.send(json!({ "type": "lock", "ticket_id": ticket })).await;
    let lock_frames: Vec<Value> = o
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|f| f["event"].as_str().is_some_and(|e| e.starts_with("lock.")))
        .collect();
    assert!(lock_frames.is_empty(), "{lock_frames:?}");

    n.send(json!({ "type": "unlock", "ticket_id": ticket }))
        .await;
    for client in [&mut n, &mut o] {
        let released = client.event("lock.released").await;
        assert_eq!(released["data"]["ticket_id"], json!(ticket));
    }
    // Now Olga may; and her lock goes when her socket closes.
    o.send(json!({ "type": "lock", "ticket_id": ticket })).await;
    assert_eq!(
        n.event("lock.acquired").await["data"]["user"]["name"],
        "Olga"
    );
    drop(o);
    assert_eq!(
        n.event("lock.released").await["data"]["user"]["name"],
        "Olga"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_socket_that_joins_is_told_the_locks_already_held(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let (nathan_id, _, nathan) = stack
        .app
        .user(&org, "Nathan", Role::Agent, &[Ability::All])
        .await;
    let (_, _, olga) = stack
        .app
        .user(&org, "Olga", Role::Agent, &[Ability::All])
        .await;
    let (mut n, _) = stack.client(&nathan).await;
    let ticket = Uuid::now_v7();
    n.send(json!({ "type": "lock", "ticket_id": ticket })).await;
    n.event("lock.acquired").await;

    // Olga opens her tab while Nathan types: right after her welcome.
    let (mut o, _) = stack.client(&olga).await;
    let held = o.event("lock.acquired").await;
    assert_eq!(held["data"]["ticket_id"], json!(ticket));
    assert_eq!(held["data"]["user"]["id"], json!(nathan_id));
    assert!(held["data"]["expires_at"].is_string());
    assert!(held.get("offset").is_none(), "not a ring frame: {held}");

    // Once released, a new tab is told nothing.
    n.send(json!({ "type": "unlock", "ticket_id": ticket }))
        .await;
    o.event("lock.released").await;
    let (mut late, _) = stack.client(&olga).await;
    let frames = late.drain(QUIET).await;
    assert!(
        !frames.iter().any(|f| f["event"] == "lock.acquired"),
        "{frames:?}"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn shutdown_closes_sockets_with_1001(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (mut client, _) = stack.client(&org.token).await;
    stack.rt.shutdown.cancel();
    assert_eq!(client.closed(Duration::from_secs(10)).await, Some(1001));
}

/// Waits for a `perspective.counts` frame satisfying `want`.
async fn counts_frame(client: &mut Client, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next(left).await {
            Got::Frame(frame) if frame["event"] == "perspective.counts" && want(&frame["data"]) => {
                return frame;
            }
            Got::Frame(_) => {}
            other => panic!("waiting for perspective counts, got {other:?}"),
        }
    }
}

fn total(data: &Value) -> i64 {
    data["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .sum()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn perspective_counts_follow_tickets_in_and_out(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (_, _, agent) = stack
        .app
        .user(&org, "Agent Smith", Role::Agent, &[Ability::All])
        .await;
    let (mut admin, _) = stack.client(&org.token).await;
    let (mut other, _) = stack.client(&agent).await;
    let ticket = stack.app.ticket(&org.token, "count me").await;
    // Shared perspectives (All open, Unassigned) now count it, for everyone.
    for client in [&mut admin, &mut other] {
        let frame = counts_frame(client, |d| d.get("user_id").is_none() && total(d) >= 1).await;
        for count in frame["data"]["counts"].as_array().unwrap() {
            assert!(count["perspective_id"].is_string() && count["count"].is_i64());
        }
    }
    // Assigned to the admin: the admin's "Mine" counts it, and only the admin is told.
    let id = ticket["id"].as_str().unwrap();
    let reply = stack
        .app
        .patch(
            &format!("/api/v1/tickets/{id}"),
            &org.token,
            json!({ "assignee_id": org.admin_id }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mine = counts_frame(&mut admin, |d| {
        d["user_id"] == json!(org.admin_id) && total(d) == 1
    })
    .await;
    assert_eq!(
        mine["data"]["counts"].as_array().unwrap().len(),
        1,
        "{mine}"
    );
    let others = other.drain(Duration::from_secs(1)).await;
    assert!(
        !others
            .iter()
            .any(|f| f["data"]["user_id"] == json!(org.admin_id)),
        "{others:?}"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn after_a_restart_clients_reconnect_and_are_told_to_refetch(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let (mut client, welcome) = stack.client(&org.token).await;
    let (_, token) = stack.browser_token(&org.token).await;
    stack.app.ticket(&org.token, "before").await;
    let seen = client.event("ticket.created").await;
    let Stack { app, rt, .. } = stack;
    let (addr, admin_addr) = (rt.addr, rt.admin_addr);

    rt.shutdown.cancel();
    assert_eq!(client.closed(Duration::from_secs(10)).await, Some(1001));
    rt.finished.await.unwrap().unwrap();
    // The api keeps working while the realtime service is down.
    app.ticket(&org.token, "while down").await;

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let admin = tokio::net::TcpListener::bind(admin_addr).await.unwrap();
    let again = common::start_realtime_on(&db, &app.prefix, listener, admin, |_| {}).await;
    let bound = tickiti_testkit::poll_until(
        Duration::from_secs(10),
        || async { again.ctx.hub.binding().is_some() },
        |bound| *bound,
    )
    .await;
    assert!(bound);
    let mut back = Client::connect(&again.ws_url()).await;
    let resumed = back
        .hello(
            &token,
            Some(json!({ "epoch": welcome["epoch"], "offset": seen["offset"] })),
        )
        .await;
    assert_eq!(resumed["type"], "welcome", "{resumed}");
    assert_eq!(
        resumed["recovered"], false,
        "a new process cannot replay: refetch over REST"
    );
    app.ticket(&org.token, "after").await;
    assert_eq!(
        back.event("ticket.created").await["data"]["subject"],
        "after"
    );
}
