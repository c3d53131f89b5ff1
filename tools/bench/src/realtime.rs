//! `realtime`: event → browser frame latency through the whole path (api
//! commit → outbox relay → RabbitMQ → `tickiti-realtime` → websocket), with
//! N websocket clients spread over K organizations and ticket changes made
//! through the api at a steady rate; and the realtime process's memory per
//! idle connection. ARCHITECTURE.md's targets: p99 < 50 ms with 10 000
//! sockets in 100 organizations at 200 changes/s; < 16 KiB per idle socket.
//!
//! The api runs in this process; the realtime service runs as its own
//! process (the `tickiti-realtime` binary beside this one), so its memory is
//! its own. Both use one scratch database. Latency is measured twice, to
//! each frame's arrival: from the moment the create request was sent (it
//! includes the api's HTTP handling and any queueing in front of it), and
//! from the ticket's `created_at`, which Postgres sets to its transaction's
//! start: the event → frame the target is about, an upper bound of
//! commit → frame. Raise the open-file limit for large N (`ulimit -n
//! 30000`): this process and the realtime process each hold N sockets.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tickiti_crypto::realtime::{BrowserClaims, scope, sign_token};
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::report;
use crate::spawn::{self, Child, Scratch, rss_kib};
use crate::stats::{millis, now_nanos, percentile};

/// Options of `realtime`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Websocket clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Organizations the clients are spread over (changes are too).
    #[arg(long, default_value_t = 10)]
    pub orgs: usize,
    /// Ticket changes per second through the api.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of the same load before measuring (the first changes find
    /// cold statement caches and every organization's first recount at once).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Where the scratch database and the bus live.
    #[command(flatten)]
    pub servers: spawn::Servers,
    /// The `tickiti-realtime` binary (default: beside this one; build it with
    /// `cargo build --release -p tickiti-realtime`).
    #[arg(long)]
    pub realtime_bin: Option<PathBuf>,
}

/// The scenario's name in `tickiti-bench all`.
const SCENARIO: &str = "realtime";
/// Targets: event → frame p99, and the realtime process's memory per idle socket.
const TARGET_P99_MS: f64 = 50.0;
const TARGET_KIB_PER_SOCKET: f64 = 12.0;

/// Runs the benchmark and prints its report.
pub async fn run(args: Args) -> anyhow::Result<Vec<report::Row>> {
    if args.orgs == 0 || args.clients < args.orgs {
        bail!("--clients must be at least --orgs (and --orgs at least 1)");
    }
    let bin = spawn::sibling_binary("tickiti-realtime", args.realtime_bin.as_deref())?;
    let scratch = Scratch::create(&args.servers.database_url).await?;
    let outcome = measure(&args, &bin, &scratch).await;
    if let Err(error) = scratch.drop_database().await {
        eprintln!("warning: {error:#}");
    }
    outcome
}

/// The parts of a server frame the clients look at.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    data: Option<FrameData<'a>>,
}

#[derive(serde::Deserialize)]
struct FrameData<'a> {
    #[serde(borrow)]
    subject: Option<&'a str>,
    #[serde(borrow)]
    created_at: Option<&'a str>,
}

/// Nanoseconds from `since` (Unix nanoseconds) to now; 0 when in the future.
fn nanos_since(since: u128) -> Duration {
    Duration::from_nanos(u64::try_from(now_nanos().saturating_sub(since)).unwrap_or(u64::MAX))
}

