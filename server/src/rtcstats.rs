//! `/rtcstats`: the stats collector. It writes one dump file per socket, in the rtcstats dump
//! format (fileFormat 3, `docs/stats-format.md`), so rtcstats tools read our dumps:
//!
//! ```text
//! RTCStatsDump
//! {"url": …, "origin": …, "userAgent": …, "startTime": …, "clientProtocol": …, "fileFormat": 3, …identity}
//! <every valid message of the socket, verbatim>
//! ["close", null, <code>, <ms since the last message>, {"malformed": n}]
//! ```
//!
//! Files are created on the first valid message, so an empty socket leaves no file. Malformed or
//! oversized frames are counted in the close line and not written. The collector acknowledges
//! written lines with `["ack", n]` (n = lines of this socket written, header included). The SDK
//! replays what was not acknowledged when a socket drops. Before the collector closes a socket
//! gracefully (server shutdown, or the client's close), it acknowledges every line it wrote, so
//! no line is replayed into the next dump.
//!
//! The WebSocket layer is `yawc`, not axum's tungstenite: it negotiates permessage-deflate
//! (RFC 7692), so clients may compress what they upload.

use std::{future::poll_fn, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{OriginalUri, Query, State},
    http::{
        header::{ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, UPGRADE, USER_AGENT},
        HeaderMap, HeaderValue, StatusCode,
    },
    response::{IntoResponse, Response},
};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{fs, io::AsyncWriteExt, time::Instant};
use yawc::{close::CloseCode, CompressionLevel, Frame, HttpWebSocket, IncomingUpgrade, OpCode, Options};

use crate::{auth, hub::close_code, App};

/// The subprotocol rtcstats clients ask for.
pub const SUBPROTOCOL: &str = "rtcstats#5.0";

/// Initial capacity of a socket's read buffer; it grows for a larger frame and shrinks back.
/// Most trace lines fit. An idle socket costs about 8 KB in all, as with tungstenite's 4 KB.
const READ_BUFFER: usize = 2048;
/// Initial capacity of a socket's write buffer: the collector only sends acks and a close.
const WRITE_BUFFER: usize = 256;
/// LZ77 window (bits) the collector lets a client compress with when the client lets the server
/// choose (Chromium offers a bare `client_max_window_bits`). Trace lines are a few hundred bytes
/// to a few KB: on delta-compressed getStats lines (from the fixtures) 4 KB deflate as well as
/// 32 KB (about 28% of the raw size with context takeover), 512 bytes (yawc's choice) only to
/// 46%. A socket's
/// inflate state (about 18 KB at 12 bits) exists only once the client sent a compressed frame.
const CLIENT_WINDOW_BITS: u8 = 12;
/// How long a closing socket waits for the client's close frame (and for its own to leave).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub dumps_dir: PathBuf,
    /// HS256 secret for `?rtcstats-token=`; `None` accepts anyone.
    pub secret: Option<String>,
    pub max_frame: usize,
    /// Acks go out at most this often (ms).
    pub ack_interval_ms: u64,
}

/// Who a dump belongs to (`rtcStats` claims of the token).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conference: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatsClaims {
    #[serde(rename = "rtcStats")]
    rtc_stats: Identity,
}

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    #[serde(rename = "rtcstats-token")]
    token: Option<String>,
}

/// What a dump's second line says about its socket.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    url: String,
    origin: Option<String>,
    user_agent: Option<String>,
    start_time: f64,
    client_protocol: Option<String>,
    file_format: u32,
    #[serde(flatten)]
    identity: Identity,
}

/// The request URL with the token's value replaced, so dumps never hold credentials.
fn obfuscate(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("rtcstats-token", _)) => "rtcstats-token=obfuscated".to_string(),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A message is a JSON array `[method, pc, …, timeDelta]` ending in a non-negative number.
/// Returns the time delta.
fn time_delta(text: &str) -> Option<f64> {
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    if items.len() < 3 {
        return None;
    }
    let delta: f64 = serde_json::from_str(items.last()?.get()).ok()?;
    (delta.is_finite() && delta >= 0.0).then_some(delta)
}

