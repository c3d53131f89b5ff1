//! A real SMTP receiver for tests: Python's `aiosmtpd` on a loopback port
//! the kernel picks, writing each message it accepts into a Maildir that
//! the test reads (`scripts/test` installs Debian's `python3-aiosmtpd`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::poll_until;

/// Binds port 0 (no race for a free port), prints the port it got, serves.
const SERVER: &str = r#"
import asyncio, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

async def main():
    handler = Mailbox(sys.argv[1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// Debian's Python, where `python3-aiosmtpd` installs (a `python3` of
/// pyenv's first on the PATH would not see it), else whichever is first.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A running receiver; stopped when dropped.
pub struct SmtpReceiver {
    /// `smtp://127.0.0.1:PORT`, for `SMTP_URL`.
    pub url: String,
    maildir: PathBuf,
    _child: Child,
}

impl SmtpReceiver {
    /// Starts a receiver with an empty Maildir of its own.
    pub async fn start() -> SmtpReceiver {
        let maildir = std::env::temp_dir().join(format!("tickiti-smtp-{}", uuid::Uuid::new_v4()));
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SERVER)
            .arg(&maildir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (with aiosmtpd: apt-get install python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("aiosmtpd prints its port")
        .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("aiosmtpd did not start: {line:?}"));
        SmtpReceiver {
            url: format!("smtp://127.0.0.1:{port}"),
            maildir,
            _child: child,
        }
    }

    /// Every message received so far, raw, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = dir
            .filter_map(Result::ok)
            .map(|e| {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read(path).ok())
            .collect()
    }

    /// Waits until at least `count` messages arrived (or `timeout`); returns them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        poll_until(timeout, || async { self.messages() }, |m| m.len() >= count).await
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}
