//! `/rtcstats`: the stats collector. It writes one dump file per socket, in the rtcstats dump
//! format (fileFormat 3, `docs/stats-format.md`), so rtcstats tools read our dumps:
//!
//! ```text
//! RTCStatsDump
//! {"url": …, "origin": …, "userAgent": …, "startTime": …, "clientProtocol": …, "fileFormat": 3, …identity}
//! <every valid message of the socket, one compact JSON array per line>
//! ["close", null, <code>, {"reason": …, "malformed": n, "tooLarge": n, "rateLimited": n}, <ms since the last message>]
//! ```
//!
//! Every line ends with its time delta: the rtcstats reference reader adds the last item of
//! each line to its running time. Files are created on the first valid message, so an empty
//! socket leaves no file.
//!
//! Limits: a message over `max_frame` or beyond the socket's token bucket, or malformed, is
//! refused for good: not written, counted in the close line, reported to the client as
//! `["refused", reason, count]` and acknowledged (sending it again cannot help). A dump that
//! reaches its size cap, or the dumps dir its quota, ends with a close line saying so and the
//! socket closes with 1013; the line that did not fit is not acknowledged, so the SDK sends it
//! again in its next dump.
//!
//! The collector acknowledges lines with `["ack", n]` (n = lines of this socket handled for
//! good, written or refused, header included). The SDK replays what was not acknowledged when
//! a socket drops. Before the collector closes a socket gracefully (server shutdown, the
//! client's close, a limit), it acknowledges every line it handled, so no line is replayed into
//! the next dump.
//!
//! The WebSocket layer is `yawc`, not axum's tungstenite: it negotiates permessage-deflate
//! (RFC 7692), so clients may compress what they upload.

use std::{
    future::poll_fn,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

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

/// Room kept in every dump, and in the quota, for its close line: a dump at a limit still
/// ends with one. A close line is at most about 150 bytes.
const CLOSE_LINE_ROOM: u64 = 256;
/// A full dumps dir is measured again at most this often, so files moved away are noticed.
const QUOTA_RESCAN: Duration = Duration::from_secs(1);
/// Close code of a dump ended by its size cap or the quota: the client may try again later
/// (the SDK reconnects with backoff and goes on in a new dump).
const TRY_AGAIN_LATER: u16 = 1013;

#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub dumps_dir: PathBuf,
    /// HS256 secret for `?rtcstats-token=`; `None` accepts anyone.
    pub secret: Option<String>,
    /// Largest message (inflated bytes) written; larger ones are refused.
    pub max_frame: usize,
    /// Acks go out at most this often (ms).
    pub ack_interval_ms: u64,
    /// Largest dump file in bytes, close line included (0: no cap).
    pub max_dump_bytes: u64,
    /// Per-socket token bucket over uploaded bytes: sustained bytes/s (0: no limit) and burst.
    pub rate_bytes: u64,
    pub rate_burst_bytes: u64,
    /// Bytes of every file in `dumps_dir`, shared by all sockets.
    pub quota: Arc<DumpsQuota>,
}

/// The dumps dir's quota: the bytes of every file in it, measured at start-up and counted up
/// with every byte the collector writes. When it is reached, the dir is measured again (at most
/// every [`QUOTA_RESCAN`]) so that files an operator moved away free their room; the bytes
/// taken but not on disk yet (write buffers, close-line rooms) are added to the measurement.
#[derive(Debug)]
pub struct DumpsQuota {
    dir: PathBuf,
    /// 0: no quota (bytes are still counted).
    limit: u64,
    used: AtomicU64,
    /// Of `used`, the bytes taken but not known to be on disk.
    in_flight: AtomicU64,
    measured: Mutex<std::time::Instant>,
}

