//! One browser socket: hello within 5 s (else 4408), token check (else
//! 4401), welcome and replay, then frames both ways under the limits of
//! [`crate::limits`] until either side closes.
//!
//! One task per socket, with one loop that reads, writes and keeps time;
//! a write that cannot finish (the client does not read) is abandoned when
//! the socket is told to close, so a slow client never holds its task.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use uuid::Uuid;

use crate::Ctx;
use crate::hub::{Peer, now_ms};
use crate::limits::{FloodGuard, MAX_CLIENT_FRAME, Timing, close};
use crate::locks::{Claim, LOCK_TTL, LockUser, Release};
use crate::protocol::{ClientFrame, PONG, Resume, error_frame};

/// The protocol-level cap on a client message: larger ones fail in the
/// websocket library before they are buffered whole. Frames between
/// [`MAX_CLIENT_FRAME`] and this are read and answered with a clean 1009.
const PROTOCOL_MAX: usize = 64 * 1024;
/// Initial read buffer per socket (tungstenite's default of 128 KiB per idle
/// socket would dwarf everything else a socket costs).
const READ_BUFFER: usize = 4 * 1024;
/// How long a close frame may take to get out, and how long the client's
/// answering close is waited for.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Frames written with one flush (one syscall) when several are queued.
const WRITE_BATCH: usize = 64;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// `GET /ws`: upgrades to a websocket (503 when this process is full or stopping).
pub async fn upgrade(State(ctx): State<Arc<Ctx>>, ws: WebSocketUpgrade) -> Response {
    if ctx.shutdown.is_cancelled() || ctx.hub.connections() >= ctx.config.max_connections {
        return (StatusCode::SERVICE_UNAVAILABLE, "realtime service busy").into_response();
    }
    ws.read_buffer_size(READ_BUFFER)
        // 0: every frame is written at once (latency), nothing lingers in a buffer.
        .write_buffer_size(0)
        .max_message_size(PROTOCOL_MAX)
        .max_frame_size(PROTOCOL_MAX)
        .on_upgrade(move |socket| {
            let tracker = ctx.tracker.clone();
            tracker.track_future(connection(ctx, socket))
        })
}

fn reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "going away",
        close::TOO_BIG => "frame too large",
        close::SERVICE_RESTART => "reconnect and resume",
        close::UNAUTHORIZED => "bad token",
        close::TOO_SLOW => "too slow",
        close::HELLO_TIMEOUT => "no hello in time",
        close::FLOOD => "too many frames",
        _ => "",
    }
}

/// Whether a read error is the websocket library refusing an oversized message.
fn is_too_big(error: &axum::Error) -> bool {
    let text = error.to_string();
    // tungstenite's Capacity errors ("Space limit exceeded: Message too long: …").
    text.contains("Space limit exceeded") || text.contains("too long")
}

enum HelloEnd {
    /// Close with this code.
    Close(u16),
    /// The client went away.
    Gone,
}

struct Hello {
    token: String,
    resume: Option<Resume>,
}

async fn connection(ctx: Arc<Ctx>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let timing = ctx.config.timing();
    let mut flood = FloodGuard::new(std::time::Instant::now());
    let hello = tokio::select! {
        hello = tokio::time::timeout(timing.hello_timeout, read_hello(&mut stream, &mut flood)) => hello,
        () = ctx.shutdown.cancelled() => {
            return finish(&ctx, sink, stream, close::GOING_AWAY).await;
        }
    };
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(HelloEnd::Close(code))) => return finish(&ctx, sink, stream, code).await,
        Ok(Err(HelloEnd::Gone)) => return,
        Err(_) => return finish(&ctx, sink, stream, close::HELLO_TIMEOUT).await,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = match ctx.hub.authenticate(&hello.token, now) {
        Ok(claims) => claims,
        Err(error) => {
            tracing::debug!(%error, "hello refused");
            return finish(&ctx, sink, stream, close::UNAUTHORIZED).await;
        }
    };
    let (peer, rx) = ctx.hub.join(claims, hello.resume.as_ref());
    let end = session(&ctx, &peer, rx, &mut sink, &mut stream, &mut flood, timing).await;
    ctx.hub.leave(&peer);
    // Locks go with the socket that took them (CONTRACT §5).
    for held in ctx.hub.locks_of(&peer.conn) {
        crate::fanout::publish_release(
            &ctx,
            Release {
                org: held.org,
                ticket_id: held.ticket_id,
                user_id: held.user.id,
                conn: Some(peer.conn.clone()),
            },
        );
    }
    match end {
        Some(code) => finish(&ctx, sink, stream, code).await,
        None => {
            // The client closed or vanished: answer its close if it sent one.
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
    }
}

