//! Delivery workers: one work message is one attempt of one delivery.
//!
//! 1. Not yet due: parked in a delay tier (acked), or waited for when close.
//! 2. Fairness gates (per endpoint, global), then the attempt is claimed in
//!    Postgres by its number: a duplicate message finds nothing to claim.
//! 3. The signed POST through the SSRF-safe client; the attempt is written
//!    to `webhook_attempts` with the delivery's new state.
//! 4. A retry is queued on the schedule through the delay tiers; the work
//!    message is acked only after all of that is durable.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tickiti_bus::{IncomingMessage, Outcome};
use tickiti_crypto::{standard_webhooks_signature, tickiti_signature};
use tickiti_domain::webhook::{DeliveryStatus, EndpointStatus, PayloadFormat, retry_delay};
use tickiti_store::webhooks::{self, AttemptResult, Delivery, Endpoint};
use time::OffsetDateTime;

use crate::Ctx;
use crate::client::Answer;
use crate::fanout::{Select, queue_deliveries};
use crate::topology::{WorkMessage, now_ms, wait_for};

/// How long the previous secret keeps signing after a rotation (CONTRACT §3).
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

/// Handles one message of the work queue.
pub async fn handle(ctx: &Ctx, message: IncomingMessage) -> Outcome {
    let Ok(work) = serde_json::from_slice::<WorkMessage>(&message.payload) else {
        tracing::warn!("malformed work message; dropped");
        return Outcome::Reject;
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
    let Some(_pass) = ctx.gates.enter(work.endpoint_id).await else {
        ctx.metrics.parked();
        return park(ctx, work, now_ms() + 1_000).await;
    };
    let lease_ms = i64::try_from(ctx.config.timeout.as_millis()).unwrap_or(i64::MAX / 2) + 60_000;
    let mut conn = ctx.db.acquire().await?;
    let Some(delivery) = webhooks::claim_attempt(
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
        return Ok(()); // deleted: the delivery went with it
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

    // 3. Send.
    let (headers, body) = build_request(ctx, &endpoint, &delivery)?;
    let answer = ctx.client.post(&endpoint.url, headers, body).await;
    ctx.metrics.attempted(&answer);

    // 4. Record, then queue a retry.
    let decision = decide(ctx, &endpoint, &delivery, work.attempt, &answer);
    let code = answer.status.map(i32::from);
    let elapsed_ms = i32::try_from(answer.elapsed.as_millis()).unwrap_or(i32::MAX);
    let error = answer.error.clone().or_else(|| match answer.status {
        Some(status) if !(200..300).contains(&status) => Some(format!("HTTP {status}")),
        _ => None,
    });
    let result = AttemptResult {
        response_code: code,
        response_time_ms: elapsed_ms,
        response_body: answer.body.as_deref(),
        error: error.as_deref(),
    };
    let mut tx = ctx.db.begin().await?;
    let recorded = webhooks::finish_attempt(
        &mut tx,
        delivery.id,
        work.attempt,
        decision.status.as_str(),
        decision.next_attempt_at,
        &result,
    )
    .await?;
    if let Some((to, from, reason)) = &decision.endpoint_change {
        webhooks::change_status(&mut tx, endpoint.id, from, to.as_str(), reason).await?;
    }
    tx.commit().await?;
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

fn header(name: &'static str, value: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    Ok((HeaderName::from_static(name), HeaderValue::from_str(value)?))
}

fn build_request(
    ctx: &Ctx,
    endpoint: &Endpoint,
    delivery: &Delivery,
) -> anyhow::Result<(HeaderMap, Vec<u8>)> {
    let format = endpoint
        .payload_format
        .parse()
        .unwrap_or(PayloadFormat::Nested);
    let body = serde_json::to_vec(&render(format, &delivery.payload))?;
    let secret = ctx.secrets.open_string(&endpoint.secret_sealed)?;
    let previous = match (&endpoint.previous_secret_sealed, endpoint.secret_rotated_at) {
        (Some(sealed), Some(at)) if OffsetDateTime::now_utc() - at < ROTATION_OVERLAP => {
            ctx.secrets.open_string(sealed).ok()
        }
        _ => None,
    };
    let id = delivery.id.to_string();
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let hex_sig = tickiti_signature(&secret, &body);
    let mut standard = standard_webhooks_signature(&secret, &id, ts, &body);
    if let Some(old) = &previous {
        standard.push(' ');
        standard.push_str(&standard_webhooks_signature(old, &id, ts, &body));
    }
    let v1 = format!("v1={}", hex_sig.trim_start_matches("sha256="));
    let mut headers = HeaderMap::new();
    // Static headers first, so the contract's headers always win.
    if let Value::Object(extra) = &endpoint.headers {
        for (name, value) in extra {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(name, value);
            }
        }
    }
    // The trace id is the event id, so every attempt of an event is one trace.
    let traceparent = format!(
        "00-{}-{}-01",
        delivery.event_id.simple(),
        hex::encode(tickiti_crypto::random_bytes::<8>())
    );
    for (name, value) in [
        header("content-type", "application/json")?,
        header("x-tickiti-event", &delivery.event_type)?,
        header("x-tickiti-delivery", &id)?,
        header("x-tickiti-timestamp", &ts.to_string())?,
        header("x-tickiti-signature", &hex_sig)?,
        header("x-tickiti-signature-v1", &v1)?,
        header("x-tickiti-signature-version", "v1")?,
        header("webhook-id", &id)?,
        header("webhook-timestamp", &ts.to_string())?,
        header("webhook-signature", &standard)?,
        header("traceparent", &traceparent)?,
    ] {
        headers.insert(name, value);
    }
    Ok((headers, body))
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
