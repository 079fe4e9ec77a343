//! The `/rtcstats` collector end to end: the SDK's real trace core (`rtcroom::stats::Trace`)
//! feeds a real WebSocket, and the dump files it leaves are read back with the SDK's dump reader.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtcroom::stats::{dump::read_dump, Action, Trace, TraceConfig, Value};
use rtcroom_server::{Config, Running};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{
        client::IntoClientRequest,
        protocol::{frame::coding::CloseCode, CloseFrame},
        Message,
    },
};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.port = 0;
    config.dumps_dir = dir.to_path_buf();
    config
}

/// Acks at most every second: the graceful-close tests need lines written but not yet acked.
fn slow_acks(mut config: Config) -> Config {
    config.rtcstats_ack_interval_ms = 1000;
    config
}

async fn connect(
    server: &Running,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{}/rtcstats{query}", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "rtcstats#5.0".parse().unwrap());
    request
        .headers_mut()
        .insert("user-agent", "rtcroom-test".parse().unwrap());
    let (ws, response) = connect_async(request).await.expect("connect");
    assert_eq!(response.headers()["sec-websocket-protocol"], "rtcstats#5.0");
    ws
}

fn dumps(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/../tests/fixtures/stats/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    Value::parse(&text).expect("fixture JSON")
}

#[tokio::test]
async fn a_traced_call_becomes_one_valid_dump_with_acks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config(dir.path())).await.unwrap();

    let t0 = 1_763_700_000_000.0;
    let mut trace = Trace::new(TraceConfig::default());
    let client_info =
        Value::parse(r#"{"hardwareConcurrency":2,"userAgentData":{"platform":"Linux"}}"#).unwrap();
    let generation = trace.connect(t0, client_info);
    let pc_config =
        Value::parse(r#"{"iceServers":[{"urls":"turn:x","username":"u","credential":"secret"}]}"#).unwrap();
    let pc = trace.create_pc(generation, t0 + 1.0, &pc_config).expect("pc id");
    let mut time = t0 + 2.0;
    for (method, value) in call_events() {
        time += 100.0;
        assert!(
            trace.record(generation, time, method, Some(&pc), value, vec![]),
            "{method}"
        );
    }
    trace.close(generation, time + 1.0);

    // The shell's part: carry out the trace's actions and feed the collector's acks back in.
    // The trace closes its socket only once the collector has acknowledged every line.
    let mut ws = None;
    let mut acks = Vec::new();
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !closed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace never closed; acks so far {acks:?}"
        );
        while let Some(action) = trace.poll_action() {
            match action {
                Action::Open { socket, .. } => {
                    ws = Some((socket, connect(&server, "?rtcstats-token=not-checked-here").await));
                    trace.socket_open(socket, time + 2.0);
                }
                Action::Send { text, .. } => ws.as_mut().unwrap().1.send(Message::text(text)).await.unwrap(),
                Action::Close { .. } => {
                    let (_, ws) = ws.as_mut().unwrap();
                    ws.send(Message::text("not a message")).await.unwrap(); // malformed: counted, not written
                    let normal = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    ws.close(Some(normal)).await.unwrap();
                    closed = true;
                }
                Action::Timer { .. } => {}
                Action::Error { error, .. } => panic!("unexpected {error}"),
            }
        }
        if closed {
            break;
        }
        let (socket, stream) = ws.as_mut().expect("a socket");
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            acks.push(text.to_string());
            trace.socket_message(*socket, time + 3.0, text.as_str());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await.unwrap();

    assert!(acks.iter().all(|a| a.starts_with("[\"ack\",")), "{acks:?}");
    assert_eq!(
        acks.last().map(String::as_str),
        Some("[\"ack\",10]"),
        "header + pc create + 8 events, all acknowledged"
    );
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    let dump = read_dump(&files[0]).unwrap_or_else(|e| panic!("invalid dump: {e:?}\n{}", files[0]));
    let meta = &dump.metadata;
    assert_eq!(meta.get("fileFormat").and_then(Value::as_f64), Some(3.0));
    assert_eq!(
        meta.get("clientProtocol").and_then(Value::as_str),
        Some("rtcstats#5.0")
    );
    assert_eq!(
        meta.get("url").and_then(Value::as_str),
        Some("/rtcstats?rtcstats-token=obfuscated")
    );
    assert_eq!(
        meta.get("userAgent").and_then(Value::as_str),
        Some("rtcroom-test")
    );
    let start = meta.get("startTime").and_then(Value::as_f64).unwrap();
    assert!(
        start <= dump.events[0].time,
        "startTime {start} after the first event {}",
        dump.events[0].time
    );
    let methods: Vec<&str> = dump.events.iter().map(|e| e.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "create",
            "create",
            "createOffer",
            "setLocalDescription",
            "onicecandidate",
            "onconnectionstatechange",
            "getStats",
            "getStats",
            ":app-event",
            "close"
        ]
    );
    assert!(!files[0].contains("secret"), "credentials never reach the dump");
    assert_eq!(dump.close_code, 1000.0);
    let close = close_line(&files[0]);
    assert_eq!(
        (&close[3]["reason"], &close[3]["malformed"]),
        (&serde_json::json!("client-closed"), &serde_json::json!(1)),
        "{close}"
    );
}

#[tokio::test]
async fn empty_sockets_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config(dir.path())).await.unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text("[1,2]")).await.unwrap(); // malformed only
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await.unwrap();
    assert!(dumps(dir.path()).is_empty());
}