/// Reads until the hello. Anything else first is refused with 4401.
async fn read_hello(stream: &mut Stream, flood: &mut FloodGuard) -> Result<Hello, HelloEnd> {
    loop {
        let message = match stream.next().await {
            None => return Err(HelloEnd::Gone),
            Some(Err(error)) if is_too_big(&error) => return Err(HelloEnd::Close(close::TOO_BIG)),
            Some(Err(_)) => return Err(HelloEnd::Gone),
            Some(Ok(message)) => message,
        };
        if flood.hit(std::time::Instant::now()) {
            return Err(HelloEnd::Close(close::FLOOD));
        }
        match message {
            Message::Text(text) => {
                if text.len() > MAX_CLIENT_FRAME {
                    return Err(HelloEnd::Close(close::TOO_BIG));
                }
                return match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Hello { token, resume }) => Ok(Hello { token, resume }),
                    _ => Err(HelloEnd::Close(close::UNAUTHORIZED)),
                };
            }
            Message::Binary(bytes) => {
                return Err(HelloEnd::Close(if bytes.len() > MAX_CLIENT_FRAME {
                    close::TOO_BIG
                } else {
                    close::UNAUTHORIZED
                }));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return Err(HelloEnd::Gone),
        }
    }
}

/// Runs an authenticated socket; returns the code to close with, or None
/// when the client closed or vanished.
async fn session(
    ctx: &Ctx,
    peer: &Peer,
    mut rx: mpsc::UnboundedReceiver<(Utf8Bytes, usize)>,
    sink: &mut Sink,
    stream: &mut Stream,
    flood: &mut FloodGuard,
    timing: Timing,
) -> Option<u16> {
    let mut ping =
        tokio::time::interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Pinned once and reset, not rebuilt per frame: a socket's steady state
    // must not touch the timer wheel for every frame it sends.
    let idle = sleep_until(Instant::now() + timing.idle_timeout);
    let closing = peer.closing();
    let stopping = ctx.shutdown.cancelled();
    // The token was checked at the hello; when it runs out the socket closes
    // with 4401, so the client fetches a fresh one (CONTRACT §5) and a user
    // whose access was taken away keeps no socket past its token's life.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = u64::try_from(peer.claims.exp.saturating_sub(now)).unwrap_or(0);
    let expired = sleep_until(Instant::now() + Duration::from_secs(lifetime));
    tokio::pin!(idle, closing, stopping, expired);
    let mut batch: Vec<(Message, usize)> = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = &mut closing => return Some(peer.close_code()),
            () = &mut stopping => return Some(close::GOING_AWAY),
            () = &mut idle => return Some(close::GOING_AWAY),
            () = &mut expired => return Some(close::UNAUTHORIZED),
            next = stream.next() => {
                let message = match next {
                    None => return None,
                    Some(Err(error)) if is_too_big(&error) => return Some(close::TOO_BIG),
                    Some(Err(_)) => return None,
                    Some(Ok(message)) => message,
                };
                // Any frame, pongs included, shows the client is alive.
                idle.as_mut().reset(Instant::now() + timing.idle_timeout);
                if flood.hit(std::time::Instant::now()) {
                    return Some(close::FLOOD);
                }
                match message {
                    Message::Text(text) => {
                        if text.len() > MAX_CLIENT_FRAME {
                            return Some(close::TOO_BIG);
                        }
                        handle_text(ctx, peer, text.as_str());
                    }
                    Message::Binary(bytes) => {
                        if bytes.len() > MAX_CLIENT_FRAME {
                            return Some(close::TOO_BIG);
                        }
                        peer.send(&error_frame("BAD_FRAME", "frames are JSON text").into());
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(_) => return None,
                }
                continue;
            }
            frame = rx.recv() => match frame {
                Some((text, size)) => {
                    batch.push((Message::Text(text), size));
                    // Whatever else is queued goes out in the same write.
                    while batch.len() < WRITE_BATCH {
                        let Ok((text, size)) = rx.try_recv() else { break };
                        batch.push((Message::Text(text), size));
                    }
                }
                None => return None,
            },
            _ = ping.tick() => batch.push((Message::Ping(Default::default()), 0)),
        }
        let bytes: usize = batch.iter().map(|(_, size)| size).sum();
        let write = async {
            for (message, _) in batch.drain(..) {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        // The write may wait on a client that does not read: give up on it
        // when the socket must close (4008 comes from the hub meanwhile) or
        // the client has been silent too long.
        let written = tokio::select! {
            biased;
            () = &mut closing => return Some(peer.close_code()),
            () = &mut stopping => return Some(close::GOING_AWAY),
            () = &mut idle => return Some(close::GOING_AWAY),
            () = &mut expired => return Some(close::UNAUTHORIZED),
            written = write => written,
        };
        peer.sent(bytes);
        if written.is_err() {
            return None;
        }
    }
}

fn handle_text(ctx: &Ctx, peer: &Peer, text: &str) {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Ping) => peer.send(&Utf8Bytes::from_static(PONG)),
        Ok(ClientFrame::Lock { ticket_id }) => lock(ctx, peer, ticket_id),
        Ok(ClientFrame::Unlock { ticket_id }) => crate::fanout::publish_release(
            ctx,
            Release {
                org: peer.claims.org,
                ticket_id,
                user_id: peer.claims.sub,
                conn: None,
            },
        ),
        Ok(ClientFrame::Hello { .. }) => {
            peer.send(&error_frame("ALREADY_WELCOMED", "this socket has said hello already").into())
        }
        Err(error) => peer.send(&error_frame("BAD_FRAME", &error.to_string()).into()),
    }
}

