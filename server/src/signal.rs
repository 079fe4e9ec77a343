//! `/signal`: one task per WebSocket. It checks the limits, decodes frames, calls the hub, and
//! writes whatever the hub queued for this connection.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        Path, Query, State,
    },
    http::{header::ORIGIN, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use rtcroom_protocol::{ClientMsg, ErrorCode, LeaveReason, ServerMsg};
use serde::Deserialize;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{self, SignalClaims},
    hub::{close_code, ConnHandle, ConnId, JoinRequest, Outgoing, RateLimiter, Raw},
    App,
};

/// Per-connection limits and timers.
#[derive(Debug, Clone)]
pub struct SignalSettings {
    /// Largest text frame accepted; larger ones get `frame-too-large`.
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
    pub jwt_secret: Option<String>,
    pub allowed_origins: Vec<String>,
}

/// Frames waiting for a client's socket before it counts as too slow.
const OUTGOING_QUEUE: usize = 1024;

const CLIENT_TYPES: [&str; 5] = ["join", "signal", "metadata", "leave", "ping"];

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
    let claims = match &settings.jwt_secret {
        None => None,
        Some(secret) => match auth::verify::<SignalClaims>(secret, query.token.as_deref()) {
            Ok(claims) => Some(claims),
            Err(reason) => return auth::refuse(ws, reason),
        },
    };
    let room_hint = match (path_room, query.room) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b)),
    };
    let tasks = app.tasks.clone();
    ws.on_upgrade(move |socket| tasks.track_future(Connection::run(socket, app, room_hint, claims)))
}

struct Connection {
    app: Arc<App>,
    conn: ConnId,
    /// The room named by the URL (`Err` when path and query disagree).
    room_hint: Result<Option<String>, ()>,
    claims: Option<SignalClaims>,
    limiter: RateLimiter,
    violations: u32,
}

impl Connection {
    async fn run(
        mut socket: WebSocket,
        app: Arc<App>,
        room_hint: Result<Option<String>, ()>,
        claims: Option<SignalClaims>,
    ) {
        let (tx, mut rx) = mpsc::channel(OUTGOING_QUEUE);
        let kill = CancellationToken::new();
        let conn = app.hub().register(ConnHandle {
            tx,
            kill: kill.clone(),
        });
        let settings = app.signal.clone();
        let now = Instant::now();
        let mut this = Connection {
            limiter: RateLimiter::new(settings.rate, settings.burst, now.into_std()),
            app,
            conn,
            room_hint,
            claims,
            violations: 0,
        };
        let mut last_seen = now;
        let mut ping = tokio::time::interval_at(now + settings.ping_interval, settings.ping_interval);
        let shutdown = this.app.shutdown.clone();
        let close = |code: u16, reason: &'static str| {
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
        };
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    Some(Outgoing::Text(text)) => {
                        if socket.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => {
                        let _ = socket.send(close(code, reason)).await;
                        break;
                    }
                    None => break,
                },
                _ = shutdown.cancelled() => {
                    let _ = socket.send(close(close_code::GOING_AWAY, "server shutting down")).await;
                    break;
                }
                _ = kill.cancelled() => {
                    let _ = socket.send(close(close_code::POLICY, "too slow")).await;
                    break;
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(message)) => {
                        last_seen = Instant::now();
                        match message {
                            Message::Text(text) => this.on_text(text.as_str(), last_seen),
                            Message::Binary(_) => this.violation(ErrorCode::MalformedFrame, "frames are JSON text"),
                            Message::Close(_) => break,
                            Message::Ping(_) | Message::Pong(_) => {}
                        }
                    }
                    Some(Err(_)) | None => break,
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() >= settings.heartbeat_timeout {
                        tracing::info!(conn, "heartbeat timeout");
                        this.app.hub().evict(conn, LeaveReason::Timeout, (close_code::POLICY, "heartbeat timeout"));
                    } else if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            }
        }
        this.app.hub().disconnected(conn, Instant::now().into_std());
    }

    fn violation(&mut self, code: ErrorCode, message: &str) {
        self.violations += 1;
        let hub = &mut *self.app.hub();
        if self.violations > self.app.signal.max_violations {
            tracing::info!(conn = self.conn, "too many violations, kicking");
            hub.reject(self.conn, code, message, false);
            hub.evict(
                self.conn,
                LeaveReason::Kicked,
                (close_code::POLICY, "too many violations"),
            );
        } else {
            hub.reject(self.conn, code, message, false);
        }
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        if text.len() > self.app.signal.max_frame {
            let message = format!(
                "frame of {} bytes exceeds the limit of {}",
                text.len(),
                self.app.signal.max_frame
            );
            return self.violation(ErrorCode::FrameTooLarge, &message);
        }
        if !self.limiter.allow(now.into_std()) {
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
                    .filter(|kind| !CLIENT_TYPES.contains(kind));
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
                self.app.hub().join(conn, request);
            }
            ClientMsg::Signal { to, payload } => self.app.hub().signal(conn, &to, &payload),
            ClientMsg::Metadata { metadata } => self.app.hub().update_metadata(conn, metadata),
            ClientMsg::Leave => self.app.hub().leave(conn),
            ClientMsg::Ping { ts } => self.app.hub().reply(
                conn,
                &ServerMsg::Pong {
                    ts,
                    resume_token: None,
                },
            ),
        }
    }
}