/// The subprotocol to answer with: ours, when the client offered it.
fn select_protocol(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == SUBPROTOCOL)
        .then_some(SUBPROTOCOL)
}

/// Per-socket settings: small buffers; frames up to twice `max_frame` (larger ones close the
/// socket with 1009, and those between one and two times are counted malformed);
/// permessage-deflate for what the client sends.
fn socket_options(settings: &CollectorSettings, headers: &HeaderMap) -> Options {
    // yawc's limits are exclusive and also bound the inflated size (no deflate bombs).
    let limit = settings.max_frame.saturating_mul(2).saturating_add(1);
    let options = Options::default()
        .with_limits(limit, limit)
        .with_read_buffer_capacity(READ_BUFFER)
        .with_write_buffer_capacity(WRITE_BUFFER)
        .with_compression_level(CompressionLevel::fast())
        // What the collector sends (acks of a few bytes) is never compressed, so a socket never
        // holds deflate state; the client needs none for it either.
        .with_compression_threshold(usize::MAX)
        .server_no_context_takeover();
    // A bare `client_max_window_bits` lets the server choose (see CLIENT_WINDOW_BITS). A client
    // that did not offer the parameter must not get it back (RFC 7692 §7.1.2.2): it compresses
    // with a 15-bit window.
    let lets_us_choose = headers
        .get(SEC_WEBSOCKET_EXTENSIONS)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|offer| {
            offer
                .split([';', ','])
                .any(|p| p.trim() == "client_max_window_bits")
        });
    if lets_us_choose {
        options.with_client_max_window_bits(CLIENT_WINDOW_BITS)
    } else {
        options
    }
}

pub async fn upgrade(
    ws: IncomingUpgrade,
    State(app): State<Arc<App>>,
    Query(query): Query<StatsQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let is_websocket = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    }
    let settings = app.collector.clone();
    let protocol = select_protocol(&headers);
    let Ok((response, pending)) = ws.upgrade(socket_options(&settings, &headers)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut response = response.map(Body::new);
    if let Some(protocol) = protocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    let identity = match &settings.secret {
        None => Identity::default(),
        Some(secret) => match auth::verify::<StatsClaims>(secret, query.token.as_deref()) {
            Ok(claims) => claims.rtc_stats,
            Err(reason) => {
                app.tasks.spawn(refuse(pending, reason));
                return response;
            }
        },
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(String::from)
    };
    let metadata = Metadata {
        url: obfuscate(&uri),
        origin: header(ORIGIN),
        user_agent: header(USER_AGENT),
        start_time: 0.0,
        client_protocol: protocol.map(String::from),
        file_format: 3,
        identity,
    };
    let tasks = app.tasks.clone();
    tasks.spawn(async move {
        if let Ok(socket) = pending.await {
            collect(socket, app, settings, metadata).await;
        }
    });
    response
}

/// Completes the upgrade only to close with 1008 and `reason`, so a client can tell
/// "unauthorized" from a network error (browsers hide HTTP statuses of failed upgrades). The
/// collector's counterpart of `auth::refuse`.
async fn refuse(pending: yawc::UpgradeFut, reason: &'static str) {
    if let Ok(mut socket) = pending.await {
        close_socket(&mut socket, close_code::POLICY, reason).await;
    }
}

