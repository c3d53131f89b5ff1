//! `api-create`: ticket creation through the api (HTTP → one transaction →
//! commit with its outbox row) against pgbench committing a one-row insert at
//! the same concurrency. ARCHITECTURE.md's target: at least 50 %.
//!
//! With `--spawn` a second baseline runs too: pgbench replaying the SQL of a
//! ticket create in the api's schema (the database floor of the same work),
//! so the report separates what the database costs from what the api adds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;

use crate::load::{Round, Target};
use crate::pgbench::{self, Pgbench, PgbenchResult};
use crate::report;
use crate::spawn::{self, Scratch, SpawnedApi};
use crate::stats::{median, millis, percentile};

/// The ARCHITECTURE.md target: api creates per second as a share of pgbench's commits per second.
const TARGET_PERCENT: f64 = 50.0;
/// The target against the floor (pgbench replaying a create's own statements).
const TARGET_FLOOR_SHARE: f64 = 0.80;
/// The scenario's name in `tickiti-bench all`.
const SCENARIO: &str = "api-create";

/// Options of `api-create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start the api in this process on a fresh database (the easy path).
    #[arg(long)]
    pub spawn: bool,
    /// Base URL of a running api (without --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// Bearer token able to create tickets (without --spawn).
    #[arg(long, env = "TICKITI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the scratch database and the bus live.
    #[command(flatten)]
    pub servers: spawn::Servers,
    /// Requests (and pgbench clients) in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// Seconds each measured api round and each pgbench round lasts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Seconds of unmeasured api load before each api round.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Rounds (api then pgbench each); medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Database pool size of the spawned api (the api's own default is 20).
    #[arg(long, default_value_t = 20)]
    pub db_connections: u32,
    /// The pgbench program.
    #[arg(long, env = "PGBENCH", default_value = "pgbench")]
    pub pgbench: PathBuf,
}

/// One round's api and pgbench figures.
struct Row {
    api: Round,
    pg: PgbenchResult,
    floor: Option<PgbenchResult>,
}

impl Row {
    fn ratio_percent(&self) -> f64 {
        if self.pg.tps > 0.0 {
            100.0 * self.api.throughput() / self.pg.tps
        } else {
            0.0
        }
    }

    fn floor_ratio_percent(&self) -> f64 {
        match self.floor {
            Some(floor) if floor.tps > 0.0 => 100.0 * self.api.throughput() / floor.tps,
            _ => f64::NAN,
        }
    }

    fn latency_ms(&self, q: f64) -> f64 {
        percentile(&self.api.latencies, q)
            .map(millis)
            .unwrap_or(f64::NAN)
    }
}

/// Runs the benchmark; the scratch database is dropped however it ends.
pub async fn run(args: Args) -> anyhow::Result<Vec<report::Row>> {
    if !args.spawn && args.token.is_none() {
        bail!(
            "give a token with --token or TICKITI_TOKEN for the api at {}, or use --spawn",
            args.api_url
        );
    }
    let version = pgbench::check_installed(&args.pgbench)?;
    let scratch = Scratch::create(&args.servers.database_url).await?;
    let result = with_scratch(&args, &scratch, &version).await;
    let name = scratch.name.clone();
    let dropped = scratch.drop_database().await;
    match (result, dropped) {
        (Ok(rows), dropped) => dropped.map(|()| rows),
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(drop_error)) => {
            eprintln!("warning: database {name} is left behind: {drop_error:#}");
            Err(error)
        }
    }
}

