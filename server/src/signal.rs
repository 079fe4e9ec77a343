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
use rtcroom_protocol::{ClientMsg, ErrorCode, LeaveReason};
use serde::Deserialize;
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{self, SignalClaims},
    hub::{close_code, ConnHandle, ConnId, JoinRequest, Outgoing, RateLimiter, Raw, OUTGOING_QUEUE},
    resume::Binding,
    App,
};

/// Per-connection limits and timers.
#[derive(Debug, Clone)]
pub struct SignalSettings {
    /// Largest text frame accepted; larger ones get `frame-too-large`, and frames over four
    /// times this close the socket (1009).
    pub max_frame: usize,
    /// Frames per second (token bucket refill) and burst.
    pub rate: u32,
    pub burst: u32,
    /// Violations (oversize, rate, malformed) tolerated before the client is kicked.
    pub max_violations: u32,
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
        .max_message_size(settings.max_frame * 4)
        .max_frame_size(settings.max_frame * 4)
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
    conn: ConnId,
    /// The room named by the URL (`Err` when path and query disagree).
    room_hint: Result<Option<String>, ()>,
    claims: Option<SignalClaims>,
    principal: Binding,
    limiter: RateLimiter,
    /// Members of this connection's room (the hub keeps it current), for the rate limit.
    room_size: Arc<std::sync::atomic::AtomicU32>,
    violations: u32,
    /// Kicked: nothing it sends counts any more.
    kicked: bool,
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
        let handle = ConnHandle::new(tx);
        let (kill, seen, member) = (handle.kill.clone(), handle.seen.clone(), handle.member.clone());
        let room_size = handle.room_size.clone();
        let conn = app.hub().register(handle);
        let settings = app.signal.clone();
        let this = Connection {
            limiter: RateLimiter::new(settings.rate, settings.burst, Instant::now().into_std()),
            app: app.clone(),
            conn,
            room_hint,
            claims,
            principal,
            room_size,
            violations: 0,
            kicked: false,
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
                            tracing::info!(conn = self.conn, "heartbeat timeout");
                            self.app.hub().evict(
                                self.conn,
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
                            Message::Text(text) => self.on_text(text.as_str(), last_seen),
                            Message::Binary(_) if !self.kicked => self.violation(ErrorCode::MalformedFrame, "frames are JSON text"),
                            Message::Binary(_) => {}
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
    fn violation(&mut self, code: ErrorCode, message: &str) {
        self.violations += 1;
        let hub = &mut *self.app.hub();
        if self.violations > self.app.signal.max_violations {
            self.kicked = true;
            tracing::info!(conn = self.conn, "too many violations, kicking");
            hub.reject(self.conn, code, message, false);
            hub.evict(
                self.conn,
                LeaveReason::Kicked,
                (close_code::KICKED, "too many violations"),
            );
        } else {
            hub.reject(self.conn, code, message, false);
        }
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        if self.kicked {
            return;
        }
        if text.len() > self.app.signal.max_frame {
            let message = format!(
                "frame of {} bytes exceeds the limit of {}",
                text.len(),
                self.app.signal.max_frame
            );
            return self.violation(ErrorCode::FrameTooLarge, &message);
        }
        let members = self.room_size.load(Ordering::Relaxed);
        if !self.limiter.allow_in_room(now.into_std(), members) {
            return self.violation(ErrorCode::RateLimited, "too many frames per second");
        }
        let msg = match serde_json::from_str::<ClientMsg<Raw>>(text) {
            Ok(msg) => msg,
            Err(err) => {
                #[derive(Deserialize)]
                struct Tagged<'a> {
                    #[serde(rename = "type", borrow)]
                    kind: Option<&'a str>,
                }
                let unknown = serde_json::from_str::<Tagged>(text)
                    .ok()
                    .and_then(|t| t.kind)
                    .filter(|kind| !ClientMsg::<Raw>::TAGS.contains(kind));
                return match unknown {
                    Some(kind) => {
                        self.violation(ErrorCode::UnknownType, &format!("unknown frame type {kind:?}"))
                    }
                    None => self.violation(ErrorCode::MalformedFrame, &format!("malformed frame: {err}")),
                };
            }
        };
        let conn = self.conn;
        match msg {
            ClientMsg::Join {
                room,
                version,
                metadata,
                resume,
                capacity,
            } => {
                let room = match (&self.room_hint, room) {
                    (Err(()), _) => Err("the URL path and query name different rooms"),
                    (Ok(Some(hint)), Some(room)) if *hint != room => {
                        Err("join.room differs from the room in the URL")
                    }
                    (Ok(hint), room) => room.or_else(|| hint.clone()).ok_or("join needs a room"),
                };
                let room = match room {
                    Ok(room) => room,
                    Err(message) => {
                        return self
                            .app
                            .hub()
                            .reject(conn, ErrorCode::InvalidArgument, message, true)
                    }
                };
                let mut request = JoinRequest {
                    room,
                    version,
                    metadata,
                    resume,
                    capacity,
                    peer_id: None,
                    principal: self.principal.clone(),
                };
                if let Some(claims) = &self.claims {
                    if claims.room != request.room {
                        let message = format!("the token does not allow room {}", request.room);
                        return self
                            .app
                            .hub()
                            .reject(conn, ErrorCode::Unauthorized, message, true);
                    }
                    request.peer_id = claims.peer_id.clone();
                    if let Some(metadata) = &claims.metadata {
                        request.metadata = Some(metadata.clone());
                    }
                }
                self.app.hub().join(conn, request, now.into_std());
            }
            ClientMsg::Signal { to, payload } => self.app.hub().signal(conn, &to, &payload),
            ClientMsg::Metadata { metadata } => self.app.hub().update_metadata(conn, metadata),
            ClientMsg::Leave => self.app.hub().leave(conn),
            ClientMsg::Ping { ts } => self.app.hub().ping(conn, ts),
        }
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
