//! The dispatcher's queues.
//!
//! - `<prefix>.dispatcher.events`: durable, bound to `<prefix>.events` `#`
//!   (and to `<prefix>.commands` `command.webhook.#`): events to fan out and
//!   dispatch commands from the api. Several dispatchers consume it as
//!   competing consumers.
//! - `<prefix>.dispatcher.deliveries`: durable work queue, one message per
//!   attempt (`WorkMessage`), published through the default exchange.
//! - `<prefix>.dispatcher.retry.<ms>`: durable delay tiers. A message waits
//!   there for the queue's `x-message-ttl`, then is dead-lettered back to the
//!   work queue (<https://www.rabbitmq.com/docs/ttl>,
//!   <https://www.rabbitmq.com/docs/dlx>). Per-queue TTL expires messages in
//!   order, unlike per-message TTL, so one long delay never holds up a short
//!   one. A delay longer than a tier makes several hops; the message carries
//!   its due time, so an early arrival is parked again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tickiti_bus::{Bus, BusError, ConsumerSpec, OutgoingMessage, QueueArgument};
use uuid::Uuid;

/// Delay tiers in milliseconds, shortest first.
pub const TIERS_MS: [i64; 8] = [
    250, 1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000,
];

/// The names of one install's queues.
#[derive(Debug, Clone)]
pub struct Queues {
    /// Events and commands in.
    pub events: String,
    /// Work queue.
    pub deliveries: String,
    prefix: String,
}

impl Queues {
    /// Names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            events: tickiti_bus::dispatcher_events_queue(prefix),
            deliveries: format!("{prefix}.dispatcher.deliveries"),
            prefix: prefix.to_owned(),
        }
    }

    /// The tier queue holding messages for `ms`.
    pub fn tier(&self, ms: i64) -> String {
        format!("{}.dispatcher.retry.{ms}ms", self.prefix)
    }

    /// Every queue name of the dispatcher, the epilog queue included (for clean-up).
    pub fn all(&self) -> Vec<String> {
        let mut names = vec![
            self.events.clone(),
            self.deliveries.clone(),
            tickiti_bus::dispatcher_epilog_queue(&self.prefix),
        ];
        names.extend(TIERS_MS.iter().map(|ms| self.tier(*ms)));
        names
    }

    /// The events queue's consumer spec: the install's durable queue
    /// ([`tickiti_bus::dispatcher_events_spec`], which every publisher
    /// declares too) with this consumer's prefetch and concurrency.
    pub fn events_spec(&self, concurrency: usize) -> ConsumerSpec {
        ConsumerSpec {
            prefetch: u16::try_from(concurrency * 4).unwrap_or(u16::MAX),
            concurrency,
            ..tickiti_bus::dispatcher_events_spec(&self.prefix)
        }
    }

    /// The work queue's consumer spec.
    pub fn deliveries_spec(&self, concurrency: usize) -> ConsumerSpec {
        ConsumerSpec {
            queue: self.deliveries.clone(),
            prefetch: u16::try_from(concurrency).unwrap_or(u16::MAX),
            concurrency,
            ..ConsumerSpec::default()
        }
    }

    fn tier_spec(&self, ms: i64) -> ConsumerSpec {
        ConsumerSpec {
            queue: self.tier(ms),
            arguments: vec![
                ("x-message-ttl".into(), QueueArgument::Int(ms)),
                // "" is the default exchange: routing key = queue name.
                (
                    "x-dead-letter-exchange".into(),
                    QueueArgument::String(String::new()),
                ),
                (
                    "x-dead-letter-routing-key".into(),
                    QueueArgument::String(self.deliveries.clone()),
                ),
            ],
            ..ConsumerSpec::default()
        }
    }

    /// Declares the events queue with its bindings, the work queue and the
    /// tiers (idempotent), so nothing published from now on is dropped.
    pub async fn declare(&self, bus: &Bus) -> Result<(), BusError> {
        bus.declare_queue(&self.events_spec(1)).await?;
        bus.declare_queue(&self.deliveries_spec(1)).await?;
        for ms in TIERS_MS {
            bus.declare_queue(&self.tier_spec(ms)).await?;
        }
        Ok(())
    }

    /// Publishes work messages (confirmed), each to the work queue when due
    /// within the shortest tier, else to the longest tier that fits its wait.
    pub async fn publish_work(&self, bus: &Bus, work: &[WorkMessage]) -> Result<(), BusError> {
        let now = now_ms();
        let mut by_queue: std::collections::BTreeMap<String, Vec<OutgoingMessage>> =
            std::collections::BTreeMap::new();
        for message in work {
            let wait = message.due_at_ms - now;
            let queue = match TIERS_MS.iter().rev().find(|ms| **ms <= wait) {
                Some(ms) => self.tier(*ms),
                None => self.deliveries.clone(),
            };
            let payload = serde_json::to_vec(message).unwrap_or_default();
            by_queue
                .entry(queue.clone())
                .or_default()
                .push(OutgoingMessage {
                    id: Uuid::now_v7(),
                    routing_key: queue,
                    payload,
                    headers: Vec::new(),
                });
        }
        for messages in by_queue.values() {
            bus.publish_confirmed("", messages).await?;
        }
        Ok(())
    }
}

/// One attempt to make: the work queue's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkMessage {
    /// The delivery.
    pub delivery_id: Uuid,
    /// Its endpoint (for the fairness gates, before touching the database).
    pub endpoint_id: Uuid,
    /// Its organization (the same); absent in messages of older dispatchers.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    /// The attempt number this message is for (1-based).
    pub attempt: i32,
    /// Not before this (Unix milliseconds).
    pub due_at_ms: i64,
}

/// Now in Unix milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Milliseconds from now until `due_at_ms` (zero when past).
pub fn wait_for(due_at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(due_at_ms - now_ms()).unwrap_or(0))
}
