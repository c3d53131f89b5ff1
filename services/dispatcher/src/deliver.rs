//! Attempts. A first attempt comes from the fan-out and is sent at once
//! ([`first_attempt`]), its delivery row written with its answer; every
//! other attempt is one work message ([`handle`]):
//!
//! 1. Not yet due: parked in a delay tier (acked), or waited for when close.
//! 2. Fairness gates (per endpoint, organization, global), then the attempt is claimed in
//!    Postgres by its number: a duplicate message finds nothing to claim.
//! 3. The signed POST through the SSRF-safe client; the attempt is written
//!    to `webhook_attempts` with the delivery's new state, batched with
//!    other attempts' (see [`start_recorder`]).
//! 4. A retry is queued on the schedule through the delay tiers; the work
//!    message is acked only after all of that is durable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tickiti_bus::{IncomingMessage, Outcome};
use tickiti_crypto::{standard_webhooks_signature, tickiti_signature};
use tickiti_domain::webhook::{DeliveryStatus, EndpointStatus, PayloadFormat, retry_delay};
use tickiti_store::webhooks::{self, Delivery, Endpoint, FinishedAttempt, NewDelivery};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Ctx;
use crate::batch::Batcher;
use crate::client::Answer;
use crate::fanout::{FirstAttempt, Select, queue_deliveries};
use crate::gate::Pass;
use crate::topology::{WorkMessage, now_ms, wait_for};

/// How long the previous secret keeps signing after a rotation (CONTRACT §3).
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

/// How long a first attempt may wait for its endpoint's turn (a free slot
/// and its rate limit) before it goes to the work queue instead.
pub const FIRST_ATTEMPT_GATE_WAIT: Duration = Duration::from_secs(10);

/// First attempts this process holds at once (sending or waiting for their
/// endpoint); the fan-out waits beyond, so memory stays bounded.
pub const FIRST_ATTEMPTS_IN_FLIGHT: usize = 4096;

/// First attempts waiting for one endpoint in this process at most; more go
/// to the work queue, so one endpoint's backlog (a hanging or rate-limited
/// receiver) holds at most half of [`FIRST_ATTEMPTS_IN_FLIGHT`] and the
/// other endpoints keep the rest. Not much lower: a backlog spread over a
/// few endpoints puts about `FIRST_ATTEMPTS_IN_FLIGHT / endpoints` in each
/// queue, and a cap near that sent a share of a healthy burst the long way
/// round (with 512, the bench parked up to 176 of 80 000 deliveries).
pub const FIRST_ATTEMPT_WAITING_CAP: usize = FIRST_ATTEMPTS_IN_FLIGHT / 2;

/// How long after its fan-out a first attempt has written its delivery row
/// (or handed it over), unless its sender died: the gate wait, the request
/// and a margin. The sweeper redoes what is missing after that, so a
/// dispatcher that dies mid-attempt delays those deliveries by about this much.
pub fn first_attempt_lease(timeout: Duration) -> Duration {
    FIRST_ATTEMPT_GATE_WAIT + timeout + Duration::from_secs(10)
}

/// An endpoint's status change an attempt calls for.
#[derive(Debug, Clone)]
pub struct EndpointChange {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its new status.
    pub to: EndpointStatus,
    /// Statuses it may change from.
    pub from: Vec<String>,
    /// Why.
    pub reason: String,
}

/// The attempt-log writer: finished attempts in; whether each delivery's
/// row took the new state out.
pub type Recorder = Batcher<(FinishedAttempt, Option<EndpointChange>), Result<bool, String>>;