/// A server-initiated close: the close frame, then (bounded) the client's close frame, then the
/// connection's end. Closing with unread data would reset the connection, and the client could
/// lose the frames just sent. What arrives meanwhile is neither written nor acknowledged: the
/// client sends it again on its next socket.
async fn close_socket(socket: &mut HttpWebSocket, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if socket
            .send(Frame::close(CloseCode::from(code), reason))
            .await
            .is_ok()
        {
            while let Ok(frame) = socket.next_frame().await {
                if frame.opcode() == OpCode::Close {
                    break;
                }
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.close()).await;
}

/// Sends `frame` ahead of the frames yawc queued itself. Once the client's close frame is read,
/// yawc has queued its echo, and `SinkExt::send` would send that first (its `poll_ready`
/// does); a data frame after a close frame is a protocol error, while RFC 6455 §5.5.1 lets an
/// endpoint finish what it sends before it answers a close. `start_send` only encodes the frame
/// into the write buffer, and `poll_flush` writes that buffer out, the queued echo excluded.
async fn send_ahead(socket: &mut HttpWebSocket, frame: Frame) -> yawc::Result<()> {
    socket.start_send_unpin(frame)?;
    poll_fn(|cx| socket.poll_flush_unpin(cx)).await
}

fn ack(lines: u64) -> Frame {
    Frame::text(format!("[\"ack\",{lines}]"))
}

struct DumpFile {
    file: tokio::io::BufWriter<fs::File>,
    lines: u64,
}

impl DumpFile {
    /// Flushes; the number of lines now durably written, if more than `acked`.
    async fn flush_beyond(&mut self, acked: u64) -> Option<u64> {
        if self.lines <= acked {
            return None;
        }
        self.file.flush().await.ok().map(|()| self.lines)
    }
}

/// Why a socket's receive loop ended.
enum End {
    /// The server shuts down: close with 1001.
    Shutdown,
    /// The client's close frame arrived, with this code (1005 without one). yawc has queued
    /// the echo.
    ClientClosed(u16),
    /// The dump cannot be written: close with 1011.
    Storage,
    /// The connection failed. The code is what the dump records; for a frame over the limit yawc
    /// has queued a 1009 close frame.
    Failed(u16),
}

impl End {
    fn code(&self) -> u16 {
        match self {
            End::Shutdown => close_code::GOING_AWAY,
            End::ClientClosed(code) | End::Failed(code) => *code,
            End::Storage => STORAGE_FAILED,
        }
    }
}

/// Close code when the dump cannot be stored (internal error).
const STORAGE_FAILED: u16 = 1011;

async fn collect(
    mut socket: HttpWebSocket,
    app: Arc<App>,
    settings: CollectorSettings,
    mut metadata: Metadata,
) {
    let mut dump: Option<DumpFile> = None;
    let mut malformed: u64 = 0;
    let mut acked: u64 = 0;
    let mut last_message = Instant::now();
    let mut ack_timer = tokio::time::interval(Duration::from_millis(settings.ack_interval_ms));
    let shutdown = app.shutdown.clone();
    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break End::Shutdown,
            _ = ack_timer.tick() => {
                if let Some(lines) = match dump.as_mut() {
                    Some(d) => d.flush_beyond(acked).await,
                    None => None,
                } {
                    if socket.send(ack(lines)).await.is_ok() {
                        acked = lines;
                    }
                }
            }
            incoming = socket.next_frame() => match incoming {
                Ok(frame) => match frame.opcode() {
                    OpCode::Text => {
                        let Some((text, delta)) = std::str::from_utf8(frame.payload())
                            .ok()
                            .filter(|text| text.len() <= settings.max_frame)
                            .and_then(|text| Some((text, time_delta(text)?)))
                        else {
                            malformed += 1;
                            continue;
                        };
                        last_message = Instant::now();
                        if dump.is_none() {
                            // startTime is never later than the first event: the first message
                            // carries the client's absolute time.
                            let now = unix_ms();
                            metadata.start_time = if delta > 1e11 { now.min(delta) } else { now };
                            match open_dump(&settings.dumps_dir, &metadata).await {
                                Ok(file) => {
                                    dump = Some(file);
                                    // The first ack follows the header at once, so the SDK
                                    // counts on acks from the start (its `AckMode::Auto`).
                                    ack_timer.reset_immediately();
                                }
                                Err(err) => {
                                    tracing::error!(%err, "cannot write dump");
                                    break End::Storage;
                                }
                            }
                        }
                        if let Some(d) = dump.as_mut() {
                            let written = d.file.write_all(text.as_bytes()).await.and(d.file.write_all(b"\n").await);
                            if written.is_ok() {
                                d.lines += 1;
                            }
                        }
                    }
                    OpCode::Binary => malformed += 1,
                    OpCode::Close => break End::ClientClosed(frame.close_code().map_or(1005, u16::from)),
                    // Pings are answered by yawc; fragments arrive assembled.
                    _ => {}
                },
                Err(yawc::WebSocketError::FrameTooLarge) => break End::Failed(1009),
                Err(_) => break End::Failed(1006),
            },
        }
    };
    let code = end.code();
    // The dump is complete and durable before anything else can wait on the network.
    let mut lines = None;
    if let Some(mut d) = dump {
        let since_last = last_message.elapsed().as_millis();
        let close = format!("[\"close\",null,{code},{since_last},{{\"malformed\":{malformed}}}]\n");
        if d.file.write_all(close.as_bytes()).await.is_ok() && d.file.flush().await.is_ok() {
            lines = Some(d.lines).filter(|&n| n > acked);
        }
    }
    // A graceful end acknowledges every written line before the close frame: the SDK replays
    // only unacknowledged lines, so none of them is duplicated in its next dump.
    match end {
        End::Shutdown | End::Storage => {
            if let Some(lines) = lines {
                let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(ack(lines))).await;
            }
            let reason = match end {
                End::Shutdown => "server shutting down",
                _ => "cannot store the dump",
            };
            close_socket(&mut socket, code, reason).await;
        }
        End::ClientClosed(_) => {
            if let Some(lines) = lines {
                let _ = tokio::time::timeout(CLOSE_WAIT, send_ahead(&mut socket, ack(lines))).await;
            }
            // The read side is closed: this sends the queued echo and returns.
            let _ = tokio::time::timeout(CLOSE_WAIT, socket.next_frame()).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, socket.close()).await;
        }
        End::Failed(_) => {
            // Sends the close frame yawc queued for an error it detected itself, if any.
            let _ = tokio::time::timeout(CLOSE_WAIT, socket.next_frame()).await;
        }
    }
}

