//! Seeds one organization with a helpdesk's history by `COPY`: agents,
//! queues, contacts, tickets spread over three years (recent ones mostly
//! open, old ones mostly closed), five messages each on average, tags, and
//! service-level clocks on the open ones (some breached). Deterministic: the
//! same size gives the same data.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt as _;
use tickiti_domain::sla::{ClockView, Metric, State};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::{NoContext, Timestamp, Uuid};

use crate::spawn::Organization;

/// The word the search measures look for: it is in the subjects of
/// [`NEEDLE_HITS`] tickets and in a message of as many others, whatever the
/// size, as an order number or a customer's name would be.
pub const NEEDLE: &str = "zephyr";
/// Tickets whose subject holds [`NEEDLE`] (and as many whose messages do).
const NEEDLE_HITS: u64 = 25;
/// Messages of the one long ticket (the newest).
pub const LONG_TICKET_MESSAGES: u64 = 200;
/// Agents besides the admin.
const AGENTS: usize = 19;
const QUEUES: usize = 8;
const TAGS: usize = 30;
/// The history the tickets are spread over.
const HISTORY: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
/// Tickets younger than this are mostly still open.
const RECENT: Duration = Duration::from_secs(14 * 24 * 3600);
/// Rows sent per `COPY` chunk (and per progress line).
const CHUNK_TICKETS: u64 = 20_000;

/// What the measures need to know of a seeded organization.
pub struct Seeded {
    /// Its queues.
    pub queues: Vec<Uuid>,
    /// Its agents, the admin first.
    pub agents: Vec<Uuid>,
    /// The ticket with [`LONG_TICKET_MESSAGES`] messages.
    pub long_ticket: Uuid,
}

