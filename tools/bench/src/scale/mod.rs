//! `scale`: the read path through the api at N tickets against the same at
//! 10 000 in the same run. One database holds both organizations, seeded by
//! `COPY` ([`seed`]), as a multi-tenant installation would; each measure is
//! sampled in turns, large then small, so the machine's noise falls on both.
//! Target: p99 at N at most twice p99 at 10 000 (the read path is flat).

mod seed;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::report;
use crate::spawn::{self, Organization, Scratch};
use crate::stats::{millis, percentile};

/// The scenario's name in `tickiti-bench all`.
const SCENARIO: &str = "scale";
/// p99 at N may be at most this many times p99 at the baseline size.
const MAX_GROWTH: f64 = 2.0;
/// Unmeasured requests of each kind before sampling (statement caches, pages in memory).
const WARMUP: usize = 5;
/// How deep the cursor measure pages.
const DEEP_ROWS: u64 = 10_000;

/// Options of `scale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tickets of the large organization (default 1 000 000, 100 000 with --quick).
    #[arg(long)]
    pub tickets: Option<u64>,
    /// Tickets of the organization it is compared with.
    #[arg(long, default_value_t = 10_000)]
    pub baseline_tickets: u64,
    /// Samples of each measure in each organization (default 200, 60 with --quick).
    #[arg(long)]
    pub samples: Option<usize>,
    /// A smaller organization and fewer samples.
    #[arg(long)]
    pub quick: bool,
    /// Where the scratch database and the bus live.
    #[command(flatten)]
    pub servers: spawn::Servers,
    /// Leave the seeded database behind (its name is printed), to look
    /// into a slow measure with `EXPLAIN ANALYZE`.
    #[arg(long)]
    pub keep_database: bool,
    /// Database pool size of the spawned api.
    #[arg(long, default_value_t = 20)]
    pub db_connections: u32,
}

/// Runs the scenario; the scratch database is dropped however it ends.
pub async fn run(args: Args) -> anyhow::Result<Vec<report::Row>> {
    let tickets = args
        .tickets
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let samples = args.samples.unwrap_or(if args.quick { 60 } else { 200 });
    if tickets < args.baseline_tickets || args.baseline_tickets < 1_000 {
        bail!("--tickets must be at least --baseline-tickets, and that at least 1000");
    }
    let scratch = Scratch::create(&args.servers.database_url).await?;
    let outcome = measure(&args, &scratch, tickets, samples).await;
    if args.keep_database {
        eprintln!("the seeded database is left behind: {}", scratch.name);
    } else if let Err(error) = scratch.drop_database().await {
        eprintln!("warning: {error:#}");
    }
    outcome
}

async fn measure(
    args: &Args,
    scratch: &Scratch,
    tickets: u64,
    samples: usize,
) -> anyhow::Result<Vec<report::Row>> {
    let api = spawn::start(scratch, &args.servers.amqp_url, args.db_connections).await?;
    let outcome = async {
        let pool = scratch.pool(4).await?;
        let small_org = api.organization("Baseline").await?;
        let large_org = api.organization("Large").await?;
        let small_seed =
            seed::organization(&pool, &small_org, args.baseline_tickets, "baseline").await?;
        let large_seed = seed::organization(&pool, &large_org, tickets, "large").await?;
        seed::settle(&pool).await?;
        pool.close().await;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        let small = Probe::new(
            &client,
            &api.base_url,
            &small_org,
            &small_seed,
            args.baseline_tickets,
        )
        .await?;
        let large = Probe::new(&client, &api.base_url, &large_org, &large_seed, tickets).await?;
        sample(&small, &large, samples).await
    }
    .await;
    api.stop().await;
    let measures = outcome?;
    let mut rows = Vec::new();
    eprintln!(
        "{:<44} {:>12} {:>12} {:>12} {:>12}",
        "scale: p50 / p99 in ms",
        format!("p50 {}", short(tickets)),
        format!("p99 {}", short(tickets)),
        format!("p50 {}", short(args.baseline_tickets)),
        format!("p99 {}", short(args.baseline_tickets))
    );
    for m in &measures {
        let (large_p50, large_p99) = m.large.p50_p99();
        let (small_p50, small_p99) = m.small.p50_p99();
        eprintln!(
            "{:<44} {large_p50:>12.2} {large_p99:>12.2} {small_p50:>12.2} {small_p99:>12.2}",
            m.name
        );
        rows.push(report::Row::at_most_times(
            SCENARIO,
            &format!(
                "p99 {} at {} (ms; baseline at {})",
                m.name,
                short(tickets),
                short(args.baseline_tickets)
            ),
            large_p99,
            small_p99,
            MAX_GROWTH,
        ));
    }
    Ok(rows)
}

/// `1000000` as `1M`, `100000` as `100k`.
fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// One request, or a few that make one user-visible step.
#[derive(Clone)]
enum Step {
    Get(String),
    /// A ticket opened: the ticket, then its messages.
    Open(Uuid),
    Create,
}

/// A seeded organization, as the api is asked about it.
struct Probe {
    client: reqwest::Client,
    base: String,
    token: String,
    steps: Vec<(String, Step)>,
}