/// Starts the attempt-log writers on `db`.
pub fn start_recorder(db: PgPool) -> Recorder {
    Batcher::start(
        2,
        512,
        move |batch: Vec<(FinishedAttempt, Option<EndpointChange>)>| {
            let db = db.clone();
            async move {
                let answers =
                    |batch: &[(FinishedAttempt, Option<EndpointChange>)],
                     result: anyhow::Result<std::collections::HashSet<Uuid>>| {
                        match result {
                            Ok(written) => batch
                                .iter()
                                .map(|(f, _)| Ok(written.contains(&f.delivery_id)))
                                .collect::<Vec<_>>(),
                            Err(error) => {
                                let error = format!("{error:#}");
                                batch.iter().map(|_| Err(error.clone())).collect()
                            }
                        }
                    };
                match record_batch(&db, &batch).await {
                    Err(error) if batch.len() > 1 => {
                        // One row that cannot be written (its endpoint deleted
                        // mid-statement, say) must not sink the others: each alone.
                        tracing::warn!(%error, attempts = batch.len(), "recording a batch failed; recording its attempts one by one");
                        let mut out = Vec::with_capacity(batch.len());
                        for item in batch.chunks(1) {
                            out.extend(answers(item, record_batch(&db, item).await));
                        }
                        out
                    }
                    result => answers(&batch, result),
                }
            }
        },
    )
}

async fn record_batch(
    db: &PgPool,
    batch: &[(FinishedAttempt, Option<EndpointChange>)],
) -> anyhow::Result<std::collections::HashSet<Uuid>> {
    let finished: Vec<&FinishedAttempt> = batch.iter().map(|(f, _)| f).collect();
    let mut tx = db.begin().await?;
    let updated = webhooks::finish_attempts(&mut tx, &finished).await?;
    let mut events = Vec::new();
    for change in batch.iter().filter_map(|(_, c)| c.as_ref()) {
        let changed = webhooks::change_status(
            &mut tx,
            change.endpoint_id,
            &change.from,
            change.to.as_str(),
            &change.reason,
        )
        .await?;
        // Admins hear of an endpoint that stopped receiving (in its change's
        // transaction, once: only the statement that changed it emits).
        if let Some((organization_id, url)) = changed
            && change.to == EndpointStatus::Failed
        {
            events.push(tickiti_domain::EventEnvelope::new(
                tickiti_domain::EventType::SystemEndpointFailed,
                organization_id,
                serde_json::json!({
                    "endpoint_id": change.endpoint_id,
                    "url": url,
                    "status": change.to.as_str(),
                    "reason": change.reason,
                }),
            ));
        }
    }
    if !events.is_empty() {
        tickiti_store::outbox::append(&mut tx, &events, None).await?;
    }
    tx.commit().await?;
    Ok(updated.into_iter().collect())
}

/// Sends a first attempt of the fan-out. When its endpoint's turn does not
/// come soon enough (or too many wait for it), its delivery row is written
/// unsent and the attempt goes to the work queue like any other.
pub async fn first_attempt(ctx: &Arc<Ctx>, first: FirstAttempt) {
    let FirstAttempt {
        delivery,
        endpoint,
        body,
        stored_at,
    } = first;
    // Its endpoint's turn: a slot, then its rate limit's next start. Both
    // count against the lease, so waiting too long hands it over.
    let turn = tokio::time::timeout_at(stored_at + FIRST_ATTEMPT_GATE_WAIT, async {
        let pass = ctx
            .gates
            .enter_within(
                Some(endpoint.organization_id),
                endpoint.id,
                FIRST_ATTEMPT_WAITING_CAP,
            )
            .await?;
        ctx.gates
            .pace(endpoint.id, endpoint.rate_limit_per_second)
            .await;
        Some(pass)
    })
    .await;
    let Ok(Some(pass)) = turn else {
        ctx.metrics.parked();
        if let Err(error) = crate::fanout::hand_over(ctx, &delivery).await {
            // The lease runs out and the sweeper queues it.
            tracing::warn!(%error, delivery.id = %delivery.id, "could not hand a first attempt to the work queue; the sweeper will");
        }
        return;
    };
    let new = Some(NewDelivery::from(&delivery));
    if let Err(error) = send_and_record(ctx, pass, &endpoint, &delivery, 1, new, body).await {
        tracing::warn!(%error, delivery.id = %delivery.id, "first attempt not recorded; once its lease runs out the sweeper queues it again");
    }
}

