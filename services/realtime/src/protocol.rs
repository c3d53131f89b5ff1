//! The websocket protocol (CONTRACT §5): client frames, server frames, and
//! which events reach which browsers.

use serde::{Deserialize, Serialize};
use tickiti_crypto::realtime::scope;
use uuid::Uuid;

/// Where a client's resume points: the epoch and the last offset it saw.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Resume {
    /// The epoch of the welcome the client had.
    pub epoch: String,
    /// The last offset it received.
    pub offset: u64,
}

/// A frame from the browser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame: the token and, when reconnecting, where to resume.
    Hello {
        /// The browser token from `POST /api/v1/realtime/ticket`.
        token: String,
        /// Set when reconnecting.
        #[serde(default)]
        resume: Option<Resume>,
    },
    /// Take or renew the editing lock of a ticket (renew every 10 s).
    Lock {
        /// The ticket.
        ticket_id: Uuid,
    },
    /// Give the lock back.
    Unlock {
        /// The ticket.
        ticket_id: Uuid,
    },
    /// Answered by `{"type":"pong"}`.
    Ping,
}

/// The handshake answer.
#[derive(Debug, Serialize)]
pub struct Welcome<'a> {
    /// Always `welcome`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The organization's current epoch.
    pub epoch: &'a str,
    /// The newest offset (frames after it follow on this socket).
    pub offset: u64,
    /// Present when the hello asked to resume: whether every missed frame follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// `{"type":"event","event":NAME,"offset":N,"data":{...}}`.
#[derive(Debug, Serialize)]
pub struct EventFrame<'a, T: Serialize> {
    /// Always `event`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Event name, e.g. `ticket.updated`, `lock.acquired`.
    pub event: &'a str,
    /// Position in the organization's ring.
    pub offset: u64,
    /// The payload.
    pub data: &'a T,
}

/// `{"type":"pong"}`, the answer to a client ping.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// An error about one client frame; the socket stays open.
pub fn error_frame(code: &str, detail: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "detail": detail }).to_string()
}

/// Who may see a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every socket of the organization whose token carries this scope.
    Scope(&'static str),
    /// Only this user's sockets (mentions, notifications, per-user
    /// perspective counts).
    User(Uuid),
    /// Sockets with this scope, and these users' (escalations: admins, the
    /// assignee and the queue's managers).
    ScopeOrUsers(&'static str, std::sync::Arc<[Uuid]>),
}

/// Which browsers an event of the events exchange goes to; None: to no
/// browser (contact events and `test.ping` are for integrators;
/// `ticket.message.created` repeats `message.created` for webhooks).
pub fn audience(event: &str, data: &serde_json::Value) -> Option<Audience> {
    let user = |field: &str| {
        data.get(field)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    match event {
        "ticket.message.created" => None,
        "mention.created"
        | "mention.acknowledged"
        | "notification.created"
        | "notification.read" => user("user_id").map(Audience::User),
        "perspective.counts" => {
            Some(user("user_id").map_or(Audience::Scope(scope::TICKETS), Audience::User))
        }
        "system.escalation" => {
            let mut users: Vec<Uuid> = user("assignee_id").into_iter().collect();
            if let Some(managers) = data.get("manager_ids").and_then(|m| m.as_array()) {
                users.extend(
                    managers
                        .iter()
                        .filter_map(|m| m.as_str().and_then(|s| Uuid::parse_str(s).ok())),
                );
            }
            Some(Audience::ScopeOrUsers(scope::ADMIN, users.into()))
        }
        "system.mailbox_error" | "system.worker_health" | "system.endpoint_failed" => {
            Some(Audience::Scope(scope::ADMIN))
        }
        _ if ["ticket.", "message.", "time_entry.", "intervention."]
            .iter()
            .any(|prefix| event.starts_with(prefix)) =>
        {
            Some(Audience::Scope(scope::TICKETS))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_frames_parse() {
        let hello: ClientFrame = serde_json::from_str(
            r#"{"type":"hello","token":"t","resume":{"epoch":"e","offset":3}}"#,
        )
        .unwrap();
        assert_eq!(
            hello,
            ClientFrame::Hello {
                token: "t".into(),
                resume: Some(Resume {
                    epoch: "e".into(),
                    offset: 3
                })
            }
        );
        let ping: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(ping, ClientFrame::Ping);
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"lock"}"#).is_err());
    }

    #[test]
    fn frames_serialize_as_the_contract_says() {
        let data = json!({ "id": 1 });
        let frame = EventFrame {
            kind: "event",
            event: "ticket.created",
            offset: 7,
            data: &data,
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({ "type": "event", "event": "ticket.created", "offset": 7, "data": { "id": 1 } })
        );
        let welcome = Welcome {
            kind: "welcome",
            epoch: "e",
            offset: 0,
            recovered: None,
        };
        assert_eq!(
            serde_json::to_value(&welcome).unwrap(),
            json!({ "type": "welcome", "epoch": "e", "offset": 0 })
        );
    }

    #[test]
    fn audiences() {
        let user = Uuid::now_v7();
        let tickets = Some(Audience::Scope(scope::TICKETS));
        assert_eq!(audience("ticket.updated", &json!({})), tickets);
        assert_eq!(audience("message.created", &json!({})), tickets);
        assert_eq!(audience("time_entry.deleted", &json!({})), tickets);
        assert_eq!(audience("intervention.accepted", &json!({})), tickets);
        assert_eq!(
            audience("mention.created", &json!({ "user_id": user })),
            Some(Audience::User(user))
        );
        assert_eq!(audience("mention.created", &json!({})), None);
        assert_eq!(audience("contact.created", &json!({})), None);
        assert_eq!(audience("test.ping", &json!({})), None);
        assert_eq!(audience("ticket.message.created", &json!({})), None);
        for admins_only in ["system.worker_health", "system.endpoint_failed"] {
            assert_eq!(
                audience(admins_only, &json!({})),
                Some(Audience::Scope(scope::ADMIN))
            );
        }
        let manager = Uuid::now_v7();
        assert_eq!(
            audience(
                "system.escalation",
                &json!({ "assignee_id": user, "manager_ids": [manager] })
            ),
            Some(Audience::ScopeOrUsers(
                scope::ADMIN,
                vec![user, manager].into()
            ))
        );
        assert_eq!(
            audience("notification.created", &json!({ "user_id": user })),
            Some(Audience::User(user))
        );
    }
}
