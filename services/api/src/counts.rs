//! The perspective-count worker: a background task of the api, beside the
//! outbox relay, that keeps browsers' perspective counts current (CONTRACT
//! §5 `perspective.counts`) from the events the relay publishes.

use std::time::Duration;

use serde::Deserialize;
use tickiti_domain::new_id;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::AppState;

/// The counts last sent, by organization and user (None: the shared ones).
type SentCounts = std::collections::HashMap<(Uuid, Option<Uuid>), Vec<(Uuid, i64)>>;

/// Least time between two recounts of one organization: under a burst of
/// changes its counts are recounted (and a frame sent to each of its
/// sockets) at most this often.
const COUNTS_SPACING: Duration = Duration::from_secs(1);
/// How often marked organizations are checked.
const COUNTS_TICK: Duration = Duration::from_millis(50);

/// Keeps browsers' perspective counts current (CONTRACT §5 `perspective.counts`).
///
/// Ticket and message events mark their organization. A marked organization
/// is recounted at the next [`COUNTS_TICK`], unless it was recounted less
/// than [`COUNTS_SPACING`] ago: then once that time is up, however many
/// changes it had meanwhile (coalesced under bursts). A lone change shows
/// within a tick; a burst costs one frame per socket a second, not one per
/// change. Counts that differ from
/// the last ones sent are published to `<prefix>.realtime` as
/// `perspective.counts` for the realtime service to hand on: one frame for
/// the organization's shared perspectives, and one per user for the
/// perspectives that depend on who asks (`assignee_id: "me"`, such as Mine,
/// and private ones), carrying that `user_id`. The queue
/// `<prefix>.api.perspective-counts` is shared by every api process
/// (competing consumers) and deleted with the last one. Counts are derived data: nothing here is durable
/// beyond the queue, and a lost recount is repaired by the next change.
pub async fn perspective_counts(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    let marked: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let events = state.bus.events_exchange();
    let spec = tickiti_bus::ConsumerSpec {
        queue: format!("{}.api.perspective-counts", state.config.bus_prefix),
        bindings: vec![
            (events.clone(), "ticket.*".into()),
            (events, "message.*".into()),
        ],
        // Derived data: gone with the last api process, nothing left behind.
        durable: false,
        auto_delete: true,
        prefetch: 256,
        ..tickiti_bus::ConsumerSpec::default()
    };
    let sink = marked.clone();
    let consumer = state.bus.consume(spec, move |message| {
        #[derive(Deserialize)]
        struct Org {
            organization_id: Uuid,
        }
        if let Ok(org) = serde_json::from_slice::<Org>(&message.payload)
            && let Ok(mut marked) = sink.lock()
        {
            marked.insert(org.organization_id);
        }
        std::future::ready(tickiti_bus::Outcome::Ack)
    });
    let mut last = SentCounts::new();
    let mut recounted: std::collections::HashMap<Uuid, tokio::time::Instant> =
        std::collections::HashMap::new();
    let mut tick = tokio::time::interval(COUNTS_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let due = |org: &Uuid| {
            recounted
                .get(org)
                .is_none_or(|at| now.duration_since(*at) >= COUNTS_SPACING)
        };
        let orgs: Vec<Uuid> = match marked.lock() {
            Ok(mut marked) => {
                let orgs: Vec<Uuid> = marked.iter().copied().filter(due).collect();
                for org in &orgs {
                    marked.remove(org);
                }
                orgs
            }
            Err(_) => continue,
        };
        for org in orgs {
            recounted.insert(org, now);
            if let Err(error) = recount(&state, org, &mut last).await {
                tracing::warn!(%error, organization.id = %org, "perspective recount failed");
            }
        }
        // Bounded memory: forget organizations not recounted for a while.
        recounted.retain(|_, at| now.duration_since(*at) < COUNTS_SPACING);
        if last.len() > 100_000 {
            last.clear();
        }
    }
    consumer.abort();
}

/// Recounts one organization and publishes what changed.
async fn recount(
    state: &AppState,
    org: Uuid,
    last: &mut SentCounts,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tickiti_domain::{AssigneeFilter, TicketFilter};
    use tickiti_store::{perspectives, tickets, users};

    use crate::routes::perspectives::stored_filter;

    let mut conn = state.db.acquire().await?;
    // Who sees each count: None for the shared ones (the same for everyone),
    // Some(user) for those that depend on who asks (`assignee_id: "me"`,
    // such as Mine, and private perspectives).
    let mut counted: Vec<(Option<Uuid>, Uuid, TicketFilter, Uuid)> = Vec::new();
    let mut users: Option<Vec<Uuid>> = None;
    for p in perspectives::list_of_organization(&mut conn, org).await? {
        let Some(filter) = stored_filter(&p) else {
            continue;
        };
        match p.user_id {
            Some(owner) => counted.push((Some(owner), p.id, filter, owner)),
            None if filter.assignee == AssigneeFilter::Me => {
                if users.is_none() {
                    let directory = users::directory(&mut conn, org).await?;
                    users = Some(directory.into_iter().map(|(id, _, _)| id).collect());
                }
                for &user in users.iter().flatten() {
                    counted.push((Some(user), p.id, filter.clone(), user));
                }
            }
            None => counted.push((None, p.id, filter, Uuid::nil())),
        }
    }
    let filters: Vec<(&TicketFilter, Uuid)> = counted
        .iter()
        .map(|(_, _, filter, me)| (filter, *me))
        .collect();
    let counts = tickets::count_each(&mut conn, org, &filters).await?;
    drop(conn);
    // Perspectives come in order, so each audience's list keeps it.
    let mut by_audience: std::collections::BTreeMap<Option<Uuid>, Vec<(Uuid, i64)>> =
        std::collections::BTreeMap::new();
    // The shared frame goes out even when the organization has no shared perspective.
    by_audience.insert(None, Vec::new());
    for ((audience, perspective_id, _, _), count) in counted.iter().zip(counts) {
        by_audience
            .entry(*audience)
            .or_default()
            .push((*perspective_id, count));
    }
    let mut outgoing = Vec::new();
    for (audience, counts) in by_audience {
        if last.get(&(org, audience)) != Some(&counts) {
            outgoing.push(counts_message(org, audience, &counts)?);
            last.insert((org, audience), counts);
        }
    }
    if !outgoing.is_empty() {
        let exchange = state.bus.realtime_exchange();
        if let Err(error) = state.bus.publish_to_listeners(&exchange, &outgoing).await {
            // Sent next time something changes.
            last.retain(|(o, _), _| *o != org);
            return Err(error.into());
        }
    }
    Ok(())
}

/// A `perspective.counts` event for the realtime service.
fn counts_message(
    org: Uuid,
    user: Option<Uuid>,
    counts: &[(Uuid, i64)],
) -> Result<tickiti_bus::OutgoingMessage, serde_json::Error> {
    let counts: Vec<serde_json::Value> = counts
        .iter()
        .map(|(id, count)| serde_json::json!({ "perspective_id": id, "count": count }))
        .collect();
    let mut data = serde_json::json!({ "counts": counts });
    if let Some(user) = user {
        data["user_id"] = serde_json::json!(user);
    }
    let id = new_id();
    let envelope = serde_json::json!({
        "id": id,
        "event": "perspective.counts",
        "organization_id": org,
        "occurred_at": OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "data": data,
    });
    Ok(tickiti_bus::OutgoingMessage {
        id,
        routing_key: "perspective.counts".into(),
        payload: serde_json::to_vec(&envelope)?,
        headers: Vec::new(),
    })
}