impl DumpsQuota {
    /// Measures `dir` now (a missing dir holds 0 bytes).
    pub fn measure(dir: &Path, limit: u64) -> DumpsQuota {
        DumpsQuota {
            dir: dir.to_path_buf(),
            limit,
            used: AtomicU64::new(dir_bytes(dir)),
            in_flight: AtomicU64::new(0),
            measured: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Bytes counted in the dir.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of the quota; false, taking nothing, when they do not fit.
    pub async fn reserve(&self, bytes: u64) -> bool {
        if self.try_reserve(bytes) {
            return true;
        }
        if !self.rescan_due() {
            return false;
        }
        let dir = self.dir.clone();
        if let Ok(measured) = tokio::task::spawn_blocking(move || dir_bytes(&dir)).await {
            // A buffer that filled up wrote itself out meanwhile: counted twice until its
            // dump's next flush, which errs on the safe side.
            let in_flight = self.in_flight.load(Ordering::Relaxed);
            self.used
                .store(measured.saturating_add(in_flight), Ordering::Relaxed);
        }
        self.try_reserve(bytes)
    }

    /// Gives back bytes reserved and never written.
    pub fn release(&self, bytes: u64) {
        sub(&self.used, bytes);
        sub(&self.in_flight, bytes);
    }

    /// Reserved bytes are now on disk (their file was flushed).
    pub fn landed(&self, bytes: u64) {
        sub(&self.in_flight, bytes);
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|&total| self.limit == 0 || total <= self.limit)
            })
            .is_ok();
        if taken {
            self.in_flight.fetch_add(bytes, Ordering::Relaxed);
        }
        taken
    }

    fn rescan_due(&self) -> bool {
        let mut measured = self
            .measured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if measured.elapsed() < QUOTA_RESCAN {
            return false;
        }
        *measured = std::time::Instant::now();
        true
    }
}

fn sub(counter: &AtomicU64, bytes: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(bytes))
    });
}

/// Bytes of the regular files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .filter(|meta| meta.is_file())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A token bucket over the bytes one socket uploads. Time is an input, so it is unit-tested
/// without waiting.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Tokens (bytes) added per second; 0: unlimited.
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// A full bucket at `now`.
    pub fn new(per_sec: u64, burst: u64, now: Instant) -> RateLimit {
        RateLimit {
            per_sec: per_sec as f64,
            burst: burst as f64,
            tokens: burst as f64,
            at: now,
        }
    }

    /// Takes `bytes` at `now` if the bucket holds them; takes nothing otherwise.
    pub fn take(&mut self, bytes: u64, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        let bytes = bytes as f64;
        if bytes > self.tokens {
            return false;
        }
        self.tokens -= bytes;
        true
    }
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

/// The query parameter that carries the collector's JWT.
const TOKEN_KEY: &str = "rtcstats-token";

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

/// The request URL with the token's value replaced, so dumps never hold credentials. Keys are
/// decoded as the query extractor decodes them (`application/x-www-form-urlencoded`: percent
/// escapes, `+`), so every spelling the server accepts as the token is caught
/// (`rtcstats%2Dtoken=` too).
fn obfuscate(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            let is_token = form_urlencoded::parse(pair.as_bytes())
                .next()
                .is_some_and(|(key, _)| key == TOKEN_KEY);
            match (is_token, pair.split_once('=')) {
                (true, Some((key, _))) => format!("{key}=obfuscated"),
                _ => pair.to_string(),
            }
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

/// A message is a JSON array `[method, pc, value, …extra, timeDelta]`: at least 4 items (the
/// reference reader takes the value from the third and the time from the last), ending in a
/// finite non-negative number. Returns the time delta.
fn time_delta(text: &str) -> Option<f64> {
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    if items.len() < 4 {
        return None;
    }
    let delta: f64 = serde_json::from_str(items.last()?.get()).ok()?;
    (delta.is_finite() && delta >= 0.0).then_some(delta)
}

/// `text`, JSON that serde_json has validated, as one line: the whitespace between tokens
/// removed, every token byte for byte as the client wrote it (numbers as JS printed them, keys
/// in their order, string escapes). Re-serializing through `serde_json::Value` would reorder
/// keys and reprint numbers (`1e+21` as `1e21`). JSON strings cannot hold a raw line break
/// (control characters must be escaped), so the result is exactly one line; the check at the
/// end only guards that reasoning.
fn compact(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut i, mut kept_from) = (0, 0);
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            // A string: skipped to its closing quote (escapes hop over the escaped byte).
            b'"' => {
                while let Some(&c) = bytes.get(i) {
                    i += match c {
                        b'\\' => 2,
                        b'"' => break,
                        _ => 1,
                    };
                }
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(bytes.get(kept_from..i - 1)?);
                kept_from = i;
            }
            _ => {}
        }
    }
    out.extend_from_slice(bytes.get(kept_from..)?);
    if out.iter().any(|&b| b == b'\n' || b == b'\r') {
        return None;
    }
    String::from_utf8(out).ok()
}

