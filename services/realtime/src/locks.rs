//! Editing locks ("Nathan is responding to this ticket", CONTRACT §5).
//!
//! Every realtime process keeps a replica of this table and changes it only
//! with the claims and releases that come back from the `<prefix>.realtime`
//! exchange (its own included), so every process sees the same changes. Two
//! users who claim one ticket at the same moment on two processes may be
//! applied in different orders on different processes; the rule "the earlier
//! first claim wins, ties broken by user id" makes every replica converge on
//! the same holder anyway. Renewals repeat the holder's first-claim time.
//!
//! A lock expires [`LOCK_TTL`] after its last renewal (browsers renew every
//! 10 s), when its holder unlocks, or when the socket that took it closes.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A lock lives this long after its last renewal.
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// The user holding a lock, as lock frames show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockUser {
    /// User id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
}

/// A claim or renewal, as published on `<prefix>.realtime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Organization of the ticket.
    pub org: Uuid,
    /// The ticket.
    pub ticket_id: Uuid,
    /// Who claims.
    pub user: LockUser,
    /// The socket that claims (`<process id>:<connection id>`).
    pub conn: String,
    /// When this user first claimed the ticket (Unix ms); kept by renewals.
    pub since_ms: i64,
    /// Expiry of this claim (Unix ms).
    pub expires_at_ms: i64,
}

/// A release, as published on `<prefix>.realtime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Organization of the ticket.
    pub org: Uuid,
    /// The ticket.
    pub ticket_id: Uuid,
    /// Whose lock.
    pub user_id: Uuid,
    /// Only this socket's claim (a closing socket); None: the user's, whichever socket.
    pub conn: Option<String>,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Organization.
    pub org: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Holder.
    pub user: LockUser,
    /// The socket that renewed it last.
    pub conn: String,
    /// First claim (Unix ms).
    pub since_ms: i64,
    /// Expiry (Unix ms).
    pub expires_at_ms: i64,
}

/// What applying a message changed (each becomes a frame to the organization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    /// A new holder.
    Acquired(Lock),
    /// A holder lost the lock.
    Released(Lock),
}

/// The replicated lock table of one process.
#[derive(Debug, Default)]
pub struct LockTable {
    locks: HashMap<(Uuid, Uuid), Lock>,
}

impl LockTable {
    /// The live holder of a ticket's lock at `now_ms`, if any.
    pub fn holder(&self, org: Uuid, ticket_id: Uuid, now_ms: i64) -> Option<&Lock> {
        self.locks
            .get(&(org, ticket_id))
            .filter(|lock| lock.expires_at_ms > now_ms)
    }

    /// Locks held now.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Whether no lock is held.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// Applies a claim or renewal.
    pub fn claim(&mut self, claim: Claim, now_ms: i64) -> Vec<LockChange> {
        let mut changes = Vec::new();
        if claim.expires_at_ms <= now_ms {
            return changes; // arrived too late to matter
        }
        let key = (claim.org, claim.ticket_id);
        let new = Lock {
            org: claim.org,
            ticket_id: claim.ticket_id,
            user: claim.user,
            conn: claim.conn,
            since_ms: claim.since_ms,
            expires_at_ms: claim.expires_at_ms,
        };
        match self.locks.get_mut(&key) {
            Some(held) if held.expires_at_ms > now_ms && held.user.id == new.user.id => {
                // A renewal (maybe from the user's other tab): no frame.
                held.conn = new.conn;
                held.expires_at_ms = held.expires_at_ms.max(new.expires_at_ms);
                held.since_ms = held.since_ms.min(new.since_ms);
            }
            Some(held) if held.expires_at_ms > now_ms => {
                let earlier = (new.since_ms, new.user.id) < (held.since_ms, held.user.id);
                if earlier {
                    let old = std::mem::replace(held, new.clone());
                    changes.push(LockChange::Released(old));
                    changes.push(LockChange::Acquired(new));
                }
            }
            Some(_) => {
                if let Some(expired) = self.locks.insert(key, new.clone()) {
                    changes.push(LockChange::Released(expired));
                }
                changes.push(LockChange::Acquired(new));
            }
            None => {
                self.locks.insert(key, new.clone());
                changes.push(LockChange::Acquired(new));
            }
        }
        changes
    }

    /// Applies a release: the lock goes if it is the user's (and, when named, that socket's).
    pub fn release(&mut self, release: &Release) -> Option<LockChange> {
        let key = (release.org, release.ticket_id);
        let held = self.locks.get(&key)?;
        let matches = held.user.id == release.user_id
            && release.conn.as_ref().is_none_or(|conn| *conn == held.conn);
        if !matches {
            return None;
        }
        self.locks.remove(&key).map(LockChange::Released)
    }

    /// Removes every lock whose expiry has passed.
    pub fn expire(&mut self, now_ms: i64) -> Vec<LockChange> {
        let expired: Vec<(Uuid, Uuid)> = self
            .locks
            .iter()
            .filter(|(_, lock)| lock.expires_at_ms <= now_ms)
            .map(|(key, _)| *key)
            .collect();
        expired
            .into_iter()
            .filter_map(|key| self.locks.remove(&key))
            .map(LockChange::Released)
            .collect()
    }

