//! From the broker to the sockets.
//!
//! Each process consumes one exclusive, auto-delete queue of its own, named
//! `<prefix>.realtime.<process id>`, bound to `<prefix>.events` (every
//! event) and to `<prefix>.realtime` (`lock.*`: the lock claims and releases
//! of every process, this one's included; `pairing.*`: "read the pairing
//! again"; `perspective.*`: the counts the api recomputes, browser-only
//! events kept off the events exchange). Exclusive: the broker deletes it
//! with this process's connection (AMQP 0-9-1 queue.declare `exclusive`), so
//! a crashed process leaves nothing behind; every process gets every event,
//! which is what fan-out behind a load balancer needs. Realtime frames are
//! not durable state: messages are acked on receipt, and a gap (the queue
//! was gone while the broker connection was) restarts the rings' epochs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tickiti_bus::{ConsumerSpec, IncomingMessage, Outcome, OutgoingMessage};
use uuid::Uuid;

use crate::Ctx;
use crate::locks::{Claim, Release};

/// A lock message on `<prefix>.realtime`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LockMessage {
    /// A claim or renewal.
    Claim(Claim),
    /// A release.
    Release(Release),
}

/// The event envelope, read leniently (names this service does not know
/// yet, such as new `system.*` events, still pass through).
#[derive(Debug, Deserialize)]
struct Envelope {
    id: Option<Uuid>,
    event: String,
    organization_id: Uuid,
    #[serde(default)]
    data: serde_json::Value,
}

/// The queue this process consumes.
pub fn queue_spec(prefix: &str, node: &str) -> ConsumerSpec {
    ConsumerSpec {
        queue: format!("{prefix}.realtime.{node}"),
        durable: false,
        exclusive: true,
        auto_delete: true,
        bindings: vec![
            (tickiti_bus::events_exchange(prefix), "#".into()),
            (tickiti_bus::realtime_exchange(prefix), "lock.*".into()),
            (tickiti_bus::realtime_exchange(prefix), "pairing.*".into()),
            (
                tickiti_bus::realtime_exchange(prefix),
                "perspective.*".into(),
            ),
        ],
        prefetch: 1024,
        consumer_tag: format!("tickiti-realtime-{node}"),
        // One at a time: frames keep the order the broker delivered them in.
        concurrency: 1,
        ..ConsumerSpec::default()
    }
}

/// Handles one message; always acked (see the module docs).
pub fn handle(ctx: &Ctx, message: &IncomingMessage) -> Outcome {
    let realtime = tickiti_bus::realtime_exchange(&ctx.config.bus_prefix);
    if message.exchange == realtime && message.routing_key.starts_with("pairing.") {
        // Another process changed the pairing: read it now, not at the next poll.
        if let Some(ctx) = ctx.me.upgrade() {
            ctx.tracker
                .clone()
                .spawn(async move { crate::reload_binding(&ctx).await });
        }
        return Outcome::Ack;
    }
    if message.exchange == realtime && message.routing_key.starts_with("lock.") {
        match serde_json::from_slice::<LockMessage>(&message.payload) {
            Ok(LockMessage::Claim(claim)) => ctx.hub.apply_claim(claim),
            Ok(LockMessage::Release(release)) => ctx.hub.apply_release(&release),
            Err(error) => tracing::warn!(%error, "unreadable lock message dropped"),
        }
        return Outcome::Ack;
    }
    match serde_json::from_slice::<Envelope>(&message.payload) {
        Ok(envelope) => ctx.hub.event(
            envelope.id.or(message.id),
            envelope.organization_id,
            &envelope.event,
            &envelope.data,
        ),
        Err(error) => {
            tracing::warn!(%error, routing_key = %message.routing_key, "unreadable event dropped")
        }
    }
    Outcome::Ack
}

/// Publishes a claim to every realtime process.
pub fn publish_claim(ctx: &Ctx, claim: Claim) {
    publish(ctx, "lock.claim", LockMessage::Claim(claim));
}

/// Publishes a release to every realtime process.
pub fn publish_release(ctx: &Ctx, release: Release) {
    publish(ctx, "lock.release", LockMessage::Release(release));
}

/// Tells every process that the pairing changed.
pub fn announce_pairing_change(ctx: &Ctx) {
    let Some(ctx) = ctx.me.upgrade() else {
        return;
    };
    ctx.tracker.clone().spawn(async move {
        let outgoing = OutgoingMessage {
            id: Uuid::now_v7(),
            routing_key: "pairing.changed".into(),
            payload: b"{}".to_vec(),
            headers: Vec::new(),
        };
        let exchange = ctx.bus.realtime_exchange();
        if let Err(error) = ctx.bus.publish_to_listeners(&exchange, &[outgoing]).await {
            tracing::warn!(%error, "pairing change not announced; the other processes see it at their next poll");
        }
    });
}

/// Publishes in the background (a socket never waits for the broker). When
/// the broker cannot take it, the change is applied here only, so locks
/// still work within one process while the broker is away.
fn publish(ctx: &Ctx, routing_key: &str, message: LockMessage) {
    let Some(ctx) = ctx.me.upgrade() else {
        return;
    };
    let routing_key = routing_key.to_owned();
    ctx.tracker.clone().spawn(async move {
        let outgoing = OutgoingMessage {
            id: Uuid::now_v7(),
            routing_key,
            payload: serde_json::to_vec(&message).unwrap_or_default(),
            headers: Vec::new(),
        };
        let exchange = ctx.bus.realtime_exchange();
        if let Err(error) = ctx.bus.publish_to_listeners(&exchange, &[outgoing]).await {
            tracing::warn!(%error, "lock message not published; applied locally only");
            apply_locally(&ctx, message);
        }
    });
}

fn apply_locally(ctx: &Arc<Ctx>, message: LockMessage) {
    match message {
        LockMessage::Claim(claim) => ctx.hub.apply_claim(claim),
        LockMessage::Release(release) => ctx.hub.apply_release(&release),
    }
}