async fn with_scratch(
    args: &Args,
    scratch: &Scratch,
    version: &str,
) -> anyhow::Result<Vec<report::Row>> {
    let pool = scratch.pool(1).await?;
    sqlx::raw_sql(pgbench::CREATE_TABLE)
        .execute(&pool)
        .await
        .context("cannot create the pgbench table")?;

    let spawned = if args.spawn {
        Some(spawn::start(scratch, &args.servers.amqp_url, args.db_connections).await?)
    } else {
        None
    };
    let measured = async {
        let target = match &spawned {
            Some(api) => Target::new(&api.base_url, api.token.clone(), args.concurrency)?,
            None => Target::new(
                &args.api_url,
                args.token.clone().unwrap_or_default(),
                args.concurrency,
            )?,
        };
        tokio::select! {
            measured = measure(args, &target, spawned.as_ref(), scratch, version) => measured,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    }
    .await;
    if let Some(api) = spawned {
        api.stop().await;
    }
    if let Err(error) = sqlx::raw_sql(pgbench::DROP_TABLE).execute(&pool).await {
        eprintln!("warning: cannot drop the pgbench table: {error}");
    }
    pool.close().await;
    measured
}

async fn measure(
    args: &Args,
    target: &Target,
    spawned: Option<&SpawnedApi>,
    scratch: &Scratch,
    version: &str,
) -> anyhow::Result<Vec<report::Row>> {
    let concurrency = args.concurrency;
    let duration = Duration::from_secs(args.duration);
    let warmup = Duration::from_secs(args.warmup);
    match spawned {
        Some(api) => println!(
            "api-create: api spawned in-process at {} (database {}, bus prefix {}, pool {}, rate limit off)",
            api.base_url, scratch.name, api.prefix, args.db_connections
        ),
        None => println!(
            "api-create: api at {}; pgbench database {}",
            target.base_url(),
            scratch.name
        ),
    }
    println!(
        "concurrency {concurrency}, {}s per round (+{}s warm-up), {} round(s); {version}",
        args.duration, args.warmup, args.repeat
    );
    if cfg!(debug_assertions) && spawned.is_some() {
        println!(
            "warning: debug build; use `cargo run --release -p tickiti-bench -- api-create --spawn`"
        );
    }
    target.preflight().await?;
    let pgbench = Arc::new(Pgbench::new(
        args.pgbench.clone(),
        scratch.url.clone(),
        pgbench::ONE_ROW_INSERT,
        Vec::new(),
    )?);
    let floor = match spawned {
        Some(api) => Some(Arc::new(Pgbench::new(
            args.pgbench.clone(),
            scratch.url.clone(),
            pgbench::TICKET_CREATE_FLOOR,
            vec![
                ("org".to_owned(), api.organization_id.to_string()),
                (
                    "seq".to_owned(),
                    tickiti_store::organizations::sequence_name(api.organization_id),
                ),
            ],
        )?)),
        None => None,
    };

    println!();
    println!(
        "{:>5} {:>10} {:>8} {:>6} {:>8} {:>8} {:>8} {:>11} {:>9} {:>11} {:>9} {:>9}",
        "round",
        "api req/s",
        "ok",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        "pgbench tps",
        "pg avg ms",
        "api/pgbench",
        "floor tps",
        "api/floor"
    );
    let mut rows = Vec::new();
    for round in 1..=args.repeat {
        if !warmup.is_zero() {
            let warm = target.drive(concurrency, warmup).await;
            if warm.ok == 0 {
                bail!(
                    "warm-up created no ticket ({} errors): {}",
                    warm.errors,
                    warm.error_samples.join("; ")
                );
            }
        }
        let api = target.drive(concurrency, duration).await;
        let runner = pgbench.clone();
        let pg = tokio::task::spawn_blocking(move || runner.run(concurrency, duration))
            .await
            .context("pgbench task failed")??;
        let floor = match &floor {
            Some(floor) => {
                let runner = floor.clone();
                Some(
                    tokio::task::spawn_blocking(move || runner.run(concurrency, duration))
                        .await
                        .context("pgbench task failed")??,
                )
            }
            None => None,
        };
        let row = Row { api, pg, floor };
        println!(
            "{round:>5} {:>10.1} {:>8} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>11.1} {:>9} {:>10.1}% {:>9.1} {:>8.1}%",
            row.api.throughput(),
            row.api.ok,
            row.api.errors,
            row.latency_ms(0.50),
            row.latency_ms(0.99),
            row.latency_ms(1.0),
            row.pg.tps,
            row.pg
                .latency_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}")),
            row.ratio_percent(),
            row.floor.map_or(f64::NAN, |f| f.tps),
            row.floor_ratio_percent(),
        );
        rows.push(row);
    }

    let med = |f: &dyn Fn(&Row) -> f64| {
        median(&mut rows.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let api_rps = med(&|r| r.api.throughput());
    let p50 = med(&|r| r.latency_ms(0.50));
    let p99 = med(&|r| r.latency_ms(0.99));
    let max = med(&|r| r.latency_ms(1.0));
    let pg_tps = med(&|r| r.pg.tps);
    // Each round's ratio pairs an api run with the pgbench run right after it,
    // which cancels slow drift of the machine; report the median of those.
    let ratio = med(&Row::ratio_percent);
    let floor_tps = med(&|r| r.floor.map_or(f64::NAN, |f| f.tps));
    let floor_ratio = med(&Row::floor_ratio_percent);
    let ok: u64 = rows.iter().map(|r| r.api.ok).sum();
    let errors: u64 = rows.iter().map(|r| r.api.errors).sum();
    println!(
        "{:>5} {api_rps:>10.1} {:>8} {:>6} {p50:>8.2} {p99:>8.2} {max:>8.2} {pg_tps:>11.1} {:>9} {ratio:>10.1}% {floor_tps:>9.1} {floor_ratio:>8.1}%",
        "med", "", "", ""
    );
    let met = ratio >= TARGET_PERCENT;
    println!();
    println!(
        "target (ARCHITECTURE.md): api ≥ {TARGET_PERCENT:.0} % of pgbench → {ratio:.1} %: {}",
        if met { "met" } else { "NOT met" }
    );
    if errors > 0 {
        println!("{errors} request(s) failed; first ones:");
        for sample in rows.iter().flat_map(|r| &r.api.error_samples).take(5) {
            println!("  {sample}");
        }
    }
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "bench": "api-create",
            "spawned": spawned.is_some(),
            "concurrency": concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.repeat,
            "api_rps": round1(api_rps),
            "p50_ms": round2(p50),
            "p99_ms": round2(p99),
            "max_ms": round2(max),
            "pgbench_tps": round1(pg_tps),
            "ratio_pct": round1(ratio),
            "floor_tps": round1(floor_tps),
            "floor_ratio_pct": round1(floor_ratio),
            "target_pct": TARGET_PERCENT,
            "met": met,
            "ok": ok,
            "errors": errors,
        })
    );
    Ok(vec![
        report::Row::share(
            SCENARIO,
            "creates/s vs its statements in pgbench",
            api_rps,
            floor_tps,
            TARGET_FLOOR_SHARE,
        ),
        report::Row::share(
            SCENARIO,
            "creates/s vs a one-row insert",
            api_rps,
            pg_tps,
            TARGET_PERCENT / 100.0,
        ),
        report::Row::figure(SCENARIO, "create p99 (ms)", p99),
        report::Row::below(SCENARIO, "failed requests", errors as f64, 1.0, ""),
    ])
}
