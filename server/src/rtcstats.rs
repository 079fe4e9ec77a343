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
//! replays what was not acknowledged when a socket drops.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        OriginalUri, Query, State,
    },
    http::{
        header::{ORIGIN, USER_AGENT},
        HeaderMap,
    },
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{fs, io::AsyncWriteExt, time::Instant};

use crate::{auth, hub::close_code, App};

/// The subprotocol rtcstats clients ask for.
pub const SUBPROTOCOL: &str = "rtcstats#5.0";

#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub dumps_dir: PathBuf,
    /// HS256 secret for `?rtcstats-token=`; `None` accepts anyone.
    pub secret: Option<String>,
    pub max_frame: usize,
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

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<Arc<App>>,
    Query(query): Query<StatsQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let settings = app.collector.clone();
    let ws = ws
        .protocols([SUBPROTOCOL])
        .max_message_size(settings.max_frame * 2)
        .read_buffer_size(4096);
    let identity = match &settings.secret {
        None => Identity::default(),
        Some(secret) => match auth::verify::<StatsClaims>(secret, query.token.as_deref()) {
            Ok(claims) => claims.rtc_stats,
            Err(reason) => return auth::refuse(ws, reason),
        },
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
            .map(String::from)
    };
    let metadata = Metadata {
        url: obfuscate(&uri),
        origin: header(ORIGIN),
        user_agent: header(USER_AGENT),
        start_time: 0.0,
        client_protocol: None,
        file_format: 3,
        identity,
    };
    let tasks = app.tasks.clone();
    ws.on_upgrade(move |socket| tasks.track_future(collect(socket, app, settings, metadata)))
}

struct DumpFile {
    file: tokio::io::BufWriter<fs::File>,
    lines: u64,
}

async fn collect(mut socket: WebSocket, app: Arc<App>, settings: CollectorSettings, mut metadata: Metadata) {
    metadata.client_protocol = socket.protocol().and_then(|p| p.to_str().ok()).map(String::from);
    let mut dump: Option<DumpFile> = None;
    let mut malformed: u64 = 0;
    let mut acked: u64 = 0;
    let mut last_message = Instant::now();
    let mut ack_timer = tokio::time::interval(Duration::from_millis(250));
    let shutdown = app.shutdown.clone();
    let code = loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let frame = CloseFrame { code: close_code::GOING_AWAY, reason: "server shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break close_code::GOING_AWAY;
            }
            _ = ack_timer.tick() => {
                if let Some(d) = dump.as_mut().filter(|d| d.lines > acked) {
                    if d.file.flush().await.is_ok() {
                        acked = d.lines;
                        let _ = socket.send(Message::Text(format!("[\"ack\",{acked}]").into())).await;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    let Some(delta) = time_delta(text).filter(|_| text.len() <= settings.max_frame) else {
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
                            Ok(file) => dump = Some(file),
                            Err(err) => {
                                tracing::error!(%err, "cannot write dump");
                                let frame = CloseFrame { code: 1011, reason: "cannot store the dump".into() };
                                let _ = socket.send(Message::Close(Some(frame))).await;
                                break 1011;
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
                Some(Ok(Message::Binary(_))) => malformed += 1,
                Some(Ok(Message::Close(frame))) => break frame.map_or(1005, |f| f.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break 1006,
            },
        }
    };
    if let Some(mut d) = dump {
        let since_last = last_message.elapsed().as_millis();
        let close = format!("[\"close\",null,{code},{since_last},{{\"malformed\":{malformed}}}]\n");
        let _ = d.file.write_all(close.as_bytes()).await;
        let _ = d.file.flush().await;
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
