//! `webhooks`: deliveries through the whole path (api commit → outbox relay
//! → RabbitMQ → `tickiti-dispatcher` → signed POST → attempt logged) to a
//! local receiver, against a bare HTTP client posting the same bodies to the
//! same receiver at the same concurrency. Targets: at least 70 % of the
//! bare client's rate, and commit → first attempt p99 < 250 ms under that
//! load.
//!
//! Each round has three phases:
//! 1. throughput: `--events` tickets are created while no dispatcher runs,
//!    so their events wait in its durable queue; then a dispatcher process
//!    starts, and the clock runs from the receiver's first arrival of the
//!    `events × endpoints` deliveries until the last of them is in the
//!    attempt log (fan-out, queueing, signing, sending and logging all
//!    included);
//! 2. baseline: a bare client sends as many POSTs of a captured delivery
//!    (same body, same headers) to the same receiver, timed from the first
//!    to the last arrival.
//!
//! Each of the two starts on a quiet machine (see [`settle`]), so neither
//! pays for the tail of what ran before it (the api's relay, the last log
//! batches, autovacuum after tens of thousands of rows);
//! 3. latency: with the dispatcher running, `--rate` tickets per second for
//!    `--duration` seconds; each first attempt's arrival minus the moment
//!    its create request was sent (an upper bound of commit → attempt).
//!
//! Phases 1 and 2 also count CPU time (Linux `/proc`): the whole machine's
//! per delivery with the shares of the dispatcher, Postgres and RabbitMQ,
//! and the machine's per bare request. The ratio of the machine's two
//! figures moves much less from run to run than the ratio of the two rates,
//! so it shows what a change to the dispatcher did.
//!
//! At the end every delivery must be `success` with exactly one attempt row
//! per delivery, or the run fails: a rate that loses log rows is no rate.

mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::http::HeaderMap;
use futures::StreamExt as _;
use serde_json::json;
use tickiti_api::config::WebhookConfig;
use tickiti_bus::{Bus, BusConfig};
use tickiti_dispatcher::topology::Queues;

use self::receiver::Receiver;
use crate::report;
use crate::spawn::{self, Child, Scratch, SpawnedApi};
use crate::stats::{median, millis, now_nanos, percentile};

/// The scenario's name in `tickiti-bench all`.
const SCENARIO: &str = "webhooks";
/// Targets: deliveries per second as a share of the bare client's, and
/// the p99 of request → first attempt.
const TARGET_SHARE: f64 = 0.70;
const TARGET_P99_MS: f64 = 250.0;

/// Command names of the Postgres and RabbitMQ server processes (Debian's),
/// whose CPU time the throughput phase counts.
const POSTGRES_PROCESS: &str = "postgres";
const RABBITMQ_PROCESS: &str = "beam.smp";

/// The dispatcher's request limits (its defaults, passed explicitly so the
/// baseline's concurrency matches them).
const DISPATCHER_CONCURRENCY: usize = 128;
const ORG_CONCURRENCY: usize = 64;
const ENDPOINT_CONCURRENCY: usize = 8;

/// Tickets created at once while building the backlog.
const CREATE_CONCURRENCY: usize = 16;

/// Options of `webhooks`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Endpoints subscribed to `ticket.created` (each event is one delivery to each).
    /// At most 50: an organization's cap (the bench is one organization).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub endpoints: u32,
    /// Tickets created for the throughput phase of each round. The default
    /// (80 000 deliveries with 10 endpoints) times several seconds of steady
    /// sending; a few thousand deliveries time mostly the start (connections
    /// opened, the first fan-out batch), which the bare client does not have.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u32).range(1..))]
    pub events: u32,
    /// Tickets per second during the latency phase.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Where the scratch database and the bus live.
    #[command(flatten)]
    pub servers: spawn::Servers,
    /// The `tickiti-dispatcher` binary (default: beside this one; build it
    /// with `cargo build --release -p tickiti-dispatcher`).
    #[arg(long)]
    pub dispatcher_bin: Option<PathBuf>,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: Args) -> anyhow::Result<Vec<report::Row>> {
    let bin = spawn::sibling_binary("tickiti-dispatcher", args.dispatcher_bin.as_deref())?;
    let scratch = Scratch::create(&args.servers.database_url).await?;
    let api = spawn::start_with(
        &scratch,
        &args.servers.amqp_url,
        20,
        WebhookConfig {
            allow_private_networks: true,
            require_https: Some(false),
        },
    )
    .await;
    let outcome = match api {
        Ok(api) => {
            let queues = Queues::new(&api.prefix);
            let measured = measure(&args, &bin, &scratch, &api, &queues).await;
            api.stop_and_delete(&queues.all()).await;
            measured
        }
        Err(error) => Err(error),
    };
    if let Err(error) = scratch.drop_database().await {
        eprintln!("warning: {error:#}");
    }
    outcome
}

