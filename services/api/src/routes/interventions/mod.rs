//! Interventions (CONTRACT §4, seed 001): definitions under `/interventions`,
//! remote systems opening tickets through `POST /intervention-tickets`, the
//! staff submit that queues the epilog call, and the ticket's intervention
//! view with every epilog attempt.
//!
//! The api never calls a remote itself: a submit writes the epilog call and,
//! in the same transaction, a `command.intervention.epilog` outbox row that
//! the relay sends to `<prefix>.commands`; `tickiti-dispatcher` makes the
//! call, retries it and applies the remote's final object exactly once.
//!
//! One file per sub-resource: [`definitions`] (`/interventions`),
//! [`remote_tickets`] (`POST /intervention-tickets`) and [`ticket_view`] (a
//! ticket's intervention, with its submit).

mod definitions;
mod remote_tickets;
mod ticket_view;

use tickiti_domain::ticket::BODY_MAX;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use definitions::*;
pub use remote_tickets::*;
pub use ticket_view::*;

use crate::state::AppState;

/// The intervention routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_interventions, create_intervention))
        .routes(routes!(
            get_intervention,
            update_intervention,
            delete_intervention
        ))
        .routes(routes!(create_intervention_ticket))
        .routes(routes!(get_ticket_intervention))
        .routes(routes!(submit_ticket_intervention))
}

const NOT_FOUND: &str = "INTERVENTION_NOT_FOUND";
/// Longest remote name.
const REMOTE_NAME_MAX: usize = 200;
/// Longest bearer token.
const TOKEN_MAX: usize = 4096;
/// Longest staff message of a submit.
const MESSAGE_MAX: usize = BODY_MAX;