    /// The live locks of an organization at `now_ms`, for a socket that joins.
    pub fn of_org(&self, org: Uuid, now_ms: i64) -> Vec<Lock> {
        self.locks
            .values()
            .filter(|lock| lock.org == org && lock.expires_at_ms > now_ms)
            .cloned()
            .collect()
    }

    /// The tickets whose lock the socket `conn` holds now.
    pub fn held_by_conn(&self, conn: &str) -> Vec<Lock> {
        self.locks
            .values()
            .filter(|lock| lock.conn == conn)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128) -> LockUser {
        LockUser {
            id: Uuid::from_u128(n),
            name: format!("user {n}"),
        }
    }

    fn claim(ticket: Uuid, who: u128, conn: &str, since: i64, expires: i64) -> Claim {
        Claim {
            org: Uuid::from_u128(1),
            ticket_id: ticket,
            user: user(who),
            conn: conn.into(),
            since_ms: since,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn acquire_renew_release() {
        let mut table = LockTable::default();
        let t = Uuid::from_u128(7);
        let changes = table.claim(claim(t, 1, "a:1", 1_000, 31_000), 1_000);
        assert!(
            matches!(&changes[..], [LockChange::Acquired(l)] if l.user.id == Uuid::from_u128(1))
        );
        // Renewal: no frame, later expiry.
        assert!(
            table
                .claim(claim(t, 1, "a:1", 1_000, 41_000), 11_000)
                .is_empty()
        );
        assert_eq!(
            table.holder(t_org(), t, 40_000).unwrap().expires_at_ms,
            41_000
        );
        // Someone else's release does nothing; the holder's does.
        let other = Release {
            org: t_org(),
            ticket_id: t,
            user_id: Uuid::from_u128(2),
            conn: None,
        };
        assert!(table.release(&other).is_none());
        let mine = Release {
            user_id: Uuid::from_u128(1),
            ..other
        };
        assert!(matches!(
            table.release(&mine),
            Some(LockChange::Released(_))
        ));
        assert!(table.is_empty());
    }

    fn t_org() -> Uuid {
        Uuid::from_u128(1)
    }

    #[test]
    fn a_held_lock_is_not_taken_by_a_later_claim() {
        let mut table = LockTable::default();
        let t = Uuid::from_u128(7);
        table.claim(claim(t, 1, "a:1", 1_000, 31_000), 1_000);
        assert!(
            table
                .claim(claim(t, 2, "b:1", 2_000, 32_000), 2_000)
                .is_empty()
        );
        assert_eq!(
            table.holder(t_org(), t, 2_000).unwrap().user.id,
            Uuid::from_u128(1)
        );
    }

    #[test]
    fn replicas_converge_whatever_the_order() {
        let t = Uuid::from_u128(7);
        let first = claim(t, 2, "a:1", 1_000, 31_000);
        let second = claim(t, 1, "b:1", 1_005, 31_005);
        let mut left = LockTable::default();
        left.claim(first.clone(), 1_010);
        left.claim(second.clone(), 1_010);
        let mut right = LockTable::default();
        right.claim(second, 1_010);
        let changes = right.claim(first, 1_010);
        assert_eq!(changes.len(), 2, "released then acquired: {changes:?}");
        assert_eq!(
            left.holder(t_org(), t, 1_010).unwrap().user.id,
            right.holder(t_org(), t, 1_010).unwrap().user.id
        );
        assert_eq!(
            left.holder(t_org(), t, 1_010).unwrap().user.id,
            Uuid::from_u128(2)
        );
    }

    #[test]
    fn locks_expire_thirty_seconds_after_the_last_renewal() {
        let mut table = LockTable::default();
        let t = Uuid::from_u128(7);
        let ttl = i64::try_from(LOCK_TTL.as_millis()).unwrap();
        table.claim(claim(t, 1, "a:1", 0, ttl), 0);
        table.claim(claim(t, 1, "a:1", 0, 10_000 + ttl), 10_000);
        assert!(table.expire(ttl).is_empty(), "renewed at 10 s");
        let gone = table.expire(10_000 + ttl);
        assert_eq!(gone.len(), 1);
        assert!(table.holder(t_org(), t, 10_000 + ttl).is_none());
        // An expired lock is free for the next claim, which reports both.
        table.claim(claim(t, 1, "a:1", 50_000, 80_000), 50_000);
        let changes = table.claim(claim(t, 2, "b:1", 90_000, 120_000), 90_000);
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn closing_socket_releases_only_its_own_claims() {
        let mut table = LockTable::default();
        let t = Uuid::from_u128(7);
        table.claim(claim(t, 1, "a:1", 0, 30_000), 0);
        // The same user renewed from another tab: that tab holds it now.
        table.claim(claim(t, 1, "a:2", 0, 40_000), 10_000);
        assert!(table.held_by_conn("a:1").is_empty());
        let release = Release {
            org: t_org(),
            ticket_id: t,
            user_id: Uuid::from_u128(1),
            conn: Some("a:1".into()),
        };
        assert!(table.release(&release).is_none());
        assert_eq!(table.held_by_conn("a:2").len(), 1);
    }
}