/// Handles one message of the work queue.
pub async fn handle(ctx: &Ctx, message: IncomingMessage) -> Outcome {
    let Ok(work) = serde_json::from_slice::<WorkMessage>(&message.payload) else {
        tracing::warn!("malformed work message");
        return ctx
            .park(&message, crate::metrics::Unhandled::MalformedWork)
            .await;
    };
    match attempt(ctx, &work, message.redelivered).await {
        Ok(()) => Outcome::Ack,
        Err(error) => {
            tracing::warn!(%error, delivery.id = %work.delivery_id, "delivery step failed; the message is requeued");
            tokio::time::sleep(Duration::from_millis(500)).await;
            Outcome::Requeue
        }
    }
}

async fn park(ctx: &Ctx, work: &WorkMessage, due_at_ms: i64) -> anyhow::Result<()> {
    let parked = WorkMessage { due_at_ms, ..*work };
    ctx.queues.publish_work(&ctx.bus, &[parked]).await?;
    Ok(())
}

async fn attempt(ctx: &Ctx, work: &WorkMessage, redelivered: bool) -> anyhow::Result<()> {
    // 1. Due?
    let wait = wait_for(work.due_at_ms);
    tracing::debug!(delivery.id = %work.delivery_id, attempt = work.attempt, ?wait, "work message");
    if wait >= Duration::from_millis(crate::topology::TIERS_MS[0] as u64) {
        return park(ctx, work, work.due_at_ms).await;
    }
    tokio::time::sleep(wait).await;

    // 2. Gates, then the claim.
    let Some(pass) = ctx
        .gates
        .enter(work.organization_id, work.endpoint_id)
        .await
    else {
        ctx.metrics.parked();
        return park(ctx, work, now_ms() + 1_000).await;
    };
    let lease_ms = i64::try_from(ctx.config.timeout.as_millis()).unwrap_or(i64::MAX / 2) + 60_000;
    let mut conn = ctx.db.acquire().await?;
    let Some((delivery, envelope)) = webhooks::claim_attempt(
        &mut conn,
        work.delivery_id,
        work.attempt,
        redelivered,
        lease_ms,
    )
    .await?
    else {
        // Already made, finished, or another worker has it: a duplicate.
        return Ok(());
    };
    let Some(endpoint) = webhooks::get_by_id(&mut conn, delivery.endpoint_id).await? else {
        // Deleted while this delivery was being written: it goes too.
        webhooks::delete_delivery(&mut conn, delivery.id).await?;
        return Ok(());
    };
    drop(conn);
    if endpoint.status != EndpointStatus::Active.as_str() && !delivery.manual {
        let reason = format!("not sent: the endpoint is {}", endpoint.status);
        let mut conn = ctx.db.acquire().await?;
        webhooks::abandon(&mut conn, delivery.id, work.attempt, &reason).await?;
        return Ok(());
    }
    ctx.gates
        .pace(endpoint.id, endpoint.rate_limit_per_second)
        .await;
    let body = render_body(&endpoint.payload_format, &envelope)?;
    send_and_record(ctx, pass, &endpoint, &delivery, work.attempt, None, body).await
}

