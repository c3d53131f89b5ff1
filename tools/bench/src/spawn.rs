//! A scratch database on the Postgres server, and the api started in this
//! process against it.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use reqwest::Url;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use tickiti_api::config::{Config, Environment, RateLimit};
use tickiti_bus::{Bus, BusConfig};
use tickiti_domain::Ability;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
        realtime: Default::default(),
    };
    // The api's own pool settings, so the bench measures what production runs.
    let pool = tickiti_api::app::connect_database(&config).await?;
    tickiti_store::MIGRATOR
        .run(&pool)
        .await
        .context("cannot migrate the bench database")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("cannot bind a local port")?;
    let api = tickiti_api::serve(listener, pool.clone(), config, CancellationToken::new())?;
    let email = format!("bench-admin-{}@example.com", Uuid::now_v7().simple());
    let password = Uuid::now_v7().simple().to_string();
    let made = async {
        let (organization_id, _) =
            tickiti_api::admin::create_organization(&pool, "Bench", &email, &password)
                .await
                .map_err(|e| anyhow!("cannot create the bench organization: {e:?}"))?;
        let (_, token) = tickiti_api::admin::create_token(&pool, &email, "bench", &[Ability::All])
            .await
            .map_err(|e| anyhow!("cannot create the bench token: {e:?}"))?;
        anyhow::Ok((organization_id, token))
    }
    .await;
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
        Ok((organization_id, token)) => Ok(SpawnedApi {
            token,
            organization_id,
            ..spawned
        }),
        Err(error) => {
            spawned.stop().await;
            Err(error)
        }
    }
}

impl SpawnedApi {
    /// Stops the api, closes its pool and deletes its exchanges (best effort).
    pub async fn stop(self) {
        self.api.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.api.finished)
            .await
            .is_err()
        {
            eprintln!("warning: the api did not stop within 10 s");
        }
        self.pool.close().await;
        let cancel = CancellationToken::new();
        let bus = Bus::start(
            BusConfig {
                amqp_url: self.amqp_url,
                prefix: self.prefix.clone(),
                connection_name: "tickiti-bench-cleanup".into(),
            },
            cancel.clone(),
        );
        if bus.wait_connected(Duration::from_secs(5)).await {
            if let Err(error) = bus.delete_topology().await {
                eprintln!(
                    "warning: exchanges of prefix {} not deleted: {error}",
                    self.prefix
                );
            }
        } else {
            eprintln!(
                "warning: RabbitMQ unreachable; exchanges of prefix {} left behind",
                self.prefix
            );
        }
        cancel.cancel();
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