async fn measure(
    args: &Args,
    bin: &PathBuf,
    scratch: &Scratch,
) -> anyhow::Result<Vec<report::Row>> {
    let api = spawn::start(scratch, &args.servers.amqp_url, 20).await?;
    let result = async {
        let pool = scratch.pool(5).await?;
        tickiti_realtime::migrator()
            .run(&pool)
            .await
            .context("cannot migrate the realtime tables")?;
        // Pair as an operator would (pin hash in, pin confirmed); the bench
        // keeps the node key to sign its clients' tokens.
        let install_id = Uuid::now_v7();
        let key = tickiti_crypto::realtime::generate_node_key();
        let pin = tickiti_crypto::realtime::generate_pin();
        let hash = tickiti_crypto::realtime::hash_pin(&pin).map_err(|e| anyhow!("{e}"))?;
        let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
        tickiti_realtime::pairing::request(&pool, install_id, &key, &hash, expires).await?;
        tickiti_realtime::pairing::confirm(&pool, &pin).await?;

        // Organizations: the api's own bench org plus more, each with a token.
        let mut orgs = vec![(api.organization_id, api.token.clone())];
        for n in 1..args.orgs {
            let email = format!("bench-{n}-{}@example.com", Uuid::now_v7().simple());
            let (org, _) = tickiti_api::accounts::create_organization(
                &pool,
                &format!("Bench {n}"),
                &email,
                "bench-password",
            )
            .await
            .map_err(|e| anyhow!("cannot create an organization: {e:?}"))?;
            let (_, token) = tickiti_api::accounts::create_token(
                &pool,
                &email,
                "bench",
                &[tickiti_domain::Ability::All],
            )
            .await
            .map_err(|e| anyhow!("cannot create a token: {e:?}"))?;
            orgs.push((org, token));
        }

        let mut command = std::process::Command::new(bin);
        command
            .env("DATABASE_URL", &scratch.url)
            .env("AMQP_URL", &args.servers.amqp_url)
            .env("TICKITI_BUS_PREFIX", &api.prefix)
            .env("REALTIME_LISTEN", "127.0.0.1:0")
            .env("REALTIME_ADMIN_LISTEN", "127.0.0.1:0");
        let (mut child, addresses) = Child::spawn_listening(command, &["websocket", "admin"]).await?;
        let (ws_addr, admin_addr) = (addresses[0], addresses[1]);
        let pid = child.id();
        child
            .wait_ready(&format!("http://{admin_addr}/readyz"), |body| {
                body["paired"] == true
            })
            .await
            .context("the realtime process did not become ready and paired")?;
        // Its exclusive queue is bound a moment after readiness.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base_rss = rss_kib(pid).unwrap_or(0);

        // Connect the clients, a few hundred at a time.
        // (request → frame, event → frame) of every measured frame.
        let latencies: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
        let frames = Arc::new(AtomicU64::new(0));
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("ws://{ws_addr}/ws");
        let connect_started = Instant::now();
        let mut tasks = Vec::with_capacity(args.clients);
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        let (welcomed_tx, mut welcomed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for n in 0..args.clients {
            let (org, _) = orgs[n % orgs.len()];
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let token = sign_token(
                &key,
                &BrowserClaims {
                    iid: install_id,
                    org,
                    sub: Uuid::now_v7(),
                    name: format!("bench {n}"),
                    scopes: vec![scope::TICKETS.into()],
                    iat: now,
                    exp: now + 3600,
                },
            );
            let url = url.clone();
            let gate = gate.clone();
            let latencies = latencies.clone();
            let frames = frames.clone();
            let measuring = measuring.clone();
            let welcomed = welcomed_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut permit = Some(gate.acquire_owned().await.ok()?);
                let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
                    &url,
                    // Small buffers: 10 000 clients with tungstenite's 128 KiB
                    // defaults would cost this process gigabytes.
                    Some(
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                            .read_buffer_size(4096)
                            .write_buffer_size(0),
                    ),
                    true,
                )
                .await
                .ok()?;
                ws.send(Message::text(
                    json!({ "type": "hello", "token": token }).to_string(),
                ))
                .await
                .ok()?;
                let mut own = Vec::new();
                let mut welcomed_yet = false;
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    // Only what the measurement needs (other fields are skipped, not built).
                    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
                        continue;
                    };
                    if frame.kind == "welcome" && !welcomed_yet {
                        welcomed_yet = true;
                        permit.take();
                        let _ = welcomed.send(());
                        continue;
                    }
                    if frame.event != Some("ticket.created") {
                        continue;
                    }
                    let Some(data) = frame.data else { continue };
                    let sent = data
                        .subject
                        .and_then(|s| s.strip_prefix("bench "))
                        .and_then(|n| n.parse::<u128>().ok());
                    let created = data
                        .created_at
                        .and_then(|at| time::OffsetDateTime::parse(at, &Rfc3339).ok())
                        .and_then(|at| u128::try_from(at.unix_timestamp_nanos()).ok());
                    if let (Some(sent), Some(created)) = (sent, created)
                        && measuring.load(Ordering::Relaxed)
                    {
                        own.push((nanos_since(sent), nanos_since(created)));
                        frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
                latencies.lock().await.extend(own);
                Some(())
            }));
        }
        drop(welcomed_tx);
        let mut welcomed = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while welcomed < args.clients {
            match tokio::time::timeout_at(deadline, welcomed_rx.recv()).await {
                Ok(Some(())) => welcomed += 1,
                _ => break,
            }
        }
        if welcomed < args.clients {
            bail!(
                "only {welcomed} of {} clients were welcomed (open-file limit?)",
                args.clients
            );
        }
        let connect_time = connect_started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_rss = rss_kib(pid).unwrap_or(0);

        // Steady load: one create every 1/rate s, round-robin over the
        // organizations; first unmeasured (the clients skip frames whose
        // subject is not `bench …`), then measured.
        let http = reqwest::Client::new();
        let metrics_url = format!("http://{admin_addr}/metrics");
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1))));
        let mut requests = tokio::task::JoinSet::new();
        let mut create = |subject: String, n: usize| {
            let (_, token) = &orgs[n % orgs.len()];
            let request = http
                .post(format!("{}/api/v1/tickets", api.base_url))
                .bearer_auth(token)
                .json(&json!({
                    "subject": subject,
                    "contact": { "email": "bench@example.com" },
                }));
            requests.spawn(async move { request.send().await.map(|r| r.status().is_success()) });
        };
        let warmup_started = Instant::now();
        let mut warmup_sent = 0usize;
        while warmup_started.elapsed() < Duration::from_secs(args.warmup) {
            tick.tick().await;
            create(format!("warm-up {warmup_sent}"), warmup_sent);
            warmup_sent += 1;
        }
        let frames_before = frames_queued(&http, &metrics_url).await;
        measuring.store(true, Ordering::Relaxed);
        let load_started = Instant::now();
        let mut sent = 0usize;
        while load_started.elapsed() < Duration::from_secs(args.duration) {
            tick.tick().await;
            create(format!("bench {}", now_nanos()), warmup_sent + sent);
            sent += 1;
        }
        let mut failed = 0;
        while let Some(done) = requests.join_next().await {
            if !matches!(done, Ok(Ok(true))) {
                failed += 1;
            }
        }
        // Let the last frames arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        measuring.store(false, Ordering::Relaxed);
        let load_time = load_started.elapsed();
        let frames_all = frames_queued(&http, &metrics_url).await.zip(frames_before);
        drop(child);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let pairs = std::mem::take(&mut *latencies.lock().await);
        let mut samples: Vec<Duration> = pairs.iter().map(|(request, _)| *request).collect();
        let mut from_event: Vec<Duration> = pairs.iter().map(|(_, event)| *event).collect();
        samples.sort_unstable();
        from_event.sort_unstable();
        let expected = (sent - failed) * args.clients / orgs.len();
        let per_socket = idle_rss.saturating_sub(base_rss) as f64 / args.clients as f64;
        let ms = |q: f64| percentile(&samples, q).map_or(f64::NAN, millis);
        let event_ms = |q: f64| percentile(&from_event, q).map_or(f64::NAN, millis);
        println!(
            "tickiti-bench realtime: {} clients in {} organizations, {} changes/s for {} s (after {} s unmeasured)",
            args.clients,
            orgs.len(),
            args.rate,
            args.duration,
            args.warmup
        );
        println!(
            "  connected and welcomed in      {:>9.1} s",
            connect_time.as_secs_f64()
        );
        println!("  changes sent (failed)          {sent:>9} ({failed})");
        println!(
            "  frames received / expected     {:>9} / {expected}",
            samples.len()
        );
        println!(
            "  frames per second              {:>9.0}",
            frames.load(Ordering::Relaxed) as f64 / load_time.as_secs_f64()
        );
        if let Some((after, before)) = frames_all {
            // Ticket frames plus everything else the load causes (perspective counts).
            println!(
                "  all frames per second (server) {:>9.0}",
                after.saturating_sub(before) as f64 / load_time.as_secs_f64()
            );
        }
        println!(
            "  event → frame p50              {:>9.1} ms",
            event_ms(0.50)
        );
        println!(
            "  event → frame p99              {:>9.1} ms   (target < {TARGET_P99_MS} ms)",
            event_ms(0.99)
        );
        println!("  event → frame max              {:>9.1} ms", event_ms(1.0));
        println!("  request → frame p50            {:>9.1} ms", ms(0.50));
        println!("  request → frame p99            {:>9.1} ms", ms(0.99));
        println!("  request → frame max            {:>9.1} ms", ms(1.0));
        println!("  realtime RSS before / idle     {base_rss:>9} / {idle_rss} KiB");
        println!(
            "  memory per idle socket         {per_socket:>9.1} KiB  (target < {TARGET_KIB_PER_SOCKET} KiB)"
        );
        anyhow::Ok(vec![
            report::Row::share(
                SCENARIO,
                "frames received",
                samples.len() as f64,
                expected as f64,
                1.0,
            ),
            report::Row::below(
                SCENARIO,
                "event → frame p99 (ms)",
                event_ms(0.99),
                TARGET_P99_MS,
                "ms",
            ),
            report::Row::figure(SCENARIO, "request → frame p99 (ms)", ms(0.99)),
            report::Row::below(
                SCENARIO,
                "memory per idle socket (KiB)",
                per_socket,
                TARGET_KIB_PER_SOCKET,
                "KiB",
            ),
        ])
    }
    .await;
    api.stop().await;
    result
}

/// The realtime process's count of frames queued to sockets, all types
/// (`tickiti_realtime_frames_total` on its private listener).
async fn frames_queued(http: &reqwest::Client, metrics_url: &str) -> Option<u64> {
    let text = http.get(metrics_url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("tickiti_realtime_frames_total "))?
        .trim()
        .parse()
        .ok()
}
