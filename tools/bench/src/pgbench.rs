//! The baseline: `pgbench` committing a one-row insert per transaction
//! (<https://www.postgresql.org/docs/current/pgbench.html>).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The target's baseline: one row per transaction, a payload about the size
/// of a short ticket. `gen_random_uuid()` is built in since Postgres 13.
pub const ONE_ROW_INSERT: &str =
    "INSERT INTO bench_insert (id, payload) VALUES (gen_random_uuid(), repeat('x', 200));\n";

/// The database floor of a ticket create: the statements `POST /tickets`
/// runs (token lookup, contact look-up, number, then the opening as one
/// statement: new contact, ticket, audit entry, first message, four outbox
/// events of about a kilobyte), in the api's schema, without HTTP, JSON or
/// the broker. Variables: `org` (organization id), `seq` (its ticket number
/// sequence). With `-M prepared` they are bind parameters.
pub const TICKET_CREATE_FLOOR: &str = r#"\set n random(1, 2000000000)
SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = sha256(:n::text::bytea);
SELECT id FROM contacts WHERE organization_id = :org AND lower(email) = lower('floor-' || :n::text || '@example.com');
SELECT nextval(:seq::text::regclass) AS number, code_prefix FROM organizations WHERE id = :org \gset
WITH contact AS (INSERT INTO contacts (id, organization_id, email, name) VALUES (gen_random_uuid(), :org, 'floor-' || :n::text || '-' || gen_random_uuid() || '@example.com', 'Floor') RETURNING id),
ticket AS (INSERT INTO tickets (id, organization_id, number, code, subject, status, priority, contact_id, tags) SELECT gen_random_uuid(), :org, :number, :code_prefix::text || '-' || :number::text, 'Bench ticket', 'new', 'normal', contact.id, '{}' FROM contact RETURNING id, contact_id),
audit AS (INSERT INTO ticket_audit (id, organization_id, ticket_id, action, changes) SELECT gen_random_uuid(), :org, ticket.id, 'ticket.created', '{}' FROM ticket),
message AS (INSERT INTO messages (id, organization_id, ticket_id, author_contact_id, visibility, body) SELECT gen_random_uuid(), :org, ticket.id, ticket.contact_id, 'public', repeat('m', 200) FROM ticket)
INSERT INTO outbox (id, organization_id, event_type, payload) SELECT gen_random_uuid(), :org, 'ticket.created', jsonb_build_object('data', repeat('x', 900)) FROM generate_series(1, 4);
"#;

/// The scratch table the script writes to.
pub const CREATE_TABLE: &str =
    "CREATE TABLE bench_insert (id uuid PRIMARY KEY, payload text NOT NULL)";

/// Drops the scratch table.
pub const DROP_TABLE: &str = "DROP TABLE IF EXISTS bench_insert";

/// A `pgbench` ready to run against one database.
#[derive(Debug)]
pub struct Pgbench {
    program: PathBuf,
    conninfo: String,
    script: PathBuf,
    defines: Vec<(String, String)>,
}

/// What one `pgbench` run reported.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchResult {
    /// Transactions per second, without the initial connection time.
    pub tps: f64,
    /// Average latency in milliseconds, when printed.
    pub latency_ms: Option<f64>,
}

/// Checks that `program` runs; returns its version line.
pub fn check_installed(program: &Path) -> anyhow::Result<String> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(output) => bail!(
            "`{} --version` failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "pgbench not found (`{}`): install the PostgreSQL client tools \
             (Debian: `apt-get install postgresql-client`) or pass --pgbench /path/to/pgbench",
            program.display()
        ),
        Err(error) => Err(error).with_context(|| format!("cannot run `{}`", program.display())),
    }
}

impl Pgbench {
    /// Writes `script` to a temporary file; `conninfo` is a libpq URI of the
    /// database holding its tables; `defines` are its `-D` variables.
    pub fn new(
        program: PathBuf,
        conninfo: String,
        script_text: &str,
        defines: Vec<(String, String)>,
    ) -> anyhow::Result<Pgbench> {
        let script = std::env::temp_dir().join(format!(
            "tickiti-bench-{}.sql",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::write(&script, script_text)
            .with_context(|| format!("cannot write {}", script.display()))?;
        Ok(Pgbench {
            program,
            conninfo,
            script,
            defines,
        })
    }

    /// Runs `pgbench -n -c clients -j 2 -T duration -f script -M prepared`
    /// (blocking: call it from `spawn_blocking`).
    pub fn run(&self, clients: u32, duration: Duration) -> anyhow::Result<PgbenchResult> {
        let threads = clients.min(2);
        let mut command = Command::new(&self.program);
        for (name, value) in &self.defines {
            command.arg("-D").arg(format!("{name}={value}"));
        }
        let output = command
            .arg("-n") // no vacuum of the standard tables: we use none of them
            .args(["-c", &clients.to_string()])
            .args(["-j", &threads.to_string()])
            .args(["-T", &duration.as_secs().to_string()])
            .arg("-f")
            .arg(&self.script)
            .args(["-M", "prepared"])
            .arg(&self.conninfo)
            .output()
            .with_context(|| format!("cannot run `{}`", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "pgbench failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        let tps = parse_tps(&stdout)
            .with_context(|| format!("no `tps = …` line in pgbench's output:\n{stdout}"))?;
        Ok(PgbenchResult {
            tps,
            latency_ms: parse_latency_ms(&stdout),
        })
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

/// The tps pgbench printed: the line `tps = N (without initial connection
/// time)` (Postgres 14+ prints only that one; older versions also print one
/// "including connections establishing", which we skip).
pub fn parse_tps(output: &str) -> Option<f64> {
    let value = |line: &str| -> Option<f64> {
        line.trim()
            .strip_prefix("tps = ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    output
        .lines()
        .find(|line| {
            line.contains("without initial connection time")
                || line.contains("excluding connections")
        })
        .and_then(value)
        .or_else(|| output.lines().find_map(value))
}

/// The `latency average = N ms` line.
fn parse_latency_ms(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        line.trim()
            .strip_prefix("latency average = ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_15_output() {
        let output = "pgbench (15.20 (Debian 15.20-0+deb12u1))\n\
            transaction type: /tmp/x.sql\n\
            number of transactions actually processed: 12345\n\
            number of failed transactions: 0 (0.000%)\n\
            latency average = 1.296 ms\n\
            initial connection time = 20.512 ms\n\
            tps = 2469.012345 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(2469.012345));
        assert_eq!(parse_latency_ms(output), Some(1.296));
        assert_eq!(parse_tps("nothing here"), None);
    }
}