#[tokio::test]
async fn with_a_secret_the_token_is_required_and_names_the_dump() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rtcstats_secret = Some("stats-secret".into());
    let server = Running::start(cfg).await.unwrap();

    let mut refused = connect(&server, "").await;
    match tokio::time::timeout(Duration::from_secs(5), refused.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(
                (frame.code, frame.reason.as_str()),
                (CloseCode::Policy, "missing token")
            )
        }
        other => panic!("expected a 1008 close, got {other:?}"),
    }

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"rtcStats": {"user": "ann", "session": "s-1", "conference": "room-9"}, "exp": exp});
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"stats-secret"),
    )
    .unwrap();
    let mut ws = connect(&server, &format!("?rtcstats-token={token}")).await;
    ws.send(Message::text(
        "[39,null,{},{\"generation\":1,\"socket\":0,\"seq\":0},1763700000000]",
    ))
    .await
    .unwrap();
    ws.send(Message::text("[\":note\",null,{\"x\":1},5]"))
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    let dump = read_dump(&files[0]).unwrap();
    for (key, want) in [("user", "ann"), ("session", "s-1"), ("conference", "room-9")] {
        assert_eq!(dump.metadata.get(key).and_then(Value::as_str), Some(want));
    }
    assert!(!files[0].contains(&token));
}

/// The events of a short call: what `a_traced_call_becomes_one_valid_dump_with_acks` records.
fn call_events() -> Vec<(&'static str, Value)> {
    vec![
        ("createOffer", Value::Null),
        (
            "setLocalDescription",
            Value::parse(r#"{"type":"offer","sdp":"v=0\r\n"}"#).unwrap(),
        ),
        (
            "onicecandidate",
            Value::parse(r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host"}"#).unwrap(),
        ),
        ("onconnectionstatechange", Value::str("connected")),
        ("getStats", fixture("chrome-1.json")),
        ("getStats", fixture("chrome-2.json")),
        (":app-event", Value::parse(r#"{"note":"custom"}"#).unwrap()),
        ("close", Value::Null),
    ]
}

/// The body of a dump: its lines after the metadata, the collector's close line excluded.
fn body(dump: &str) -> Vec<&str> {
    let lines: Vec<&str> = dump.lines().skip(2).collect();
    lines[..lines.len() - 1].to_vec()
}

/// A WebSocket client written from RFC 6455 and RFC 7692 with flate2, independent of the
/// server's WebSocket library: it offers permessage-deflate as a browser does and compresses
/// every message it sends with what the server agreed to (context takeover, the negotiated
/// window).
struct DeflateClient {
    tcp: tokio::net::TcpStream,
    deflate: Option<flate2::Compress>,
    /// Bytes of the data frames sent, headers included.
    wire_bytes: usize,
}

struct Handshake {
    status: String,
    headers: Vec<(String, String)>,
}

impl Handshake {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl DeflateClient {
    async fn connect(server: &Running, query: &str, offer: Option<&str>) -> (DeflateClient, Handshake) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut request = format!(
            "GET /rtcstats{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: rtcstats#5.0\r\nUser-Agent: rtcroom-deflate-test\r\n",
            server.addr
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        // The server sends nothing after its response until we send, so reading up to the blank
        // line byte by byte never takes a frame's bytes.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.expect("handshake response"));
        }
        let head = String::from_utf8(head).unwrap();
        let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
        let status = lines.next().unwrap().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let handshake = Handshake { status, headers };
        let deflate = handshake
            .header("sec-websocket-extensions")
            .filter(|agreed| agreed.starts_with("permessage-deflate"))
            .map(|agreed| {
                let bits = agreed
                    .split(';')
                    .filter_map(|p| p.trim().strip_prefix("client_max_window_bits="))
                    .find_map(|b| b.parse::<u8>().ok())
                    .unwrap_or(15);
                flate2::Compress::new_with_window_bits(flate2::Compression::default(), false, bits)
            });
        let client = DeflateClient {
            tcp,
            deflate,
            wire_bytes: 0,
        };
        (client, handshake)
    }

    async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = rand::random::<[u8; 4]>();
        let mut frame = vec![first_byte];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
        if first_byte & 0x0f != 0x8 {
            self.wire_bytes += frame.len();
        }
    }

    /// One text message, compressed (RSV1) when permessage-deflate was agreed.
    async fn send_text(&mut self, text: &str) {
        let Some(deflate) = self.deflate.as_mut() else {
            return self.send_frame(0x81, text.as_bytes()).await;
        };
        let input = text.as_bytes();
        let start = deflate.total_in();
        let mut out = Vec::with_capacity(input.len() + 1024);
        loop {
            let consumed = (deflate.total_in() - start) as usize;
            deflate
                .compress_vec(&input[consumed..], &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            let done = (deflate.total_in() - start) as usize == input.len();
            if done && out.len() < out.capacity() {
                break;
            }
            out.reserve(4096);
        }
        // RFC 7692 §7.2.1: the sync flush's empty stored block is left off.
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        self.send_frame(0x80 | 0x40 | 0x1, &out).await;
    }

    async fn send_close(&mut self, code: u16) {
        self.send_frame(0x88, &code.to_be_bytes()).await;
    }

    /// The next frame from the server: (opcode, payload); None at the end of the stream.
    async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 2];
        self.tcp.read_exact(&mut head).await.ok()?;
        assert_eq!(head[0] & 0x70, 0, "the collector never compresses what it sends");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => u64::from(self.tcp.read_u16().await.ok()?),
            127 => self.tcp.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        self.tcp.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    }
}

#[tokio::test]
async fn permessage_deflate_offers_get_rfc7692_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config(dir.path())).await.unwrap();
    for (offer, answer) in [
        (None, None),
        // Firefox: the server must not name client_max_window_bits.
        (
            Some("permessage-deflate"),
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // Chromium: the server picks the client's window.
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some("permessage-deflate; client_max_window_bits=12; server_no_context_takeover"),
        ),
        (
            Some("permessage-deflate; client_max_window_bits=10"),
            Some("permessage-deflate; client_max_window_bits=10; server_no_context_takeover"),
        ),
    ] {
        let (mut client, handshake) = DeflateClient::connect(&server, "", offer).await;
        assert!(
            handshake.status.starts_with("HTTP/1.1 101"),
            "{}",
            handshake.status
        );
        assert_eq!(handshake.header("sec-websocket-protocol"), Some("rtcstats#5.0"));
        assert_eq!(
            handshake.header("sec-websocket-extensions"),
            answer,
            "offer {offer:?}"
        );
        let lines = [
            format!(
                "[39,null,{{\"offer\":{}}},{{\"generation\":1,\"socket\":0,\"seq\":0}},1763700000000]",
                serde_json::to_string(&offer).unwrap()
            ),
            format!("[\":note\",null,{{\"text\":\"{}\"}},5]", "abc".repeat(2000)),
        ];
        for line in &lines {
            client.send_text(line).await;
        }
        client.send_close(1000).await;
        // The collector acknowledges both lines, then answers the close.
        let mut frames = Vec::new();
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .unwrap()
        {
            frames.push(frame);
        }
        let Some(((0x8, close), acks)) = frames.split_last() else {
            panic!("no close frame: {frames:?}");
        };
        assert_eq!(close, &1000u16.to_be_bytes());
        assert!(acks.iter().all(|(opcode, _)| *opcode == 0x1), "{frames:?}");
        assert_eq!(
            acks.last().map(|(_, t)| t.as_slice()),
            Some(&b"[\"ack\",2]"[..]),
            "offer {offer:?}: {frames:?}"
        );
        if offer.is_some() {
            assert!(
                client.wire_bytes < 1000,
                "{} bytes on the wire",
                client.wire_bytes
            );
        }
    }
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    assert_eq!(files.len(), 4);
    for file in &files {
        read_dump(file).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            body(file)[1],
            format!("[\":note\",null,{{\"text\":\"{}\"}},5]", "abc".repeat(2000))
        );
    }
}

