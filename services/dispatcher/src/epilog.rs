//! Intervention epilog calls (CONTRACT §4, seed 001 §3–§5, §8).
//!
//! A staff submit writes an `intervention_epilogs` row and, in the same
//! transaction, a `command.intervention.epilog` outbox row; the api's relay
//! publishes it to `<prefix>.commands`, and this module consumes it from its
//! own durable queue `<prefix>.dispatcher.epilog`.
//!
//! The call's state lives in Postgres: each attempt is claimed there
//! (`attempt + 1` with a lease, only when due and unclaimed), so a command
//! delivered twice, or two dispatchers, never make the same attempt twice.
//! The command makes the first attempt at once and is acked once its
//! attempts that are due are made; a retry is stored as `next_attempt_at`
//! (exponential backoff with jitter, up to `EPILOG_MAX_ATTEMPTS`) and the
//! scheduler ([`schedule`]) makes it when due. So a call waiting for its
//! retry holds no consumer slot, and a restarted dispatcher (or another one)
//! resumes every call from the stored state; a command relayed while no
//! dispatcher ran is consumed later, and one that was lost is covered by the
//! scheduler too.
//!
//! A final object is applied with a guarded state transition
//! (`submitted` → `accepted` for that `response_id`), in the same transaction
//! as its audit entry, final response, events and attempt log: whatever the
//! remote answers how often, it applies exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use tickiti_bus::{Bus, BusError, ConsumerSpec, IncomingMessage, Outcome};
use tickiti_domain::intervention::{self, EpilogVerdict, PayloadStatus};
use tickiti_domain::{EventEnvelope, EventType, Visibility};
use tickiti_store::interventions::{self as store, Attempt, Epilog, Intervention, Payload};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::{audit, messages, outbox, tickets};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Ctx;
use crate::metrics::Unhandled;

/// Seconds a claim outlives the call's time-out (then another dispatcher may take over).
const LEASE_MARGIN_SECONDS: f64 = 30.0;
/// How often the scheduler looks for due calls.
const SCHEDULE_EVERY: Duration = Duration::from_secs(1);
/// A handler waits for an attempt due this soon instead of leaving it to the scheduler.
const HOLD: Duration = Duration::from_secs(2);
/// Commands handled at once by one dispatcher.
const CONCURRENCY: u16 = 64;
/// Calls the scheduler runs at once in one dispatcher.
const SCHEDULED_MAX: usize = 256;

/// The consumer spec: the install's durable epilog queue
/// ([`tickiti_bus::dispatcher_epilog_spec`], which every publisher declares
/// too) with this consumer's prefetch and concurrency.
pub fn spec(bus: &Bus) -> ConsumerSpec {
    ConsumerSpec {
        prefetch: CONCURRENCY,
        concurrency: usize::from(CONCURRENCY),
        ..tickiti_bus::dispatcher_epilog_spec(&bus.config().prefix)
    }
}

/// Declares the queue and its binding (so commands relayed before the consumer starts wait there).
pub async fn declare(bus: &Bus) -> Result<(), BusError> {
    bus.declare_queue(&spec(bus)).await.map(|_| ())
}

/// Starts the consumer and the scheduler; both stop with `shutdown`.
pub fn start(ctx: Arc<Ctx>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let consumer = {
        let ctx = ctx.clone();
        ctx.bus.clone().consume(spec(&ctx.bus), move |message| {
            let ctx = ctx.clone();
            async move { handle(&ctx, message).await }
        })
    };
    tokio::spawn(async move {
        schedule(ctx, shutdown).await;
        let _ = consumer.await;
    })
}

/// The api's epilog command (written by `tickiti_store::interventions::request_epilog`).
#[derive(Debug, Deserialize)]
struct EpilogCommand {
    epilog_id: Uuid,
}

