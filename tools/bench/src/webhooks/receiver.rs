//! The benchmark's webhook receiver: a local HTTP server answering 200 to
//! every POST, counting distinct deliveries, duplicates and the latency
//! carried in each ticket's subject, and keeping one delivery for the bare
//! client to replay.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::stats::now_nanos;

/// What the receiver counts; reset before each phase.
#[derive(Default)]
pub(super) struct Tally {
    /// `X-Tickiti-Delivery` values seen.
    pub(super) seen: HashSet<String>,
    pub(super) duplicates: u64,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
    /// Arrival minus the send time carried in the ticket's subject, per first arrival.
    pub(super) latencies: Vec<Duration>,
    /// One delivery as it arrived, for the baseline to replay.
    pub(super) sample: Option<(HeaderMap, Bytes)>,
}

impl Tally {
    /// Deliveries per second between the first and the last arrival.
    pub(super) fn rate(&self) -> f64 {
        self.last.map_or(0.0, |last| self.rate_until(last))
    }

    /// Deliveries per second between the first arrival and `end`.
    pub(super) fn rate_until(&self, end: Instant) -> f64 {
        match self.first {
            Some(first) if end > first => {
                (self.seen.len().saturating_sub(1)) as f64 / (end - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The parts of a nested payload the receiver reads.
#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    data: Option<PayloadData<'a>>,
}

#[derive(serde::Deserialize)]
struct PayloadData<'a> {
    #[serde(borrow)]
    subject: Option<&'a str>,
}

/// A local HTTP server answering 200 to every POST, counting.
pub(super) struct Receiver {
    pub(super) addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    shutdown: CancellationToken,
}

impl Receiver {
    pub(super) async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let shutdown = CancellationToken::new();
        let state = tally.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let tally = state.clone();
            async move {
                record(&tally, headers, body);
                "ok"
            }
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Ok(Receiver {
            addr,
            tally,
            shutdown,
        })
    }

    pub(super) fn url(&self, endpoint: u32) -> String {
        format!("http://{}/e{endpoint}", self.addr)
    }

    pub(super) fn reset(&self) -> Option<(HeaderMap, Bytes)> {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *tally).sample
    }

    pub(super) fn take(&self) -> Tally {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *tally)
    }

    pub(super) fn count(&self) -> usize {
        self.tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// Waits until `want` distinct deliveries arrived or `timeout` passed.
    pub(super) async fn wait_for(&self, want: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.count();
            if count >= want || Instant::now() >= deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn record(tally: &Mutex<Tally>, headers: HeaderMap, body: Bytes) {
    let now = Instant::now();
    let sent = serde_json::from_slice::<Payload<'_>>(&body)
        .ok()
        .and_then(|p| {
            p.data?
                .subject?
                .strip_prefix("bench ")?
                .parse::<u128>()
                .ok()
        });
    let latency = sent.map(|sent| {
        Duration::from_nanos(u64::try_from(now_nanos().saturating_sub(sent)).unwrap_or(u64::MAX))
    });
    let id = headers
        .get("x-tickiti-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    if !tally.seen.insert(id) {
        tally.duplicates += 1;
        return;
    }
    tally.first.get_or_insert(now);
    tally.last = Some(now);
    if let Some(latency) = latency {
        tally.latencies.push(latency);
    }
    if tally.sample.is_none() {
        tally.sample = Some((headers, body));
    }
}
