//! What every benchmark sets up: a scratch database on the Postgres server,
//! the api started in this process against it, and the other services as
//! child processes (the binaries beside this one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use reqwest::Url;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use tickiti_api::config::{Config, Environment, RateLimit, WebhookConfig};
use tickiti_bus::{Bus, BusConfig};
use tickiti_domain::Ability;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The Postgres server and RabbitMQ every benchmark runs against.
#[derive(Debug, Clone, clap::Args)]
pub struct Servers {
    /// Postgres server: a scratch database is created there (and dropped at
    /// the end); the services under test use it.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// RabbitMQ; each run uses a bus prefix of its own.
    #[arg(long, env = "AMQP_URL", default_value = tickiti_bus::DEFAULT_AMQP_URL, hide_env_values = true)]
    pub amqp_url: String,
}

/// A database `tickiti_bench_<random>` made for one run; call [`Scratch::drop_database`] at the end.
#[derive(Debug)]
pub struct Scratch {
    server_url: String,
    /// The database's name.
    pub name: String,
    /// A URL of the database (the server URL with the path replaced).
    pub url: String,
}

impl Scratch {
    /// Creates the database on the server `server_url` points to (any database there will do).
    pub async fn create(server_url: &str) -> anyhow::Result<Scratch> {
        let name = format!("tickiti_bench_{}", Uuid::now_v7().simple());
        let mut url = Url::parse(server_url)
            .with_context(|| format!("--database-url {server_url:?} is not a URL"))?;
        url.set_path(&format!("/{name}"));
        let mut admin = PgConnection::connect(server_url)
            .await
            .with_context(|| format!("cannot connect to Postgres at {}", redact(server_url)))?;
        // The name is ours (hex digits), so splicing it into the statement is safe.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = admin.close().await;
        Ok(Scratch {
            server_url: server_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database, ending any session still using it (Postgres 13+).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.server_url)
            .await
            .with_context(|| format!("cannot connect to Postgres to drop {}", self.name))?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot drop database {}", self.name))?;
        let _ = admin.close().await;
        Ok(())
    }

    /// Opens a pool on the database.
    pub async fn pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
            .with_context(|| format!("cannot connect to {}", self.name))
    }
}

/// The api running in this process.
pub struct SpawnedApi {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// A `*` token of the bench organization's admin.
    pub token: String,
    /// The bus prefix it uses.
    pub prefix: String,
    /// The bench organization.
    pub organization_id: Uuid,
    api: tickiti_api::Api,
    pool: PgPool,
    amqp_url: String,
}

/// Migrates `scratch`, starts the api on a random local port with no rate
/// limit and a unique bus prefix, and makes an organization with a `*` token.
pub async fn start(
    scratch: &Scratch,
    amqp_url: &str,
    db_connections: u32,
) -> anyhow::Result<SpawnedApi> {
    start_with(scratch, amqp_url, db_connections, WebhookConfig::default()).await
}

/// [`start`] with webhook settings (a local receiver needs private networks allowed).
pub async fn start_with(
    scratch: &Scratch,
    amqp_url: &str,
    db_connections: u32,
    webhooks: WebhookConfig,
) -> anyhow::Result<SpawnedApi> {
    let prefix = format!("bench_{}", Uuid::now_v7().simple());
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: scratch.url.clone(),
        amqp_url: amqp_url.to_owned(),
        bus_prefix: prefix.clone(),
        environment: Environment::Development,
        master_key: None,
        rate_limit: RateLimit::Off,
        database_max_connections: db_connections,
        database_statement_timeout: std::time::Duration::from_secs(10),
        request_timeout: std::time::Duration::from_secs(30),
        realtime: Default::default(),
        access: Default::default(),
        worker_silence: std::time::Duration::from_secs(60),
    };
    // The api's own pool settings, so the bench measures what production runs.
    let pool = tickiti_api::app::connect_database(&config).await?;
    tickiti_store::migrate(&pool)
        .await
        .context("cannot migrate the bench database")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("cannot bind a local port")?;
    let api = tickiti_api::serve_with(
        listener,
        pool.clone(),
        config,
        webhooks,
        CancellationToken::new(),
    )?;
    let made = make_organization(&pool, "Bench").await;
    let spawned = SpawnedApi {
        base_url: format!("http://{}", api.addr),
        token: String::new(),
        prefix,
        organization_id: Uuid::nil(),
        api,
        pool,
        amqp_url: amqp_url.to_owned(),
    };
    match made {
        Ok(made) => Ok(SpawnedApi {
            token: made.token,
            organization_id: made.id,
            ..spawned
        }),
        Err(error) => {
            spawned.stop().await;
            Err(error)
        }
    }
}

/// An organization made for a bench, with a `*` token of its admin.
pub struct Organization {
    /// Its id.
    pub id: Uuid,
    /// Its admin, whom the token speaks for.
    pub admin_id: Uuid,
    /// The admin's `*` token.
    pub token: String,
}