/// Handles one epilog command: makes the call's due attempts, then acks.
pub async fn handle(ctx: &Ctx, message: IncomingMessage) -> Outcome {
    let command = match serde_json::from_slice::<EpilogCommand>(&message.payload) {
        Ok(command) => command,
        Err(error) => {
            tracing::warn!(%error, "malformed epilog command");
            return ctx.park(&message, Unhandled::MalformedCommand).await;
        }
    };
    // The command is only a wake-up: the call itself was committed in
    // Postgres before the command was published, so after a failure here
    // (e.g. the database away) the scheduler makes the attempt once it can;
    // requeueing would only spin.
    if let Err(error) = run_call(ctx, command.epilog_id).await {
        tracing::warn!(%error, epilog.id = %command.epilog_id, "epilog attempt failed; the scheduler retries it");
    }
    ctx.metrics.epilog_command();
    Outcome::Ack
}

/// Makes the call's attempts while they are due (or due within [`HOLD`]);
/// returns when the call is finished, another worker holds it, or its next
/// attempt is further away (the scheduler makes it then). Safe to run
/// several times at once for the same call: each attempt is claimed once.
pub async fn run_call(ctx: &Ctx, epilog_id: Uuid) -> anyhow::Result<()> {
    loop {
        let mut conn = ctx.db.acquire().await?;
        let Some(epilog) = store::epilog(&mut conn, epilog_id).await? else {
            return Ok(()); // its ticket was deleted
        };
        if !matches!(epilog.status.as_str(), "pending" | "retrying") {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        if epilog.locked_until.is_some_and(|t| t > now) {
            return Ok(()); // another worker is making an attempt
        }
        if epilog.next_attempt_at > now {
            let wait: Duration = (epilog.next_attempt_at - now)
                .try_into()
                .unwrap_or(Duration::ZERO);
            if wait > HOLD {
                return Ok(());
            }
            drop(conn);
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some((payload, def)) = load(&mut conn, &epilog).await? else {
            return Ok(());
        };
        let lease = f64::from(def.remote_timeout_seconds) + LEASE_MARGIN_SECONDS;
        let Some(attempt) = store::claim_epilog(&mut conn, epilog_id, lease).await? else {
            return Ok(()); // another worker claimed it a moment ago
        };
        drop(conn);
        attempt_once(ctx, &epilog, &payload, &def, attempt).await?;
    }
}

async fn load(
    conn: &mut PgConnection,
    epilog: &Epilog,
) -> anyhow::Result<Option<(Payload, Intervention)>> {
    let Some(payload) = store::payload(conn, epilog.organization_id, epilog.payload_id).await?
    else {
        return Ok(None);
    };
    let def = store::get(conn, payload.organization_id, payload.intervention_id).await?;
    Ok(def.map(|def| (payload, def)))
}

/// The delay before attempt `attempt + 1`: exponential from
/// `EPILOG_RETRY_MIN`, capped at `EPILOG_RETRY_MAX`, with jitter.
pub fn backoff(ctx: &Ctx, attempt: i32) -> Duration {
    let n = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
    backon::ExponentialBuilder::default()
        .with_min_delay(ctx.config.epilog_retry_min)
        .with_max_delay(ctx.config.epilog_retry_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n)
        .unwrap_or(ctx.config.epilog_retry_max)
        .min(ctx.config.epilog_retry_max)
}

/// What one attempt ends in: the log entry's outcome and error, and the call's next state.
struct Ending {
    outcome: &'static str,
    error: Option<String>,
    status: &'static str,
    next_attempt_at: OffsetDateTime,
}

async fn attempt_once(
    ctx: &Ctx,
    epilog: &Epilog,
    payload: &Payload,
    def: &Intervention,
    attempt: i32,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let max_attempts = i32::try_from(ctx.config.epilog_max_attempts).unwrap_or(i32::MAX);
    // A token that no longer opens (another TICKITI_MASTER_KEY) is an attempt
    // that fails and is logged, not an error that requeues the command forever.
    let token = match def
        .remote_bearer_token_sealed
        .as_deref()
        .map(|sealed| ctx.secrets.open_string(sealed))
        .transpose()
    {
        Ok(token) => Ok(token),
        Err(error) => Err(format!(
            "the stored bearer token cannot be opened ({error}); is TICKITI_MASTER_KEY the api's?"
        )),
    };
    let answer = match (&def.remote_epilog_url, def.remote_enabled, &token) {
        (Some(url), true, Ok(token)) => {
            let body = json!({
                "ticket_id": payload.ticket_id,
                "response_id": epilog.response_id,
                "uid": payload.uid,
                "intervention": def.name,
                "action": "submit",
                "data": epilog.data,
            });
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(token) = &token
                && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
            {
                headers.insert(AUTHORIZATION, value);
            }
            // The call's id, stable across its attempts: remotes dedupe on it (seed 001 §8).
            if let Ok(value) = HeaderValue::from_str(&epilog.id.to_string()) {
                headers.insert("idempotency-key", value);
            }
            let timeout =
                Duration::from_secs(u64::try_from(def.remote_timeout_seconds).unwrap_or(10));
            Some(
                ctx.client
                    .post_with_timeout(url, headers, body.to_string().into_bytes().into(), timeout)
                    .await,
            )
        }
        _ => None,
    };
    let verdict = match (&answer, token) {
        (Some(answer), _) => intervention::judge_epilog_answer(
            answer.status,
            answer.body.as_deref(),
            answer.error.as_deref(),
            epilog.response_id,
        ),
        (None, Err(reason)) => EpilogVerdict::Retry(reason),
        (None, Ok(_)) => EpilogVerdict::Retry(
            "not called: the intervention's remote is disabled or has no epilog URL".to_owned(),
        ),
    };
    tracing::info!(epilog.id = %epilog.id, attempt, verdict = ?verdict_name(&verdict), status = ?answer.as_ref().and_then(|a| a.status), "epilog attempt");

    let mut tx = ctx.db.begin().await?;
    let done = |outcome, error| Ending {
        outcome,
        error,
        status: "succeeded",
        next_attempt_at: now,
    };
    let ending = match verdict {
        EpilogVerdict::Done => done("ok", None),
        EpilogVerdict::Final(final_object) => {
            match apply_final(&mut tx, payload, def, epilog.response_id, &final_object).await? {
                Applied::Now => done("final_applied", None),
                Applied::Before => done(
                    "final_already_applied",
                    Some("the final object was applied before; not applied again".to_owned()),
                ),
                Applied::Superseded => Ending {
                    outcome: "final_superseded",
                    error: Some(
                        "not applied: the intervention was submitted again since, with another response"
                            .to_owned(),
                    ),
                    status: "failed",
                    next_attempt_at: now,
                },
            }
        }
        EpilogVerdict::Rejected(reason) => Ending {
            outcome: "final_rejected",
            error: Some(reason),
            status: "failed",
            next_attempt_at: now,
        },
        EpilogVerdict::Retry(reason) if attempt >= max_attempts => Ending {
            outcome: "gave_up",
            error: Some(format!(
                "{reason}; no attempts left ({attempt} of {max_attempts})"
            )),
            status: "failed",
            next_attempt_at: now,
        },
        EpilogVerdict::Retry(reason) => {
            let delay = backoff(ctx, attempt);
            Ending {
                outcome: "retry",
                error: Some(format!("{reason}; attempt {} in {delay:?}", attempt + 1)),
                status: "retrying",
                next_attempt_at: now + delay,
            }
        }
    };
    store::insert_attempt(
        &mut tx,
        &Attempt {
            id: tickiti_domain::new_id(),
            epilog_id: epilog.id,
            payload_id: payload.id,
            attempt,
            outcome: ending.outcome.to_owned(),
            response_code: answer.as_ref().and_then(|a| a.status).map(i32::from),
            response_time_ms: answer
                .as_ref()
                .map(|a| i32::try_from(a.elapsed.as_millis()).unwrap_or(i32::MAX)),
            response_body: answer.as_ref().and_then(|a| a.body.clone()),
            error: ending.error.clone(),
            created_at: now,
        },
    )
    .await?;
    store::finish_attempt(
        &mut tx,
        epilog.id,
        ending.status,
        ending.next_attempt_at,
        ending.error.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn verdict_name(verdict: &EpilogVerdict) -> &'static str {
    match verdict {
        EpilogVerdict::Done => "done",
        EpilogVerdict::Final(_) => "final",
        EpilogVerdict::Rejected(_) => "rejected",
        EpilogVerdict::Retry(_) => "retry",
    }
}

/// Applies a final object, exactly once: marks the intervention `accepted`
/// (only while `submitted` for `response_id`), appends `ticket_audit` to the
/// response's audit log, posts the final response rendered from the `final`
/// template with the object's fields, and writes `intervention.accepted`
/// (and the message events) to the outbox; anything but [`Applied::Now`]
/// changed nothing. A `final` template that fails to render leaves a clear
/// error in the audit log instead of a message.
pub async fn apply_final(
    conn: &mut PgConnection,
    payload: &Payload,
    def: &Intervention,
    response_id: Uuid,
    final_object: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Applied> {
    let org = payload.organization_id;
    let object = serde_json::Value::Object(final_object.clone());
    if !store::accept(conn, payload.id, response_id, &object).await? {
        let current = store::payload(conn, org, payload.id).await?;
        let before = current.is_some_and(|p| {
            p.status == PayloadStatus::Accepted.as_str() && p.response_id == Some(response_id)
        });
        return Ok(if before {
            Applied::Before
        } else {
            Applied::Superseded
        });
    }
    let ticket_audit = final_object
        .get("ticket_audit")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    audit::insert(
        conn,
        org,
        payload.ticket_id,
        None,
        "intervention.accepted",
        &json!({ "response_id": response_id, "ticket_audit": ticket_audit, "final": object }),
    )
    .await?;
    let accepted = store::payload(conn, org, payload.id)
        .await?
        .unwrap_or_else(|| payload.clone());
    let mut events = Vec::new();
    let ticket = tickets::get(conn, org, payload.ticket_id, true).await?;
    if let (Some(source), Some(ticket)) = (&def.template_final, &ticket) {
        let mut extra = final_object.clone();
        extra.insert("final".into(), object.clone());
        let context = store::template_context(ticket, def, &accepted, &accepted.data, Some(&extra));
        match intervention::render(source, &context) {
            Ok(body) if !body.trim().is_empty() => {
                let posted = messages::post(
                    conn,
                    ticket,
                    NewMessage {
                        author: Author::System,
                        visibility: Visibility::Public,
                        body,
                    },
                )
                .await?;
                events.extend(posted.events);
            }
            Ok(_) => {}
            Err(error) => {
                audit::insert(
                    conn,
                    org,
                    ticket.id,
                    None,
                    "intervention.template_failed",
                    &json!({ "template": "final", "error": format!("the final template failed to render: {error}") }),
                )
                .await?;
            }
        }
    }
    events.push(EventEnvelope::new(
        EventType::InterventionAccepted,
        org,
        serde_json::to_value(&accepted)?,
    ));
    outbox::append(conn, &events, None).await?;
    Ok(Applied::Now)
}

/// What [`apply_final`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    Now,
    /// Applied before (for this response): nothing changed.
    Before,
    /// Not applied: the intervention was submitted again since (another
    /// response), or is no longer waiting for this one.
    Superseded,
}

/// The scheduler: every second, runs the open calls that are due and that
/// no worker holds (retries, calls of a stopped dispatcher, lost commands).
async fn schedule(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let running: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut tick = tokio::time::interval(SCHEDULE_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let room = SCHEDULED_MAX.saturating_sub(running.lock().map_or(SCHEDULED_MAX, |s| s.len()));
        if room == 0 {
            continue;
        }
        let due = async {
            let mut conn = ctx.db.acquire().await?;
            store::due_epilogs(&mut conn, i64::try_from(room).unwrap_or(0)).await
        };
        let ids = match due.await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "looking for due epilog calls failed");
                continue;
            }
        };
        for id in ids {
            let fresh = running
                .lock()
                .map(|mut set| set.insert(id))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let (ctx, running, stop) = (ctx.clone(), running.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    result = run_call(&ctx, id) => {
                        if let Err(error) = result {
                            tracing::warn!(%error, epilog.id = %id, "a scheduled epilog attempt failed; retried on a later tick");
                        }
                    }
                }
                if let Ok(mut set) = running.lock() {
                    set.remove(&id);
                }
            });
        }
    }
}