/// One round's figures.
struct Row {
    dispatcher_rate: f64,
    baseline_rate: f64,
    latencies: Vec<Duration>,
    expected: usize,
    received: usize,
    duplicates: u64,
    /// Attempts the dispatcher's fairness gates sent the long way round
    /// (work queue) during the backlog; a healthy run has none.
    parked: u64,
    /// CPU time per backlog delivery: the whole machine's, and the shares
    /// of the dispatcher, Postgres and RabbitMQ.
    machine_cpu_per_delivery: Option<Duration>,
    dispatcher_cpu_per_delivery: Option<Duration>,
    postgres_cpu_per_delivery: Option<Duration>,
    rabbitmq_cpu_per_delivery: Option<Duration>,
    /// The whole machine's CPU time per bare-client request.
    machine_cpu_per_request: Option<Duration>,
}

impl Row {
    fn ratio_percent(&self) -> f64 {
        if self.baseline_rate > 0.0 {
            100.0 * self.dispatcher_rate / self.baseline_rate
        } else {
            0.0
        }
    }

    /// CPU efficiency: the bare client's cost per request over a delivery's.
    /// On a machine the load saturates, this is what the rate ratio tends
    /// to, with less of the noise of two rates measured at different moments.
    fn cpu_ratio_percent(&self) -> Option<f64> {
        let per_request = self.machine_cpu_per_request?.as_secs_f64();
        let per_delivery = self.machine_cpu_per_delivery?.as_secs_f64();
        (per_delivery > 0.0).then(|| 100.0 * per_request / per_delivery)
    }

    fn latency_ms(&self, q: f64) -> f64 {
        percentile(&self.latencies, q).map_or(f64::NAN, millis)
    }
}

