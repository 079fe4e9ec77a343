//! `/signal`: one task per WebSocket. It checks the limits, decodes frames, calls the hub, and
//! writes whatever the hub queued for this connection. Reading and writing run side by side, so
//! a client that reads slowly still has its own frames (and pongs) read.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        Path, Query, State,
    },
    http::{header::ORIGIN, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
use rtcroom_protocol::{ErrorCode, LeaveReason};
use serde::Deserialize;
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{self, SignalClaims},
    hub::{close_code, ConnHandle, FrameLimits, Grant, Outgoing, Reader, WsLink, OUTGOING_QUEUE},
    App,
};
use rtcroom_hub::Binding;

/// Per-connection limits and timers.
#[derive(Debug, Clone)]
pub struct SignalSettings {
    /// Frame size, rate and violation limits. Frames over four times `max_frame` close the
    /// socket (1009).
    pub frames: FrameLimits,
    /// A client silent (no frame, no pong) this long is removed with `peer-left(timeout)`.
    pub heartbeat_timeout: Duration,
    /// How often the server sends WebSocket pings.
    pub ping_interval: Duration,
    /// A socket that is in no room this long after the upgrade (or after leaving) is closed.
    pub join_timeout: Duration,
    pub jwt_secret: Option<String>,
    /// Clock skew allowed when checking a JWT's `exp`/`nbf`.
    pub jwt_leeway: Duration,
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignalQuery {
    room: Option<String>,
    token: Option<String>,
}

pub async fn upgrade_in_room(
    ws: WebSocketUpgrade,
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
    Query(query): Query<SignalQuery>,
    headers: HeaderMap,
) -> Response {
    upgrade_with(ws, app, Some(room), query, headers)
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<Arc<App>>,
    Query(query): Query<SignalQuery>,
    headers: HeaderMap,
) -> Response {
    upgrade_with(ws, app, None, query, headers)
}

fn upgrade_with(
    ws: WebSocketUpgrade,
    app: Arc<App>,
    path_room: Option<String>,
    query: SignalQuery,
    headers: HeaderMap,
) -> Response {
    let settings = &app.signal;
    let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
    if !auth::origin_allowed(&settings.allowed_origins, origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let ws = ws
        .max_message_size(settings.frames.max_frame * 4)
        .max_frame_size(settings.frames.max_frame * 4)
        // The default 128 KiB read buffer per socket made 10k idle clients cost 1.3 GB.
        .read_buffer_size(4096);
    let (claims, principal) = match &settings.jwt_secret {
        None => (None, Binding::anonymous()),
        Some(secret) => {
            match auth::verify_with_leeway::<SignalClaims>(
                secret,
                query.token.as_deref(),
                settings.jwt_leeway,
            ) {
                Ok(claims) => {
                    let principal = claims.principal(query.token.as_deref().unwrap_or_default());
                    (Some(claims), principal)
                }
                Err(reason) => return auth::refuse(ws, reason),
            }
        }
    };
    let room_hint = match (path_room, query.room) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b)),
    };
    let tasks = app.tasks.clone();
    ws.on_upgrade(move |socket| {
        tasks.track_future(Connection::run(socket, app, room_hint, claims, principal))
    })
}

