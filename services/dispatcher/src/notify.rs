//! Notification e-mail (CONTRACT §8): a scan, once a second, for
//! notifications whose e-mail is due, sent over `SMTP_URL`.
//!
//! Each e-mail is held back `NOTIFY_EMAIL_DELAY` after its notification and
//! dropped if the person read the notification in the app meanwhile.
//! Claims are leases in Postgres (several dispatchers send different ones;
//! a dispatcher that dies mid-send leaves the e-mail to the next scan after
//! the lease), so an e-mail is sent once, and at worst, when a crash falls
//! between the server's acceptance and the write that records it, once
//! more with the same `Message-ID`, which mail clients take as one message.
//! Temporary failures are retried with backoff; a permanent refusal (an
//! SMTP 5xx) or the last attempt marks it failed.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;
use tickiti_domain::notification::NotificationKind;
use tickiti_store::notifications::{self, DueEmail, EmailOutcome};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::metrics::Scan;

/// How often due e-mails are looked for.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// E-mails claimed per scan.
const BATCH: i64 = 20;
/// How long a claimed e-mail is this dispatcher's (longer than a send).
const LEASE: Duration = Duration::from_secs(120);
/// Attempts before an e-mail is given up.
pub const MAX_ATTEMPTS: i32 = 8;
/// Delay before the first retry; doubled each attempt, at most [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// One SMTP conversation's limit.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends notification e-mail: the SMTP client, the sender and the templates.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
    templates: Environment<'static>,
}

impl Mailer {
    /// The mailer of `SMTP_URL`, `SMTP_FROM` and `TICKITI_PUBLIC_URL`.
    pub fn new(smtp_url: &str, from: &str, public_url: &str) -> anyhow::Result<Mailer> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("SMTP_FROM {from:?} is not an address: {e}"))?;
        let mut templates = Environment::new();
        // `.html` templates escape what they insert; `.txt` ones do not.
        templates.add_template(
            "notification.txt",
            include_str!("../templates/notification.txt"),
        )?;
        templates.add_template(
            "notification.html",
            include_str!("../templates/notification.html"),
        )?;
        Ok(Mailer {
            transport: transport(smtp_url)?,
            from,
            public_url: public_url.trim_end_matches('/').to_owned(),
            templates,
        })
    }

    /// The e-mail of one notification.
    pub fn compose(&self, due: &DueEmail) -> anyhow::Result<Message> {
        let kind: NotificationKind = due.kind.parse()?;
        let context = minijinja::context! {
            name => &due.name,
            headline => kind.headline(),
            code => &due.code,
            subject => &due.subject,
            link => format!("{}/tickets/{}", self.public_url, due.ticket_id),
            settings_link => format!("{}/notifications#preferences", self.public_url),
        };
        let text = self
            .templates
            .get_template("notification.txt")?
            .render(&context)?;
        let html = self
            .templates
            .get_template("notification.html")?
            .render(&context)?;
        let to = Mailbox::new(Some(due.name.clone()), due.email.parse()?);
        // The same notification always has the same Message-ID.
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "[{}] {} · {}",
                due.code,
                due.subject,
                kind.headline()
            ))
            .message_id(Some(format!("<notification-{}@{domain}>", due.id)))
            .header(header::Date::new(std::time::SystemTime::from(
                due.created_at,
            )))
            .multipart(MultiPart::alternative_plain_html(text, html))?;
        Ok(message)
    }

    async fn send(&self, message: Message) -> Result<(), lettre::transport::smtp::Error> {
        self.transport.send(message).await.map(|_| ())
    }
}

/// The SMTP transport of an `SMTP_URL`.
fn transport(smtp_url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(smtp_url).map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("SMTP_URL names no host"))?;
    let starttls = url
        .query_pairs()
        .any(|(key, value)| key == "tls" && value == "starttls");
    let mut builder = match (url.scheme(), starttls) {
        ("smtps", _) => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(host)?.port(url.port().unwrap_or(465))
        }
        ("smtp", true) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?
            .port(url.port().unwrap_or(587)),
        ("smtp", false) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(25)),
        (other, _) => anyhow::bail!("SMTP_URL: unknown scheme {other:?} (smtp or smtps)"),
    };
    if !url.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        builder = builder.credentials(Credentials::new(
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ));
    }
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

/// Scans until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    crate::scan::every(
        Scan::NotificationEmail,
        &ctx.metrics,
        SCAN_INTERVAL,
        BATCH,
        shutdown,
        || scan(&ctx),
    )
    .await;
}

