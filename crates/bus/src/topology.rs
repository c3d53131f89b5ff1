//! Exchange names and their declaration.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, ExchangeDeleteOptions},
    types::{FieldTable, ShortString},
};

use crate::{Bus, BusError, supervisor::Role};

/// Name of the events exchange: `<prefix>.events` (topic; routing key = event type).
pub fn events_exchange(prefix: &str) -> String {
    format!("{prefix}.events")
}

/// Name of the commands exchange between services: `<prefix>.commands` (topic).
pub fn commands_exchange(prefix: &str) -> String {
    format!("{prefix}.commands")
}

/// Name of the presence/locks exchange between realtime processes: `<prefix>.realtime` (topic).
pub fn realtime_exchange(prefix: &str) -> String {
    format!("{prefix}.realtime")
}

fn all_exchanges(prefix: &str) -> [String; 3] {
    [
        events_exchange(prefix),
        commands_exchange(prefix),
        realtime_exchange(prefix),
    ]
}

/// Converts a name to an AMQP short string (at most 255 bytes, AMQP 0-9-1 §4.2.5.3).
///
/// lapin's `From<&str>` panics on longer strings; a name built from user data
/// must not be able to panic a publisher or consumer.
pub(crate) fn short(field: &'static str, value: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(value).map_err(|source| BusError::InvalidName { field, source })
}

/// Declares the prefix's exchanges: all topic, durable, not auto-delete.
///
/// `exchange.declare` is idempotent when the arguments match (AMQP 0-9-1
/// §1.4.2.1), which is what makes "declare again on every reconnect" safe.
pub(crate) async fn declare_exchanges(channel: &Channel, prefix: &str) -> Result<(), BusError> {
    for name in all_exchanges(prefix) {
        channel
            .exchange_declare(
                short("exchange", &name)?,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Topology)?;
    }
    Ok(())
}

impl Bus {
    /// Deletes this prefix's three exchanges (test clean-up; queues go with `delete_queue`).
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let channel = self.admin_channel().await?;
        for name in all_exchanges(&self.config().prefix) {
            // exchange.delete of a missing exchange is not an error in
            // RabbitMQ 3.x (it answers delete-ok), so clean-up is repeatable.
            channel
                .exchange_delete(short("exchange", &name)?, ExchangeDeleteOptions::default())
                .await
                .map_err(BusError::Topology)?;
        }
        close_quietly(channel).await;
        Ok(())
    }

    /// Deletes a queue whatever its consumers or messages (test clean-up).
    pub async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        let channel = self.admin_channel().await?;
        channel
            .queue_delete(short("queue", queue)?, Default::default())
            .await
            .map_err(BusError::Topology)?;
        close_quietly(channel).await;
        Ok(())
    }

    /// A short-lived channel on the consuming connection, for declare/delete work.
    ///
    /// Not the publisher's confirm channel: a failing declaration closes its
    /// channel (AMQP 0-9-1 channel exceptions), which must not take in-flight
    /// confirms down with it.
    pub(crate) async fn admin_channel(&self) -> Result<Channel, BusError> {
        let link = self
            .current_link(Role::Consume)
            .ok_or(BusError::NotConnected)?;
        link.conn.create_channel().await.map_err(BusError::Channel)
    }
}

/// Closes a channel we are done with; failure only means it is already gone.
pub(crate) async fn close_quietly(channel: Channel) {
    if let Err(error) = channel.close(200, "done".into()).await {
        tracing::debug!(%error, "closing a channel failed (already closed?)");
    }
}
