//! `/notifications` and `/me/notification-preferences` (CONTRACT §8): what
//! the caller was told of, and how they want to be told.
//!
//! Notifications are written by the changes that cause them
//! ([`tickiti_store::notifications::derive`]); here they are only read and
//! marked read. Marking read emits `notification.read` to the person's
//! other tabs, so every badge agrees.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tickiti_domain::notification::{
    Channels, NotificationKind, NotificationOut, NotificationsRead,
};
use tickiti_domain::{Ability, EventType};
use tickiti_store::notifications;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::events::emit;
use crate::http::extract::{Cursor, PageParams, parse_id, query_bool};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The notification routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(unread_count))
        .routes(routes!(read_notification))
        .routes(routes!(read_all))
        .routes(routes!(get_preferences, patch_preferences))
}

const NOT_FOUND: &str = "NOTIFICATION_NOT_FOUND";

/// The list's filter.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationFilter {
    /// Only those not read yet (`true` or `false`).
    #[serde(default, deserialize_with = "query_bool")]
    pub unread: Option<bool>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    params(PageParams, NotificationFilter),
    responses((status = 200, body = ListOut<NotificationOut>), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_notifications(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NotificationFilter>,
) -> ApiResult<axum::Json<ListOut<NotificationOut>>> {
    principal.require(Ability::TicketsRead)?;
    let before = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = notifications::list(
        &mut conn,
        principal.user.id,
        query.filter.unread.unwrap_or(false),
        before,
        query.limit,
    )
    .await?;
    Ok(axum::Json(ListOut::from_page(page, NotificationOut::from)))
}

/// How many notifications are unread.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadOut {
    /// Unread notifications of the caller.
    pub unread: i64,
}

/// The number of the caller's unread notifications (the app's badge).
#[utoipa::path(get, path = "/notifications/unread-count", tag = "notifications",
    responses((status = 200, body = UnreadOut)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn unread_count(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<UnreadOut>> {
    principal.require(Ability::TicketsRead)?;
    let mut conn = state.db.acquire().await?;
    let unread = notifications::unread_count(&mut conn, principal.user.id).await?;
    Ok(axum::Json(UnreadOut { unread }))
}

/// Mark one of the caller's notifications read (idempotent; the first
/// call stamps `read_at`, and a held-back e-mail of it is then not sent).
#[utoipa::path(post, path = "/notifications/{id}/read", tag = "notifications",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = NotificationOut), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(notification.id = %id))]
pub async fn read_notification(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<NotificationOut>> {
    principal.require(Ability::TicketsRead)?;
    let id = parse_id(&id, NOT_FOUND, "notification")?;
    let mut tx = db.begin().await?;
    let (notification, changed) = notifications::mark_read(&mut tx, principal.user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "notification"))?;
    let out = NotificationOut::from(notification);
    if let (true, Some(read_at)) = (changed, out.read_at) {
        let read = NotificationsRead {
            user_id: out.user_id,
            ids: vec![out.id],
            read_at,
        };
        emit(&mut tx, &principal, EventType::NotificationRead, &read).await?;
    }
    state.commit(tx).await?;
    Ok(axum::Json(out))
}

/// How many notifications a read-all marked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAllOut {
    /// Notifications this call marked read.
    pub read: usize,
}

/// Mark every unread notification of the caller read.
#[utoipa::path(post, path = "/notifications/read-all", tag = "notifications",
    responses((status = 200, body = ReadAllOut)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn read_all(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
) -> ApiResult<axum::Json<ReadAllOut>> {
    principal.require(Ability::TicketsRead)?;
    let mut tx = db.begin().await?;
    let (ids, read_at) = notifications::mark_all_read(&mut tx, principal.user.id).await?;
    let read = ids.len();
    if read > 0 {
        let event = NotificationsRead {
            user_id: principal.user.id,
            ids,
            read_at,
        };
        emit(&mut tx, &principal, EventType::NotificationRead, &event).await?;
    }
    state.commit(tx).await?;
    Ok(axum::Json(ReadAllOut { read }))
}

/// A person's channels per kind (CONTRACT §8; all on by default). E-mail is
/// also off while the person's `realtime_notifications` flag is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferencesOut {
    /// A ticket assigned to them.
    #[serde(rename = "ticket.assigned")]
    pub ticket_assigned: Channels,
    /// A new ticket in a queue they manage.
    #[serde(rename = "ticket.created")]
    pub ticket_created: Channels,
    /// A contact's reply or a colleague's message on a ticket assigned to them.
    #[serde(rename = "message.created")]
    pub message_created: Channels,
    /// A mention of them.
    #[serde(rename = "mention.created")]
    pub mention_created: Channels,
    /// A service-level warning on their ticket or in their queue.
    #[serde(rename = "escalation.warning")]
    pub escalation_warning: Channels,
    /// A service-level breach on their ticket or in their queue.
    #[serde(rename = "escalation.breach")]
    pub escalation_breach: Channels,
    /// An intervention ticket for a queue they manage.
    #[serde(rename = "intervention.created")]
    pub intervention_created: Channels,
}

impl PreferencesOut {
    fn of(stored: &[(NotificationKind, Channels)]) -> Self {
        let get = |kind| {
            stored
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or_else(Channels::default, |(_, c)| *c)
        };
        PreferencesOut {
            ticket_assigned: get(NotificationKind::TicketAssigned),
            ticket_created: get(NotificationKind::TicketCreated),
            message_created: get(NotificationKind::MessageCreated),
            mention_created: get(NotificationKind::MentionCreated),
            escalation_warning: get(NotificationKind::EscalationWarning),
            escalation_breach: get(NotificationKind::EscalationBreach),
            intervention_created: get(NotificationKind::InterventionCreated),
        }
    }
}

/// A change to one kind's channels (a missing channel keeps its setting).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsPatch {
    /// Listed in the app and sent to the browsers.
    pub in_app: Option<bool>,
    /// Sent by e-mail.
    pub email: Option<bool>,
}