/// Sends the e-mails due; how many it claimed.
pub async fn scan(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut conn = ctx.db.acquire().await?;
    let due =
        notifications::claim_emails(&mut conn, ctx.config.notify_email_delay, LEASE, BATCH).await?;
    let claimed = due.len();
    for email in due {
        let outcome = deliver(ctx.mailer.as_ref(), &email).await;
        match &outcome {
            EmailOutcome::Sent => {
                tracing::info!(notification.id = %email.id, "notification e-mailed")
            }
            EmailOutcome::Failed(error) | EmailOutcome::Retry { error, .. } => {
                tracing::warn!(notification.id = %email.id, attempt = email.attempts, %error, "notification e-mail failed");
            }
            EmailOutcome::Dropped | EmailOutcome::Unsent => {}
        }
        notifications::finish_email(&mut conn, email.id, &outcome).await?;
    }
    Ok(claimed)
}

/// Sends one e-mail (or says why not).
async fn deliver(mailer: Option<&Mailer>, email: &DueEmail) -> EmailOutcome {
    if email.read_at.is_some() {
        return EmailOutcome::Dropped;
    }
    let Some(mailer) = mailer else {
        return EmailOutcome::Unsent;
    };
    let message = match mailer.compose(email) {
        Ok(message) => message,
        // The address or a template is wrong: no retry makes it right.
        Err(error) => return EmailOutcome::Failed(format!("{error:#}")),
    };
    match mailer.send(message).await {
        Ok(()) => EmailOutcome::Sent,
        Err(error) if error.is_permanent() => EmailOutcome::Failed(error.to_string()),
        Err(error) if email.attempts >= MAX_ATTEMPTS => {
            EmailOutcome::Failed(format!("gave up after {MAX_ATTEMPTS} attempts: {error}"))
        }
        Err(error) => EmailOutcome::Retry {
            at: OffsetDateTime::now_utc() + retry_delay(email.attempts),
            error: error.to_string(),
        },
    }
}

/// The wait after failed attempt `attempt` (1, 2, …): 10 s doubling, at most 30 min.
fn retry_delay(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    RETRY_MIN.saturating_mul(1 << doublings).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(5), Duration::from_secs(160));
        assert_eq!(retry_delay(30), RETRY_MAX);
    }

    // The pooled transport starts its pool's housekeeping on the runtime.
    #[tokio::test]
    async fn smtp_urls_of_the_contract_are_understood() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.com:587?tls=starttls",
            "smtps://user:p%40ss@mail.example.com:465",
        ] {
            assert!(transport(url).is_ok(), "{url}");
        }
        assert!(transport("http://mail.example.com").is_err());
        assert!(transport("not a url").is_err());
    }

    #[tokio::test]
    async fn an_email_names_the_ticket_links_to_it_and_escapes_its_html() {
        let mailer = Mailer::new(
            "smtp://127.0.0.1:2525",
            "Tickiti <help@acme.example>",
            "https://desk.acme.example/",
        )
        .unwrap();
        let due = DueEmail {
            id: uuid::Uuid::from_u128(7),
            kind: "ticket.assigned".into(),
            ticket_id: uuid::Uuid::from_u128(9),
            code: "T-42".into(),
            subject: "<b>Printer</b> on fire".into(),
            email: "mia@acme.example".into(),
            name: "Mia".into(),
            read_at: None,
            attempts: 1,
            created_at: OffsetDateTime::now_utc(),
        };
        let raw = mailer.compose(&due).unwrap().formatted();
        let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            mail.subject(),
            Some("[T-42] <b>Printer</b> on fire · Assigned to you")
        );
        assert_eq!(
            mail.message_id(),
            Some("notification-00000000-0000-0000-0000-000000000007@acme.example")
        );
        let text = mail.body_text(0).unwrap();
        let html = mail.body_html(0).unwrap();
        let link = "https://desk.acme.example/tickets/00000000-0000-0000-0000-000000000009";
        // MiniJinja's HTML escaping writes `/` as `&#x2f;` (a browser reads it back).
        assert!(text.contains(link), "{text}");
        assert!(html.contains(&link.replace('/', "&#x2f;")), "{html}");
        assert!(
            text.contains("Assigned to you: T-42 <b>Printer</b> on fire"),
            "{text}"
        );
        assert!(
            html.contains("&lt;b&gt;Printer&lt;&#x2f;b&gt; on fire"),
            "the HTML part escapes: {html}"
        );
        assert!(!html.contains("<b>Printer"), "{html}");
    }
}