async fn open_dump(dir: &std::path::Path, metadata: &Metadata) -> std::io::Result<DumpFile> {
    fs::create_dir_all(dir).await?;
    let name = format!(
        "{}-{:016x}.rtcstats",
        metadata.start_time as u64,
        rand::random::<u64>()
    );
    let mut file = tokio::io::BufWriter::new(fs::File::create(dir.join(name)).await?);
    let meta = serde_json::to_string(metadata).map_err(std::io::Error::other)?;
    file.write_all(format!("RTCStatsDump\n{meta}\n").as_bytes())
        .await?;
    Ok(DumpFile { file, lines: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_dump() {
        let uri: axum::http::Uri = "/rtcstats?a=1&rtcstats-token=eyJ.secret.x&b=2".parse().unwrap();
        assert_eq!(obfuscate(&uri), "/rtcstats?a=1&rtcstats-token=obfuscated&b=2");
    }

    #[test]
    fn messages_are_arrays_ending_in_a_time() {
        assert_eq!(time_delta(r#"[39,null,{},1763700000000]"#), Some(1763700000000.0));
        assert_eq!(time_delta(r#"["g","PC_0",{"0":{}},12]"#), Some(12.0));
        for bad in [
            "",
            "{}",
            "[1,2]",
            r#"["x",null,{},-1]"#,
            r#"["x",null,{},"5"]"#,
            "[1,2,",
            "null",
        ] {
            assert_eq!(time_delta(bad), None, "{bad}");
        }
    }
}