/// Makes an organization the way sign-up does (its default perspectives
/// included), with an admin of a random address and a `*` token.
async fn make_organization(pool: &PgPool, name: &str) -> anyhow::Result<Organization> {
    let email = format!("bench-admin-{}@example.com", Uuid::now_v7().simple());
    let password = Uuid::now_v7().simple().to_string();
    let (id, admin_id) = tickiti_api::accounts::create_organization(pool, name, &email, &password)
        .await
        .map_err(|e| anyhow!("cannot create the organization {name}: {e:?}"))?;
    let (_, token) = tickiti_api::accounts::create_token(pool, &email, "bench", &[Ability::All])
        .await
        .map_err(|e| anyhow!("cannot create a token in {name}: {e:?}"))?;
    Ok(Organization {
        id,
        admin_id,
        token,
    })
}

impl SpawnedApi {
    /// Another organization beside the bench's own.
    pub async fn organization(&self, name: &str) -> anyhow::Result<Organization> {
        make_organization(&self.pool, name).await
    }

    /// Stops the api, closes its pool and deletes its exchanges (best effort).
    pub async fn stop(self) {
        self.stop_and_delete(&[]).await;
    }

    /// [`SpawnedApi::stop`], deleting these queues of the prefix too.
    pub async fn stop_and_delete(self, queues: &[String]) {
        self.api.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.api.finished)
            .await
            .is_err()
        {
            eprintln!("warning: the api did not stop within 10 s");
        }
        self.pool.close().await;
        let config = BusConfig {
            amqp_url: self.amqp_url,
            prefix: self.prefix.clone(),
            connection_name: "tickiti-bench-cleanup".into(),
        };
        let Some(bus) = Bus::connect_briefly(config, Duration::from_secs(5)).await else {
            eprintln!(
                "warning: RabbitMQ unreachable; exchanges of prefix {} left behind",
                self.prefix
            );
            return;
        };
        for queue in queues {
            if let Err(error) = bus.delete_queue(queue).await {
                eprintln!("warning: queue {queue} not deleted: {error}");
            }
        }
        if let Err(error) = bus.delete_topology().await {
            eprintln!(
                "warning: exchanges of prefix {} not deleted: {error}",
                self.prefix
            );
        }
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The service binary `name` beside this one, or `explicit`; fails with the
/// build command when it is missing.
pub fn sibling_binary(name: &str, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match explicit {
        Some(bin) => bin.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory beside this binary"))?
            .join(name),
    };
    if !bin.exists() {
        anyhow::bail!(
            "{} not found: build it with `cargo build --release -p {name}` or pass its path",
            bin.display()
        );
    }
    Ok(bin)
}

/// Resident memory of a process, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Linux reports CPU time in clock ticks of `USER_HZ`, 100 per second on
/// every architecture Linux supports today (`sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat_cpu(&stat)?.1)
}

/// CPU time used so far by every process whose command name is `name`
/// (`postgres`, `beam.smp`). A process that ends between two readings takes
/// its time with it, so compare readings over a phase where none should.
pub fn processes_cpu(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // ended meanwhile
        };
        if let Some((comm, cpu)) = stat_cpu(&stat)
            && comm == name
        {
            total += cpu;
        }
    }
    Some(total)
}

/// The command name and user + system CPU time of a `/proc/<pid>/stat` line.
fn stat_cpu(stat: &str) -> Option<(&str, Duration)> {
    // The command name is in parentheses and may hold spaces: fields are
    // counted after its ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // proc(5): utime and stime are fields 14 and 15; after the name, 12 and 13.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((
        comm,
        Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND),
    ))
}

/// CPU time every core of the machine has spent busy so far (all but idle
/// and I/O wait), from the first line of `/proc/stat`.
pub fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(Duration::from_secs_f64(busy as f64 / TICKS_PER_SECOND))
}

/// A service started as a child process; killed when dropped, however the
/// benchmark ends.
pub struct Child(pub std::process::Child);

impl Child {
    /// Starts `command` with its listeners on port 0 (the caller sets their
    /// variables to `127.0.0.1:0`) and waits until the child has logged the
    /// address of each of `listeners` (by the name it logs them under): the
    /// addresses, in that order. Nothing else can take the port meanwhile,
    /// as it could between probing for a free port and the child binding it.
    pub async fn spawn_listening(
        mut command: std::process::Command,
        listeners: &[&str],
    ) -> anyhow::Result<(Child, Vec<SocketAddr>)> {
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                format!("warn,{}=info", tickiti_telemetry::LISTENING_TARGET),
            )
            .stdout(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let stdout = child.stdout.take().context("no stdout to read")?;
        let child = Child(child);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Reads every line, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(listening) = tickiti_telemetry::parse_listening(&line) {
                    let _ = tx.send(listening);
                }
            }
        });
        let mut found: HashMap<String, SocketAddr> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !listeners.iter().all(|name| found.contains_key(*name)) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((name, address))) => {
                    found.insert(name, address);
                }
                Ok(None) => anyhow::bail!("{program} exited before it was listening"),
                Err(_) => {
                    anyhow::bail!("{program} did not log its listeners {listeners:?} within 30 s")
                }
            }
        }
        let addresses = listeners.iter().map(|name| found[*name]).collect();
        Ok((child, addresses))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Waits (up to 30 s) until `url` answers 2xx with a body `ready` accepts.
    pub async fn wait_ready(
        &mut self,
        url: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.0.try_wait() {
                anyhow::bail!("the child process exited early ({status})");
            }
            if let Ok(reply) = http.get(url).send().await
                && reply.status().is_success()
                && reply
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|body| ready(&body))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{url} did not answer ready within 30 s")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
