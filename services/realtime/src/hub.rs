//! The hub: every socket of this process by organization, each
//! organization's ring, the replicated lock table and the current pairing.
//!
//! Ordering: a frame is numbered, stored in the ring and queued to every
//! socket of its organization under that organization's mutex, and a new
//! socket gets its welcome and its replay under the same mutex before it is
//! added. So a socket sees offsets in increasing order, with no gap between
//! the replay and the live frames and nothing twice.
//!
//! Memory: a socket's queue is unbounded as a channel but bounded in bytes
//! by its [`OutboundBudget`]: a frame that would pass 1 MiB closes the socket
//! with 4008 instead of being queued. Rings are bounded by count and bytes,
//! and an organization without sockets is forgotten after a while.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tickiti_crypto::realtime::{BrowserClaims, TokenError, verify_token};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::limits::{OutboundBudget, close};
use crate::locks::{Claim, Lock, LockChange, LockTable, LockUser, Release};
use crate::protocol::{Audience, EventFrame, Resume, Welcome};
use crate::ring::Ring;

/// An organization without sockets keeps its ring this long (for resumes).
const ORG_IDLE_KEEP: Duration = Duration::from_secs(10 * 60);
/// Event ids remembered to drop the duplicates at-least-once delivery makes.
const RECENT_IDS: usize = 8192;

/// The current pairing: which install's node key signs browser tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// The install (pairing) id.
    pub install_id: Uuid,
    /// The node key.
    pub node_key: [u8; 32],
}

impl std::fmt::Debug for Binding {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("install_id", &self.install_id)
            .finish_non_exhaustive()
    }
}

/// A serialized frame and who may see it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The JSON text, shared by every socket it goes to.
    pub text: Utf8Bytes,
    /// Who may see it.
    pub audience: Audience,
}

/// One connected, authenticated socket.
#[derive(Debug)]
pub struct Peer {
    /// Process-unique number.
    pub id: u64,
    /// `<process id>:<id>`: names the socket in lock messages.
    pub conn: String,
    /// What its token says.
    pub claims: BrowserClaims,
    budget: OutboundBudget,
    tx: mpsc::UnboundedSender<(Utf8Bytes, usize)>,
    close_code: AtomicU16,
    closed: CancellationToken,
}

impl Peer {
    /// Whether this socket may see frames for `audience`.
    pub fn sees(&self, audience: &Audience) -> bool {
        match audience {
            Audience::Scope(scope) => self.claims.has_scope(scope),
            Audience::User(user) => *user == self.claims.sub,
            Audience::ScopeOrUsers(scope, users) => {
                self.claims.has_scope(scope) || users.contains(&self.claims.sub)
            }
        }
    }

    /// Queues a frame; a frame that would pass the outbound budget closes the socket with 4008.
    pub fn send(&self, text: &Utf8Bytes) {
        // The code is set before the token is cancelled; an atomic load is
        // cheaper than `is_cancelled` (a mutex) once per socket and frame.
        if self.close_code() != 0 {
            return;
        }
        let size = text.len();
        if !self.budget.reserve(size) {
            self.close(close::TOO_SLOW);
            return;
        }
        if self.tx.send((text.clone(), size)).is_err() {
            self.budget.sent(size);
        }
    }

    /// The writer wrote `bytes` to the socket.
    pub fn sent(&self, bytes: usize) {
        self.budget.sent(bytes);
    }

    /// Asks the connection to close with `code` (the first code asked for wins).
    pub fn close(&self, code: u16) {
        let _ = self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.closed.cancel();
    }

    /// The code the socket is closing with (0 while open).
    pub fn close_code(&self) -> u16 {
        self.close_code.load(Ordering::Acquire)
    }

    /// Resolves once [`Peer::close`] was called.
    pub async fn closing(&self) {
        self.closed.cancelled().await;
    }
}

struct OrgState {
    ring: Ring<Frame>,
    peers: HashMap<u64, Arc<Peer>>,
    empty_since: Option<Instant>,
}

/// Bounded memory of the event ids seen lately.
#[derive(Default)]
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl RecentIds {
    /// True the first time an id is seen.
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events taken from the events exchange (after deduplication).
    pub events: AtomicU64,
    /// Frames queued to sockets.
    pub frames: AtomicU64,
    /// Sockets closed by the server, all codes together.
    pub server_closes: AtomicU64,
}

/// Ring sizes per organization.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Frames kept.
    pub frames: usize,
    /// Bytes kept.
    pub bytes: usize,
}

