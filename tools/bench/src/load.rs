//! A closed-loop load driver for `POST /api/v1/tickets`: a fixed number of
//! workers, each sending its next request as soon as the previous one is
//! answered, over one shared keep-alive client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

/// How many error descriptions a round keeps for the report.
const ERROR_SAMPLES: usize = 3;

/// Where and as whom to create tickets.
#[derive(Debug, Clone)]
pub struct Target {
    client: reqwest::Client,
    base_url: String,
    token: String,
    /// Distinguishes this run's contacts from earlier runs' on a shared database.
    run: String,
    next: Arc<AtomicU64>,
}

/// What one round measured.
#[derive(Debug, Default)]
pub struct Round {
    /// Answers with 201.
    pub ok: u64,
    /// Other answers and transport errors.
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every successful request, ascending.
    pub latencies: Vec<Duration>,
    /// The first few errors, described.
    pub error_samples: Vec<String>,
}

impl Round {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: Round) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(sample);
            }
        }
    }

    fn error(&mut self, description: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(description);
        }
    }
}

impl Target {
    /// A target at `base_url` (e.g. `http://127.0.0.1:8080`) with a bearer
    /// token; the client keeps up to `concurrency` idle connections.
    pub fn new(base_url: &str, token: String, concurrency: u32) -> anyhow::Result<Target> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency as usize)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Target {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            run: uuid::Uuid::now_v7().simple().to_string().split_off(20),
            next: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The api's address.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Fails clearly when the api is unreachable or the token cannot create tickets.
    pub async fn preflight(&self) -> anyhow::Result<()> {
        let health = format!("{}/healthz", self.base_url);
        let response = self.client.get(&health).send().await.map_err(|error| {
            anyhow::anyhow!(
                "api unreachable at {}: {error}\n(start it, pass --api-url, or use --spawn)",
                self.base_url
            )
        })?;
        if !response.status().is_success() {
            bail!(
                "api at {} is not healthy: GET /healthz answered {}",
                self.base_url,
                response.status()
            );
        }
        let (status, body) = self.create_ticket().await.context("first ticket")?;
        match status {
            StatusCode::CREATED => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                "the token was refused ({status}): pass one with the create-ticket ability via --token or TICKITI_TOKEN, or use --spawn\n{body}"
            ),
            StatusCode::TOO_MANY_REQUESTS => {
                bail!(
                    "the api rate-limits this token: start it with API_RATE_LIMIT=off for a benchmark"
                )
            }
            _ => bail!("POST /api/v1/tickets answered {status}: {body}"),
        }
    }

    /// Sends one create request; returns the status and the body read in full
    /// (reading it lets the connection go back to the pool).
    async fn create_ticket(&self) -> Result<(StatusCode, String), reqwest::Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "subject": format!("Bench ticket {n}"),
            "contact": { "email": format!("bench-{}-{n}@example.com", self.run) },
            "message": "The printer on the second floor prints every page twice since this morning.",
        });
        let response = self
            .client
            .post(format!("{}/api/v1/tickets", self.base_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, text))
    }

    /// Runs `concurrency` workers for `duration` and collects what they saw.
    pub async fn drive(&self, concurrency: u32, duration: Duration) -> Round {
        let started = Instant::now();
        let deadline = started + duration;
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let target = self.clone();
            workers.spawn(async move { target.worker(deadline).await });
        }
        let mut round = Round::default();
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(worker) => round.merge(worker),
                Err(error) => round.error(format!("worker failed: {error}")),
            }
        }
        round.elapsed = started.elapsed();
        round.latencies.sort_unstable();
        round
    }

    async fn worker(&self, deadline: Instant) -> Round {
        let mut round = Round::default();
        while Instant::now() < deadline {
            let sent = Instant::now();
            match self.create_ticket().await {
                Ok((StatusCode::CREATED, _)) => {
                    round.ok += 1;
                    round.latencies.push(sent.elapsed());
                }
                Ok((status, body)) => {
                    let body: String = body.chars().take(200).collect();
                    round.error(format!("HTTP {status}: {body}"));
                }
                Err(error) => round.error(format!("transport: {error}")),
            }
        }
        round
    }
}