/// What the reading side asks the writing side to send.
enum Control {
    Ping,
    Close(u16, &'static str),
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

struct Connection {
    app: Arc<App>,
    /// The frame rules and decoding (the hub crate's, shared with the serverless hub).
    reader: Reader,
}

impl Connection {
    async fn run(
        socket: WebSocket,
        app: Arc<App>,
        room_hint: Result<Option<String>, ()>,
        claims: Option<SignalClaims>,
        principal: Binding,
    ) {
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let handle = ConnHandle::new(WsLink::new(tx));
        let (kill, seen, member) = (
            handle.link.kill.clone(),
            handle.seen.clone(),
            handle.member.clone(),
        );
        let room_size = handle.room_size.clone();
        let conn = app.hub().register(handle);
        let settings = app.signal.clone();
        let grant = claims.map(|c| Grant {
            room: c.room,
            peer_id: c.peer_id,
            metadata: c.metadata,
        });
        let this = Connection {
            reader: Reader::new(
                conn,
                settings.frames.clone(),
                room_size,
                room_hint,
                grant,
                principal,
                Instant::now().into_std(),
            ),
            app: app.clone(),
        };
        let (sink, stream) = socket.split();
        let (control, control_rx) = mpsc::unbounded_channel();
        let done = CancellationToken::new();
        tokio::join!(
            write_loop(sink, rx, control_rx, kill, app.shutdown.clone(), done.clone()),
            this.read_loop(stream, control, seen, member, done),
        );
        app.hub().disconnected(conn, Instant::now().into_std());
    }

    /// Reads frames until the socket ends, watching the heartbeat and the join deadline.
    async fn read_loop(
        mut self,
        mut stream: SplitStream<WebSocket>,
        control: mpsc::UnboundedSender<Control>,
        seen: Arc<AtomicU64>,
        member: Arc<AtomicBool>,
        done: CancellationToken,
    ) {
        let settings = self.app.signal.clone();
        let now = Instant::now();
        let mut last_seen = now;
        let mut ping = tokio::time::interval_at(now + settings.ping_interval, settings.ping_interval);
        let join_deadline = tokio::time::sleep(settings.join_timeout);
        tokio::pin!(join_deadline);
        let mut evicted = false;
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                () = &mut join_deadline => {
                    if member.load(Ordering::Relaxed) {
                        join_deadline.as_mut().reset(Instant::now() + settings.join_timeout);
                    } else {
                        let _ = control.send(Control::Close(close_code::JOIN_TIMEOUT, "no join in time"));
                        break;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= settings.heartbeat_timeout {
                        if !evicted {
                            evicted = true;
                            tracing::info!(conn = self.reader.conn(), "heartbeat timeout");
                            self.app.hub().evict(
                                self.reader.conn(),
                                LeaveReason::Timeout,
                                (close_code::HEARTBEAT_TIMEOUT, "heartbeat timeout"),
                            );
                        }
                    } else {
                        let _ = control.send(Control::Ping);
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        seen.fetch_add(1, Ordering::Relaxed);
                        match message {
                            Message::Text(text) => {
                                // Decoded outside the hub's lock; only the outcome takes it.
                                let read = self.reader.read(text.as_str(), last_seen.into_std());
                                self.reader.apply(&mut self.app.hub(), read, last_seen.into_std());
                            }
                            Message::Binary(_) => self.reader.violation(&mut self.app.hub(), ErrorCode::MalformedFrame, "frames are JSON text"),
                            Message::Close(_) => break,
                            Message::Ping(_) | Message::Pong(_) => {}
                        }
                    }
                    Some(Err(err)) => {
                        // Errors the protocol gives a close code; anything else is a dead socket.
                        let code = match err.into_inner().downcast_ref::<tungstenite::Error>() {
                            Some(tungstenite::Error::Capacity(_)) => Some((close_code::TOO_BIG, "frame too large")),
                            Some(tungstenite::Error::Utf8(_)) => Some((close_code::INVALID_DATA, "text frames must be UTF-8")),
                            _ => None,
                        };
                        if let Some((code, reason)) = code {
                            let _ = control.send(Control::Close(code, reason));
                        }
                        break;
                    }
                    None => break,
                },
            }
        }
        done.cancel();
    }
}

/// Writes what the hub queued and what the reading side asks for, until a close frame is out,
/// the socket fails, or the reading side ended.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut control: mpsc::UnboundedReceiver<Control>,
    kill: CancellationToken,
    shutdown: CancellationToken,
    done: CancellationToken,
) {
    loop {
        let mut share = None;
        let message = tokio::select! {
            biased;
            _ = shutdown.cancelled() => close(close_code::GOING_AWAY, "server shutting down"),
            _ = kill.cancelled() => close(close_code::TOO_SLOW, "too slow"),
            Some(c) = control.recv() => match c {
                Control::Ping => Message::Ping(Default::default()),
                Control::Close(code, reason) => close(code, reason),
            },
            _ = done.cancelled() => break,
            out = rx.recv() => match out {
                Some(Outgoing::Text(text)) => Message::Text(text),
                Some(Outgoing::Shared(text, guard)) => {
                    share = Some(guard);
                    Message::Text(text)
                }
                Some(Outgoing::Ping) => Message::Ping(Default::default()),
                Some(Outgoing::Close(code, reason)) => close(code, reason),
                None => break,
            },
        };
        let closing = matches!(message, Message::Close(_));
        // A reader too slow for its queue is cut off even while a write to it is stuck.
        let sent = tokio::select! {
            sent = sink.send(message) => sent.is_ok(),
            _ = kill.cancelled(), if !closing => false,
            _ = done.cancelled(), if !closing => false,
        };
        drop(share);
        if !sent || closing {
            break;
        }
    }
    done.cancel();
    // Flushes a close reply queued by the reading side, bounded.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}