/// A checked message: the compact line to write and its time delta.
fn check_message(payload: &[u8]) -> Option<(String, f64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let delta = time_delta(text)?;
    Some((compact(text)?, delta))
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
        Some(secret) => match auth::verify_with_leeway::<StatsClaims>(
            secret,
            query.token.as_deref(),
            app.signal.jwt_leeway,
        ) {
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

/// Why messages were refused for good: counted, reported, acknowledged, never written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Refused {
    malformed: u64,
    too_large: u64,
    rate_limited: u64,
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Malformed,
    TooLarge,
    RateLimited,
}

impl Refused {
    fn count(&mut self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Malformed => &mut self.malformed,
            Refusal::TooLarge => &mut self.too_large,
            Refusal::RateLimited => &mut self.rate_limited,
        };
        *counter += 1;
    }

    /// `["refused", reason, count]` for every count that changed since `reported` (counts are
    /// per socket and cumulative, so a report is never misread twice).
    fn reports(&self, reported: &Refused) -> Vec<Frame> {
        [
            ("malformed", self.malformed, reported.malformed),
            ("message-too-large", self.too_large, reported.too_large),
            ("rate-limited", self.rate_limited, reported.rate_limited),
        ]
        .into_iter()
        .filter(|(_, now, before)| now != before)
        .map(|(reason, count, _)| Frame::text(format!("[\"refused\",\"{reason}\",{count}]")))
        .collect()
    }
}

struct DumpFile {
    file: tokio::io::BufWriter<fs::File>,
    /// Bytes in the file (the close line's room not included).
    bytes: u64,
    /// Bytes written since the last flush (the quota counts them as in flight).
    unflushed: u64,
    /// Bytes of a dump that holds nothing but its metadata.
    empty_bytes: u64,
    quota: Arc<DumpsQuota>,
}

impl DumpFile {
    /// Appends one line, or ends the dump when its cap or the quota leaves no room for it and
    /// the close line. A line that would not fit even in an empty dump is refused instead:
    /// ending the dump for it would only repeat in the next one.
    async fn write_line(&mut self, line: &str, max_dump: u64) -> Result<(), Stop> {
        let len = line.len() as u64 + 1;
        if max_dump > 0 && self.bytes + len + CLOSE_LINE_ROOM > max_dump {
            return Err(match self.empty_bytes + len + CLOSE_LINE_ROOM > max_dump {
                true => Stop::Refuse(Refusal::TooLarge),
                false => Stop::End(End::DumpLimit),
            });
        }
        if !self.quota.reserve(len).await {
            return Err(Stop::End(End::Quota));
        }
        let written = async {
            self.file.write_all(line.as_bytes()).await?;
            self.file.write_all(b"\n").await
        };
        if written.await.is_err() {
            return Err(Stop::End(End::Storage));
        }
        self.bytes += len;
        self.unflushed += len;
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        self.quota.landed(std::mem::take(&mut self.unflushed));
        Ok(())
    }

    /// Writes the close line into the room kept for it and flushes; gives back the room left.
    async fn finish(mut self, close_line: &str) -> std::io::Result<()> {
        let len = (close_line.len() as u64 + 1).min(CLOSE_LINE_ROOM);
        self.quota.release(CLOSE_LINE_ROOM - len);
        self.unflushed += len;
        self.file.write_all(close_line.as_bytes()).await?;
        self.file.write_all(b"\n").await?;
        self.flush().await
    }
}

/// What stops a line from being written.
enum Stop {
    Refuse(Refusal),
    End(End),
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
    /// The dump reached its size cap: close with 1013.
    DumpLimit,
    /// The dumps dir reached its quota: close with 1013.
    Quota,
}

impl End {
    fn code(&self) -> u16 {
        match self {
            End::Shutdown => close_code::GOING_AWAY,
            End::ClientClosed(code) | End::Failed(code) => *code,
            End::Storage => STORAGE_FAILED,
            End::DumpLimit | End::Quota => TRY_AGAIN_LATER,
        }
    }

