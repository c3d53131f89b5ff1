//! Accounts: organizations, users and API tokens, created the same way by
//! the routes (`POST /users`, `POST /tokens`), the command line
//! (`tickiti-api admin …`) and the tests.

use sqlx::{PgConnection, PgPool};
use tickiti_domain::validation::EMAIL_MAX;
use tickiti_domain::{Ability, Role, Validation, new_id};
use tickiti_store::{organizations, perspectives, tokens, users};
use uuid::Uuid;

use crate::http::{ApiError, ApiResult};

/// Prefix of every API token secret.
pub const TOKEN_PREFIX: &str = "tkt_";
/// How many leading characters of the secret are kept to tell tokens apart.
pub const SHOWN_PREFIX_LEN: usize = 8;
/// Longest token name.
pub const NAME_MAX: usize = 100;

/// Shortest password accepted.
pub const PASSWORD_MIN: usize = 8;

fn validate_user(email: &str, name: &str, password: &str) -> ApiResult<()> {
    let mut v = Validation::new();
    v.email("email", email);
    v.text("email", email, 1, EMAIL_MAX);
    v.text("name", name, 1, 200);
    v.text("password", password, PASSWORD_MIN, 1024);
    v.finish().map_err(ApiError::validation)
}

async fn hash(password: &str) -> ApiResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || tickiti_crypto::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
}

fn email_taken(error: tickiti_store::StoreError) -> ApiError {
    if error.is_conflict_on(users::EMAIL_KEY) {
        ApiError::conflict("EMAIL_TAKEN", "a user with this e-mail address exists")
    } else {
        error.into()
    }
}

/// Creates an organization with its first admin and its default perspectives.
pub async fn create_organization(
    db: &PgPool,
    name: &str,
    admin_email: &str,
    admin_password: &str,
) -> ApiResult<(Uuid, Uuid)> {
    let mut v = Validation::new();
    v.text("name", name, 1, 200);
    v.finish().map_err(ApiError::validation)?;
    let admin_name = admin_email.split('@').next().unwrap_or(admin_email);
    validate_user(admin_email, admin_name, admin_password)?;
    let password_hash = hash(admin_password).await?;
    let org_id = new_id();
    let mut tx = db.begin().await?;
    organizations::insert(
        &mut tx,
        org_id,
        name.trim(),
        &tickiti_domain::organization::code_prefix(name),
    )
    .await?;
    let user = users::insert(
        &mut tx,
        &users::NewUser {
            id: new_id(),
            organization_id: org_id,
            email: admin_email.trim(),
            name: admin_name,
            password_hash: &password_hash,
            role: Role::Admin.as_str(),
        },
    )
    .await
    .map_err(email_taken)?;
    perspectives::create_defaults(&mut tx, org_id).await?;
    tx.commit().await?;
    Ok((org_id, user.id))
}

/// Adds a user to an organization.
pub async fn create_user(
    db: &PgPool,
    org: Uuid,
    email: &str,
    name: &str,
    password: &str,
    role: Role,
) -> ApiResult<Uuid> {
    let mut conn = db.acquire().await?;
    add_user(&mut conn, org, email, name, password, role).await
}

/// [`create_user`] in the caller's connection or transaction (`POST /users`).
pub async fn add_user(
    conn: &mut PgConnection,
    org: Uuid,
    email: &str,
    name: &str,
    password: &str,
    role: Role,
) -> ApiResult<Uuid> {
    validate_user(email, name, password)?;
    let password_hash = hash(password).await?;
    if organizations::get(conn, org).await?.is_none() {
        return Err(ApiError::not_found(
            "ORGANIZATION_NOT_FOUND",
            "organization",
        ));
    }
    let user = users::insert(
        conn,
        &users::NewUser {
            id: new_id(),
            organization_id: org,
            email: email.trim(),
            name: name.trim(),
            password_hash: &password_hash,
            role: role.as_str(),
        },
    )
    .await
    .map_err(email_taken)?;
    Ok(user.id)
}

/// Issues a token for the user with this e-mail; returns its id and the secret (shown once).
pub async fn create_token(
    db: &PgPool,
    email: &str,
    name: &str,
    abilities: &[Ability],
) -> ApiResult<(Uuid, String)> {
    let mut conn = db.acquire().await?;
    let user = users::find_by_email(&mut conn, email)
        .await?
        .ok_or_else(|| ApiError::not_found("USER_NOT_FOUND", "user"))?;
    let (token, secret) =
        issue_token(&mut conn, user.organization_id, user.id, name, abilities).await?;
    Ok((token.id, secret))
}

/// Checks a token's name and ability list (shared by the route and the command line).
pub(crate) fn check_token(v: &mut Validation, name: &str, ability_count: usize) {
    v.text("name", name, 1, NAME_MAX);
    if ability_count == 0 {
        v.error("abilities", "must name at least one ability");
    }
}

/// Creates a token for `user_id` and returns it with its secret (shown only
/// this once). Used by `POST /tokens` and `tickiti-api admin create-token`;
/// the caller decides whether the abilities are the issuer's to give.
pub async fn issue_token(
    conn: &mut PgConnection,
    org: Uuid,
    user_id: Uuid,
    name: &str,
    abilities: &[Ability],
) -> ApiResult<(tokens::Token, String)> {
    let mut v = Validation::new();
    check_token(&mut v, name, abilities.len());
    v.finish().map_err(ApiError::validation)?;
    let mut spellings: Vec<String> = Vec::with_capacity(abilities.len());
    for ability in abilities {
        let text = ability.as_str().to_owned();
        if !spellings.contains(&text) {
            spellings.push(text);
        }
    }
    let secret = tickiti_crypto::generate_token(TOKEN_PREFIX);
    let prefix: String = secret.chars().take(SHOWN_PREFIX_LEN).collect();
    let token = tokens::insert(
        conn,
        new_id(),
        org,
        user_id,
        name.trim(),
        &tickiti_crypto::token_hash(&secret),
        &prefix,
        &spellings,
    )
    .await?;
    Ok((token, secret))
}
