//! Tests against a real RabbitMQ (`AMQP_URL`, default the local broker).
//!
//! Each test uses its own prefix `test_<uuid>` and deletes what it declared.
//! None of them stops or restarts the broker (that is the fault test group's
//! job); the reconnect test only force-closes its own connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, time::Duration};

use lapin::{
    ExchangeKind,
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tickiti_bus::{
    Bus, BusConfig, BusError, ConsumerSpec, DEFAULT_AMQP_URL, IncomingMessage, Outcome,
    OutgoingMessage, QueueArgument, events_exchange,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

fn unique_prefix() -> String {
    format!("test_{}", Uuid::now_v7().simple())
}

async fn start_bus(prefix: &str, name: &str) -> (Bus, CancellationToken) {
    let cancel = CancellationToken::new();
    let bus = Bus::start(
        BusConfig {
            amqp_url: amqp_url(),
            prefix: prefix.to_owned(),
            connection_name: format!("{prefix}.{name}"),
        },
        cancel.clone(),
    );
    assert!(
        bus.wait_connected(WAIT).await,
        "RabbitMQ at {} is not reachable",
        amqp_url()
    );
    (bus, cancel)
}

fn message(routing_key: &str, n: usize) -> OutgoingMessage {
    let id = Uuid::now_v7();
    OutgoingMessage {
        id,
        routing_key: routing_key.to_owned(),
        payload: format!(r#"{{"n":{n},"id":"{id}"}}"#).into_bytes(),
        headers: vec![(
            "traceparent".to_owned(),
            format!("00-{}-00f067aa0ba902b7-01", Uuid::now_v7().simple()),
        )],
    }
}

fn queue_spec(queue: &str, bindings: Vec<(String, String)>) -> ConsumerSpec {
    ConsumerSpec {
        queue: queue.to_owned(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        bindings,
        prefetch: 50,
        consumer_tag: format!("{queue}.consumer"),
        ..ConsumerSpec::default()
    }
}

/// A consumer whose handler forwards each message to the test and acks it.
fn forward_and_ack(bus: &Bus, spec: ConsumerSpec) -> mpsc::UnboundedReceiver<IncomingMessage> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.consume(spec, move |message| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(message);
            Outcome::Ack
        }
    });
    rx
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<IncomingMessage>) -> IncomingMessage {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .expect("consumer stopped")
}

/// (ready messages, consumers) of a queue, read with a passive queue.declare.
/// Messages of `queue` delivered and not yet acked, as the broker counts
/// them (AMQP itself does not tell; `rabbitmqctl` does).
async fn unacked(queue: &str) -> u32 {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers"])
        .args(["name", "messages_unacknowledged"])
        .output()
        .await
        .expect("rabbitmqctl lists queues");
    assert!(out.status.success(), "rabbitmqctl list_queues failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (name, count) = line.split_once('\t')?;
            (name == queue).then(|| count.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{queue} is not listed"))
}

async fn queue_counts(queue: &str) -> (u32, u32) {
    let conn = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "test done".into()).await;
    (q.message_count(), q.consumer_count())
}

async fn exchange_exists(name: &str) -> bool {
    let conn = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let exists = channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    let _ = conn.close(200, "test done".into()).await;
    exists
}

async fn clean_up(bus: &Bus, queues: &[&str]) {
    for queue in queues {
        bus.delete_queue(queue).await.unwrap();
    }
    bus.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_confirmed_is_received_and_acked() {
    let prefix = unique_prefix();
    let (publisher, publisher_cancel) = start_bus(&prefix, "publisher").await;
    let (consumer_bus, consumer_cancel) = start_bus(&prefix, "consumer").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.test.events");
    let spec = queue_spec(&queue, vec![(exchange.clone(), "ticket.*".to_owned())]);
    consumer_bus.declare_queue(&spec).await.unwrap();

    // concurrency 1: a delivery is only taken once the previous one is acked.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _consumer = consumer_bus.consume(spec, move |message: IncomingMessage| {
        let tx = tx.clone();
        async move {
            let last = message.routing_key == "ticket.last";
            let _ = tx.send(message);
            if last {
                // Never finishes: must not be acked when the bus is cancelled.
                std::future::pending::<()>().await;
            }
            Outcome::Ack
        }
    });

    let sent: Vec<_> = (0..10).map(|n| message("ticket.created", n)).collect();
    publisher.publish_confirmed(&exchange, &sent).await.unwrap();
    // Unbound routing key: confirmed (mandatory=false) but delivered nowhere.
    publisher
        .publish_confirmed(&exchange, &[message("contact.created", 99)])
        .await
        .unwrap();

    let mut seen = HashSet::new();
    for expected in &sent {
        let got = recv(&mut rx).await;
        assert_eq!(got.id, Some(expected.id), "delivered in publish order");
        assert_eq!(got.routing_key, "ticket.created");
        assert_eq!(got.exchange, exchange);
        assert_eq!(got.payload, expected.payload);
        assert_eq!(
            got.header("traceparent"),
            Some(expected.headers[0].1.as_str())
        );
        assert!(!got.redelivered);
        seen.insert(got.id);
    }
    assert_eq!(seen.len(), 10);

    let last = message("ticket.last", 10);
    publisher
        .publish_confirmed(&exchange, std::slice::from_ref(&last))
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await.id, Some(last.id));

    // Stopping the consumer's bus closes its connection: the ten acked
    // messages are gone, the unfinished one is back in the queue.
    consumer_cancel.cancel();
    let deadline = tokio::time::Instant::now() + WAIT;
    let (ready, consumers) = loop {
        let counts = queue_counts(&queue).await;
        if counts.1 == 0 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(consumers, 0);
    assert_eq!(ready, 1, "only the unfinished message is requeued");

    clean_up(&publisher, &[&queue]).await;
    publisher_cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_is_confirmed_and_received() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "batch").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.batch");
    let spec = ConsumerSpec {
        concurrency: 8,
        ..queue_spec(&queue, vec![(exchange.clone(), "#".to_owned())])
    };
    bus.declare_queue(&spec).await.unwrap();
    let mut rx = forward_and_ack(&bus, spec);

    let sent: Vec<_> = (0..200)
        .map(|n| {
            message(
                if n % 2 == 0 {
                    "ticket.created"
                } else {
                    "message.created"
                },
                n,
            )
        })
        .collect();
    bus.publish_confirmed(&exchange, &sent).await.unwrap();

    let expected: HashSet<_> = sent.iter().map(|m| Some(m.id)).collect();
    let mut seen = HashSet::new();
    while seen.len() < expected.len() {
        let got = recv(&mut rx).await;
        assert!(
            expected.contains(&got.id),
            "unexpected message {:?}",
            got.id
        );
        seen.insert(got.id);
    }
    assert_eq!(seen, expected);

    clean_up(&bus, &[&queue]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_are_all_confirmed() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "concurrent").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.concurrent");
    let spec = queue_spec(&queue, vec![(exchange.clone(), "#".to_owned())]);
    bus.declare_queue(&spec).await.unwrap();
    let mut rx = forward_and_ack(&bus, spec);

    let batches: Vec<Vec<_>> = (0..8)
        .map(|b| {
            (0..25)
                .map(|n| message("ticket.updated", b * 25 + n))
                .collect()
        })
        .collect();
    let publishes = batches.iter().map(|batch| {
        let bus = bus.clone();
        let exchange = exchange.clone();
        let batch = batch.clone();
        tokio::spawn(async move { bus.publish_confirmed(&exchange, &batch).await })
    });
    for result in futures::future::join_all(publishes).await {
        result.unwrap().unwrap();
    }

    let expected: HashSet<_> = batches.iter().flatten().map(|m| Some(m.id)).collect();
    let mut seen = HashSet::new();
    while seen.len() < expected.len() {
        seen.insert(recv(&mut rx).await.id);
    }
    assert_eq!(seen, expected);

    clean_up(&bus, &[&queue]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_makes_the_broker_redeliver() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "requeue").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.requeue");
    let spec = queue_spec(&queue, vec![(exchange.clone(), "ticket.#".to_owned())]);
    bus.declare_queue(&spec).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.consume(spec, move |message: IncomingMessage| {
        let tx = tx.clone();
        async move {
            let outcome = if message.redelivered {
                Outcome::Ack
            } else {
                Outcome::Requeue
            };
            let _ = tx.send(message);
            outcome
        }
    });

    let sent = message("ticket.created", 1);
    bus.publish_confirmed(&exchange, std::slice::from_ref(&sent))
        .await
        .unwrap();

    let first = recv(&mut rx).await;
    assert_eq!(first.id, Some(sent.id));
    assert!(!first.redelivered);
    let second = recv(&mut rx).await;
    assert_eq!(second.id, Some(sent.id));
    assert!(
        second.redelivered,
        "the requeued copy is marked redelivered"
    );
    assert_eq!(second.payload, sent.payload);

    clean_up(&bus, &[&queue]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_when_the_bus_is_not_connected() {
    let cancel = CancellationToken::new();
    let bus = Bus::start(
        BusConfig {
            // Nothing listens on port 1: every connection attempt is refused.
            amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            prefix: unique_prefix(),
            connection_name: "test.unreachable".to_owned(),
        },
        cancel.clone(),
    );
    assert!(!bus.is_connected());
    assert!(!bus.wait_connected(Duration::from_millis(500)).await);

    let result = bus
        .publish_confirmed("whatever.events", &[message("ticket.created", 1)])
        .await;
    assert!(
        matches!(result, Err(BusError::NotConnected)),
        "got {result:?}"
    );
    assert!(matches!(
        bus.delete_topology().await,
        Err(BusError::NotConnected)
    ));

    // A consumer waiting for a connection stops promptly on cancel.
    let consumer = bus.consume(queue_spec("never", Vec::new()), |_| async { Outcome::Ack });
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .expect("consumer did not stop on cancel")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_error_fails_the_batch_and_the_next_publish_works() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "channel-error").await;
    let exchange = events_exchange(&prefix);

    // Publishing to a missing exchange is a channel exception (404 NOT_FOUND):
    // the broker closes the confirm channel, so the batch is not confirmed.
    let missing = format!("{prefix}.missing");
    let result = bus
        .publish_confirmed(&missing, &[message("ticket.created", 1)])
        .await;
    assert!(
        matches!(result, Err(BusError::Confirm(_) | BusError::Publish { .. })),
        "got {result:?}"
    );
    assert!(bus.is_connected(), "a channel error keeps the connection");

    // The next call opens a fresh confirm channel.
    bus.publish_confirmed(&exchange, &[message("ticket.created", 2)])
        .await
        .unwrap();

    // Names longer than an AMQP short string are refused, not a panic.
    let long = "x".repeat(300);
    assert!(matches!(
        bus.publish_confirmed(&exchange, &[message(&long, 3)]).await,
        Err(BusError::InvalidName { .. })
    ));

    clean_up(&bus, &[]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_declared_and_deleted() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "topology").await;
    let names = [
        bus.events_exchange(),
        bus.commands_exchange(),
        bus.realtime_exchange(),
    ];
    assert_eq!(
        names,
        [
            format!("{prefix}.events"),
            format!("{prefix}.commands"),
            format!("{prefix}.realtime")
        ]
    );
    for name in &names {
        assert!(exchange_exists(name).await, "{name} declared on connect");
    }
    bus.delete_topology().await.unwrap();
    for name in &names {
        assert!(!exchange_exists(name).await, "{name} deleted");
    }
    // Deleting again is harmless.
    bus.delete_topology().await.unwrap();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_queue_dead_letters_back_to_the_events_exchange() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "retry").await;
    let exchange = events_exchange(&prefix);
    let work = format!("{prefix}.work");
    let retry = format!("{prefix}.retry.1s");
    let work_spec = queue_spec(&work, vec![(exchange.clone(), "delivery.due".to_owned())]);
    bus.declare_queue(&work_spec).await.unwrap();
    // A retry tier: no consumer; messages expire after the TTL and are
    // dead-lettered to the events exchange with a new routing key.
    bus.declare_queue(&ConsumerSpec {
        arguments: vec![
            ("x-message-ttl".to_owned(), QueueArgument::Int(200)),
            (
                "x-dead-letter-exchange".to_owned(),
                QueueArgument::String(exchange.clone()),
            ),
            (
                "x-dead-letter-routing-key".to_owned(),
                QueueArgument::String("delivery.due".to_owned()),
            ),
        ],
        ..queue_spec(&retry, Vec::new())
    })
    .await
    .unwrap();
    let mut rx = forward_and_ack(&bus, work_spec);

    // The default exchange ("") routes by queue name (AMQP 0-9-1 §3.1.3.1).
    let sent = message(&retry, 1);
    bus.publish_confirmed("", std::slice::from_ref(&sent))
        .await
        .unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(got.id, Some(sent.id));
    assert_eq!(got.routing_key, "delivery.due");
    assert_eq!(got.exchange, exchange);

    clean_up(&bus, &[&work, &retry]).await;
    cancel.cancel();
}