    /// The `reason` of the dump's close line.
    fn reason(&self) -> &'static str {
        match self {
            End::Shutdown => "server-shutdown",
            End::ClientClosed(_) => "client-closed",
            End::Storage => "storage-error",
            End::Failed(1009) => "message-too-big",
            End::Failed(_) => "connection-failed",
            End::DumpLimit => "dump-size-limit",
            End::Quota => "dumps-quota",
        }
    }

    /// The reason of the collector's own close frame (the client sees it).
    fn close_reason(&self) -> &'static str {
        match self {
            End::Shutdown => "server shutting down",
            End::Storage => "cannot store the dump",
            End::DumpLimit => "dump size limit",
            End::Quota => "dumps quota exhausted",
            End::ClientClosed(_) | End::Failed(_) => "",
        }
    }
}

/// Close code when the dump cannot be stored (internal error).
const STORAGE_FAILED: u16 = 1011;

/// The dump's last line: the close code as the value (as rtcstats-server writes it), the
/// counters as an extra item, and the time delta last, as every line.
fn close_line(end: &End, refused: &Refused, since_last_ms: u128) -> String {
    format!(
        "[\"close\",null,{},{{\"reason\":\"{}\",\"malformed\":{},\"tooLarge\":{},\"rateLimited\":{}}},{since_last_ms}]",
        end.code(),
        end.reason(),
        refused.malformed,
        refused.too_large,
        refused.rate_limited,
    )
}

async fn collect(
    mut socket: HttpWebSocket,
    app: Arc<App>,
    settings: CollectorSettings,
    mut metadata: Metadata,
) {
    let mut dump: Option<DumpFile> = None;
    let mut refused = Refused::default();
    let mut reported = Refused::default();
    // Lines of this socket handled for good (written, or refused), header included: what the
    // client need never send again.
    let mut handled: u64 = 0;
    let mut acked: u64 = 0;
    let mut last_message = Instant::now();
    let mut bucket = RateLimit::new(settings.rate_bytes, settings.rate_burst_bytes, Instant::now());
    let mut ack_timer = tokio::time::interval(Duration::from_millis(settings.ack_interval_ms));
    let shutdown = app.shutdown.clone();
    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break End::Shutdown,
            _ = ack_timer.tick() => {
                if handled == acked && refused == reported {
                    continue;
                }
                if let Some(d) = dump.as_mut() {
                    if d.flush().await.is_err() {
                        break End::Storage;
                    }
                }
                let mut sent = true;
                for report in refused.reports(&reported) {
                    sent = sent && socket.send(report).await.is_ok();
                }
                if sent && socket.send(ack(handled)).await.is_ok() {
                    (acked, reported) = (handled, refused);
                }
            }
            incoming = socket.next_frame() => match incoming {
                Ok(frame) => {
                    let payload = frame.payload();
                    // Sized first and rate-limited before it is parsed, so a flood costs no
                    // parsing.
                    let checked = match frame.opcode() {
                        OpCode::Text if payload.len() > settings.max_frame => Err(Refusal::TooLarge),
                        OpCode::Text if !bucket.take(payload.len() as u64, Instant::now()) => {
                            Err(Refusal::RateLimited)
                        }
                        OpCode::Text => check_message(payload).ok_or(Refusal::Malformed),
                        OpCode::Binary => Err(Refusal::Malformed),
                        OpCode::Close => break End::ClientClosed(frame.close_code().map_or(1005, u16::from)),
                        // Pings are answered by yawc; fragments arrive assembled.
                        _ => continue,
                    };
                    let (line, delta) = match checked {
                        Ok(checked) => checked,
                        Err(refusal) => {
                            refused.count(refusal);
                            handled += 1;
                            continue;
                        }
                    };
                    last_message = Instant::now();
                    let d = match dump.as_mut() {
                        Some(d) => d,
                        None => {
                            // startTime is never later than the first event: the first message
                            // carries the client's absolute time.
                            let now = unix_ms();
                            metadata.start_time = if delta > 1e11 { now.min(delta) } else { now };
                            match open_dump(&settings, &metadata).await {
                                Ok(file) => {
                                    // The first ack follows the header at once, so the SDK
                                    // counts on acks from the start (its `AckMode::Auto`).
                                    ack_timer.reset_immediately();
                                    dump.insert(file)
                                }
                                Err(end) => break end,
                            }
                        }
                    };
                    match d.write_line(&line, settings.max_dump_bytes).await {
                        Ok(()) => handled += 1,
                        Err(Stop::Refuse(refusal)) => {
                            refused.count(refusal);
                            handled += 1;
                        }
                        Err(Stop::End(end)) => break end,
                    }
                }
                Err(yawc::WebSocketError::FrameTooLarge) => break End::Failed(1009),
                Err(_) => break End::Failed(1006),
            },
        }
    };
    // The dump is complete and durable before anything else can wait on the network.
    let mut durable = true;
    if let Some(d) = dump {
        let close = close_line(&end, &refused, last_message.elapsed().as_millis());
        durable = d.finish(&close).await.is_ok();
    }
    let final_ack = Some(handled).filter(|&n| durable && n > acked);
    let reports = refused.reports(&reported);
    // A graceful end acknowledges every handled line before the close frame: the SDK replays
    // only unacknowledged lines, so none of them is duplicated in its next dump.
    match end {
        End::Shutdown | End::Storage | End::DumpLimit | End::Quota => {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                for report in reports {
                    socket.send(report).await?;
                }
                match final_ack {
                    Some(lines) => socket.send(ack(lines)).await,
                    None => Ok(()),
                }
            })
            .await;
            close_socket(&mut socket, end.code(), end.close_reason()).await;
        }
        End::ClientClosed(_) => {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                for report in reports {
                    send_ahead(&mut socket, report).await?;
                }
                match final_ack {
                    Some(lines) => send_ahead(&mut socket, ack(lines)).await,
                    None => Ok(()),
                }
            })
            .await;
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

