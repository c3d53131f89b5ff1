//! `/mentions`: where colleagues named the caller, unacknowledged first.

use axum::extract::{Path, State};
use tickiti_domain::mention::MentionOut;
use tickiti_domain::{Ability, EventType};
use tickiti_store::mentions;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::events::emit;
use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The mention routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mentions))
        .routes(routes!(ack_mention))
}

const NOT_FOUND: &str = "MENTION_NOT_FOUND";

/// The caller's mentions: unacknowledged first, then newest first.
#[utoipa::path(get, path = "/mentions", tag = "mentions", params(PageParams),
    responses((status = 200, body = ListOut<MentionOut>), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_mentions(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<MentionOut>>> {
    principal.require(Ability::TicketsRead)?;
    // An offset cursor: acknowledging moves a mention within the order.
    let offset = Cursor::offset(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let (rows, more) = mentions::list_for_user(
        &mut conn,
        principal.org(),
        principal.user.id,
        offset,
        query.limit,
    )
    .await?;
    let next = offset.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX));
    Ok(axum::Json(ListOut {
        data: rows.into_iter().map(MentionOut::from).collect(),
        next_cursor: more.then(|| Cursor::Offset(next).encode()),
    }))
}

/// Acknowledge one of the caller's mentions (idempotent; the event is
/// emitted only by the call that acknowledged it).
#[utoipa::path(post, path = "/mentions/{id}/ack", tag = "mentions", params(("id" = Uuid, Path)),
    responses((status = 200, body = MentionOut), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(mention.id = %id))]
pub async fn ack_mention(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<MentionOut>> {
    principal.require(Ability::TicketsRead)?;
    let id = parse_id(&id, NOT_FOUND, "mention")?;
    let mut tx = db.begin().await?;
    let (mention, changed) = mentions::acknowledge(&mut tx, principal.org(), principal.user.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "mention"))?;
    let out = MentionOut::from(mention);
    if changed {
        emit(&mut tx, &principal, EventType::MentionAcknowledged, &out).await?;
    }
    state.commit(tx).await?;
    Ok(axum::Json(out))
}