/// Runs the short call of `call_events` through `client` (a compressing one) and returns the
/// lines the trace sent and the acks it got.
async fn traced_call_over_deflate(client: &mut DeflateClient) -> (Vec<String>, Vec<String>) {
    let t0 = 1_763_700_000_000.0;
    let mut trace = Trace::new(TraceConfig::default());
    let generation = trace.connect(t0, Value::parse(r#"{"hardwareConcurrency":2}"#).unwrap());
    let pc = trace.create_pc(generation, t0 + 1.0, &Value::object()).unwrap();
    let mut time = t0 + 2.0;
    for (method, value) in call_events() {
        time += 100.0;
        assert!(trace.record(generation, time, method, Some(&pc), value, vec![]));
    }
    trace.close(generation, time + 1.0);
    let (mut sent, mut acks) = (Vec::new(), Vec::new());
    let mut socket = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace never closed: {acks:?}"
        );
        while let Some(action) = trace.poll_action() {
            match action {
                Action::Open { socket: id, .. } => {
                    socket = Some(id);
                    trace.socket_open(id, time + 2.0);
                }
                Action::Send { text, .. } => {
                    client.send_text(&text).await;
                    sent.push(text);
                }
                Action::Close { .. } => {
                    client.send_close(1000).await;
                    while let Some((opcode, _)) = client.recv().await {
                        if opcode == 0x8 {
                            break;
                        }
                    }
                    return (sent, acks);
                }
                Action::Timer { .. } => {}
                Action::Error { error, .. } => panic!("unexpected {error}"),
            }
        }
        if let Ok(Some((0x1, text))) = tokio::time::timeout(Duration::from_millis(500), client.recv()).await {
            let text = String::from_utf8(text).unwrap();
            trace.socket_message(socket.unwrap(), time + 3.0, &text);
            acks.push(text);
        }
    }
}

#[tokio::test]
async fn compressed_messages_of_a_traced_call_land_in_the_dump_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config(dir.path())).await.unwrap();
    let (mut client, handshake) = DeflateClient::connect(
        &server,
        "?rtcstats-token=t",
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(
        handshake.header("sec-websocket-extensions"),
        Some("permessage-deflate; client_max_window_bits=12; server_no_context_takeover")
    );
    let (sent, acks) = traced_call_over_deflate(&mut client).await;
    server.stop().await.unwrap();

    assert_eq!(acks.last().map(String::as_str), Some("[\"ack\",10]"), "{acks:?}");
    let raw: usize = sent.iter().map(String::len).sum();
    assert!(
        client.wire_bytes * 2 < raw,
        "{} bytes on the wire for {raw} bytes of messages",
        client.wire_bytes
    );
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        body(&files[0]),
        sent,
        "the dump holds exactly what the trace sent"
    );
    let dump = read_dump(&files[0]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(dump.events.len(), 10);
    assert_eq!(dump.close_code, 1000.0);
    assert_eq!(
        dump.metadata.get("userAgent").and_then(Value::as_str),
        Some("rtcroom-deflate-test")
    );
    assert_eq!(
        dump.metadata.get("url").and_then(Value::as_str),
        Some("/rtcstats?rtcstats-token=obfuscated")
    );
}

