//! Fairness: bounded concurrency per endpoint, per organization and
//! globally, and the per-endpoint rate limit. A message whose endpoint or
//! organization already has a queue of waiters here is parked in a delay
//! tier instead of holding a consumer slot, so one organization's burst or
//! hanging endpoints never fill the prefetch window, nor take the global
//! slots, that other organizations' deliveries come through.
//!
//! Slots are taken in the order endpoint, organization, global: a delivery
//! waiting for its busy endpoint or tenant holds nothing anyone else needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

/// Waiters per endpoint (and per organization) beyond which new messages are parked.
pub const WAITING_CAP: usize = 32;

struct EndpointGate {
    permits: Arc<Semaphore>,
    /// Messages holding or waiting for a permit.
    queued: usize,
    /// Earliest time the next request may start (rate limit).
    next_slot: Instant,
}

struct OrgGate {
    permits: Arc<Semaphore>,
    /// Messages holding or waiting for a permit.
    queued: usize,
}

/// The gates of every endpoint and organization this process has seen recently.
pub struct Gates {
    per_endpoint: usize,
    per_org: usize,
    global: Arc<Semaphore>,
    endpoints: Mutex<HashMap<Uuid, EndpointGate>>,
    orgs: Mutex<HashMap<Uuid, OrgGate>>,
}

/// Held while a request runs; releases its slots when dropped.
pub struct Pass {
    gates: Arc<Gates>,
    endpoint: Uuid,
    org: Option<Uuid>,
    _endpoint_permit: Option<OwnedSemaphorePermit>,
    _org_permit: Option<OwnedSemaphorePermit>,
    _global_permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gates.leave(self.endpoint);
        if let Some(org) = self.org {
            self.gates.leave_org(org);
        }
    }
}

impl Gates {
    /// Gates with `global` requests at once overall, `per_org` per
    /// organization and `per_endpoint` per endpoint.
    pub fn new(global: usize, per_org: usize, per_endpoint: usize) -> Arc<Self> {
        Arc::new(Self {
            per_endpoint: per_endpoint.max(1),
            per_org: per_org.max(1),
            global: Arc::new(Semaphore::new(global.max(1))),
            endpoints: Mutex::new(HashMap::new()),
            orgs: Mutex::new(HashMap::new()),
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

    fn leave_org(&self, org: Uuid) {
        if let Ok(mut map) = self.orgs.lock()
            && let Some(gate) = map.get_mut(&org)
        {
            gate.queued = gate.queued.saturating_sub(1);
            if gate.queued == 0 {
                map.remove(&org);
            }
        }
    }

    /// Waits for a slot of `endpoint`, of its organization `org` (when
    /// known) and a global one; `None` when too many wait for this endpoint
    /// or organization already (park the message instead).
    pub async fn enter(self: &Arc<Self>, org: Option<Uuid>, endpoint: Uuid) -> Option<Pass> {
        self.enter_within(org, endpoint, WAITING_CAP).await
    }

    /// [`Gates::enter`] with its own cap on waiters per endpoint and organization.
    pub async fn enter_within(
        self: &Arc<Self>,
        org: Option<Uuid>,
        endpoint: Uuid,
        waiting_cap: usize,
    ) -> Option<Pass> {
        let endpoint_permits = {
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
            org: None,
            _endpoint_permit: None,
            _org_permit: None,
            _global_permit: None,
        };
        let org_permits = match org {
            None => None,
            Some(org) => {
                let mut map = self.orgs.lock().ok()?;
                let gate = map.entry(org).or_insert_with(|| OrgGate {
                    permits: Arc::new(Semaphore::new(self.per_org)),
                    queued: 0,
                });
                // Dropping `pass` here gives the endpoint's place back.
                if gate.queued >= waiting_cap + self.per_org {
                    return None;
                }
                gate.queued += 1;
                pass.org = Some(org);
                Some(gate.permits.clone())
            }
        };
        // The semaphores are never closed, so acquiring only fails if they were.
        pass._endpoint_permit = endpoint_permits.acquire_owned().await.ok();
        if let Some(permits) = org_permits {
            pass._org_permit = permits.acquire_owned().await.ok();
        }
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
        let gates = Gates::new(100, 100, 1);
        let a = Uuid::now_v7();
        let first = gates.enter(None, a).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_CAP {
            let gates = gates.clone();
            waiting.push(tokio::spawn(
                async move { gates.enter(None, a).await.is_some() },
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            gates.enter(None, a).await.is_none(),
            "the next one is parked"
        );
        // Another endpoint is not affected.
        assert!(gates.enter(None, Uuid::now_v7()).await.is_some());
        drop(first);
        for w in waiting {
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn paces_to_the_rate() {
        let gates = Gates::new(10, 10, 10);
        let a = Uuid::now_v7();
        let _pass = gates.enter(None, a).await.unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            gates.pace(a, Some(10)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(390));
    }

    #[tokio::test]
    async fn one_organization_cannot_take_every_global_slot() {
        // 10 global slots, 4 per organization, plenty per endpoint.
        let gates = Gates::new(10, 4, 100);
        let (busy, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(gates.enter(Some(busy), Uuid::now_v7()).await.unwrap());
        }
        // The busy tenant's next one waits for its own slot ...
        let gates2 = gates.clone();
        let waiting =
            tokio::spawn(async move { gates2.enter(Some(busy), Uuid::now_v7()).await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        // ... while the quiet tenant gets in at once.
        let quick = tokio::time::timeout(
            Duration::from_millis(100),
            gates.enter(Some(quiet), Uuid::now_v7()),
        )
        .await;
        assert!(matches!(quick, Ok(Some(_))));
        drop(held);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn caps_waiters_per_organization() {
        let gates = Gates::new(100, 1, 100);
        let org = Uuid::now_v7();
        let first = gates.enter(Some(org), Uuid::now_v7()).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_CAP {
            let gates = gates.clone();
            waiting.push(tokio::spawn(async move {
                gates.enter(Some(org), Uuid::now_v7()).await.is_some()
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            gates.enter(Some(org), Uuid::now_v7()).await.is_none(),
            "the next one is parked"
        );
        drop(first);
        for w in waiting {
            assert!(w.await.unwrap());
        }
        // Everything left: nothing is remembered.
        assert!(gates.orgs.lock().unwrap().is_empty());
        assert!(gates.endpoints.lock().unwrap().is_empty());
    }
}