/// Steps 3 and 4: send `body`, record (batched; `new_delivery` when the
/// delivery's row is still to be written), queue the retry if one is due.
/// The endpoint's slot (`pass`) is given back as soon as the answer is in:
/// writing the log is not the endpoint's business.
async fn send_and_record(
    ctx: &Ctx,
    pass: Pass,
    endpoint: &Endpoint,
    delivery: &Delivery,
    attempt: i32,
    new_delivery: Option<NewDelivery>,
    body: Bytes,
) -> anyhow::Result<()> {
    // 3. Send.
    let headers = build_headers(ctx, endpoint, delivery, &body)?;
    let answer = ctx.client.post(&endpoint.url, headers, body).await;
    drop(pass);
    ctx.metrics.attempted(&answer);

    // 4. Record, then queue a retry.
    let decision = decide(ctx, endpoint, delivery, attempt, &answer);
    let error = answer.error.clone().or_else(|| match answer.status {
        Some(status) if !(200..300).contains(&status) => Some(format!("HTTP {status}")),
        _ => None,
    });
    let finished = FinishedAttempt {
        delivery_id: delivery.id,
        attempt,
        new_delivery,
        status: decision.status.as_str().to_owned(),
        next_attempt_at: decision.next_attempt_at,
        response_code: answer.status.map(i32::from),
        response_time_ms: i32::try_from(answer.elapsed.as_millis()).unwrap_or(i32::MAX),
        response_body: answer.body,
        error,
    };
    let change = decision
        .endpoint_change
        .map(|(to, from, reason)| EndpointChange {
            endpoint_id: endpoint.id,
            to,
            from,
            reason,
        });
    let recorded = ctx
        .recorder
        .submit((finished, change))
        .await
        .ok_or_else(|| anyhow::anyhow!("the attempt-log writers stopped"))?
        .map_err(anyhow::Error::msg)?;
    if recorded && decision.status == DeliveryStatus::Retrying {
        // If this fails the sweeper queues it (the row says it is unqueued).
        if let Err(error) = queue_deliveries(ctx, Select::Ids(&[delivery.id])).await {
            tracing::warn!(%error, delivery.id = %delivery.id, "could not queue the retry yet; the sweeper will");
        }
    }
    Ok(())
}

struct Decision {
    status: DeliveryStatus,
    next_attempt_at: Option<OffsetDateTime>,
    /// (new status, allowed current statuses, reason)
    endpoint_change: Option<(EndpointStatus, Vec<String>, String)>,
}

fn decide(
    ctx: &Ctx,
    endpoint: &Endpoint,
    delivery: &Delivery,
    attempt: i32,
    answer: &Answer,
) -> Decision {
    let done = |status| Decision {
        status,
        next_attempt_at: None,
        endpoint_change: None,
    };
    match answer.status {
        Some(200..=299) => return done(DeliveryStatus::Success),
        // 410 Gone: the receiver says it is gone for good (RFC 9110 §15.5.11).
        Some(410) => {
            return Decision {
                endpoint_change: Some((
                    EndpointStatus::Disabled,
                    vec!["active".into(), "failed".into()],
                    "the receiver answered 410 Gone".into(),
                )),
                ..done(DeliveryStatus::Failed)
            };
        }
        _ => {}
    }
    if delivery.manual {
        return done(DeliveryStatus::Failed);
    }
    let schedule: Vec<Duration> = match &endpoint.retry_schedule {
        Some(seconds) if !seconds.is_empty() => seconds
            .iter()
            .map(|s| Duration::from_secs(u64::try_from(*s).unwrap_or(0)))
            .collect(),
        _ => ctx.config.retry_schedule.0.clone(),
    };
    // Retry-After counts on 429 and 503 (RFC 9110 §10.2.3).
    let retry_after = match answer.status {
        Some(429 | 503) => answer.retry_after,
        _ => None,
    };
    let next = usize::try_from(attempt)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    match retry_delay(&schedule, next, retry_after) {
        Some(delay) => Decision {
            status: DeliveryStatus::Retrying,
            next_attempt_at: Some(
                OffsetDateTime::now_utc() + time::Duration::try_from(delay).unwrap_or_default(),
            ),
            endpoint_change: None,
        },
        None => Decision {
            endpoint_change: Some((
                EndpointStatus::Failed,
                vec!["active".into()],
                format!("delivery {} failed after {attempt} attempts", delivery.id),
            )),
            ..done(DeliveryStatus::Failed)
        },
    }
}

