//! Per-connection limits and their close codes (CONTRACT §5).
//!
//! Codes 1001 and 1009 are RFC 6455 §7.4.1's "going away" and "message too
//! big"; 1012 is IANA's "service restart"; the 4xxx codes are the range
//! RFC 6455 §7.4.2 leaves to applications, echoing HTTP statuses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Close codes.
pub mod close {
    /// Idle: no frame and no pong for the idle timeout; also server shutdown.
    pub const GOING_AWAY: u16 = 1001;
    /// A client frame over [`super::MAX_CLIENT_FRAME`].
    pub const TOO_BIG: u16 = 1009;
    /// This process may have missed events (its broker queue was gone): reconnect.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Missing, forged or expired token (also when it expires on an open
    /// socket), or the service is not (or no longer) paired.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Unsent frames passed [`super::MAX_OUTBOUND_BYTES`]: the client reads too slowly.
    pub const TOO_SLOW: u16 = 4008;
    /// No hello within the hello timeout.
    pub const HELLO_TIMEOUT: u16 = 4408;
    /// More than [`super::MAX_FRAMES_PER_SECOND`] client frames in a second.
    pub const FLOOD: u16 = 4029;
    /// The server has too many sockets already.
    pub const BUSY: u16 = 1013;
}

/// Unsent bytes a socket may have queued before it is closed with 4008.
pub const MAX_OUTBOUND_BYTES: usize = 1024 * 1024;
/// Largest client frame; a larger one closes with 1009.
pub const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// Client frames allowed per second; one more closes with 4029.
pub const MAX_FRAMES_PER_SECOND: u32 = 20;
/// Default: no frame and no pong for this long closes with 1001.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default: the server pings this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default: the hello must arrive within this time, or 4408.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Timing of one socket's life (the contract's values unless a test shortens them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// See [`HELLO_TIMEOUT`].
    pub hello_timeout: Duration,
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            hello_timeout: HELLO_TIMEOUT,
            ping_interval: PING_INTERVAL,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Counts client frames in one-second windows.
#[derive(Debug)]
pub struct FloodGuard {
    window_start: Instant,
    count: u32,
}

impl FloodGuard {
    /// A guard whose first window starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            count: 0,
        }
    }

    /// Counts a frame received at `now`; true when it is one too many.
    pub fn hit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count > MAX_FRAMES_PER_SECOND
    }
}

/// The bytes queued for one socket and not yet written to it.
#[derive(Debug, Default)]
pub struct OutboundBudget {
    pending: AtomicUsize,
}

impl OutboundBudget {
    /// Counts `bytes` more as queued; false when that passes [`MAX_OUTBOUND_BYTES`]
    /// (the frame is then not queued and the socket must close with 4008).
    pub fn reserve(&self, bytes: usize) -> bool {
        let before = self.pending.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > MAX_OUTBOUND_BYTES {
            self.pending.fetch_sub(bytes, Ordering::AcqRel);
            false
        } else {
            true
        }
    }

    /// `bytes` were written to the socket.
    pub fn sent(&self, bytes: usize) {
        self.pending.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes queued now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_values() {
        assert_eq!(MAX_OUTBOUND_BYTES, 1 << 20);
        assert_eq!(MAX_CLIENT_FRAME, 16 << 10);
        let timing = Timing::default();
        assert_eq!(timing.idle_timeout, Duration::from_secs(60));
        assert_eq!(timing.ping_interval, Duration::from_secs(25));
        assert_eq!(timing.hello_timeout, Duration::from_secs(5));
        assert!(timing.ping_interval < timing.idle_timeout);
    }

    #[test]
    fn twenty_frames_a_second_pass_the_twenty_first_does_not() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(start);
        for _ in 0..MAX_FRAMES_PER_SECOND {
            assert!(!guard.hit(start));
        }
        assert!(guard.hit(start + Duration::from_millis(900)));
        // A new second, a new budget.
        let mut guard = FloodGuard::new(start);
        for i in 0..60u64 {
            // 10 frames a second for 6 seconds.
            assert!(!guard.hit(start + Duration::from_millis(i * 100)));
        }
    }

    #[test]
    fn outbound_budget_refuses_past_one_mebibyte() {
        let budget = OutboundBudget::default();
        assert!(budget.reserve(MAX_OUTBOUND_BYTES - 10));
        assert!(!budget.reserve(11));
        assert_eq!(budget.pending(), MAX_OUTBOUND_BYTES - 10);
        budget.sent(MAX_OUTBOUND_BYTES - 10);
        assert!(budget.reserve(11));
    }
}