/// Creates the dump file with its two header lines, within the quota (room for the close line
/// included) and the size cap.
async fn open_dump(settings: &CollectorSettings, metadata: &Metadata) -> Result<DumpFile, End> {
    let meta = serde_json::to_string(metadata).map_err(|_| End::Storage)?;
    let head = format!("RTCStatsDump\n{meta}\n");
    let head_bytes = head.len() as u64;
    if settings.max_dump_bytes > 0 && head_bytes + CLOSE_LINE_ROOM > settings.max_dump_bytes {
        return Err(End::DumpLimit);
    }
    if !settings.quota.reserve(head_bytes + CLOSE_LINE_ROOM).await {
        return Err(End::Quota);
    }
    let file = async {
        fs::create_dir_all(&settings.dumps_dir).await?;
        let name = format!(
            "{}-{:016x}.rtcstats",
            metadata.start_time as u64,
            rand::random::<u64>()
        );
        let mut file = tokio::io::BufWriter::new(fs::File::create(settings.dumps_dir.join(name)).await?);
        file.write_all(head.as_bytes()).await?;
        std::io::Result::Ok(file)
    };
    match file.await {
        Ok(file) => Ok(DumpFile {
            file,
            bytes: head_bytes,
            unflushed: head_bytes,
            empty_bytes: head_bytes,
            quota: settings.quota.clone(),
        }),
        Err(err) => {
            tracing::error!(%err, "cannot write dump");
            settings.quota.release(head_bytes + CLOSE_LINE_ROOM);
            Err(End::Storage)
        }
    }
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
    fn every_accepted_spelling_of_the_token_key_is_obfuscated() {
        for (query, want) in [
            ("rtcstats%2Dtoken=eyJ.s.x", "rtcstats%2Dtoken=obfuscated"),
            ("%72tcstats-token=eyJ.s.x&b=2", "%72tcstats-token=obfuscated&b=2"),
            ("rtcstats-t%6Fken=eyJ.s.x", "rtcstats-t%6Fken=obfuscated"),
            // Not the token key: left as it is.
            (
                "rtcstats%20token=x&rtcstats-tokens=y",
                "rtcstats%20token=x&rtcstats-tokens=y",
            ),
        ] {
            let uri: axum::http::Uri = format!("/rtcstats?{query}").parse().unwrap();
            assert_eq!(obfuscate(&uri), format!("/rtcstats?{want}"));
        }
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket_over_bytes() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut bucket = RateLimit::new(1000, 4000, t0);
        assert!(bucket.take(4000, t0), "starts full: the burst");
        assert!(!bucket.take(1, t0));
        assert!(!bucket.take(600, at(500)), "500 ms refill 500 bytes");
        assert!(bucket.take(500, at(500)), "a refusal takes nothing");
        assert!(bucket.take(1000, at(1500)));
        assert!(!bucket.take(1, at(1500)));
        // Never more than the burst, however long the socket was idle.
        assert!(bucket.take(4000, at(60_000)));
        assert!(!bucket.take(1, at(60_000)));
        // A clock read out of order adds nothing.
        assert!(!bucket.take(1, at(59_000)));
        assert!(!bucket.take(u64::MAX, at(0)));
        let mut unlimited = RateLimit::new(0, 0, t0);
        assert!(unlimited.take(u64::MAX, t0));
    }

    #[tokio::test]
    async fn the_quota_counts_the_dir_and_measures_it_again_when_full() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rtcstats"), [b'a'; 700]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let quota = DumpsQuota::measure(dir.path(), 1000);
        assert_eq!(quota.used(), 700);
        assert!(quota.reserve(300).await);
        assert!(!quota.reserve(1).await, "full; measured less than a second ago");
        quota.release(100);
        assert!(quota.reserve(100).await);
        std::fs::remove_file(dir.path().join("a.rtcstats")).unwrap();
        assert!(!quota.reserve(1).await);
        *quota.measured.lock().unwrap() -= QUOTA_RESCAN;
        // 300 bytes are taken but not on disk (a write buffer): a measurement keeps them.
        quota.landed(0);
        assert!(quota.reserve(1).await, "the file moved away is noticed");
        assert_eq!(quota.used(), 301);
        quota.landed(301);
        std::fs::write(dir.path().join("b.rtcstats"), [b'b'; 301]).unwrap();
        *quota.measured.lock().unwrap() -= QUOTA_RESCAN;
        assert!(quota.reserve(699).await);
        assert!(!quota.reserve(1).await);
        *quota.measured.lock().unwrap() -= QUOTA_RESCAN;
        assert!(
            !quota.reserve(1).await,
            "the landed bytes are counted once: {}",
            quota.used()
        );
        let unlimited = DumpsQuota::measure(&dir.path().join("missing"), 0);
        assert!(unlimited.reserve(u64::MAX).await);
    }

    #[test]
    fn compact_removes_whitespace_between_tokens_only() {
        assert_eq!(
            compact("[ \"a b\" ,\r\n\t{ \"k\\\" \\\\\" : 1.50 } , null ,5 ]").as_deref(),
            Some("[\"a b\",{\"k\\\" \\\\\":1.50},null,5]")
        );
        let line = r#"["g","PC_0",{"0":{"a":"x\ny"}},12]"#;
        assert_eq!(
            compact(line).as_deref(),
            Some(line),
            "compact input is kept byte for byte"
        );
        assert_eq!(check_message(b"[1,\n2,\n3,\n4]"), Some(("[1,2,3,4]".into(), 4.0)));
        assert_eq!(
            check_message(b"[1,2,\"a\nb\",4]"),
            None,
            "a raw line break in a string is not JSON"
        );
        assert_eq!(check_message(&[b'[', 0xff, b']']), None);
    }

    #[test]
    fn messages_are_arrays_ending_in_a_time() {
        assert_eq!(time_delta(r#"[39,null,{},1763700000000]"#), Some(1763700000000.0));
        assert_eq!(time_delta(r#"["g","PC_0",{"0":{}},12]"#), Some(12.0));
        for bad in [
            "",
            "{}",
            "[1,2]",
            // No value: the reference reader would take the time as the value.
            r#"[":x",null,5]"#,
            r#"[":x",null,{},1e400]"#,
            r#"["x",null,{},-1]"#,
            r#"["x",null,{},"5"]"#,
            "[1,2,",
            "null",
        ] {
            assert_eq!(time_delta(bad), None, "{bad}");
        }
    }
}
