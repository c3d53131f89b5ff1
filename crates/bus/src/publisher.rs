//! Publishing with publisher confirms.
//!
//! Concurrency design: every caller shares one confirm-mode channel on the
//! publishing connection, and *sending* a batch is serialized on a tokio
//! mutex, while *awaiting* the broker's confirms happens after the mutex is
//! released.
//!
//! Why the mutex: lapin assigns a message's confirm number (its delivery tag,
//! <https://www.rabbitmq.com/docs/confirms#publisher-confirms-delivery-tags>)
//! and queues its frames under two different locks. Two tasks publishing on
//! one channel from two worker threads could therefore queue their frames in
//! the opposite order of their tags, and each would be told about the other's
//! confirm. Why not a channel per call: that costs two extra round trips per
//! batch (`channel.open` + `confirm.select`) and churns channel ids, while
//! holding the lock only for the send keeps concurrent callers pipelined.

use std::{
    future::{Future, poll_fn},
    pin::Pin,
    task::Poll,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use uuid::Uuid;

use crate::{Bus, BusError, supervisor::Role, topology::short};

/// A whole batch must be sent and confirmed within this time, otherwise the
/// caller gets `BusError::Timeout` and retries later. It bounds the wait when
/// the broker blocks publishers during a resource alarm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// One message to publish; `id` becomes the AMQP `message-id` property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The event or command id (UUID v7), used by consumers for idempotency.
    pub id: Uuid,
    /// Topic routing key, e.g. the event type `ticket.created`.
    pub routing_key: String,
    /// The body, JSON.
    pub payload: Vec<u8>,
    /// Application headers sent as AMQP string headers, e.g. `traceparent`.
    pub headers: Vec<(String, String)>,
}

/// The shared confirm channel, replaced when its connection or the channel itself dies.
#[derive(Default)]
pub(crate) struct PublisherSlot {
    current: Option<ConfirmChannel>,
    next_serial: u64,
}

struct ConfirmChannel {
    /// Generation of the connection it was opened on.
    generation: u64,
    /// Identifies this channel instance, so a timed-out caller discards only
    /// the channel it used, never a newer one.
    serial: u64,
    channel: Channel,
}

impl PublisherSlot {
    /// The current confirm channel, opened (again) when needed.
    async fn channel(&mut self, bus: &Bus) -> Result<(u64, Channel), BusError> {
        let link = bus
            .current_link(Role::Publish)
            .ok_or(BusError::NotConnected)?;
        if let Some(current) = &self.current
            && current.generation == link.generation
            && current.channel.status().connected()
        {
            return Ok((current.serial, current.channel.clone()));
        }
        // Either a new connection, or the broker closed the channel after a
        // channel exception (e.g. 404 publishing to a missing exchange).
        self.current = None;
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(BusError::Channel)?;
        // confirm.select is the RabbitMQ extension that makes the broker ack
        // (or nack) every message published on this channel.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::Channel)?;
        self.next_serial += 1;
        self.current = Some(ConfirmChannel {
            generation: link.generation,
            serial: self.next_serial,
            channel: channel.clone(),
        });
        Ok((self.next_serial, channel))
    }

    /// Forgets the channel `serial` if it is still the current one.
    fn discard(&mut self, serial: u64) {
        if self.current.as_ref().is_some_and(|c| c.serial == serial) {
            self.current = None;
        }
    }
}

struct Prepared {
    routing_key: ShortString,
    properties: BasicProperties,
}

