//! Webhooks: endpoints, their deliveries (one per endpoint and event) and
//! every attempt. Written by the api (management, test, resend, recover) and
//! by the dispatcher (fan-out, claiming and finishing attempts).
//!
//! A delivery's life: `pending` (created, `queued_at` NULL) → its work
//! message is handed to the broker (`queued_at` set) → a worker claims attempt
//! N (`attempt` = N, `locked_until` set) → `success`, `retrying` (queued again
//! for attempt N+1) or `failed`. Claiming compares the attempt number, so a
//! duplicate work message never makes a second attempt on purpose.
//!
//! One file per aggregate: [`endpoints`], [`deliveries`], [`events`], [`queue`], [`attempts`], [`prune`].

mod attempts;
mod deliveries;
mod endpoints;
mod events;
mod prune;
mod queue;

pub use attempts::*;
pub use deliveries::*;
pub use endpoints::*;
pub use events::*;
pub use prune::*;
pub use queue::*;