/// Force-closes this test's consuming connection with `rabbitmqctl`, which only
/// affects our own connection (the broker keeps running). False when this
/// machine's `rabbitmqctl` is missing or manages another broker than `AMQP_URL`.
async fn force_close_connection(connection_name: &str) -> bool {
    // Table output, not JSON: JSON drops the node name from the pid, and
    // close_connection needs the full `<rabbit@host.N.M.K>`.
    let Ok(output) = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--quiet",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .await
    else {
        return false;
    };
    if !output.status.success() {
        return false;
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    let quoted = format!("\"{connection_name}\"");
    let mut closed = false;
    for line in listing.lines().filter(|line| line.contains(&quoted)) {
        let pid = line.split('\t').next().unwrap().trim();
        let status = tokio::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "tickiti-bus reconnect test"])
            .status()
            .await
            .unwrap();
        assert!(
            status.success(),
            "rabbitmqctl close_connection {pid} failed"
        );
        closed = true;
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_resumes_on_the_next_connection() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "reconnect").await;
    let exchange = events_exchange(&prefix);
    // An exclusive queue dies with its connection, so this also proves the
    // queue and its binding are declared again on the new connection. Empty
    // queue name and tag: the broker names both (as a realtime process may).
    let spec = ConsumerSpec {
        exclusive: true,
        auto_delete: true,
        consumer_tag: String::new(),
        ..queue_spec("", vec![(exchange.clone(), "#".to_owned())])
    };
    let mut rx = forward_and_ack(&bus, spec);

    // Publish until the consumer's queue exists and a message arrives.
    let deliver_one = async |rx: &mut mpsc::UnboundedReceiver<IncomingMessage>| {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let _ = bus
                .publish_confirmed(&exchange, &[message("ticket.created", 0)])
                .await;
            if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "no delivery");
        }
    };
    deliver_one(&mut rx).await;

    if !force_close_connection(&format!("{prefix}.reconnect.consume")).await {
        eprintln!("skipping the reconnect half: no local rabbitmqctl manages this broker");
        bus.delete_topology().await.unwrap();
        cancel.cancel();
        return;
    }
    // The exclusive queue died with the closed connection: a delivery now
    // means the consumer redeclared it on a new connection and resumed.
    while rx.try_recv().is_ok() {}
    deliver_one(&mut rx).await;

    bus.delete_topology().await.unwrap();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_requeued_once_then_dead_lettered() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "panic").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.panicky");
    let dead = format!("{prefix}.dead");
    let dead_spec = queue_spec(&dead, vec![(exchange.clone(), "dead.letter".to_owned())]);
    bus.declare_queue(&dead_spec).await.unwrap();
    let spec = ConsumerSpec {
        arguments: vec![
            (
                "x-dead-letter-exchange".to_owned(),
                QueueArgument::String(exchange.clone()),
            ),
            (
                "x-dead-letter-routing-key".to_owned(),
                QueueArgument::String("dead.letter".to_owned()),
            ),
        ],
        ..queue_spec(&queue, vec![(exchange.clone(), "ticket.#".to_owned())])
    };
    bus.declare_queue(&spec).await.unwrap();
    let mut dead_rx = forward_and_ack(&bus, dead_spec);
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.consume(spec, move |message: IncomingMessage| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(message);
            panic!("handler bug (expected by this test)");
        }
    });

    let sent = message("ticket.created", 1);
    bus.publish_confirmed(&exchange, std::slice::from_ref(&sent))
        .await
        .unwrap();
    let first = recv(&mut rx).await;
    assert!(!first.redelivered);
    let second = recv(&mut rx).await;
    assert!(second.redelivered);
    let dead_lettered = recv(&mut dead_rx).await;
    assert_eq!(dead_lettered.id, Some(sent.id));
    assert!(rx.try_recv().is_err(), "no third delivery");

    clean_up(&bus, &[&queue, &dead]).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handlers_finishing_out_of_order_leave_nothing_unacked() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "out-of-order").await;
    let exchange = events_exchange(&prefix);
    let queue = format!("{prefix}.out-of-order");
    let spec = ConsumerSpec {
        concurrency: 32,
        prefetch: 64,
        ..queue_spec(&queue, vec![(exchange.clone(), "#".to_owned())])
    };
    bus.declare_queue(&spec).await.unwrap();
    // Handlers take 0–9 ms (by the random end of the message id): they
    // finish out of order, in runs and alone, the cases acked differently.
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.consume(spec, move |message| {
        let tx = tx.clone();
        async move {
            let ms = message.id.map_or(0, |id| id.as_bytes()[15] % 10);
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
            let _ = tx.send(message);
            Outcome::Ack
        }
    });
    let sent: Vec<_> = (0..500).map(|n| message("ticket.updated", n)).collect();
    bus.publish_confirmed(&exchange, &sent).await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < sent.len() {
        seen.insert(recv(&mut rx).await.id);
    }
    // Until the broker has every ack (closing the channel earlier would
    // requeue the unacked, which the count below would catch).
    let deadline = tokio::time::Instant::now() + WAIT;
    while unacked(&queue).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages stayed unacked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue_counts(&queue).await.1 > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        queue_counts(&queue).await.0,
        0,
        "messages were left unacked"
    );
    let (bus, cancel) = start_bus(&prefix, "cleanup").await;
    clean_up(&bus, &[&queue]).await;
    cancel.cancel();
}