/// Takes or renews a lock: published to every process (this one included),
/// unless another user holds it, which this socket is told with `lock.denied`.
fn lock(ctx: &Ctx, peer: &Peer, ticket_id: Uuid) {
    let now = now_ms();
    let holder = ctx.hub.lock_holder(peer.claims.org, ticket_id);
    if let Some(holder) = &holder
        && holder.user.id != peer.claims.sub
    {
        ctx.hub.deny_lock(peer, holder);
        return;
    }
    let ttl = i64::try_from(LOCK_TTL.as_millis()).unwrap_or(30_000);
    crate::fanout::publish_claim(
        ctx,
        Claim {
            org: peer.claims.org,
            ticket_id,
            user: LockUser {
                id: peer.claims.sub,
                name: peer.claims.name.clone(),
            },
            conn: peer.conn.clone(),
            since_ms: holder.map_or(now, |h| h.since_ms),
            expires_at_ms: now + ttl,
        },
    );
}

/// Sends the close frame, then reads until the client's answering close
/// (or a short time), so the close frame is not lost to a connection reset.
async fn finish(ctx: &Ctx, mut sink: Sink, mut stream: Stream, code: u16) {
    ctx.hub
        .metrics
        .server_closes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason(code)),
    };
    if tokio::time::timeout(CLOSE_LINGER, sink.send(Message::Close(Some(frame))))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}
