//! `/tokens`: the caller's API tokens. The secret is shown once, at
//! creation; only its SHA-256 and its first characters are stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::{Ability, Validation};
use tickiti_store::tokens::{self, Token};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The token routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
}

/// A token as the API lists it (never the secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenOut {
    /// Id.
    pub id: Uuid,
    /// Label.
    pub name: String,
    /// First characters of the secret, e.g. `tkt_AbCd`.
    pub prefix: String,
    /// Abilities, as spelled in the contract.
    pub abilities: Vec<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<Token> for TokenOut {
    fn from(t: Token) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            prefix: t.token_prefix,
            abilities: t.abilities,
            created_at: t.created_at,
        }
    }
}

/// A new token with its secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenCreatedOut {
    /// The token.
    #[serde(flatten)]
    pub token: TokenOut,
    /// The secret (`tkt_...`): send it as `Authorization: Bearer`. It cannot be shown again.
    #[serde(rename = "token")]
    pub secret: String,
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    /// Label, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// Abilities (`*`, `create-ticket`, `tickets:read`, ...); none beyond the caller's own.
    #[schema(value_type = Vec<Ability>, min_items = 1)]
    pub abilities: Vec<String>,
}

const NOT_FOUND: &str = "TOKEN_NOT_FOUND";

/// Whether the caller's effective abilities cover `wanted` (`*` asks for
/// every ability there is).
fn caller_may_grant(principal: &Principal, wanted: Ability) -> bool {
    if wanted == Ability::All {
        Ability::ALL
            .iter()
            .filter(|a| **a != Ability::All)
            .all(|a| principal.abilities.contains(a))
    } else {
        principal.abilities.contains(&wanted)
    }
}

/// 403 unless the caller may manage their own tokens: a browser session,
/// or a token holding everything its user's role grants (a `*` token). A
/// narrow token (say `create-ticket` on a web form) must not list, mint or
/// revoke its user's tokens, or it could mint itself a wider one.
fn require_token_manager(principal: &Principal) -> ApiResult<()> {
    let whole_role = tickiti_domain::ability::effective_abilities(principal.role, None)
        .iter()
        .all(|a| principal.abilities.contains(a));
    if principal.token_id.is_none() || whole_role {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "managing tokens needs a browser session or a token with every ability of its user (\"*\")",
        ))
    }
}

/// The caller's tokens, oldest first (a session or a `*` token).
#[utoipa::path(get, path = "/tokens", tag = "tokens", params(PageParams),
    responses((status = 200, body = ListOut<TokenOut>)), security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<TokenOut>>> {
    require_token_manager(&principal)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let page = tokens::list_for_user(
        &mut conn,
        principal.org(),
        principal.user.id,
        after,
        query.limit,
    )
    .await?;
    Ok(axum::Json(ListOut::from_page(page, TokenOut::from)))
}

/// Create a token for the caller. It may not grant more than the caller
/// holds; the secret is in the answer and nowhere else.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = TokenIn,
    responses((status = 201, body = TokenCreatedOut), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_token(
    db: Db,
    principal: Principal,
    Json(input): Json<TokenIn>,
) -> ApiResult<(StatusCode, axum::Json<TokenCreatedOut>)> {
    require_token_manager(&principal)?;
    let mut v = Validation::new();
    let mut abilities = Vec::with_capacity(input.abilities.len());
    for (i, raw) in input.abilities.iter().enumerate() {
        let field = format!("abilities[{i}]");
        match raw.parse::<Ability>() {
            Ok(ability) if caller_may_grant(&principal, ability) => abilities.push(ability),
            Ok(ability) => v.error(
                field,
                format!("{ability} is more than this caller may grant"),
            ),
            Err(e) => v.error(field, e.to_string()),
        }
    }
    crate::accounts::check_token(&mut v, &input.name, input.abilities.len());
    v.finish().map_err(ApiError::validation)?;
    let mut tx = db.begin().await?;
    let (token, secret) = crate::accounts::issue_token(
        &mut tx,
        principal.org(),
        principal.user.id,
        &input.name,
        &abilities,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenCreatedOut {
            token: token.into(),
            secret,
        }),
    ))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(token.id = %id))]
pub async fn delete_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_token_manager(&principal)?;
    let id = parse_id(&id, NOT_FOUND, "token")?;
    let mut conn = state.db.acquire().await?;
    if !tokens::delete(&mut conn, principal.org(), principal.user.id, id).await? {
        return Err(ApiError::not_found(NOT_FOUND, "token"));
    }
    Ok(StatusCode::NO_CONTENT)
}
