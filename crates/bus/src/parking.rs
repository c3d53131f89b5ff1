//! Parking: what a consumer cannot handle goes to the install's parking
//! queue ([`crate::parked_queue`]) instead of being acked away or rejected
//! into nothing.
//!
//! A message is parked when this version cannot read it: an event type newer
//! than the consumer (an api upgraded before its dispatcher, in a rolling
//! upgrade) or a body that does not parse. Nothing consumes the parking
//! queue; an operator inspects it in the management UI and moves its
//! messages back after the upgrade (RabbitMQ's shovel, or
//! `rabbitmqadmin`), where the headers below say where each came from.

use uuid::Uuid;

use crate::{Bus, IncomingMessage, Outcome, OutgoingMessage, topology::parked_queue};

/// Header: why the message was parked.
pub const PARKED_REASON: &str = "x-tickiti-parked-reason";
/// Header: the exchange the message was first published to.
pub const PARKED_EXCHANGE: &str = "x-tickiti-parked-exchange";
/// Header: the routing key it was first published with.
pub const PARKED_ROUTING_KEY: &str = "x-tickiti-parked-routing-key";

impl Bus {
    /// Republishes `message` (body and headers kept, plus where it came from
    /// and `reason`) to the parking queue, confirmed and `mandatory`, and
    /// answers what the handler should tell the broker: `Ack` once the copy
    /// is safe, else `Requeue`, so the message is never lost on the way.
    pub async fn park(&self, message: &IncomingMessage, reason: &str) -> Outcome {
        let mut headers = message.headers.clone();
        headers.retain(|(key, _)| !key.starts_with("x-tickiti-parked-"));
        headers.push((PARKED_REASON.to_owned(), reason.to_owned()));
        headers.push((PARKED_EXCHANGE.to_owned(), message.exchange.clone()));
        headers.push((PARKED_ROUTING_KEY.to_owned(), message.routing_key.clone()));
        let parked = OutgoingMessage {
            id: message.id.unwrap_or_else(Uuid::now_v7),
            // The default exchange routes by queue name.
            routing_key: parked_queue(&self.config().prefix),
            payload: message.payload.clone(),
            headers,
        };
        match self
            .publish_confirmed("", std::slice::from_ref(&parked))
            .await
        {
            Ok(()) => {
                tracing::warn!(
                    reason,
                    routing_key = %message.routing_key,
                    queue = %parked.routing_key,
                    "message parked: this version cannot handle it"
                );
                Outcome::Ack
            }
            Err(error) => {
                tracing::warn!(%error, reason, "parking failed; the message is requeued");
                // A short pause so a broker outage does not spin.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Outcome::Requeue
            }
        }
    }
}