/// The body in the endpoint's format.
pub fn render(format: PayloadFormat, envelope: &Value) -> Value {
    let event = envelope.get("event").cloned().unwrap_or(Value::Null);
    let at = envelope.get("occurred_at").cloned().unwrap_or(Value::Null);
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    match format {
        PayloadFormat::Nested => serde_json::json!({
            "event": event,
            "timestamp": at,
            "organization_id": envelope.get("organization_id").cloned().unwrap_or(Value::Null),
            "data": data,
        }),
        PayloadFormat::Flat => {
            let mut out = Map::new();
            if let Value::Object(fields) = data {
                out.extend(fields);
            }
            // The envelope's two keys win over data fields of the same name.
            out.insert("event_type".into(), event);
            out.insert("created_at".into(), at);
            Value::Object(out)
        }
    }
}

/// The request body of a delivery to an endpoint of this `payload_format`.
pub fn render_body(payload_format: &str, envelope: &Value) -> anyhow::Result<Bytes> {
    let format = payload_format.parse().unwrap_or(PayloadFormat::Nested);
    Ok(Bytes::from(serde_json::to_vec(&render(format, envelope))?))
}

/// The headers of one attempt: signatures over `body`, ids, trace context.
fn build_headers(
    ctx: &Ctx,
    endpoint: &Endpoint,
    delivery: &Delivery,
    body: &[u8],
) -> anyhow::Result<HeaderMap> {
    let secret = ctx.secrets.open_string(&endpoint.secret_sealed)?;
    let previous = match (&endpoint.previous_secret_sealed, endpoint.secret_rotated_at) {
        (Some(sealed), Some(at)) if OffsetDateTime::now_utc() - at < ROTATION_OVERLAP => {
            ctx.secrets.open_string(sealed).ok()
        }
        _ => None,
    };
    let id = delivery.id.to_string();
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let hex_sig = tickiti_signature(&secret, body);
    let mut standard = standard_webhooks_signature(&secret, &id, ts, body);
    if let Some(old) = &previous {
        standard.push(' ');
        standard.push_str(&standard_webhooks_signature(old, &id, ts, body));
    }
    let v1 = format!("v1={}", hex_sig.trim_start_matches("sha256="));
    let extra = endpoint.headers.as_object();
    let mut headers = HeaderMap::with_capacity(16 + extra.map_or(0, Map::len));
    // Static headers first, so the contract's headers always win.
    for (name, value) in extra.into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    // The trace id is the event id, so every attempt of an event is one
    // trace. The span id only has to be unique: uuid's thread-local
    // generator (`fast-rng`), not a system call per attempt.
    let span = uuid::Uuid::new_v4().as_u64_pair().0;
    let traceparent = format!("00-{}-{span:016x}-01", delivery.event_id.simple());
    // One value each for the headers that repeat it (a clone shares the bytes).
    let id = HeaderValue::from_str(&id)?;
    let ts = HeaderValue::from(ts);
    for (name, value) in [
        ("content-type", HeaderValue::from_static("application/json")),
        (
            "x-tickiti-event",
            HeaderValue::from_str(&delivery.event_type)?,
        ),
        ("x-tickiti-delivery", id.clone()),
        ("x-tickiti-timestamp", ts.clone()),
        ("x-tickiti-signature", HeaderValue::from_str(&hex_sig)?),
        ("x-tickiti-signature-v1", HeaderValue::from_str(&v1)?),
        (
            "x-tickiti-signature-version",
            HeaderValue::from_static("v1"),
        ),
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", HeaderValue::from_str(&standard)?),
        ("traceparent", HeaderValue::from_str(&traceparent)?),
    ] {
        headers.insert(HeaderName::from_static(name), value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let envelope = serde_json::json!({
            "id": "e1", "event": "ticket.created", "organization_id": "o1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "data": { "id": "t1", "subject": "Hi", "created_at": "2025-12-31T23:59:59Z" }
        });
        let nested = render(PayloadFormat::Nested, &envelope);
        assert_eq!(nested["event"], "ticket.created");
        assert_eq!(nested["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(nested["organization_id"], "o1");
        assert_eq!(nested["data"]["subject"], "Hi");
        let flat = render(PayloadFormat::Flat, &envelope);
        assert_eq!(flat["event_type"], "ticket.created");
        assert_eq!(flat["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(flat["subject"], "Hi");
        assert!(flat.get("data").is_none());
    }
}