#[tokio::test]
async fn a_client_close_gets_an_ack_for_every_line_before_the_close_echo() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(slow_acks(config(dir.path()))).await.unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(
        "[39,null,{},{\"generation\":1,\"socket\":0,\"seq\":0},1763700000000]",
    ))
    .await
    .unwrap();
    for i in 0..20 {
        ws.send(Message::text(format!("[\":note\",null,{{\"i\":{i}}},1]")))
            .await
            .unwrap();
    }
    // Closes at once: the lines are written but the 1 s ack timer has not fired.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    let mut frames = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        frames.push(frame);
    }
    server.stop().await.unwrap();
    let Some((Message::Close(Some(close)), acks)) = frames.split_last() else {
        panic!("no close frame: {frames:?}");
    };
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(acks.last(), Some(&Message::text("[\"ack\",21]")), "{frames:?}");
    let files = dumps(dir.path());
    assert_eq!(body(&files[0]).len(), 21);
}

/// The trace's shell for one socket on a tungstenite client: carries out the trace's actions
/// and feeds the collector's acks back, until `until` says stop or the server closes.
struct Shell {
    trace: Trace,
    generation: u32,
    time: f64,
    socket: Option<(
        u32,
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    )>,
    /// Lines sent on the current socket.
    sent: u64,
    /// Text frames received on the current socket, in order.
    received: Vec<String>,
}

impl Shell {
    /// Carries out pending actions on `server` (Open connects there). Returns true on Close.
    async fn act(&mut self, server: &Running) -> bool {
        while let Some(action) = self.trace.poll_action() {
            self.time += 1.0;
            match action {
                Action::Open { socket, .. } => {
                    self.socket = Some((socket, connect(server, "").await));
                    self.sent = 0;
                    self.received.clear();
                    self.trace.socket_open(socket, self.time);
                }
                Action::Send { text, .. } => {
                    let (_, ws) = self.socket.as_mut().unwrap();
                    ws.send(Message::text(text)).await.unwrap();
                    self.sent += 1;
                }
                Action::Close { .. } => {
                    let (_, ws) = self.socket.as_mut().unwrap();
                    let normal = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    ws.close(Some(normal)).await.unwrap();
                    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
                    {
                    }
                    self.socket = None;
                    return true;
                }
                Action::Timer { .. } => {}
                Action::Error { error, .. } => panic!("unexpected {error}"),
            }
        }
        false
    }

    /// Reads one frame (bounded): an ack goes to the trace, a close ends the socket. Returns
    /// the close code when the server closed.
    async fn read(&mut self) -> Option<CloseCode> {
        let (socket, ws) = self.socket.as_mut()?;
        self.time += 1.0;
        match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                self.received.push(text.to_string());
                self.trace.socket_message(*socket, self.time, text.as_str());
                None
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let socket = *socket;
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
                self.socket = None;
                self.trace.socket_closed(socket, self.time);
                Some(frame.map_or(CloseCode::Status, |f| f.code))
            }
            _ => None,
        }
    }

    fn record(&mut self, method: &str, value: Value) {
        self.time += 10.0;
        let generation = self.generation;
        assert!(self
            .trace
            .record(generation, self.time, method, Some("PC_0"), value, vec![]));
    }

    /// Reads until the collector has acknowledged every line sent on this socket.
    async fn until_all_acked(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.received.last() != Some(&format!("[\"ack\",{}]", self.sent)) {
            assert!(tokio::time::Instant::now() < deadline, "acks {:?}", self.received);
            assert!(self.read().await.is_none());
        }
    }
}

fn run_dump_tool(args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rtcroom-dump"))
        .args(args)
        .output()
        .expect("run rtcroom-dump");
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (output.status.code(), lines)
}

#[tokio::test]
async fn a_server_restart_acks_every_written_line_so_no_line_is_duplicated_across_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(slow_acks(config(dir.path()))).await.unwrap();
    let t0 = 1_763_700_000_000.0;
    let mut trace = Trace::new(TraceConfig::default());
    let generation = trace.connect(t0, Value::object());
    assert_eq!(
        trace.create_pc(generation, t0, &Value::object()).as_deref(),
        Some("PC_0")
    );
    let mut shell = Shell {
        trace,
        generation,
        time: t0,
        socket: None,
        sent: 0,
        received: Vec::new(),
    };
    for (method, value) in call_events().into_iter().take(4) {
        shell.record(method, value);
    }
    shell.act(&first).await;
    shell.until_all_acked().await;
    // An ack just arrived, so the next periodic one is ~1 s away: these lines are written
    // but not yet acknowledged when the server stops.
    for i in 0..6 {
        shell.record(":note", Value::Number(f64::from(i)));
    }
    shell.act(&first).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(first.stop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        assert!(tokio::time::Instant::now() < deadline, "no close frame");
        if let Some(code) = shell.read().await {
            break code;
        }
    };
    assert_eq!(code, CloseCode::Away);
    assert_eq!(
        shell.received.last(),
        Some(&format!("[\"ack\",{}]", shell.sent)),
        "every line sent before the close frame is acknowledged: {:?}",
        shell.received
    );
    stopping.await.unwrap().unwrap();

    // The SDK reconnects to the restarted server and goes on.
    let second = Running::start(config(dir.path())).await.unwrap();
    shell.time += 1000.0;
    shell.trace.timer(generation, shell.time);
    shell.act(&second).await;
    for (method, value) in call_events().into_iter().skip(4) {
        shell.record(method, value);
    }
    shell.trace.close(generation, shell.time);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !shell.act(&second).await {
        assert!(tokio::time::Instant::now() < deadline);
        shell.read().await;
    }
    second.stop().await.unwrap();

    // 1 pc create + 4 + 6 + 4 records: seq 0..=14, each in exactly one dump.
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let mut args = vec!["--events"];
    args.extend(files.iter().map(String::as_str));
    let (status, summaries) = run_dump_tool(&args);
    assert_eq!(status, Some(0), "{summaries:?}");
    let mut summaries: Vec<_> = summaries.into_iter().collect();
    summaries.sort_by_key(|s| s["firstSeq"].as_u64());
    let (a, b) = (&summaries[0], &summaries[1]);
    assert_eq!(
        (a["closeCode"].as_u64(), b["closeCode"].as_u64()),
        (Some(1001), Some(1000))
    );
    assert_eq!((a["socket"].as_u64(), b["socket"].as_u64()), (Some(0), Some(1)));
    assert_eq!(a["firstSeq"].as_u64(), Some(0));
    assert_eq!(
        b["firstSeq"].as_u64(),
        Some(11),
        "nothing acknowledged is sent again"
    );
    // The second socket's first PC_0 event is preceded by a `:resume` marker (no seq).
    assert_eq!(b["list"][0], serde_json::json!([null, ":resume", "PC_0"]));
    let seqs: Vec<u64> = summaries
        .iter()
        .flat_map(|s| s["list"].as_array().unwrap().iter())
        .filter_map(|e| e[0].as_u64())
        .collect();
    assert_eq!(seqs, (0..15).collect::<Vec<_>>(), "{summaries:?}");
}