/// A message no queue takes is an error for the outbox (it stays unpublished
/// and is retried), never a silent drop; live-only messages may go nowhere.
/// The install's durable queues exist as soon as a publisher is connected,
/// and a deleted one comes back after the return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_publish_is_an_error_and_the_topology_comes_back() {
    let prefix = unique_prefix();
    let (bus, cancel) = start_bus(&prefix, "publisher").await;
    let realtime = tickiti_bus::realtime_exchange(&prefix);
    let result = bus
        .publish_confirmed(&realtime, &[message("org.x.ticket", 0)])
        .await;
    assert!(
        matches!(result, Err(BusError::Unroutable { .. })),
        "{result:?}"
    );
    bus.publish_to_listeners(&realtime, &[message("org.x.ticket", 1)])
        .await
        .unwrap();

    let queue = tickiti_bus::dispatcher_events_queue(&prefix);
    assert_eq!(
        bus.queue_depth(&queue).await.unwrap(),
        0,
        "declared on connect"
    );
    bus.delete_queue(&queue).await.unwrap();
    let events = events_exchange(&prefix);
    let result = bus
        .publish_confirmed(&events, &[message("ticket.created", 2)])
        .await;
    assert!(
        matches!(result, Err(BusError::Unroutable { .. })),
        "{result:?}"
    );
    bus.publish_confirmed(&events, &[message("ticket.created", 3)])
        .await
        .unwrap();
    assert_eq!(
        bus.queue_depth(&queue).await.unwrap(),
        1,
        "the retry arrived"
    );
    bus.delete_topology().await.unwrap();
    cancel.cancel();
}