fn prepare(message: &OutgoingMessage, timestamp: u64) -> Result<Prepared, BusError> {
    let mut headers = FieldTable::default();
    for (name, value) in &message.headers {
        headers.insert(
            short("header", name)?,
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    let properties = BasicProperties::default()
        // 2 = persistent: a durable queue keeps the message across a broker
        // restart (AMQP 0-9-1 basic class, delivery-mode property).
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message.id.to_string().into())
        .with_timestamp(timestamp)
        .with_headers(headers);
    Ok(Prepared {
        routing_key: short("routing key", &message.routing_key)?,
        properties,
    })
}

impl Bus {
    /// Publishes a batch and returns Ok only once the broker has confirmed
    /// every message and routed each to at least one queue.
    ///
    /// Any nack, a message no queue took (`mandatory`, returned by the
    /// broker), a bus that is not connected, a connection or channel lost
    /// before every confirm arrived, or no answer within 30 s is an `Err`:
    /// the caller (the outbox relay) must then leave its rows unpublished and
    /// retry. A retry may duplicate messages the broker did take, which the
    /// consumers' idempotency absorbs (at least once, never lost). After a
    /// return the install's topology is declared again, so the retry finds
    /// the queue a deleted one left missing.
    pub async fn publish_confirmed(
        &self,
        exchange: &str,
        messages: &[OutgoingMessage],
    ) -> Result<(), BusError> {
        let result = self.publish(exchange, messages, true).await;
        if let Err(BusError::Unroutable { .. }) = &result
            && let Err(error) = self.declare_topology().await
        {
            tracing::warn!(%error, "declaring the topology again after a return failed");
        }
        result
    }

    /// Publishes a batch of live-only messages (locks, presence, counts)
    /// whose queues exist only while a listener runs: confirmed like
    /// [`Bus::publish_confirmed`], but a message no queue takes is simply
    /// dropped, which is what nobody listening means.
    pub async fn publish_to_listeners(
        &self,
        exchange: &str,
        messages: &[OutgoingMessage],
    ) -> Result<(), BusError> {
        self.publish(exchange, messages, false).await
    }

    #[tracing::instrument(
        name = "bus.publish_confirmed",
        skip_all,
        fields(
            messaging.system = "rabbitmq",
            messaging.destination.name = exchange,
            messaging.batch.message_count = messages.len(),
        )
    )]
    async fn publish(
        &self,
        exchange: &str,
        messages: &[OutgoingMessage],
        mandatory: bool,
    ) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        // Validate everything before sending anything, so a bad name fails
        // the batch up front instead of after half of it went out.
        let exchange_name = short("exchange", exchange)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let prepared = messages
            .iter()
            .map(|message| prepare(message, timestamp))
            .collect::<Result<Vec<_>, _>>()?;

        let mut used_serial = None;
        let outcome = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.publish_and_confirm(
                exchange,
                exchange_name,
                prepared,
                messages,
                mandatory,
                &mut used_serial,
            ),
        )
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                // A wedged channel would keep every later batch waiting too.
                if let Some(serial) = used_serial {
                    self.inner.publisher.lock().await.discard(serial);
                }
                Err(BusError::Timeout(PUBLISH_TIMEOUT))
            }
        }
    }

    async fn publish_and_confirm(
        &self,
        exchange: &str,
        exchange_name: ShortString,
        prepared: Vec<Prepared>,
        messages: &[OutgoingMessage],
        mandatory: bool,
        used_serial: &mut Option<u64>,
    ) -> Result<(), BusError> {
        let confirms = {
            let mut slot = self.inner.publisher.lock().await;
            let (serial, channel) = slot.channel(self).await?;
            *used_serial = Some(serial);
            match send_in_order(&channel, &exchange_name, prepared, messages, mandatory).await {
                Ok(confirms) => confirms,
                Err(source) => {
                    slot.discard(serial);
                    return Err(BusError::Publish {
                        exchange: exchange.to_owned(),
                        source,
                    });
                }
            }
            // The lock is released here: the next caller may send while we
            // wait for our confirms; each confirm is tied to its own tag.
        };

        let total = confirms.len();
        let mut nacked = 0;
        let mut returned = 0;
        let mut failure = None;
        // Await every confirm, even after a failure: an abandoned confirm is
        // parked by lapin until the channel closes.
        for result in futures::future::join_all(confirms).await {
            match result {
                // With `mandatory`, the broker sends basic.return before the
                // ack of a message no queue took (RabbitMQ confirms docs).
                Ok(Confirmation::Ack(Some(_))) => returned += 1,
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Nack(_)) => nacked += 1,
                Ok(Confirmation::NotRequested) => {
                    failure.get_or_insert(BusError::ConfirmsNotEnabled);
                }
                Err(error) => {
                    failure.get_or_insert(BusError::Confirm(error));
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        if nacked > 0 {
            return Err(BusError::Nacked { nacked, total });
        }
        if returned > 0 {
            return Err(BusError::Unroutable {
                exchange: exchange.to_owned(),
                returned,
                total,
            });
        }
        Ok(())
    }
}

type SendFuture<'a> = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send + 'a>>;

/// Sends the whole batch, pipelined, keeping confirm tags in message order.
///
/// Each `basic_publish` registers its confirm tag and queues its frames on
/// its *first* poll; polling the sends in index order therefore hands them to
/// the connection in order, without waiting for one write before queuing the
/// next (200 messages go out in a few socket writes, not 200).
async fn send_in_order(
    channel: &Channel,
    exchange: &ShortString,
    prepared: Vec<Prepared>,
    messages: &[OutgoingMessage],
    mandatory: bool,
) -> lapin::Result<Vec<PublisherConfirm>> {
    let mut sends: Vec<SendFuture<'_>> = prepared
        .into_iter()
        .zip(messages)
        .map(|(prepared, message)| {
            Box::pin(channel.basic_publish(
                exchange.clone(),
                prepared.routing_key,
                // mandatory: a message no queue takes comes back
                // (basic.return, AMQP 0-9-1 §1.8.3.9) instead of being
                // dropped while still confirmed.
                BasicPublishOptions {
                    mandatory,
                    immediate: false,
                },
                &message.payload,
                prepared.properties,
            )) as SendFuture<'_>
        })
        .collect();
    let mut done: Vec<Option<lapin::Result<PublisherConfirm>>> =
        sends.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (send, slot) in sends.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match send.as_mut().poll(cx) {
                    Poll::Ready(result) => *slot = Some(result),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