#[tokio::test]
async fn rtcroom_dump_summarizes_a_dump_and_rejects_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dumps_dir = dir.path().join("dumps");
    let server = Running::start(config(&dumps_dir)).await.unwrap();
    let (mut client, _) =
        DeflateClient::connect(&server, "", Some("permessage-deflate; client_max_window_bits")).await;
    traced_call_over_deflate(&mut client).await;
    server.stop().await.unwrap();
    let dump = std::fs::read_dir(&dumps_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dump = dump.display().to_string();
    let start_time = read_dump(&std::fs::read_to_string(&dump).unwrap())
        .unwrap()
        .metadata
        .get("startTime")
        .and_then(Value::as_f64)
        .unwrap();

    let (status, mut lines) = run_dump_tool(&["--events", &dump]);
    assert_eq!(status, Some(0));
    let start = lines[0].as_object_mut().unwrap().remove("startTime");
    assert_eq!(start.and_then(|s| s.as_f64()), Some(start_time));
    assert_eq!(
        lines,
        [serde_json::json!({
            "file": dump, "ok": true, "generation": 1, "socket": 0, "firstSeq": 0, "events": 10,
            "methods": {"create": 2, "createOffer": 1, "setLocalDescription": 1, "onicecandidate": 1,
                        "onconnectionstatechange": 1, "getStats": 2, ":app-event": 1, "close": 1},
            "pcs": {"PC_0": {"create": 1, "createOffer": 1, "setLocalDescription": 1, "onicecandidate": 1,
                             "onconnectionstatechange": 1, "getStats": 2, ":app-event": 1, "close": 1}},
            "getStats": {"PC_0": 2},
            "closeCode": 1000,
            "close": {"reason": "client-closed", "malformed": 0, "tooLarge": 0, "rateLimited": 0},
            "traceId": null,
            "custom": [[":app-event", {"note": "custom"}]],
            "media": [],
            "list": [[0, "create", "PC_0"], [1, "createOffer", "PC_0"], [2, "setLocalDescription", "PC_0"],
                     [3, "onicecandidate", "PC_0"], [4, "onconnectionstatechange", "PC_0"],
                     [5, "getStats", "PC_0"], [6, "getStats", "PC_0"], [7, ":app-event", "PC_0"],
                     [8, "close", "PC_0"]],
        })]
    );
    // Without --events there is no list.
    let (status, lines) = run_dump_tool(&[&dump]);
    assert_eq!(status, Some(0));
    assert!(lines[0].get("list").is_none());

    // A dump cut before its close line, a line of garbage, a file that is not there: each is
    // reported, the good file still is, and the exit code says not every file is ok.
    let text = std::fs::read_to_string(&dump).unwrap();
    let cut = dir.path().join("cut.rtcstats");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&cut, lines.join("\n") + "\n").unwrap();
    let garbage = dir.path().join("garbage.rtcstats");
    let mut broken: Vec<&str> = text.lines().collect();
    broken[3] = "[\"createOffer\",\"PC_0\",";
    std::fs::write(&garbage, broken.join("\n") + "\n").unwrap();
    let binary = dir.path().join("binary.rtcstats");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let missing = dir.path().join("missing.rtcstats");
    let paths: Vec<String> = [&cut, &garbage, &binary, &missing]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let (status, lines) = run_dump_tool(&[&paths[0], &paths[1], &dump, &paths[2], &paths[3]]);
    assert_eq!(status, Some(1));
    assert_eq!(lines.len(), 5);
    for (line, file) in [
        (&lines[0], &paths[0]),
        (&lines[1], &paths[1]),
        (&lines[3], &paths[2]),
        (&lines[4], &paths[3]),
    ] {
        assert_eq!(line["file"], file.as_str());
        assert_eq!(line["ok"], false, "{line}");
        assert!(line["reason"].as_str().is_some_and(|r| !r.is_empty()), "{line}");
    }
    assert_eq!(
        lines[0]["line"], 12,
        "the last line is not the close line: {}",
        lines[0]
    );
    assert_eq!(lines[1]["line"], 4, "{}", lines[1]);
    assert_eq!(
        (lines[3]["line"].as_u64(), lines[4]["line"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(lines[2]["ok"], true);
}

#[tokio::test]
async fn oversized_messages_are_counted_and_inflating_past_twice_the_limit_closes_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rtcstats_max_frame_bytes = 1000;
    let server = Running::start(cfg).await.unwrap();
    let (mut client, _) = DeflateClient::connect(&server, "", Some("permessage-deflate")).await;
    client
        .send_text("[39,null,{},{\"generation\":1,\"socket\":0,\"seq\":0},1763700000000]")
        .await;
    // Over the limit but under twice it: refused (counted), not written.
    client
        .send_text(&format!("[\":note\",null,\"{}\",1]", "x".repeat(1500)))
        .await;
    // A few dozen bytes on the wire that inflate past twice the limit.
    client
        .send_text(&format!("[\":note\",null,\"{}\",1]", "x".repeat(100_000)))
        .await;
    assert!(client.wire_bytes < 500, "{}", client.wire_bytes);
    let mut close = None;
    while let Some((opcode, payload)) = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .unwrap()
    {
        if opcode == 0x8 {
            close = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    assert_eq!(close, Some(1009));
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    let dump = read_dump(&files[0]).unwrap();
    assert_eq!(dump.events.len(), 1);
    assert_eq!(dump.close_code, 1009.0);
    let close = close_line(&files[0]);
    assert_eq!(
        (&close[3]["reason"], &close[3]["tooLarge"]),
        (&serde_json::json!("message-too-big"), &serde_json::json!(1)),
        "{close}"
    );
}

// ---- Hardening: limits, one JSON value per line, the reference reader's rules, token keys ----

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A config as the command line gives it: `args` are server flags (so the flags themselves are
/// under test), with an ephemeral port and `dir` for the dumps.
fn config_with(dir: &std::path::Path, args: &[&str]) -> Config {
    let mut argv = vec!["rtcroom-server"];
    argv.extend_from_slice(args);
    let mut config = <Config as clap::Parser>::try_parse_from(argv).unwrap_or_else(|err| panic!("{err}"));
    config.port = 0;
    config.dumps_dir = dir.to_path_buf();
    config
}

const HEADER_LINE: &str = "[39,null,{},{\"generation\":1,\"socket\":0,\"seq\":0},1763700000000]";

/// Every frame the server sends until it closes (bounded): the text frames and the close frame.
async fn read_until_close(ws: &mut Client, within: Duration) -> (Vec<String>, Option<CloseFrame>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut texts = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => texts.push(text.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                // Drain to the end of the stream (the close handshake).
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
                return (texts, frame);
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => return (texts, None),
        }
    }
}

/// Reads frames until the collector acknowledges `lines` lines (bounded); returns every text
/// frame read.
async fn until_acked(ws: &mut Client, lines: u64) -> Vec<String> {
    let want = format!("[\"ack\",{lines}]");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut texts = Vec::new();
    while texts.last() != Some(&want) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => texts.push(text.to_string()),
            Ok(Some(Ok(_))) => {}
            other => panic!("no {want} (got {texts:?}, then {other:?})"),
        }
    }
    texts
}

/// The last `["refused", reason, count]` report for `reason` (counts are cumulative).
fn refused(texts: &[String], reason: &str) -> u64 {
    texts
        .iter()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .filter(|v| v[0] == "refused" && v[1] == reason)
        .filter_map(|v| v[2].as_u64())
        .max()
        .unwrap_or(0)
}

/// The collector's close line of a dump, parsed: `["close", null, code, {reason, counters}, delta]`.
fn close_line(dump: &str) -> serde_json::Value {
    let last = dump.lines().last().expect("a close line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

/// What the rtcstats reference reader (`readRTCStatsDump`) relies on, checked line by line:
/// the magic line with `\n`, a metadata object, then every non-empty line one JSON array of at
/// least 4 items whose last item is a finite number (it is added to the running time).
fn assert_reference_readable(dump: &str) {
    let rest = dump.strip_prefix("RTCStatsDump\n").expect("magic line");
    let mut lines = rest.split('\n');
    let meta: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(meta.is_object(), "metadata {meta}");
    for line in lines.filter(|l| !l.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON value ({e}): {line}"));
        let items = value.as_array().unwrap_or_else(|| panic!("not an array: {line}"));
        assert!(items.len() >= 4, "fewer than 4 items: {line}");
        assert!(
            items
                .last()
                .and_then(serde_json::Value::as_f64)
                .is_some_and(f64::is_finite),
            "the last item is not the time delta: {line}"
        );
    }
}

/// Reproduced: with no secret (the default) one socket wrote 150 MiB in 1.1 s. With the default
/// limits, a flood is held to the per-socket token bucket; what it refuses is acknowledged (so
/// a client never resends it), reported as `["refused", "rate-limited", n]` and counted in the
/// close line, never truncated silently.
#[tokio::test]
async fn one_socket_cannot_fill_the_disk_with_the_default_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Running::start(config).await.unwrap();
    let mut ws = connect(&server, "").await;
    let started = std::time::Instant::now();
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    let filler = "x".repeat(64 * 1024);
    let messages = 256u64; // 16 MiB
    for i in 0..messages {
        ws.feed(Message::text(format!("[\":fill\",null,\"{filler}\",{i}]")))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let texts = until_acked(&mut ws, messages + 1).await;
    let elapsed = started.elapsed().as_secs_f64();
    ws.close(None).await.unwrap();
    let (more, _) = read_until_close(&mut ws, Duration::from_secs(5)).await;
    server.stop().await.unwrap();

    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    let size = files[0].len() as f64;
    let allowed = 4.0 * 1048576.0 + 256.0 * 1024.0 * elapsed + 70_000.0;
    assert!(
        size <= allowed,
        "{size} bytes written in {elapsed:.2} s (allowed {allowed})"
    );
    let all: Vec<String> = texts.into_iter().chain(more).collect();
    let refused = refused(&all, "rate-limited");
    let written = body(&files[0]).len() as u64;
    assert!(refused > 0, "{all:?}");
    assert_eq!(written + refused, messages + 1, "every line written or refused");
    read_dump(&files[0]).unwrap_or_else(|e| panic!("{e:?}"));
    let close = close_line(&files[0]);
    assert_eq!(close[3]["rateLimited"], refused, "{close}");
}

/// When a dump reaches `--rtcstats-max-dump-bytes`, it ends with a valid close line that says
/// why; the line that did not fit is not acknowledged (the SDK sends it again in its next dump)
/// and the socket closes with 1013 (try again later).
#[tokio::test]
async fn a_dump_at_its_size_cap_ends_with_a_close_line_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config_with(
        dir.path(),
        &["--rtcstats-max-dump-bytes", "20000", "--rtcstats-rate-bytes", "0"],
    ))
    .await
    .unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    let note = "n".repeat(480);
    for i in 0..60 {
        // The server may close before all of them are sent.
        if ws
            .send(Message::text(format!("[\":note\",null,\"{note}\",{i}]")))
            .await
            .is_err()
        {
            break;
        }
    }
    let (texts, close) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    server.stop().await.unwrap();
    let close = close.expect("a close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1013, "dump size limit"),
        "{texts:?}"
    );
    let files = dumps(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].len() <= 20000, "{} bytes", files[0].len());
    let written = body(&files[0]).len();
    assert!(written > 10 && written < 61, "{written} lines");
    assert_eq!(
        texts.last().map(String::as_str),
        Some(format!("[\"ack\",{written}]").as_str()),
        "every written line and no other is acknowledged"
    );
    let dump = read_dump(&files[0]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(dump.close_code, 1013.0);
    assert_eq!(close_line(&files[0])[3]["reason"], "dump-size-limit");
    assert_reference_readable(&files[0]);
}

/// `--rtcstats-dumps-quota-bytes` covers every file in the dumps dir, those there before
/// start-up included. A dump that reaches it ends with a close line that says so (1013); a new
/// socket is refused while the dir is full, and accepted again once files are moved away.
#[tokio::test]
async fn the_dumps_quota_counts_the_files_already_there_and_ends_dumps_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.rtcstats");
    std::fs::write(&old, vec![b'.'; 50_000]).unwrap();
    let server = Running::start(config_with(
        dir.path(),
        &[
            "--rtcstats-dumps-quota-bytes",
            "60000",
            "--rtcstats-rate-bytes",
            "0",
        ],
    ))
    .await
    .unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    let note = "q".repeat(480);
    for i in 0..40 {
        if ws
            .send(Message::text(format!("[\":note\",null,\"{note}\",{i}]")))
            .await
            .is_err()
        {
            break;
        }
    }
    let (_, close) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    let close = close.expect("a close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1013, "dumps quota exhausted")
    );
    let total: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 60_000, "{total} bytes in the dumps dir");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != old)
        .collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    read_dump(&text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(close_line(&text)[3]["reason"], "dumps-quota");

    // Full: the next socket's first message is refused with the same close, and leaves no file.
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    let (_, close) = read_until_close(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1013));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // Moved away: the collector notices (it measures the dir again, at most once a second).
    std::fs::remove_file(&old).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    until_acked(&mut ws, 1).await;
    ws.close(None).await.unwrap();
    read_until_close(&mut ws, Duration::from_secs(5)).await;
    server.stop().await.unwrap();
    files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2);
}