/// Changes to the caller's preferences, per kind (an unknown kind is refused).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesPatch {
    /// A ticket assigned to them.
    #[serde(rename = "ticket.assigned")]
    pub ticket_assigned: Option<ChannelsPatch>,
    /// A new ticket in a queue they manage.
    #[serde(rename = "ticket.created")]
    pub ticket_created: Option<ChannelsPatch>,
    /// A contact's reply or a colleague's message on a ticket assigned to them.
    #[serde(rename = "message.created")]
    pub message_created: Option<ChannelsPatch>,
    /// A mention of them.
    #[serde(rename = "mention.created")]
    pub mention_created: Option<ChannelsPatch>,
    /// A service-level warning.
    #[serde(rename = "escalation.warning")]
    pub escalation_warning: Option<ChannelsPatch>,
    /// A service-level breach.
    #[serde(rename = "escalation.breach")]
    pub escalation_breach: Option<ChannelsPatch>,
    /// An intervention ticket for a queue they manage.
    #[serde(rename = "intervention.created")]
    pub intervention_created: Option<ChannelsPatch>,
}

impl PreferencesPatch {
    fn changes(&self) -> [(NotificationKind, Option<ChannelsPatch>); 7] {
        [
            (NotificationKind::TicketAssigned, self.ticket_assigned),
            (NotificationKind::TicketCreated, self.ticket_created),
            (NotificationKind::MessageCreated, self.message_created),
            (NotificationKind::MentionCreated, self.mention_created),
            (NotificationKind::EscalationWarning, self.escalation_warning),
            (NotificationKind::EscalationBreach, self.escalation_breach),
            (
                NotificationKind::InterventionCreated,
                self.intervention_created,
            ),
        ]
    }
}

/// The caller's notification channels per kind.
#[utoipa::path(get, path = "/me/notification-preferences", tag = "notifications",
    responses((status = 200, body = PreferencesOut)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn get_preferences(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<PreferencesOut>> {
    principal.require(Ability::TicketsRead)?;
    let mut conn = state.db.acquire().await?;
    let stored = notifications::preferences(&mut conn, principal.user.id).await?;
    Ok(axum::Json(PreferencesOut::of(&stored)))
}

/// Change the caller's channels for some kinds.
#[utoipa::path(patch, path = "/me/notification-preferences", tag = "notifications",
    request_body = PreferencesPatch,
    responses((status = 200, body = PreferencesOut), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn patch_preferences(
    db: Db,
    principal: Principal,
    Json(patch): Json<PreferencesPatch>,
) -> ApiResult<axum::Json<PreferencesOut>> {
    principal.require(Ability::TicketsRead)?;
    let mut tx = db.begin().await?;
    let stored = notifications::preferences(&mut tx, principal.user.id).await?;
    let changes: Vec<(NotificationKind, Channels)> = patch
        .changes()
        .into_iter()
        .filter_map(|(kind, change)| {
            let change = change?;
            let now = stored
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or_else(Channels::default, |(_, c)| *c);
            Some((
                kind,
                Channels {
                    in_app: change.in_app.unwrap_or(now.in_app),
                    email: change.email.unwrap_or(now.email),
                },
            ))
        })
        .collect();
    if !changes.is_empty() {
        notifications::set_preferences(&mut tx, principal.user.id, &changes).await?;
    }
    let stored = notifications::preferences(&mut tx, principal.user.id).await?;
    tx.commit().await?;
    Ok(axum::Json(PreferencesOut::of(&stored)))
}