async fn measure(
    args: &Args,
    bin: &PathBuf,
    scratch: &Scratch,
    api: &SpawnedApi,
    queues: &Queues,
) -> anyhow::Result<Vec<report::Row>> {
    let receiver = Receiver::start().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(DISPATCHER_CONCURRENCY)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    for n in 0..args.endpoints {
        let reply = http
            .post(format!("{}/api/v1/webhooks", api.base_url))
            .bearer_auth(&api.token)
            .json(&json!({ "url": receiver.url(n), "events": ["ticket.created"] }))
            .send()
            .await?;
        if !reply.status().is_success() {
            bail!(
                "POST /webhooks answered {}: {}",
                reply.status(),
                reply.text().await.unwrap_or_default()
            );
        }
    }
    declare_queues(&args.servers.amqp_url, &api.prefix, queues).await?;
    let pool = scratch.pool(2).await?;
    let endpoints = args.endpoints as usize;
    // One organization: its cap applies as well.
    let baseline_concurrency = DISPATCHER_CONCURRENCY
        .min(ORG_CONCURRENCY)
        .min(ENDPOINT_CONCURRENCY * endpoints);
    let mut rows = Vec::new();
    let mut delivered_total = 0usize;
    for round in 1..=args.repeat {
        // 1. Throughput: a backlog, then a dispatcher.
        receiver.reset();
        let created = create_tickets(&http, api, args.events as usize).await?;
        wait_outbox_drained(&pool).await?;
        settle().await;
        let cpu_before = CpuReading::now();
        let mut dispatcher = start_dispatcher(bin, scratch, api, &args.servers.amqp_url).await?;
        dispatcher
            .0
            .wait_ready(&format!("http://{}/readyz", dispatcher.1), |_| true)
            .await
            .context("the dispatcher did not get ready")?;
        let expected = created * endpoints;
        let got = receiver.wait_for(expected, Duration::from_secs(300)).await;
        if got < expected {
            bail!("round {round}: only {got} of {expected} backlog deliveries arrived in 300 s");
        }
        // A delivery counts once its attempt is logged too.
        let logged_at = wait_logged(&pool, delivered_total + expected).await?;
        // The dispatcher's own start-up is included (tens of milliseconds).
        let dispatcher_cpu = spawn::process_cpu(dispatcher.0.id());
        let backlog_cpu = CpuReading::now().since(&cpu_before);
        let backlog = receiver.take();
        let parked = parked_count(&http, dispatcher.1).await;
        let Some(sample) = backlog.sample.clone() else {
            bail!("round {round}: no delivery arrived");
        };

        // 2. The bare client, same receiver, same bodies, same concurrency.
        settle().await;
        let cpu_before = CpuReading::now();
        let baseline = bare_client(
            &http,
            &receiver,
            sample,
            expected,
            baseline_concurrency,
            args.endpoints,
        )
        .await?;
        let baseline_cpu = CpuReading::now().since(&cpu_before);

        // 3. Latency under a steady rate.
        receiver.reset();
        let sent = steady(&http, api, args.rate, Duration::from_secs(args.duration)).await;
        let steady_expected = sent * endpoints;
        receiver
            .wait_for(steady_expected, Duration::from_secs(60))
            .await;
        let mut steady_tally = receiver.take();
        steady_tally.latencies.sort_unstable();
        delivered_total += expected + steady_expected;
        check_logged(&pool, delivered_total).await?;
        drop(dispatcher);

        let row = Row {
            dispatcher_rate: backlog.rate_until(logged_at),
            baseline_rate: baseline,
            expected: steady_expected,
            received: steady_tally.seen.len(),
            duplicates: backlog.duplicates + steady_tally.duplicates,
            parked,
            latencies: steady_tally.latencies,
            machine_cpu_per_delivery: backlog_cpu.machine.map(|cpu| per(cpu, expected)),
            dispatcher_cpu_per_delivery: dispatcher_cpu.map(|cpu| per(cpu, expected)),
            postgres_cpu_per_delivery: backlog_cpu.postgres.map(|cpu| per(cpu, expected)),
            rabbitmq_cpu_per_delivery: backlog_cpu.rabbitmq.map(|cpu| per(cpu, expected)),
            machine_cpu_per_request: baseline_cpu.machine.map(|cpu| per(cpu, expected)),
        };
        println!(
            "round {round}: dispatcher {:.0}/s ({} parked), bare client {:.0}/s ({:.1} %); CPU per delivery {:.0} µs (dispatcher {:.0}, Postgres {:.0}, RabbitMQ {:.0}), per bare request {:.0} µs ({:.1} %); request → first attempt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} / {} steady deliveries, {} duplicates",
            row.dispatcher_rate,
            row.parked,
            row.baseline_rate,
            row.ratio_percent(),
            micros(row.machine_cpu_per_delivery),
            micros(row.dispatcher_cpu_per_delivery),
            micros(row.postgres_cpu_per_delivery),
            micros(row.rabbitmq_cpu_per_delivery),
            micros(row.machine_cpu_per_request),
            row.cpu_ratio_percent().unwrap_or(f64::NAN),
            row.latency_ms(0.50),
            row.latency_ms(0.99),
            row.latency_ms(1.0),
            row.received,
            row.expected,
            row.duplicates,
        );
        rows.push(row);
    }
    Ok(summarize(args, baseline_concurrency, &rows))
}

/// CPU time used so far: the whole machine's, and every Postgres and
/// RabbitMQ server process's (None where `/proc` cannot tell).
struct CpuReading {
    machine: Option<Duration>,
    postgres: Option<Duration>,
    rabbitmq: Option<Duration>,
}

impl CpuReading {
    fn now() -> CpuReading {
        CpuReading {
            machine: spawn::machine_cpu(),
            postgres: spawn::processes_cpu(POSTGRES_PROCESS),
            rabbitmq: spawn::processes_cpu(RABBITMQ_PROCESS),
        }
    }

    /// What was used between `earlier` and this reading.
    fn since(&self, earlier: &CpuReading) -> CpuReading {
        let used = |now: Option<Duration>, then: Option<Duration>| {
            now.zip(then).map(|(now, then)| now.saturating_sub(then))
        };
        CpuReading {
            machine: used(self.machine, earlier.machine),
            postgres: used(self.postgres, earlier.postgres),
            rabbitmq: used(self.rabbitmq, earlier.rabbitmq),
        }
    }
}

/// `total` spread over `count` items.
fn per(total: Duration, count: usize) -> Duration {
    total / u32::try_from(count.max(1)).unwrap_or(u32::MAX)
}