/// A message over `--rtcstats-max-frame-bytes` is refused: not written, acknowledged (sending it
/// again cannot help), reported and counted in the close line.
#[tokio::test]
async fn an_oversized_message_is_refused_reported_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rtcstats_max_frame_bytes = 1000;
    let server = Running::start(cfg).await.unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    ws.send(Message::text(format!(
        "[\":big\",null,\"{}\",1]",
        "b".repeat(1500)
    )))
    .await
    .unwrap();
    ws.send(Message::text("[\":after\",null,null,1]")).await.unwrap();
    let texts = until_acked(&mut ws, 3).await;
    assert_eq!(refused(&texts, "message-too-large"), 1, "{texts:?}");
    ws.close(None).await.unwrap();
    read_until_close(&mut ws, Duration::from_secs(5)).await;
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    let dump = read_dump(&files[0]).unwrap_or_else(|e| panic!("{e:?}"));
    let methods: Vec<&str> = dump.events.iter().map(|e| e.method.as_str()).collect();
    assert_eq!(methods, ["create", ":after"]);
    assert_eq!(close_line(&files[0])[3]["tooLarge"], 1);
}

/// Reproduced: a message that is valid JSON with raw line breaks between its tokens was written
/// verbatim, so one message became several lines, one of them a forged standalone event. Every
/// line is now exactly one compact JSON value the collector validated.
#[tokio::test]
async fn a_message_with_raw_line_breaks_is_written_as_one_compact_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(config(dir.path())).await.unwrap();
    let mut ws = connect(&server, "").await;
    ws.send(Message::text(HEADER_LINE)).await.unwrap();
    let forged = "[\":inject\",null,\n[39,null,{},{\"forged\":true},1763700000000]\n,5]";
    let pretty = "[\":pretty\",\r\n  null,\n\t{\"a\": [1, 2.50, -0.0, 1e21],\r \"b\": \"x y\\n\"},\n  6\n]";
    ws.send(Message::text(forged)).await.unwrap();
    ws.send(Message::text(pretty)).await.unwrap();
    until_acked(&mut ws, 3).await;
    ws.close(None).await.unwrap();
    read_until_close(&mut ws, Duration::from_secs(5)).await;
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    assert_eq!(
        body(&files[0]),
        [
            HEADER_LINE,
            "[\":inject\",null,[39,null,{},{\"forged\":true},1763700000000],5]",
            // Whitespace between tokens goes; numbers and strings stay as the client wrote them.
            "[\":pretty\",null,{\"a\":[1,2.50,-0.0,1e21],\"b\":\"x y\\n\"},6]",
        ]
    );
    assert_eq!(files[0].lines().count(), 2 + 3 + 1);
    let dump = read_dump(&files[0]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(dump.events.len(), 3);
    assert_reference_readable(&files[0]);
}