impl Probe {
    /// Works out each measure's request (the perspectives' filters, the
    /// cursor [`DEEP_ROWS`] deep) for this organization.
    async fn new(
        client: &reqwest::Client,
        base_url: &str,
        org: &Organization,
        seeded: &seed::Seeded,
        tickets: u64,
    ) -> anyhow::Result<Probe> {
        let mut probe = Probe {
            client: client.clone(),
            base: format!("{base_url}/api/v1"),
            token: org.token.clone(),
            steps: Vec::new(),
        };
        let perspectives = probe.json(Method::GET, "/perspectives?limit=200").await?;
        for p in perspectives["data"].as_array().into_iter().flatten() {
            if p["shared"] != json!(true) {
                continue;
            }
            let query: Vec<(String, String)> = p["filters"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            let query = serde_urlencoded(&query);
            let name = p["name"].as_str().unwrap_or("?");
            probe.steps.push((
                format!("perspective {name:?}, first page"),
                Step::Get(format!("/tickets?{query}")),
            ));
        }
        probe.steps.push((
            "status + queue + assignee filter".into(),
            Step::Get(format!(
                "/tickets?status=new,open,pending&queue_id={}&assignee_id={}",
                seeded.queues[1], seeded.agents[3]
            )),
        ));
        // The same depth in both: the small one's last full page at most.
        let depth = DEEP_ROWS.min(tickets - 200);
        let mut cursor: Option<String> = None;
        let mut seen = 0;
        while seen < depth {
            let limit = (depth - seen).min(200);
            let path = match &cursor {
                Some(c) => format!("/tickets?limit={limit}&cursor={c}"),
                None => format!("/tickets?limit={limit}"),
            };
            let page = probe.json(Method::GET, &path).await?;
            seen += page["data"].as_array().map_or(0, |d| d.len() as u64);
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                bail!("the ticket list ended after {seen} rows, before {depth}");
            }
        }
        probe.steps.push((
            format!("page after {} rows by cursor", short(depth)),
            Step::Get(format!("/tickets?cursor={}", cursor.unwrap_or_default())),
        ));
        probe.steps.push((
            "search (subjects and messages)".into(),
            Step::Get(format!("/tickets?q={}", seed::NEEDLE)),
        ));
        probe.steps.push((
            "perspective counts".into(),
            Step::Get("/perspectives/counts".into()),
        ));
        probe.steps.push((
            format!("ticket with {} messages", seed::LONG_TICKET_MESSAGES),
            Step::Open(seeded.long_ticket),
        ));
        probe.steps.push(("create".into(), Step::Create));
        // The searches must find what was planted, or they measure nothing.
        let found = probe
            .json(
                Method::GET,
                &format!("/tickets?q={}&limit=200", seed::NEEDLE),
            )
            .await?;
        if found["data"].as_array().is_none_or(|d| d.len() < 40) {
            bail!(
                "the search for {:?} found too little: {found}",
                seed::NEEDLE
            );
        }
        Ok(probe)
    }

    async fn json(&self, method: Method, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| path.to_owned())?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Runs one step; fails on any answer but a success.
    async fn run(&self, step: &Step, n: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match step {
            Step::Get(path) => {
                self.json(Method::GET, path).await?;
            }
            Step::Open(id) => {
                self.json(Method::GET, &format!("/tickets/{id}")).await?;
                let messages = self
                    .json(Method::GET, &format!("/tickets/{id}/messages?limit=200"))
                    .await?;
                let got = messages["data"].as_array().map_or(0, Vec::len);
                if got as u64 != seed::LONG_TICKET_MESSAGES {
                    bail!("the long ticket showed {got} messages");
                }
            }
            Step::Create => {
                let response = self
                    .client
                    .post(format!("{}/tickets", self.base))
                    .bearer_auth(&self.token)
                    .json(&json!({
                        "subject": format!("Scale bench ticket {n}"),
                        "contact": { "email": format!("scale-{n}-{}@example.com", Uuid::now_v7().simple()) },
                        "message": "The invoice for last month shows the wrong address.",
                    }))
                    .send()
                    .await?;
                if response.status() != StatusCode::CREATED {
                    let status = response.status();
                    bail!(
                        "POST /tickets answered {status}: {}",
                        response.text().await?
                    );
                }
                response.bytes().await?;
            }
        }
        Ok(started.elapsed())
    }
}

/// `key=value&...`, each value percent-encoded.
fn serde_urlencoded(pairs: &[(String, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap_or_else(|_| unreachable!());
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// One measure's samples in each organization.
struct Measure {
    name: String,
    large: Samples,
    small: Samples,
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn p50_p99(&self) -> (f64, f64) {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |q| percentile(&sorted, q).map_or(f64::NAN, millis);
        (at(0.50), at(0.99))
    }
}

/// Samples every measure in turns: each round runs each step once in the
/// large organization, then once in the small one.
async fn sample(small: &Probe, large: &Probe, samples: usize) -> anyhow::Result<Vec<Measure>> {
    let mut measures: Vec<Measure> = large
        .steps
        .iter()
        .map(|(name, _)| Measure {
            name: name.clone(),
            large: Samples::default(),
            small: Samples::default(),
        })
        .collect();
    if small.steps.len() != large.steps.len() {
        bail!("the organizations have different perspectives");
    }
    let started = Instant::now();
    for round in 0..WARMUP + samples {
        for (i, measure) in measures.iter_mut().enumerate() {
            let large_took = large.run(&large.steps[i].1, round).await?;
            let small_took = small.run(&small.steps[i].1, round).await?;
            if round >= WARMUP {
                measure.large.0.push(large_took);
                measure.small.0.push(small_took);
            }
        }
        if round % 10 == 0 {
            eprint!(
                "\rsampling: round {round}/{}, {:.0} s",
                WARMUP + samples,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!();
    Ok(measures)
}