/// Seeds `org` with `tickets` tickets; `label` names it in the progress line.
pub async fn organization(
    pool: &PgPool,
    org: &Organization,
    tickets: u64,
    label: &str,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(tickets);
    let words = vocabulary();
    let code_prefix: String =
        sqlx::query_scalar("SELECT code_prefix FROM organizations WHERE id = $1")
            .bind(org.id)
            .fetch_one(pool)
            .await
            .context("the organization to seed")?;

    let mut agents = vec![org.admin_id];
    agents.extend((0..AGENTS).map(|_| Uuid::now_v7()));
    sqlx::query(
        "INSERT INTO users (id, organization_id, email, name, password_hash, role)
         SELECT id, $2, 'agent-' || id || '@example.com', 'Agent ' || n, '!', 'agent'
         FROM UNNEST($1::uuid[]) WITH ORDINALITY AS a(id, n)",
    )
    .bind(&agents[1..])
    .bind(org.id)
    .execute(pool)
    .await
    .context("seeding agents")?;
    let queues: Vec<Uuid> = (0..QUEUES).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO queues (id, organization_id, name)
         SELECT id, $2, 'Queue ' || n FROM UNNEST($1::uuid[]) WITH ORDINALITY AS q(id, n)",
    )
    .bind(&queues)
    .bind(org.id)
    .execute(pool)
    .await
    .context("seeding queues")?;

    let now = OffsetDateTime::now_utc();
    let contacts: Vec<Uuid> = (0..(tickets / 4).max(100))
        .map(|_| Uuid::now_v7())
        .collect();
    let mut rows = String::new();
    for (n, id) in contacts.iter().enumerate() {
        let _ = writeln!(
            rows,
            "{id}\t{}\tcustomer-{n}-{}@example.com\tCustomer {n}\t{}\t{}",
            org.id,
            org.id.simple(),
            stamp(now - HISTORY),
            stamp(now - HISTORY)
        );
    }
    copy(
        pool,
        "COPY contacts (id, organization_id, email, name, created_at, updated_at) FROM STDIN",
        rows,
    )
    .await?;

    let needle_every = (tickets / NEEDLE_HITS).max(1);
    let step = HISTORY / u32::try_from(tickets.max(1)).unwrap_or(u32::MAX);
    let mut long_ticket = Uuid::nil();
    let (mut ticket_rows, mut message_rows, mut clock_rows) =
        (String::new(), String::new(), String::new());
    let mut messages_total = 0_u64;
    for number in 1..=tickets {
        let created_at = now - HISTORY + step * u32::try_from(number).unwrap_or(u32::MAX);
        let age = now - created_at;
        let recent = age < RECENT;
        let updated_at = if recent {
            created_at + (age * rng.gen_range(0.0..1.0_f64))
        } else {
            created_at + RECENT.mul_f64(rng.gen_range(0.0..1.0))
        };
        let id = v7_at(created_at, &mut rng);
        let status = status(&mut rng, recent);
        let assignee = if rng.gen_bool(if status == "new" { 0.7 } else { 0.15 }) {
            None
        } else {
            Some(agents[rng.gen_range(0..agents.len())])
        };
        let queue = rng.gen_bool(0.95).then(|| queues[rng.gen_range(0..QUEUES)]);
        let tags: Vec<String> = (0..rng.gen_range(0..=2))
            .map(|_| format!("tag-{}", rng.gen_range(0..TAGS)))
            .collect();
        let mut subject = sentence(&mut rng, &words, 4..8);
        if number.is_multiple_of(needle_every) {
            subject.push(' ');
            subject.push_str(NEEDLE);
        }
        let contact = contacts[rng.gen_range(0..contacts.len())];
        let _ = writeln!(
            ticket_rows,
            "{id}\t{}\t{number}\t{code_prefix}-{number}\t{subject}\t{status}\t{}\t{}\t{}\t{contact}\t{{{}}}\t{}\t{}",
            org.id,
            priority(&mut rng),
            queue.map_or("\\N".to_owned(), |q| q.to_string()),
            assignee.map_or("\\N".to_owned(), |a| a.to_string()),
            tags.join(","),
            stamp(created_at),
            stamp(updated_at),
        );

        let messages = if number == tickets {
            long_ticket = id;
            LONG_TICKET_MESSAGES
        } else {
            rng.gen_range(1..=9)
        };
        let needle_message = (number + needle_every / 2).is_multiple_of(needle_every);
        for m in 0..messages {
            // Spread between the ticket's creation and its last activity.
            let at = if messages == 1 {
                created_at
            } else {
                created_at + (updated_at - created_at) * (m as f64 / (messages - 1) as f64)
            };
            let mut body = sentence(&mut rng, &words, 12..40);
            if needle_message && m == messages / 2 {
                body.push(' ');
                body.push_str(NEEDLE);
            }
            let (user, contact_author) = if m % 2 == 0 {
                ("\\N".to_owned(), contact.to_string())
            } else {
                (assignee.unwrap_or(agents[0]).to_string(), "\\N".to_owned())
            };
            let visibility = if rng.gen_bool(0.1) && m % 2 == 1 {
                "internal"
            } else {
                "public"
            };
            let _ = writeln!(
                message_rows,
                "{}\t{}\t{id}\t{user}\t{contact_author}\t{visibility}\t{body}\t{}",
                v7_at(at, &mut rng),
                org.id,
                stamp(at)
            );
        }
        messages_total += messages;

        if matches!(status, "new" | "open" | "pending" | "on_hold") {
            let within = Duration::from_secs(8 * 3600);
            let due_at = created_at + within;
            let breached = due_at < now && rng.gen_bool(0.3);
            let view = ClockView {
                metric: Metric::Resolution,
                due_at: Some(due_at),
                state: if breached {
                    State::Breached
                } else {
                    State::Running
                },
                warned_at: None,
                breached_at: breached.then_some(due_at),
                fulfilled_at: None,
            };
            let _ = writeln!(
                clock_rows,
                "{id}\tresolution\t{}\t1\t{}\t0\t{}\t{}\t{}\t{}",
                org.id,
                within.as_millis(),
                stamp(created_at),
                stamp(due_at),
                if breached {
                    stamp(due_at)
                } else {
                    "\\N".to_owned()
                },
                serde_json::to_string(&view)?,
            );
        }

        if number.is_multiple_of(CHUNK_TICKETS) || number == tickets {
            copy(
                pool,
                "COPY tickets (id, organization_id, number, code, subject, status, priority, \
                 queue_id, assignee_id, contact_id, tags, created_at, updated_at) FROM STDIN",
                std::mem::take(&mut ticket_rows),
            )
            .await?;
            copy(
                pool,
                "COPY messages (id, organization_id, ticket_id, author_user_id, author_contact_id, \
                 visibility, body, created_at) FROM STDIN",
                std::mem::take(&mut message_rows),
            )
            .await?;
            copy(
                pool,
                "COPY sla_clocks (ticket_id, metric, organization_id, cycle, within_ms, spent_ms, \
                 running_since, due_at, breached_at, view) FROM STDIN",
                std::mem::take(&mut clock_rows),
            )
            .await?;
            progress(label, number, tickets, messages_total, started);
        }
    }
    eprintln!();
    // New tickets continue the numbering.
    sqlx::query("SELECT setval($1::text::regclass, $2)")
        .bind(tickiti_store::organizations::sequence_name(org.id))
        .bind(i64::try_from(tickets).unwrap_or(i64::MAX))
        .execute(pool)
        .await
        .context("moving the ticket number sequence on")?;
    Ok(Seeded {
        queues,
        agents,
        long_ticket,
    })
}

