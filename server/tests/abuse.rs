//! What a hostile room member or a careless client can do to the signaling server, over real
//! sockets: none of it may knock another member out or hold the server's resources for good.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use rtcroom_server::{Config, Running};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::{
    protocol::frame::{
        coding::{CloseCode, Data, OpCode},
        Frame,
    },
    Message,
};

/// Reads frames until a close frame or `deadline`; the close (code, reason), or None if the
/// socket stayed open.
async fn close_within(client: &mut Client, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Some((u16::from(frame.code), frame.reason.to_string()))
            }
            Ok(Some(Ok(Message::Close(None)))) => return Some((1005, String::new())),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => return Some((1006, format!("{other:?}"))),
        }
    }
}

/// Every frame until `quiet` passes without one; panics on a close.
async fn drain(client: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(quiet, client.ws.next()).await {
            Err(_) => return frames,
            Ok(Some(Ok(Message::Text(text)))) => frames.push(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => panic!("closed: {frame:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_crowd_flooding_one_member_cannot_get_it_disconnected() {
    const FLOODERS: usize = 12;
    const FRAMES: usize = 190; // within each sender's own rate burst: no violation is counted
    let server = Running::start(config()).await.unwrap();
    let (mut victim, joined) = Client::join(&server, "flood", json!({})).await;
    let victim_id = joined["peerId"].as_str().unwrap().to_string();
    let (mut bystander, _) = Client::join(&server, "flood", json!({})).await;
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        flooders.push(Client::join(&server, "flood", json!({})).await.0);
    }
    // The victim reads nothing during the flood (a busy tab): its socket buffers fill, and only
    // its queue on the server is left to absorb what the crowd sends.
    let payload = "x".repeat(30_000);
    let frame =
        json!({"type": "signal", "to": victim_id, "payload": {"kind": "app", "data": payload}}).to_string();
    let sends = flooders.iter_mut().map(|f| {
        let frame = frame.clone();
        async move {
            for _ in 0..FRAMES {
                f.send_text(frame.clone()).await;
            }
        }
    });
    futures_util::future::join_all(sends).await;
    // Every flooder is told what was dropped; none of them is kicked for it.
    let mut refused = 0;
    for f in &mut flooders {
        for frame in drain(f, Duration::from_millis(300)).await {
            if frame["type"] == "error" {
                assert_eq!(
                    (frame["code"].as_str(), frame["fatal"].as_bool()),
                    (Some("queue-full"), Some(false)),
                    "{frame}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the flood must have been refused in part");
    // The victim is still in the room: it reads what was kept, then works as before.
    let mut signals = 0;
    for frame in drain(&mut victim, Duration::from_millis(500)).await {
        if frame["type"] == "signal" {
            signals += 1;
        } else {
            assert_eq!(frame["type"], "peer-joined", "{frame}");
        }
    }
    assert_eq!(
        signals + refused,
        FLOODERS * FRAMES,
        "each frame delivered or refused to its sender"
    );
    ping_pong(&mut victim).await;
    bystander
        .send(json!({"type": "signal", "to": victim_id, "payload": {"kind": "bye"}}))
        .await;
    assert_eq!(victim.expect("signal").await["payload"]["kind"], "bye");
    let presence: Value = reqwest::get(format!("http://{}/rooms/flood", server.addr))
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(presence["count"], FLOODERS + 2);
    server.stop().await.unwrap();
}

fn quick(config: &mut Config) {
    config.header_read_timeout_ms = 300;
    config.join_timeout_ms = 300;
}

/// True when the server closed this raw TCP connection within `within`.
async fn tcp_closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 before the close
        }
    }
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed() {
    let mut cfg = config();
    quick(&mut cfg);
    let server = Running::start(cfg).await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        tcp_closed_within(&mut silent, Duration::from_secs(3)).await,
        "no request at all"
    );
    assert!(
        tcp_closed_within(&mut partial, Duration::from_secs(3)).await,
        "an unfinished request head"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection after a response goes the same way.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        tcp_closed_within(&mut kept, Duration::from_secs(3)).await,
        "idle keep-alive"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sockets_that_never_join_are_closed_with_4003() {
    let mut cfg = config();
    quick(&mut cfg);
    let server = Running::start(cfg).await.unwrap();
    // Answers pings (tungstenite does while reading) but never joins.
    let mut idle = Client::connect(&server, "/signal").await;
    assert_eq!(
        close_within(&mut idle, Duration::from_secs(3)).await,
        Some((4003, "no join in time".into()))
    );
    // A member is never closed for it; a socket that left may not join again and goes too.
    let (mut member, _) = Client::join(&server, "stay", json!({})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    ping_pong(&mut member).await;
    member.send(json!({"type": "leave"})).await;
    member
        .send(json!({"type": "join", "room": "stay", "version": 1}))
        .await;
    member.expect_error("invalid-state", false).await;
    assert_eq!(
        close_within(&mut member, Duration::from_secs(3))
            .await
            .map(|c| c.0),
        Some(4003)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connection_caps_answer_with_1013_and_free_up_when_connections_go() {
    let mut cfg = config();
    quick(&mut cfg);
    cfg.join_timeout_ms = 10_000;
    cfg.max_connections_per_ip = 4;
    let server = Running::start(cfg).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(Client::connect(&server, "/signal").await);
    }
    let mut extra = Client::connect(&server, "/signal").await;
    assert_eq!(
        close_within(&mut extra, Duration::from_secs(3)).await,
        Some((1013, "too many connections from this address".into()))
    );
    let base = format!("http://{}", server.addr);
    let refused = reqwest::get(format!("{base}/rooms/x")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        reqwest::get(format!("{base}/healthz")).await.unwrap().status(),
        200,
        "health is always answered"
    );
    // Far over the limit, connections are closed unanswered.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut dropped = 0;
    for tcp in &mut flood {
        if tcp_closed_within(tcp, Duration::from_millis(1500)).await {
            dropped += 1;
        }
    }
    assert_eq!(
        dropped, 40,
        "all of them closed: dropped at once or after the header timeout"
    );
    held.truncate(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Client::connect(&server, "/signal").await;
    again
        .send(json!({"type": "join", "room": "cap", "version": 1}))
        .await;
    again.expect("joined").await;
    server.stop().await.unwrap();

    let mut cfg = config();
    cfg.max_connections = 3;
    let server = Running::start(cfg).await.unwrap();
    let _held: Vec<Client> =
        futures_util::future::join_all((0..3).map(|_| Client::connect(&server, "/signal"))).await;
    let mut extra = Client::connect(&server, "/signal").await;
    assert_eq!(
        close_within(&mut extra, Duration::from_secs(3)).await,
        Some((1013, "the server is at its connection limit".into()))
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_frames_close_with_1009_and_invalid_utf8_with_1007() {
    let server = Running::start(config()).await.unwrap();
    let (mut big, _) = Client::join(&server, "big", json!({})).await;
    let (mut other, _) = Client::join(&server, "big", json!({})).await;
    big.expect("peer-joined").await;
    big.send_text("x".repeat(4 * 64 * 1024 + 1)).await;
    assert_eq!(
        close_within(&mut big, Duration::from_secs(3)).await,
        Some((1009, "frame too large".into()))
    );

    let mut broken = Client::connect(&server, "/signal").await;
    let bytes = vec![b'"', 0xff, 0xfe, b'"'];
    broken
        .ws
        .send(Message::Frame(Frame::message(
            bytes,
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .unwrap();
    assert_eq!(
        close_within(&mut broken, Duration::from_secs(3)).await,
        Some((1007, "text frames must be UTF-8".into()))
    );
    ping_pong(&mut other).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn dot_names_are_not_rooms() {
    let server = Running::start(config()).await.unwrap();
    for room in [".", ".."] {
        let mut c = Client::connect(&server, "/signal").await;
        c.send(json!({"type": "join", "room": room, "version": 1})).await;
        c.expect_error("invalid-argument", true).await;
    }
    server.stop().await.unwrap();
}

/// Reads `client` in the background (answering the server's pings as a live browser does)
/// until dropped; the frames read go to the returned channel.
fn keep_reading(
    mut client: Client,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Value>,
    tokio::task::JoinHandle<Client>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(50), client.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let _ = tx.send(serde_json::from_str(&text).unwrap());
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let _ = tx.send(json!({"close": frame.map(|f| u16::from(f.code))}));
                    break;
                }
                Ok(None) | Ok(Some(Err(_))) => break,
                _ => {}
            }
        }
        client
    });
    (rx, task)
}

#[tokio::test]
async fn a_resume_cannot_take_over_a_peer_whose_socket_answers() {
    let server = Running::start(config()).await.unwrap();
    let (owner, joined) = Client::join(&server, "mine", json!({})).await;
    let token = joined["resumeToken"].clone();
    let (mut other, _) = Client::join(&server, "mine", json!({})).await;
    let (mut owner_frames, owner_task) = keep_reading(owner);
    // A bystander that got hold of the token.
    let mut thief = Client::connect(&server, "/signal").await;
    thief
        .send(json!({"type": "join", "room": "mine", "version": 1, "resume": token}))
        .await;
    let refused = thief.expect_error("invalid-resume", false).await;
    assert!(
        refused["message"].as_str().unwrap().contains("connected"),
        "{refused}"
    );
    let mut owner = owner_task.await.unwrap();
    while let Ok(frame) = owner_frames.try_recv() {
        assert!(frame.get("close").is_none(), "the owner was closed: {frame}");
    }
    ping_pong(&mut owner).await;
    other.expect_silence(200).await;
    server.stop().await.unwrap();
}

mod identity {
    use jsonwebtoken::{encode, EncodingKey, Header};

    use super::*;

    const SECRET: &str = "abuse-test-secret-of-some-length";

    fn jwt(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn unix() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[tokio::test]
    async fn a_resume_token_only_works_for_the_identity_it_was_issued_to() {
        let mut cfg = config();
        cfg.jwt_secret = Some(SECRET.into());
        cfg.resume_grace_ms = 5000;
        let server = Running::start(cfg).await.unwrap();
        let alice = jwt(json!({"room": "club", "sub": "alice", "exp": unix() + 600}));
        let mallory = jwt(json!({"room": "club", "sub": "mallory", "exp": unix() + 600}));
        let mut a = Client::connect(&server, &format!("/signal?token={alice}")).await;
        a.send(json!({"type": "join", "room": "club", "version": 1}))
            .await;
        let joined = a.expect("joined").await;
        // Alice's socket is gone (so no liveness check stands in the way): only the token counts.
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resume = json!({"type": "join", "room": "club", "version": 1, "resume": joined["resumeToken"]});
        let mut m = Client::connect(&server, &format!("/signal?token={mallory}")).await;
        m.send(resume.clone()).await;
        m.expect_error("invalid-resume", false).await;
        let mut back = Client::connect(&server, &format!("/signal?token={alice}")).await;
        back.send(resume).await;
        assert_eq!(back.expect("joined").await["peerId"], joined["peerId"]);
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn recently_expired_jwts_are_refused_and_the_leeway_is_a_flag() {
        let stale = jwt(json!({"room": "club", "exp": unix() - 30}));
        let mut cfg = config();
        cfg.jwt_secret = Some(SECRET.into());
        let server = Running::start(cfg.clone()).await.unwrap();
        let mut c = Client::connect(&server, &format!("/signal?token={stale}")).await;
        assert_eq!(
            c.expect_close().await,
            (CloseCode::Policy, "token expired".into())
        );
        server.stop().await.unwrap();
        cfg.jwt_leeway_secs = 60;
        let server = Running::start(cfg).await.unwrap();
        let mut c = Client::connect(&server, &format!("/signal?token={stale}")).await;
        c.send(json!({"type": "join", "room": "club", "version": 1}))
            .await;
        c.expect("joined").await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn resume_tokens_expire_with_the_grace_and_do_not_come_back_after_a_restart() {
    let mut cfg = config();
    cfg.resume_secret = Some("kept".into());
    cfg.resume_grace_ms = 300;
    cfg.heartbeat_timeout_ms = 300; // tokens live 600 ms past their last renewal
    cfg.ping_interval_ms = 100;
    let first = Running::start(cfg.clone()).await.unwrap();
    let (mut ann, ja) = Client::join(&first, "short", json!({})).await;
    // Renewed with every pong.
    ann.send(json!({"type": "ping", "ts": 1})).await;
    let renewed = ann.expect("pong").await["resumeToken"].clone();
    assert!(renewed.is_string() && renewed != ja["resumeToken"], "{renewed}");
    // A left peer cannot be resumed.
    let (mut left, jl) = Client::join(&first, "short", json!({})).await;
    left.send(json!({"type": "leave"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = Client::connect(&first, "/signal").await;
    c.send(json!({"type": "join", "room": "short", "version": 1, "resume": jl["resumeToken"]}))
        .await;
    c.expect_error("invalid-resume", false).await;

    let port = first.addr.port();
    first.stop().await.unwrap();
    cfg.port = port;
    let second = Running::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for token in [&ja["resumeToken"], &renewed, &jl["resumeToken"]] {
        let mut c = Client::connect(&second, "/signal").await;
        c.send(json!({"type": "join", "room": "short", "version": 1, "resume": token}))
            .await;
        c.expect_error("invalid-resume", false).await;
    }
    second.stop().await.unwrap();
}
