//! What every service's `main` shares: one call sets up logging (JSON lines
//! on stdout when `LOG_FORMAT=json`, human-readable otherwise, level from
//! `RUST_LOG`), and [`shutdown_signal`] waits for the signal to stop.
//! (Traces and metrics export arrive with the operations kit.)

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard output: a long-running service's logs.
    Stdout,
    /// Standard error: commands whose standard output is their answer.
    Stderr,
}

/// Installs the global subscriber for `service`; a second call is a no-op.
pub fn init(service: &str, output: Output) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}=info", service.replace('-', "_"))));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(move || -> Box<dyn std::io::Write> {
            match output {
                Output::Stdout => Box::new(std::io::stdout()),
                Output::Stderr => Box::new(std::io::stderr()),
            }
        });
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        tracing::info!(service, json, "logging initialised");
    }
}

/// The log target of [`listening`]: `RUST_LOG=warn,tickiti::listening=info`
/// keeps those lines whatever else is filtered out.
pub const LISTENING_TARGET: &str = "tickiti::listening";

/// Logs that a listener is serving, with the address it is bound to, so
/// whoever started the process with port 0 (the tests, the benchmark, a
/// supervisor) can read the port back with [`parse_listening`].
pub fn listening(listener: &str, addr: std::net::SocketAddr) {
    tracing::info!(target: LISTENING_TARGET, listener, %addr, "listening");
}

/// The listener name and address of a [`listening`] line of a JSON log
/// (`LOG_FORMAT=json`); `None` for any other line.
pub fn parse_listening(line: &str) -> Option<(String, std::net::SocketAddr)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    if entry["target"] != LISTENING_TARGET {
        return None;
    }
    let listener = entry["listener"].as_str()?.to_owned();
    let addr = entry["addr"].as_str()?.parse().ok()?;
    Some((listener, addr))
}

/// Resolves on SIGTERM (what `docker stop` sends) or Ctrl-C, whichever
/// comes first; on Ctrl-C alone where SIGTERM cannot be listened for.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
