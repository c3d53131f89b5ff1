//! Routes, one module per resource; each exposes `router()` whose handlers
//! carry `#[utoipa::path]` so the OpenAPI document is generated from them.

pub mod auth;
pub mod business_calendars;
pub mod contacts;
pub mod health;
pub mod interventions;
pub mod mentions;
pub mod messages;
pub mod notifications;
pub mod perspectives;
pub mod queues;
pub mod realtime;
pub mod sla_policies;
pub mod system;
pub mod tickets;
pub mod time_entries;
pub mod tokens;
pub mod users;
pub mod webhooks;

use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The OpenAPI document's fixed parts; paths and schemas come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tickiti API",
        description = "Tickets, messages, contacts, time entries, queues, perspectives, mentions, notifications, service levels, webhooks and interventions. \
                       Errors are application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&Security),
    components(schemas(crate::http::error::Problem))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::http::guard::SESSION_COOKIE,
            ))),
        );
    }
}

/// The document's fixed parts (title, licence, security schemes): the
/// outermost router starts from these, since nesting keeps only paths and
/// components of the inner one.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Every `/api/v1` route, each described in the OpenAPI document.
pub fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(tickets::router())
        .merge(messages::router())
        .merge(contacts::router())
        .merge(time_entries::router())
        .merge(queues::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(perspectives::router())
        .merge(mentions::router())
        .merge(notifications::router())
        .merge(webhooks::router())
        .merge(interventions::router())
        .merge(realtime::router())
        .merge(business_calendars::router())
        .merge(sla_policies::router())
        .merge(system::router())
}