/// Reproduced: the close line was `["close", null, 1001, 680, {"malformed": 0}]` and the
/// reference reader adds the last item to its running time, so the close got the time
/// `"[object Object]1796…"`. Dumps of the real collector over real sockets, however the socket
/// ends (the client's close, a shutdown, a 1009), follow the reference reader's rules, pass the
/// SDK's stricter reader, and `rtcroom-dump` rejects a dump whose last item is not a number.
#[tokio::test]
async fn every_line_of_a_collector_dump_ends_with_its_time_delta() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rtcstats_max_frame_bytes = 1000;
    let server = Running::start(cfg).await.unwrap();
    // The client closes.
    let mut closing = connect(&server, "").await;
    closing.send(Message::text(HEADER_LINE)).await.unwrap();
    closing
        .send(Message::text("[\":x\",null,{\"a\":1},3]"))
        .await
        .unwrap();
    closing.send(Message::text("not json")).await.unwrap();
    until_acked(&mut closing, 3).await;
    closing.close(None).await.unwrap();
    read_until_close(&mut closing, Duration::from_secs(5)).await;
    // Too big for the socket: 1009.
    let mut big = connect(&server, "").await;
    big.send(Message::text(HEADER_LINE)).await.unwrap();
    until_acked(&mut big, 1).await;
    let _ = big
        .send(Message::text(format!(
            "[\":big\",null,\"{}\",1]",
            "b".repeat(5000)
        )))
        .await;
    let (_, close) = read_until_close(&mut big, Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
    // The server shuts down.
    let mut cut = connect(&server, "").await;
    cut.send(Message::text(HEADER_LINE)).await.unwrap();
    until_acked(&mut cut, 1).await;
    server.stop().await.unwrap();

    let files = dumps(dir.path());
    assert_eq!(files.len(), 3);
    let mut codes = Vec::new();
    for file in &files {
        assert_reference_readable(file);
        let dump = read_dump(file).unwrap_or_else(|e| panic!("{e:?}\n{file}"));
        codes.push(dump.close_code as u16);
        let close = close_line(file);
        assert_eq!(
            (&close[0], &close[1]),
            (&serde_json::json!("close"), &serde_json::Value::Null)
        );
        assert!(close[3]["reason"].is_string(), "{close}");
    }
    codes.sort();
    assert_eq!(codes, [1001, 1005, 1009]);
    let malformed: Vec<_> = files
        .iter()
        .map(|f| close_line(f)[3]["malformed"].clone())
        .collect();
    assert!(malformed.contains(&serde_json::json!(1)), "{malformed:?}");

    // The old close line (counters after the delta) is rejected by rtcroom-dump.
    let text = &files[0];
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    let old = dir.path().join("old-close.rtcstats");
    std::fs::write(
        &old,
        lines.join("\n") + "\n[\"close\",null,1001,680,{\"malformed\":0}]\n",
    )
    .unwrap();
    let (status, report) = run_dump_tool(&[&old.display().to_string()]);
    assert_eq!(status, Some(1), "{report:?}");
    assert_eq!(report[0]["ok"], false);
    assert_eq!(report[0]["line"], lines.len() + 1);
}