/// Microseconds, NaN when unknown (no `/proc`).
fn micros(value: Option<Duration>) -> f64 {
    value.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// The dispatcher's `tickiti_webhook_parked_total` (0 when unreadable).
async fn parked_count(http: &reqwest::Client, addr: SocketAddr) -> u64 {
    let Ok(reply) = http.get(format!("http://{addr}/metrics")).send().await else {
        return 0;
    };
    reply
        .text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("tickiti_webhook_parked_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn declare_queues(amqp_url: &str, prefix: &str, queues: &Queues) -> anyhow::Result<()> {
    let config = BusConfig {
        amqp_url: amqp_url.to_owned(),
        prefix: prefix.to_owned(),
        connection_name: "tickiti-bench-declare".into(),
    };
    let bus = Bus::connect_briefly(config, Duration::from_secs(10))
        .await
        .ok_or_else(|| anyhow::anyhow!("RabbitMQ unreachable at {}", spawn::redact(amqp_url)))?;
    queues
        .declare(&bus)
        .await
        .context("cannot declare the dispatcher's queues")
}

/// A dispatcher process on the bench's database and prefix, and its health address.
async fn start_dispatcher(
    bin: &PathBuf,
    scratch: &Scratch,
    api: &SpawnedApi,
    amqp_url: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    let mut command = std::process::Command::new(bin);
    command
        .env("DATABASE_URL", &scratch.url)
        .env("AMQP_URL", amqp_url)
        .env("TICKITI_BUS_PREFIX", &api.prefix)
        .env("DISPATCHER_LISTEN", "127.0.0.1:0")
        .env("DISPATCHER_CONCURRENCY", DISPATCHER_CONCURRENCY.to_string())
        .env("DISPATCHER_ORG_CONCURRENCY", ORG_CONCURRENCY.to_string())
        .env(
            "DISPATCHER_ENDPOINT_CONCURRENCY",
            ENDPOINT_CONCURRENCY.to_string(),
        )
        .env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true");
    let (child, addresses) = Child::spawn_listening(command, &["health"]).await?;
    Ok((child, addresses[0]))
}

/// Creates `count` tickets, a few at a time; returns how many were created.
async fn create_tickets(
    http: &reqwest::Client,
    api: &SpawnedApi,
    count: usize,
) -> anyhow::Result<usize> {
    let created = futures::stream::iter(0..count)
        .map(|_| create_ticket(http, api))
        .buffer_unordered(CREATE_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    if created < count {
        bail!("only {created} of {count} tickets were created");
    }
    Ok(created)
}

/// One create whose subject carries the moment it was sent.
async fn create_ticket(http: &reqwest::Client, api: &SpawnedApi) -> bool {
    http.post(format!("{}/api/v1/tickets", api.base_url))
        .bearer_auth(&api.token)
        .json(&json!({
            "subject": format!("bench {}", now_nanos()),
            "contact": { "email": "bench@example.com" },
        }))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// `rate` creates a second for `duration`, each sent on its tick whatever
/// the others do; returns how many succeeded.
async fn steady(http: &reqwest::Client, api: &SpawnedApi, rate: u32, duration: Duration) -> usize {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        tick.tick().await;
        let (http, url, token) = (http.clone(), api.base_url.clone(), api.token.clone());
        requests.spawn(async move {
            http.post(format!("{url}/api/v1/tickets"))
                .bearer_auth(token)
                .json(&json!({
                    "subject": format!("bench {}", now_nanos()),
                    "contact": { "email": "bench@example.com" },
                }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
    }
    let mut ok = 0;
    while let Some(done) = requests.join_next().await {
        if matches!(done, Ok(true)) {
            ok += 1;
        }
    }
    ok
}

/// Posts `count` copies of `sample` (each with its own delivery id) over the
/// endpoints' paths with `concurrency` in flight; the receiver's rate.
async fn bare_client(
    http: &reqwest::Client,
    receiver: &Receiver,
    sample: (HeaderMap, Bytes),
    count: usize,
    concurrency: usize,
    endpoints: u32,
) -> anyhow::Result<f64> {
    receiver.reset();
    let (headers, body) = sample;
    let failed = futures::stream::iter(0..count)
        .map(|n| {
            let mut headers = headers.clone();
            let id = uuid::Uuid::now_v7().to_string();
            if let Ok(value) = id.parse() {
                headers.insert("x-tickiti-delivery", value);
            }
            headers.remove("host");
            headers.remove("content-length");
            http.post(receiver.url(n as u32 % endpoints))
                .headers(headers)
                .body(body.clone())
                .send()
        })
        .buffer_unordered(concurrency)
        .filter(|sent| std::future::ready(!sent.as_ref().is_ok_and(|r| r.status().is_success())))
        .count()
        .await;
    if failed > 0 {
        bail!("the bare client saw {failed} failed requests");
    }
    Ok(receiver.take().rate())
}

async fn wait_outbox_drained(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(pool)
                .await?;
        if waiting == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{waiting} events still in the outbox after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every delivery so far succeeded, with exactly one attempt logged each.
/// Waits until the attempt log holds `want` attempts; when it did.
async fn wait_logged(pool: &sqlx::PgPool, want: usize) -> anyhow::Result<Instant> {
    let want = i64::try_from(want)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
            .fetch_one(pool)
            .await?;
        if attempts >= want {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bail!("the attempt log has {attempts} of {want} attempts after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the machine is quiet: less than a tenth of one core busy
/// over a quarter of a second (20 s at most; at once without `/proc`).
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = spawn::machine_cpu();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let busy = spawn::machine_cpu()
            .zip(before)
            .map(|(now, then)| now.saturating_sub(then));
        if busy.is_none_or(|busy| busy < Duration::from_millis(25)) || Instant::now() >= deadline {
            return;
        }
    }
}

async fn check_logged(pool: &sqlx::PgPool, deliveries: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (succeeded, attempts): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'success'),
                    (SELECT count(*) FROM webhook_attempts)",
        )
        .fetch_one(pool)
        .await?;
        let want = i64::try_from(deliveries)?;
        if succeeded == want && attempts == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{deliveries} deliveries arrived, but the log has {succeeded} successful deliveries and {attempts} attempts"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints the medians of the rounds; the rows for `tickiti-bench all`.
fn summarize(args: &Args, baseline_concurrency: usize, rows: &[Row]) -> Vec<report::Row> {
    let med = |f: &dyn Fn(&Row) -> f64| median(&mut rows.iter().map(f).collect::<Vec<_>>());
    let show = |v: Option<f64>| v.unwrap_or(f64::NAN);
    println!(
        "tickiti-bench webhooks: {} endpoints; throughput over a backlog of {} events ({} deliveries), latency at {} events/s ({} deliveries/s) for {} s; medians of {} rounds",
        args.endpoints,
        args.events,
        args.events * args.endpoints,
        args.rate,
        args.rate * args.endpoints,
        args.duration,
        rows.len()
    );
    println!(
        "  dispatcher deliveries/s        {:>9.0}   (signed, every attempt logged)",
        show(med(&|r| r.dispatcher_rate))
    );
    println!(
        "  bare client requests/s         {:>9.0}   (concurrency {baseline_concurrency})",
        show(med(&|r| r.baseline_rate))
    );
    println!(
        "  dispatcher / bare client       {:>9.1} %  (target ≥ {:.0} %)",
        show(med(&|r| r.ratio_percent())),
        TARGET_SHARE * 100.0
    );
    println!(
        "  machine CPU per delivery       {:>9.0} µs  (dispatcher {:.0}, Postgres {:.0}, RabbitMQ {:.0}; the rest is mostly the receiver)",
        show(med(&|r| micros(r.machine_cpu_per_delivery))),
        show(med(&|r| micros(r.dispatcher_cpu_per_delivery))),
        show(med(&|r| micros(r.postgres_cpu_per_delivery))),
        show(med(&|r| micros(r.rabbitmq_cpu_per_delivery)))
    );
    println!(
        "  machine CPU per bare request   {:>9.0} µs  ({:.1} % of a delivery's)",
        show(med(&|r| micros(r.machine_cpu_per_request))),
        show(med(&|r| r.cpu_ratio_percent().unwrap_or(f64::NAN)))
    );
    println!(
        "  request → first attempt p50    {:>9.1} ms",
        show(med(&|r| r.latency_ms(0.50)))
    );
    println!(
        "  request → first attempt p99    {:>9.1} ms   (target < {TARGET_P99_MS} ms)",
        show(med(&|r| r.latency_ms(0.99)))
    );
    println!(
        "  request → first attempt max    {:>9.1} ms",
        show(med(&|r| r.latency_ms(1.0)))
    );
    let missing: usize = rows
        .iter()
        .map(|r| r.expected - r.received.min(r.expected))
        .sum();
    let duplicates: u64 = rows.iter().map(|r| r.duplicates).sum();
    println!("  steady deliveries missing      {missing:>9}");
    println!("  duplicate deliveries           {duplicates:>9}");
    let expected: usize = rows.iter().map(|r| r.expected).sum();
    vec![
        report::Row::share(
            SCENARIO,
            "deliveries/s vs a bare HTTP client",
            show(med(&|r| r.dispatcher_rate)),
            show(med(&|r| r.baseline_rate)),
            TARGET_SHARE,
        ),
        report::Row::below(
            SCENARIO,
            "request → first attempt p99 (ms)",
            show(med(&|r| r.latency_ms(0.99))),
            TARGET_P99_MS,
            "ms",
        ),
        report::Row::share(
            SCENARIO,
            "steady deliveries received",
            (expected - missing) as f64,
            expected as f64,
            1.0,
        ),
        report::Row::below(SCENARIO, "duplicate deliveries", duplicates as f64, 1.0, ""),
    ]
}