/// Everything the sockets of this process share.
pub struct Hub {
    node: String,
    ring_limits: RingLimits,
    orgs: Mutex<HashMap<Uuid, Arc<Mutex<OrgState>>>>,
    locks: Mutex<LockTable>,
    binding: RwLock<Option<Arc<Binding>>>,
    recent: Mutex<RecentIds>,
    next_id: AtomicU64,
    connections: AtomicUsize,
    /// Counters.
    pub metrics: Metrics,
}

/// A std mutex whose holder panicked is still usable: every critical section
/// here leaves the data consistent at each step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The service is not paired: no token is valid.
    #[error("this realtime service is not paired")]
    NotPaired,
    /// The token is malformed, forged, expired or from another pairing.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Signed by this key but for another install id.
    #[error("token of another pairing")]
    OtherPairing,
}

#[derive(Serialize)]
struct LockData<'a> {
    ticket_id: Uuid,
    user: &'a LockUser,
    expires_at: String,
}

impl<'a> LockData<'a> {
    fn of(lock: &'a Lock) -> Self {
        Self {
            ticket_id: lock.ticket_id,
            user: &lock.user,
            expires_at: rfc3339_ms(lock.expires_at_ms),
        }
    }
}

/// `lock.acquired` for a lock held before the socket joined (no offset).
fn held_lock_frame(held: &Lock) -> String {
    serde_json::json!({ "type": "event", "event": "lock.acquired", "data": LockData::of(held) })
        .to_string()
}

impl Hub {
    /// An empty hub for the process `node`.
    pub fn new(node: String, ring_limits: RingLimits) -> Self {
        Self {
            node,
            ring_limits,
            orgs: Mutex::new(HashMap::new()),
            locks: Mutex::new(LockTable::default()),
            binding: RwLock::new(None),
            recent: Mutex::new(RecentIds::default()),
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            metrics: Metrics::default(),
        }
    }