/// Brings the tables to the state a running installation is in (visibility
/// map set, statistics current, GIN pending lists merged), as autovacuum
/// would after a while.
pub async fn settle(pool: &PgPool) -> anyhow::Result<()> {
    eprintln!("vacuuming and analysing the seeded tables");
    sqlx::query("VACUUM ANALYZE contacts, tickets, messages, sla_clocks, users, queues")
        .execute(pool)
        .await
        .context("VACUUM ANALYZE")?;
    Ok(())
}

async fn copy(pool: &PgPool, statement: &str, rows: String) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = pool
        .copy_in_raw(statement)
        .await
        .with_context(|| statement.to_owned())?;
    copy.send(rows.into_bytes()).await?;
    copy.finish().await.with_context(|| statement.to_owned())?;
    Ok(())
}

/// A one-line progress bar on stderr.
fn progress(label: &str, done: u64, total: u64, messages: u64, started: Instant) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH / total.max(1)) as usize;
    eprint!(
        "\rseeding {label}: [{}{}] {done}/{total} tickets, {messages} messages, {:.0} s",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        started.elapsed().as_secs_f64()
    );
}

/// `COPY`'s text form of a time.
fn stamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A UUID v7 of the given time, as the api makes them.
fn v7_at(t: OffsetDateTime, rng: &mut StdRng) -> Uuid {
    let nanos = t.unix_timestamp_nanos();
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    let mut id = *Uuid::new_v7(Timestamp::from_unix(NoContext, secs, subsec)).as_bytes();
    // The random part from the seeded generator, so runs repeat.
    rng.fill(&mut id[8..]);
    id[8] = (id[8] & 0x3f) | 0x80;
    Uuid::from_bytes(id)
}

fn status(rng: &mut StdRng, recent: bool) -> &'static str {
    let p: f64 = rng.gen_range(0.0..1.0);
    let table: &[(f64, &str)] = if recent {
        &[
            (0.25, "new"),
            (0.65, "open"),
            (0.80, "pending"),
            (0.85, "on_hold"),
            (0.95, "solved"),
            (1.0, "closed"),
        ]
    } else {
        &[
            (0.01, "new"),
            (0.02, "open"),
            (0.025, "pending"),
            (0.03, "on_hold"),
            (0.15, "solved"),
            (1.0, "closed"),
        ]
    };
    table
        .iter()
        .find(|(upto, _)| p < *upto)
        .map_or("closed", |(_, s)| s)
}

fn priority(rng: &mut StdRng) -> &'static str {
    match rng.gen_range(0..20) {
        0..4 => "low",
        4..16 => "normal",
        16..19 => "high",
        _ => "urgent",
    }
}

/// Eight thousand made-up words of three syllables.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 20] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "de", "fi", "gu", "ha", "jo", "ke", "li",
        "mo", "nu", "pa", "re", "so",
    ];
    let mut words = Vec::with_capacity(8000);
    for a in SYLLABLES {
        for b in SYLLABLES {
            for c in SYLLABLES {
                words.push(format!("{a}{b}{c}"));
            }
        }
    }
    words
}

fn sentence(rng: &mut StdRng, words: &[String], len: std::ops::Range<usize>) -> String {
    let n = rng.gen_range(len);
    let mut s = String::with_capacity(n * 7);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&words[rng.gen_range(0..words.len())]);
    }
    s
}