/// Reproduced: a token sent as `?rtcstats%2Dtoken=` was accepted (the query extractor decodes
/// keys) but not obfuscated, so the JWT landed in the dump's `url`. Every spelling the server
/// accepts is obfuscated.
#[tokio::test]
async fn a_token_under_a_percent_encoded_key_never_reaches_the_dump() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rtcstats_secret = Some("stats-secret".into());
    let server = Running::start(cfg).await.unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"rtcStats": {"user": "ann"}, "exp": exp});
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"stats-secret"),
    )
    .unwrap();
    let keys = [
        "rtcstats%2Dtoken",
        "rtcstats%2dtoken",
        "%72tcstats-token",
        "rtcstats-t%6Fken",
    ];
    for key in keys {
        let mut ws = connect(&server, &format!("?a=1&{key}={token}")).await;
        ws.send(Message::text(HEADER_LINE)).await.unwrap();
        until_acked(&mut ws, 1).await;
        ws.close(None).await.unwrap();
        read_until_close(&mut ws, Duration::from_secs(5)).await;
    }
    server.stop().await.unwrap();
    let files = dumps(dir.path());
    assert_eq!(files.len(), keys.len(), "every spelling was accepted");
    let signature = token.rsplit('.').next().unwrap();
    for file in &files {
        let dump = read_dump(file).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(dump.metadata.get("user").and_then(Value::as_str), Some("ann"));
        assert!(!file.contains(signature), "the JWT is in the dump: {file}");
        let url = dump.metadata.get("url").and_then(Value::as_str).unwrap();
        assert!(url.ends_with("=obfuscated"), "{url}");
    }
}