    /// This process's id (in lock messages).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Authenticated sockets now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// The current pairing.
    pub fn binding(&self) -> Option<Arc<Binding>> {
        self.binding
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs a new pairing (or none). Sockets authenticated under another
    /// pairing are closed with 4401: unbinding invalidates every token at once.
    pub fn set_binding(&self, binding: Option<Binding>) {
        let new = binding.map(Arc::new);
        {
            let mut current = self
                .binding
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *current == new {
                return;
            }
            *current = new.clone();
        }
        let keep = new.as_ref().map(|b| b.install_id);
        tracing::info!(install_id = ?keep, "pairing changed");
        self.for_each_peer(|peer| {
            if Some(peer.claims.iid) != keep {
                peer.close(close::UNAUTHORIZED);
            }
        });
    }

    /// Checks a hello's token against the current pairing at `now` (Unix seconds).
    pub fn authenticate(&self, token: &str, now: i64) -> Result<BrowserClaims, AuthError> {
        let binding = self.binding().ok_or(AuthError::NotPaired)?;
        let claims = verify_token(&binding.node_key, token, now)?;
        if claims.iid != binding.install_id {
            return Err(AuthError::OtherPairing);
        }
        Ok(claims)
    }

    fn org(&self, org: Uuid) -> Arc<Mutex<OrgState>> {
        lock(&self.orgs)
            .entry(org)
            .or_insert_with(|| {
                Arc::new(Mutex::new(OrgState {
                    ring: Ring::new(self.ring_limits.frames, self.ring_limits.bytes),
                    peers: HashMap::new(),
                    empty_since: None,
                }))
            })
            .clone()
    }

    fn existing_org(&self, org: Uuid) -> Option<Arc<Mutex<OrgState>>> {
        lock(&self.orgs).get(&org).cloned()
    }

    /// Adds an authenticated socket: queues its welcome and, when it resumes
    /// and the ring still holds everything it missed, every missed frame.
    pub fn join(
        &self,
        claims: BrowserClaims,
        resume: Option<&Resume>,
    ) -> (Arc<Peer>, mpsc::UnboundedReceiver<(Utf8Bytes, usize)>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let org_id = claims.org;
        let peer = Arc::new(Peer {
            id,
            conn: format!("{}:{id}", self.node),
            claims,
            budget: OutboundBudget::default(),
            tx,
            close_code: AtomicU16::new(0),
            closed: CancellationToken::new(),
        });
        let org = self.org(org_id);
        let mut state = lock(&org);
        {
            let replay = resume.and_then(|r| state.ring.since(&r.epoch, r.offset));
            let recovered = resume.map(|_| replay.is_some());
            let welcome = Welcome {
                kind: "welcome",
                epoch: state.ring.epoch(),
                offset: state.ring.last_offset(),
                recovered,
            };
            peer.send(&Utf8Bytes::from(
                serde_json::to_string(&welcome).unwrap_or_default(),
            ));
            if let Some(frames) = replay {
                for frame in frames {
                    if peer.sees(&frame.audience) {
                        peer.send(&frame.text);
                    }
                }
            }
            // A tab that opens while a colleague types is told who holds
            // what: these frames carry no offset (they are not in the ring).
            // The lock table is taken inside the org's mutex, never the other
            // way round, so no claim falls between this and the insert below.
            if peer.sees(&Audience::Scope(tickiti_crypto::realtime::scope::TICKETS)) {
                for held in lock(&self.locks).of_org(org_id, now_ms()) {
                    peer.send(&Utf8Bytes::from(held_lock_frame(&held)));
                }
            }
        }
        state.peers.insert(id, peer.clone());
        state.empty_since = None;
        drop(state);
        self.connections.fetch_add(1, Ordering::Relaxed);
        (peer, rx)
    }

    /// Removes a socket.
    pub fn leave(&self, peer: &Peer) {
        if let Some(org) = self.existing_org(peer.claims.org) {
            let mut state = lock(&org);
            if state.peers.remove(&peer.id).is_some() {
                self.connections.fetch_sub(1, Ordering::Relaxed);
            }
            if state.peers.is_empty() {
                state.empty_since = Some(Instant::now());
            }
        }
    }

    /// Numbers a frame, keeps it in the organization's ring and queues it to
    /// every socket of the organization that may see it. Nobody connected
    /// and no ring: nothing to do (nobody could resume it either).
    pub fn broadcast<T: Serialize>(&self, org: Uuid, event: &str, data: &T, audience: Audience) {
        let Some(org) = self.existing_org(org) else {
            return;
        };
        let mut state = lock(&org);
        let mut text = None;
        state.ring.push(|offset| {
            let json = serde_json::to_string(&EventFrame {
                kind: "event",
                event,
                offset,
                data,
            })
            .unwrap_or_default();
            let size = json.len();
            let bytes = Utf8Bytes::from(json);
            text = Some(bytes.clone());
            (
                Frame {
                    text: bytes,
                    audience: audience.clone(),
                },
                size,
            )
        });
        let Some(text) = text else { return };
        let mut queued = 0;
        for peer in state.peers.values() {
            if peer.sees(&audience) {
                peer.send(&text);
                queued += 1;
            }
        }
        self.metrics.frames.fetch_add(queued, Ordering::Relaxed);
    }

    /// An event from the events exchange: dropped when seen before or not for browsers.
    pub fn event(&self, id: Option<Uuid>, org: Uuid, event: &str, data: &serde_json::Value) {
        if let Some(id) = id
            && !lock(&self.recent).first_time(id)
        {
            return;
        }
        let Some(audience) = crate::protocol::audience(event, data) else {
            return;
        };
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.broadcast(org, event, data, audience);
    }

    /// The live holder of a ticket's lock.
    pub fn lock_holder(&self, org: Uuid, ticket_id: Uuid) -> Option<Lock> {
        lock(&self.locks).holder(org, ticket_id, now_ms()).cloned()
    }

    /// The locks a socket holds.
    pub fn locks_of(&self, conn: &str) -> Vec<Lock> {
        lock(&self.locks).held_by_conn(conn)
    }

    /// Applies a claim from the realtime exchange.
    pub fn apply_claim(&self, claim: Claim) {
        let changes = lock(&self.locks).claim(claim, now_ms());
        self.lock_frames(changes);
    }

    /// Applies a release from the realtime exchange.
    pub fn apply_release(&self, release: &Release) {
        let change = lock(&self.locks).release(release);
        self.lock_frames(change.into_iter().collect());
    }

    /// Drops expired locks, telling their organizations.
    pub fn expire_locks(&self) {
        let changes = lock(&self.locks).expire(now_ms());
        self.lock_frames(changes);
    }

    fn lock_frames(&self, changes: Vec<LockChange>) {
        for change in changes {
            let (event, lock) = match &change {
                LockChange::Acquired(lock) => ("lock.acquired", lock),
                LockChange::Released(lock) => ("lock.released", lock),
            };
            self.broadcast(
                lock.org,
                event,
                &LockData::of(lock),
                Audience::Scope(tickiti_crypto::realtime::scope::TICKETS),
            );
        }
    }

    /// `lock.denied` for a socket whose lock request lost to another holder.
    pub fn deny_lock(&self, peer: &Peer, holder: &Lock) {
        let frame = serde_json::json!({
            "type": "lock.denied",
            "ticket_id": holder.ticket_id,
            "user": holder.user,
            "expires_at": rfc3339_ms(holder.expires_at_ms),
        });
        peer.send(&Utf8Bytes::from(frame.to_string()));
    }

    fn for_each_peer(&self, mut f: impl FnMut(&Arc<Peer>)) {
        let orgs: Vec<_> = lock(&self.orgs).values().cloned().collect();
        for org in orgs {
            for peer in lock(&org).peers.values() {
                f(peer);
            }
        }
    }

    /// Closes every socket with `code`.
    pub fn close_all(&self, code: u16) {
        self.for_each_peer(|peer| peer.close(code));
    }

    /// This process may have missed events: every ring starts a new epoch
    /// (so no resume claims frames it does not have) and every socket is
    /// closed with 1012, so browsers reconnect and refetch over REST.
    pub fn restart_epochs(&self) {
        let orgs: Vec<_> = lock(&self.orgs).values().cloned().collect();
        for org in orgs {
            let mut state = lock(&org);
            state.ring.restart();
            for peer in state.peers.values() {
                peer.close(close::SERVICE_RESTART);
            }
        }
    }

    /// Forgets organizations that have had no socket for a while.
    pub fn sweep(&self) {
        lock(&self.orgs).retain(|_, org| {
            let state = lock(org);
            state
                .empty_since
                .is_none_or(|since| since.elapsed() <= ORG_IDLE_KEEP)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tickiti_crypto::realtime::{scope, sign_token};

    fn hub() -> Hub {
        Hub::new(
            "node".into(),
            RingLimits {
                frames: 100,
                bytes: 1 << 20,
            },
        )
    }

    fn claims(org: Uuid, user: Uuid, scopes: &[&str]) -> BrowserClaims {
        BrowserClaims {
            iid: Uuid::from_u128(9),
            org,
            sub: user,
            name: "N".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            iat: 0,
            exp: i64::MAX,
        }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<(Utf8Bytes, usize)>) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok((text, _)) = rx.try_recv() {
            out.push(serde_json::from_str(text.as_str()).unwrap());
        }
        out
    }

    #[test]
    fn organizations_never_see_each_other() {
        let hub = hub();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (_pa, mut ra) = hub.join(claims(a, Uuid::now_v7(), &[scope::TICKETS]), None);
        let (_pb, mut rb) = hub.join(claims(b, Uuid::now_v7(), &[scope::TICKETS]), None);
        hub.event(
            Some(Uuid::now_v7()),
            a,
            "ticket.created",
            &json!({ "n": 1 }),
        );
        let fa = drain(&mut ra);
        let fb = drain(&mut rb);
        assert_eq!(fa.len(), 2, "welcome + event: {fa:?}");
        assert_eq!(fa[1]["event"], "ticket.created");
        assert_eq!(fa[1]["offset"], 1);
        assert_eq!(fb.len(), 1, "only its welcome: {fb:?}");
    }

    #[test]
    fn mentions_go_to_the_mentioned_user_only_and_duplicates_are_dropped() {
        let hub = hub();
        let org = Uuid::now_v7();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (_p1, mut r1) = hub.join(claims(org, ann, &[scope::TICKETS]), None);
        let (_p2, mut r2) = hub.join(claims(org, bob, &[scope::TICKETS]), None);
        let id = Uuid::now_v7();
        hub.event(Some(id), org, "mention.created", &json!({ "user_id": ann }));
        hub.event(Some(id), org, "mention.created", &json!({ "user_id": ann }));
        assert_eq!(drain(&mut r1).len(), 2);
        assert_eq!(drain(&mut r2).len(), 1);
    }

    #[test]
    fn escalations_reach_admins_the_assignee_and_managers_only() {
        let hub = hub();
        let org = Uuid::now_v7();
        let (admin, assignee, manager, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let (_pa, mut ra) = hub.join(claims(org, admin, &[scope::TICKETS, scope::ADMIN]), None);
        let (_pb, mut rb) = hub.join(claims(org, assignee, &[scope::TICKETS]), None);
        let (_pc, mut rc) = hub.join(claims(org, manager, &[scope::TICKETS]), None);
        let (_pd, mut rd) = hub.join(claims(org, other, &[scope::TICKETS]), None);
        hub.event(
            Some(Uuid::now_v7()),
            org,
            "system.escalation",
            &json!({ "stage": "breach", "assignee_id": assignee, "manager_ids": [manager] }),
        );
        for (who, rx) in [
            ("admin", &mut ra),
            ("assignee", &mut rb),
            ("manager", &mut rc),
        ] {
            let frames = drain(rx);
            assert_eq!(frames.len(), 2, "{who}: welcome + escalation: {frames:?}");
            assert_eq!(frames[1]["event"], "system.escalation");
        }
        assert_eq!(
            drain(&mut rd).len(),
            1,
            "a colleague not involved: only the welcome"
        );
    }

    #[test]
    fn resume_replays_missed_frames_then_live_ones() {
        let hub = hub();
        let org = Uuid::now_v7();
        let user = Uuid::now_v7();
        let (peer, mut rx) = hub.join(claims(org, user, &[scope::TICKETS]), None);
        let welcome = drain(&mut rx).remove(0);
        let epoch = welcome["epoch"].as_str().unwrap().to_owned();
        hub.event(None, org, "ticket.created", &json!({ "n": 1 }));
        drain(&mut rx);
        hub.leave(&peer);
        hub.event(None, org, "ticket.updated", &json!({ "n": 2 }));
        hub.event(None, org, "ticket.updated", &json!({ "n": 3 }));
        let resume = Resume { epoch, offset: 1 };
        let (_peer, mut rx) = hub.join(claims(org, user, &[scope::TICKETS]), Some(&resume));
        hub.event(None, org, "ticket.deleted", &json!({ "n": 4 }));
        let frames = drain(&mut rx);
        assert_eq!(frames[0]["type"], "welcome");
        assert_eq!(frames[0]["recovered"], true);
        let offsets: Vec<u64> = frames[1..]
            .iter()
            .map(|f| f["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, vec![2, 3, 4]);
        let bad = Resume {
            epoch: "nope".into(),
            offset: 1,
        };
        let (_peer, mut rx) = hub.join(claims(org, user, &[scope::TICKETS]), Some(&bad));
        let frames = drain(&mut rx);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["recovered"], false);
    }

    #[test]
    fn a_slow_socket_is_closed_not_buffered() {
        let hub = hub();
        let org = Uuid::now_v7();
        let (peer, _rx) = hub.join(claims(org, Uuid::now_v7(), &[scope::TICKETS]), None);
        let big = json!({ "blob": "x".repeat(100 * 1024) });
        for _ in 0..11 {
            hub.event(None, org, "ticket.updated", &big);
        }
        assert_eq!(peer.close_code(), close::TOO_SLOW);
    }

    #[test]
    fn unbinding_closes_sockets_and_refuses_tokens() {
        let hub = hub();
        let key = [5u8; 32];
        assert_eq!(hub.authenticate("x", 0), Err(AuthError::NotPaired));
        hub.set_binding(Some(Binding {
            install_id: Uuid::from_u128(9),
            node_key: key,
        }));
        let org = Uuid::now_v7();
        let c = claims(org, Uuid::now_v7(), &[scope::TICKETS]);
        let token = sign_token(&key, &c);
        let got = hub.authenticate(&token, 100).unwrap();
        let (peer, _rx) = hub.join(got, None);
        hub.set_binding(None);
        assert_eq!(peer.close_code(), close::UNAUTHORIZED);
        assert_eq!(hub.authenticate(&token, 100), Err(AuthError::NotPaired));
        // The same key under another install id refuses the old token.
        hub.set_binding(Some(Binding {
            install_id: Uuid::from_u128(10),
            node_key: key,
        }));
        assert_eq!(hub.authenticate(&token, 100), Err(AuthError::OtherPairing));
    }

    #[test]
    fn lock_changes_become_frames() {
        let hub = hub();
        let org = Uuid::now_v7();
        let user = Uuid::now_v7();
        let (_peer, mut rx) = hub.join(claims(org, user, &[scope::TICKETS]), None);
        drain(&mut rx);
        let ticket = Uuid::now_v7();
        hub.apply_claim(Claim {
            org,
            ticket_id: ticket,
            user: LockUser {
                id: user,
                name: "N".into(),
            },
            conn: "node:1".into(),
            since_ms: now_ms(),
            expires_at_ms: now_ms() + 30_000,
        });
        hub.apply_release(&Release {
            org,
            ticket_id: ticket,
            user_id: user,
            conn: None,
        });
        let frames = drain(&mut rx);
        assert_eq!(frames[0]["event"], "lock.acquired");
        assert_eq!(frames[0]["data"]["user"]["id"], json!(user));
        assert!(frames[0]["data"]["expires_at"].is_string());
        assert_eq!(frames[1]["event"], "lock.released");
    }
}
