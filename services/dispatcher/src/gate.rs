//! Fairness: bounded concurrency per endpoint and globally, and the
//! per-endpoint rate limit. A message whose endpoint already has a queue of
//! waiters here is parked in a delay tier instead of holding a consumer slot,
//! so one organization's burst or one hanging endpoint never fills the
//! prefetch window that other endpoints' deliveries come through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

/// Waiters per endpoint beyond which new messages are parked.
pub const WAITING_CAP: usize = 32;

struct EndpointGate {
    permits: Arc<Semaphore>,
    /// Messages holding or waiting for a permit.
    queued: usize,
    /// Earliest time the next request may start (rate limit).
    next_slot: Instant,
}

/// The gates of every endpoint this process has seen recently.
pub struct Gates {
    per_endpoint: usize,
    global: Arc<Semaphore>,
    endpoints: Mutex<HashMap<Uuid, EndpointGate>>,
}

/// Held while a request runs; releases its endpoint slot when dropped.
pub struct Pass {
    gates: Arc<Gates>,
    endpoint: Uuid,
    _endpoint_permit: Option<OwnedSemaphorePermit>,
    _global_permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gates.leave(self.endpoint);
    }
}

impl Gates {
    /// Gates with `global` requests at once overall and `per_endpoint` per endpoint.
    pub fn new(global: usize, per_endpoint: usize) -> Arc<Self> {
        Arc::new(Self {
            per_endpoint: per_endpoint.max(1),
            global: Arc::new(Semaphore::new(global.max(1))),
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    fn leave(&self, endpoint: Uuid) {
        if let Ok(mut map) = self.endpoints.lock()
            && let Some(gate) = map.get_mut(&endpoint)
        {
            gate.queued = gate.queued.saturating_sub(1);
            if gate.queued == 0 && gate.next_slot <= Instant::now() {
                map.remove(&endpoint);
            }
        }
    }

    /// Waits for a slot of `endpoint` and a global one; `None` when too many
    /// wait for this endpoint already (park the message instead).
    pub async fn enter(self: &Arc<Self>, endpoint: Uuid) -> Option<Pass> {
        self.enter_within(endpoint, WAITING_CAP).await
    }

    /// [`Gates::enter`] with its own cap on this endpoint's waiters.
    pub async fn enter_within(
        self: &Arc<Self>,
        endpoint: Uuid,
        waiting_cap: usize,
    ) -> Option<Pass> {
        let permits = {
            let mut map = self.endpoints.lock().ok()?;
            let gate = map.entry(endpoint).or_insert_with(|| EndpointGate {
                permits: Arc::new(Semaphore::new(self.per_endpoint)),
                queued: 0,
                next_slot: Instant::now(),
            });
            if gate.queued >= waiting_cap + self.per_endpoint {
                return None;
            }
            gate.queued += 1;
            gate.permits.clone()
        };
        let mut pass = Pass {
            gates: self.clone(),
            endpoint,
            _endpoint_permit: None,
            _global_permit: None,
        };
        // The semaphores are never closed, so acquiring only fails if they were.
        pass._endpoint_permit = permits.acquire_owned().await.ok();
        pass._global_permit = self.global.clone().acquire_owned().await.ok();
        Some(pass)
    }

    /// Waits for the endpoint's next rate-limit slot (`per_second` requests a second).
    pub async fn pace(&self, endpoint: Uuid, per_second: Option<i32>) {
        let Some(rate) = per_second
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| *r > 0)
        else {
            return;
        };
        let interval = Duration::from_secs(1) / rate;
        let start = {
            let Ok(mut map) = self.endpoints.lock() else {
                return;
            };
            let Some(gate) = map.get_mut(&endpoint) else {
                return;
            };
            let start = gate.next_slot.max(Instant::now());
            gate.next_slot = start + interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_waiters_per_endpoint() {
        let gates = Gates::new(100, 1);
        let a = Uuid::now_v7();
        let first = gates.enter(a).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_CAP {
            let gates = gates.clone();
            waiting.push(tokio::spawn(async move { gates.enter(a).await.is_some() }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gates.enter(a).await.is_none(), "the next one is parked");
        // Another endpoint is not affected.
        assert!(gates.enter(Uuid::now_v7()).await.is_some());
        drop(first);
        for w in waiting {
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn paces_to_the_rate() {
        let gates = Gates::new(10, 10);
        let a = Uuid::now_v7();
        let _pass = gates.enter(a).await.unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            gates.pace(a, Some(10)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(390));
    }
}
