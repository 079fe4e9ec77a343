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
    for (method, value) in [
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
    ] {
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
    assert!(
        files[0].trim_end().ends_with(",{\"malformed\":1}]"),
        "{}",
        files[0].lines().last().unwrap()
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
