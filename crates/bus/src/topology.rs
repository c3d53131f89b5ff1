//! Exchange names and their declaration.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};

use crate::{Bus, BusError, ConsumerSpec, consumer::declare_queue_on, supervisor::Role};

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

/// Name of the dispatcher's queue of events and webhook commands: `<prefix>.dispatcher.events`.
pub fn dispatcher_events_queue(prefix: &str) -> String {
    format!("{prefix}.dispatcher.events")
}

/// Name of the dispatcher's queue of epilog commands: `<prefix>.dispatcher.epilog`.
pub fn dispatcher_epilog_queue(prefix: &str) -> String {
    format!("{prefix}.dispatcher.epilog")
}

/// Name of the install's parking queue: `<prefix>.parked`. A consumer puts
/// there what it cannot handle (an event type newer than itself, a message
/// that is not an event) instead of acking it away; nothing consumes it, so
/// an operator can inspect it and move it back after an upgrade.
pub fn parked_queue(prefix: &str) -> String {
    format!("{prefix}.parked")
}

/// The queue every event of `<prefix>.events` and every webhook command of
/// `<prefix>.commands` must reach: the dispatcher's fan-out input.
pub fn dispatcher_events_spec(prefix: &str) -> ConsumerSpec {
    ConsumerSpec {
        queue: dispatcher_events_queue(prefix),
        bindings: vec![
            (events_exchange(prefix), "#".into()),
            (commands_exchange(prefix), "command.webhook.#".into()),
        ],
        ..ConsumerSpec::default()
    }
}

/// The queue of the api's epilog commands (`<prefix>.commands`,
/// [`tickiti_domain::intervention::EPILOG_COMMAND`]).
pub fn dispatcher_epilog_spec(prefix: &str) -> ConsumerSpec {
    ConsumerSpec {
        queue: dispatcher_epilog_queue(prefix),
        bindings: vec![(
            commands_exchange(prefix),
            tickiti_domain::intervention::EPILOG_COMMAND.to_owned(),
        )],
        ..ConsumerSpec::default()
    }
}

/// The install's durable queues: the destinations of every event and command
/// the api's outbox publishes, and the parking queue.
///
/// Every process declares them on every (re)connect of its publishing
/// connection, before it is handed out. An exchange with no bound queue drops
/// what it is given (AMQP 0-9-1 §3.1.3.3), so the dispatcher's queue must not
/// wait for the dispatcher's first start: on a fresh or rebuilt broker the
/// api's first events would be gone. Only the queue and bindings are declared
/// here; each consumer sets its own prefetch and concurrency.
pub fn durable_queues(prefix: &str) -> Vec<ConsumerSpec> {
    vec![
        dispatcher_events_spec(prefix),
        dispatcher_epilog_spec(prefix),
        ConsumerSpec {
            queue: parked_queue(prefix),
            ..ConsumerSpec::default()
        },
    ]
}

/// Declares [`durable_queues`] with their bindings on `channel` (idempotent).
pub(crate) async fn declare_durable_queues(
    channel: &Channel,
    prefix: &str,
) -> Result<(), BusError> {
    for spec in durable_queues(prefix) {
        declare_queue_on(channel, &spec).await?;
    }
    Ok(())
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
    /// Deletes this prefix's three exchanges and its [`durable_queues`] (test
    /// clean-up; other queues go with `delete_queue`).
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let channel = self.admin_channel().await?;
        for spec in durable_queues(&self.config().prefix) {
            channel
                .queue_delete(short("queue", &spec.queue)?, Default::default())
                .await
                .map_err(BusError::Topology)?;
        }
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

    /// Declares the install's exchanges and [`durable_queues`] again, e.g.
    /// after a publish came back unroutable because a queue was deleted
    /// while this process stayed connected.
    pub async fn declare_topology(&self) -> Result<(), BusError> {
        let channel = self.admin_channel().await?;
        let prefix = &self.config().prefix;
        declare_exchanges(&channel, prefix).await?;
        declare_durable_queues(&channel, prefix).await?;
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

    /// How many messages wait in `queue` (a passive declare: an error if the
    /// queue does not exist). For the parking queue's gauge and for tests.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        let channel = self.admin_channel().await?;
        let declared = channel
            .queue_declare(
                short("queue", queue)?,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Topology)?;
        close_quietly(channel).await;
        Ok(declared.message_count())
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
