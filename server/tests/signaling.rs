//! The signaling service end to end: real WebSocket clients (tokio-tungstenite) against the
//! server on an ephemeral loopback port. Timers are shortened through the config, not mocked.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rtcroom_server::Running;
use serde_json::{json, Value};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{protocol::frame::coding::CloseCode, Message},
};

#[tokio::test]
async fn join_relay_metadata_and_leave() {
    let server = Running::start(config()).await.unwrap();
    let (mut ann, joined_a) = Client::join(&server, "room1", json!({"name": "ann"})).await;
    assert_eq!(joined_a["peers"], json!([]));
    assert_eq!(joined_a["version"], 1);
    assert_eq!(joined_a["room"], "room1");
    let ann_id = joined_a["peerId"].as_str().unwrap().to_string();
    assert!(joined_a["resumeToken"].as_str().unwrap().len() >= 32);

    let (mut bob, joined_b) = Client::join(&server, "room1", json!({"name": "bob"})).await;
    let bob_id = joined_b["peerId"].as_str().unwrap().to_string();
    assert_ne!(ann_id, bob_id);
    assert_eq!(
        joined_b["peers"],
        json!([{"id": ann_id, "metadata": {"name": "ann"}}])
    );
    let announced = ann.expect("peer-joined").await;
    assert_eq!(
        announced["peer"],
        json!({"id": bob_id, "metadata": {"name": "bob"}})
    );

    // Payloads are relayed byte-for-byte, whatever they hold.
    let payload = json!({"kind": "description", "description": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}});
    ann.send(json!({"type": "signal", "to": bob_id, "payload": payload}))
        .await;
    let relayed = bob.expect("signal").await;
    assert_eq!(
        (relayed["from"].as_str(), &relayed["payload"]),
        (Some(ann_id.as_str()), &payload)
    );

    bob.send(json!({"type": "metadata", "metadata": {"name": "bob", "muted": true}}))
        .await;
    let updated = ann.expect("metadata-updated").await;
    assert_eq!(
        updated,
        json!({"type": "metadata-updated", "peerId": bob_id, "metadata": {"name": "bob", "muted": true}})
    );

    ping_pong(&mut ann).await;
    bob.send(json!({"type": "leave"})).await;
    let left = ann.expect("peer-left").await;
    assert_eq!(
        left,
        json!({"type": "peer-left", "peerId": bob_id, "reason": "left"})
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_full_rejects_only_the_extra_joiner() {
    let mut cfg = config();
    cfg.room_capacity = 2;
    let server = Running::start(cfg).await.unwrap();
    let (mut a, _) = Client::join(&server, "full", json!({})).await;
    let (mut b, joined_b) = Client::join(&server, "full", json!({})).await;
    assert_eq!(joined_b["capacity"], 2);
    a.expect("peer-joined").await;

    let mut c = Client::connect(&server, "/signal").await;
    c.send(json!({"type": "join", "room": "full", "version": 1}))
        .await;
    assert_eq!(
        c.expect("room-full").await,
        json!({"type": "room-full", "room": "full", "capacity": 2})
    );
    c.expect_close().await;
    a.expect_silence(200).await;
    b.expect_silence(0).await;
    ping_pong(&mut a).await;

    // A first joiner may ask for a smaller room, never a larger one.
    let (_solo, joined) = {
        let mut solo = Client::connect(&server, "/signal").await;
        solo.send(json!({"type": "join", "room": "duo", "version": 1, "capacity": 1}))
            .await;
        let joined = solo.expect("joined").await;
        (solo, joined)
    };
    assert_eq!(joined["capacity"], 1);
    let mut second = Client::connect(&server, "/signal").await;
    second
        .send(json!({"type": "join", "room": "duo", "version": 1}))
        .await;
    second.expect("room-full").await;
    let mut big = Client::connect(&server, "/signal").await;
    big.send(json!({"type": "join", "room": "big", "version": 1, "capacity": 500}))
        .await;
    assert_eq!(big.expect("joined").await["capacity"], 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn relay_never_crosses_rooms_and_unknown_targets_get_an_error() {
    let server = Running::start(config()).await.unwrap();
    let (mut a, _) = Client::join(&server, "east", json!({})).await;
    let (mut b, joined_b) = Client::join(&server, "west", json!({})).await;
    let b_id = joined_b["peerId"].as_str().unwrap();
    a.send(json!({"type": "signal", "to": b_id, "payload": {"kind": "bye"}}))
        .await;
    a.expect_error("unknown-peer", false).await;
    a.send(json!({"type": "signal", "to": "nobody", "payload": {}}))
        .await;
    a.expect_error("unknown-peer", false).await;
    b.expect_silence(200).await;
    ping_pong(&mut a).await;

    // Signaling before joining is refused, and the connection stays usable.
    let mut c = Client::connect(&server, "/signal").await;
    c.send(json!({"type": "signal", "to": b_id, "payload": {}})).await;
    c.expect_error("invalid-state", false).await;
    ping_pong(&mut c).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_unknown_and_oversize_frames_get_errors_and_the_connection_stays() {
    let mut cfg = config();
    cfg.max_frame_bytes = 1024;
    let server = Running::start(cfg).await.unwrap();
    let (mut a, _) = Client::join(&server, "r", json!({})).await;
    let (mut b, _) = Client::join(&server, "r", json!({})).await;
    a.expect("peer-joined").await;

    a.send_text("{not json".into()).await;
    a.expect_error("malformed-frame", false).await;
    a.send(json!({"type": "dance"})).await;
    a.expect_error("unknown-type", false).await;
    a.send(json!({"type": "signal", "to": 5})).await;
    a.expect_error("malformed-frame", false).await;
    a.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    a.expect_error("malformed-frame", false).await;
    a.send_text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000)))
        .await;
    let err = a.expect_error("frame-too-large", false).await;
    assert!(err["message"].as_str().unwrap().contains("1024"));
    a.send(json!({"type": "metadata", "metadata": [1]})).await;
    a.expect_error("invalid-argument", false).await;

    ping_pong(&mut a).await;
    b.expect_silence(100).await;
    ping_pong(&mut b).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_joins_are_fatal_with_a_reason() {
    let server = Running::start(config()).await.unwrap();
    for (frame, code) in [
        (
            json!({"type": "join", "room": "r", "version": 0}),
            "unsupported-version",
        ),
        (
            json!({"type": "join", "room": "no spaces", "version": 1}),
            "invalid-argument",
        ),
        (json!({"type": "join", "version": 1}), "invalid-argument"),
        (
            json!({"type": "join", "room": "r", "version": 1, "metadata": "x"}),
            "invalid-argument",
        ),
    ] {
        let mut c = Client::connect(&server, "/signal").await;
        c.send(frame).await;
        c.expect_error(code, true).await;
        let (close, _) = c.expect_close().await;
        assert_eq!(close, CloseCode::Policy);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_from_path_or_query() {
    let server = Running::start(config()).await.unwrap();
    let mut a = Client::connect(&server, "/signal/pathroom").await;
    a.send(json!({"type": "join", "version": 1})).await;
    assert_eq!(a.expect("joined").await["room"], "pathroom");
    let mut b = Client::connect(&server, "/signal?room=pathroom").await;
    b.send(json!({"type": "join", "version": 1})).await;
    assert_eq!(b.expect("joined").await["peers"].as_array().unwrap().len(), 1);
    let mut c = Client::connect(&server, "/signal/pathroom").await;
    c.send(json!({"type": "join", "room": "other", "version": 1}))
        .await;
    c.expect_error("invalid-argument", true).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limit_errors_then_kicks_only_the_offender() {
    let mut cfg = config();
    cfg.rate_limit = 5;
    cfg.rate_burst = 5;
    cfg.max_violations = 3;
    let server = Running::start(cfg).await.unwrap();
    let (mut spammer, joined) = Client::join(&server, "r", json!({})).await;
    let spammer_id = joined["peerId"].as_str().unwrap().to_string();
    let (mut calm, _) = Client::join(&server, "r", json!({})).await;
    spammer.expect("peer-joined").await;

    // join used one token: 4 pings pass, the rest are refused; the 4th refusal kicks.
    for _ in 0..12 {
        spammer.send(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let close = loop {
        match tokio::time::timeout(WAIT, spammer.ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(frame["code"], "rate-limited");
                        limited += 1;
                    }
                    _ => panic!("{frame}"),
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((pongs, limited), (4, 4));
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4004, "too many violations")
    );
    assert_eq!(
        calm.expect("peer-left").await,
        json!({"type": "peer-left", "peerId": spammer_id, "reason": "kicked"})
    );
    ping_pong(&mut calm).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn silent_peer_is_removed_after_the_heartbeat_timeout() {
    let mut cfg = config();
    cfg.heartbeat_timeout_ms = 400;
    cfg.ping_interval_ms = 100;
    let server = Running::start(cfg).await.unwrap();
    let (silent, joined) = Client::join(&server, "hb", json!({})).await;
    let silent_id = joined["peerId"].as_str().unwrap().to_string();
    let (mut alive, _) = Client::join(&server, "hb", json!({})).await;
    // `silent` never reads again, so it never answers pings; `alive` keeps reading (and ponging).
    let started = std::time::Instant::now();
    let left = alive.expect("peer-left").await;
    assert_eq!(
        left,
        json!({"type": "peer-left", "peerId": silent_id, "reason": "timeout"})
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    alive.expect_silence(600).await; // and `alive` itself, answering pings, stays
    drop(silent);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn resume_within_grace_keeps_the_id_and_delivers_queued_signals_in_order() {
    let mut cfg = config();
    cfg.resume_grace_ms = 2000;
    let server = Running::start(cfg).await.unwrap();
    let (ann, joined) = Client::join(&server, "res", json!({"name": "ann"})).await;
    let ann_id = joined["peerId"].as_str().unwrap().to_string();
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    let (mut bob, joined_b) = Client::join(&server, "res", json!({})).await;
    let bob_id = joined_b["peerId"].as_str().unwrap().to_string();

    drop(ann); // the socket drops without `leave`
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in 0..5 {
        bob.send(json!({"type": "signal", "to": ann_id, "payload": {"kind": "app", "data": n}}))
            .await;
    }
    bob.send(json!({"type": "metadata", "metadata": {"name": "bob"}}))
        .await;
    ping_pong(&mut bob).await; // the server has handled everything bob sent

    let mut back = Client::connect(&server, "/signal").await;
    back.send(json!({"type": "join", "room": "res", "version": 1, "resume": token}))
        .await;
    let rejoined = back.expect("joined").await;
    assert_eq!(rejoined["peerId"], ann_id.as_str());
    assert_eq!(rejoined["resumed"], true);
    assert_eq!(
        rejoined["peers"],
        json!([{"id": bob_id, "metadata": {"name": "bob"}}])
    );
    assert_ne!(rejoined["resumeToken"], token.as_str(), "tokens rotate on resume");
    for n in 0..5 {
        let signal = back.expect("signal").await;
        assert_eq!(
            (signal["from"].as_str(), signal["payload"]["data"].as_i64()),
            (Some(bob_id.as_str()), Some(n))
        );
    }
    assert_eq!(back.expect("metadata-updated").await["peerId"], bob_id.as_str());

    // Nobody saw the blip.
    bob.expect_silence(2500).await;
    ping_pong(&mut back).await;

    // The old token is spent.
    let mut replay = Client::connect(&server, "/signal").await;
    replay
        .send(json!({"type": "join", "room": "res", "version": 1, "resume": token}))
        .await;
    replay.expect_error("invalid-resume", false).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn after_the_grace_period_the_peer_is_gone() {
    let mut cfg = config();
    cfg.resume_grace_ms = 300;
    let server = Running::start(cfg).await.unwrap();
    let (ann, joined) = Client::join(&server, "late", json!({})).await;
    let ann_id = joined["peerId"].as_str().unwrap().to_string();
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    let (mut bob, _) = Client::join(&server, "late", json!({})).await;
    drop(ann);
    let started = std::time::Instant::now();
    assert_eq!(
        bob.expect("peer-left").await,
        json!({"type": "peer-left", "peerId": ann_id, "reason": "timeout"})
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    bob.send(json!({"type": "signal", "to": ann_id, "payload": {}}))
        .await;
    bob.expect_error("unknown-peer", false).await;

    let mut back = Client::connect(&server, "/signal").await;
    back.send(json!({"type": "join", "room": "late", "version": 1, "resume": token}))
        .await;
    back.expect_error("invalid-resume", false).await;
    // Not fatal: the client joins afresh on the same socket, with a new id.
    back.send(json!({"type": "join", "room": "late", "version": 1}))
        .await;
    assert_ne!(back.expect("joined").await["peerId"], ann_id.as_str());
    assert!(bob.expect("peer-joined").await["peer"]["id"].is_string());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn resume_while_the_old_socket_still_looks_alive_replaces_it() {
    let server = Running::start(config()).await.unwrap();
    let (mut old, joined) = Client::join(&server, "swap", json!({})).await;
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    let (mut other, _) = Client::join(&server, "swap", json!({})).await;
    old.expect("peer-joined").await;
    let mut new = Client::connect(&server, "/signal").await;
    new.send(json!({"type": "join", "room": "swap", "version": 1, "resume": token}))
        .await;
    assert_eq!(new.expect("joined").await["peerId"], joined["peerId"]);
    let (code, reason) = old.expect_close().await;
    assert_eq!((u16::from(code), reason.as_str()), (4000, "resumed elsewhere"));
    other.expect_silence(300).await;
    server.stop().await.unwrap();
}

mod auth {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "test-secret-of-reasonable-length";

    fn token(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn exp() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600
    }

    async fn secured() -> Running {
        let mut cfg = config();
        cfg.jwt_secret = Some(SECRET.into());
        Running::start(cfg).await.unwrap()
    }

    #[tokio::test]
    async fn missing_or_invalid_tokens_close_with_1008_and_a_reason() {
        let server = secured().await;
        let bad_sig = encode(
            &Header::default(),
            &json!({"room": "r", "exp": exp()}),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        let expired = token(json!({"room": "r", "exp": 1_000_000}));
        for (query, reason) in [
            ("", "missing token"),
            ("?token=garbage", "token invalid"),
            (&*format!("?token={bad_sig}"), "token signature invalid"),
            (&*format!("?token={expired}"), "token expired"),
        ] {
            let mut c = Client::connect(&server, &format!("/signal{query}")).await;
            let (code, got) = c.expect_close().await;
            assert_eq!((code, got.as_str()), (CloseCode::Policy, reason), "{query}");
        }
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_valid_token_admits_its_room_only_and_can_name_the_peer() {
        let server = secured().await;
        let alice =
            token(json!({"room": "club", "peerId": "alice", "metadata": {"role": "host"}, "exp": exp()}));
        let mut a = Client::connect(&server, &format!("/signal?token={alice}")).await;
        a.send(json!({"type": "join", "room": "club", "version": 1, "metadata": {"role": "guest"}}))
            .await;
        let joined = a.expect("joined").await;
        assert_eq!(joined["peerId"], "alice");

        let anyone = token(json!({"room": "club", "exp": exp()}));
        let mut b = Client::connect(&server, &format!("/signal?token={anyone}")).await;
        b.send(json!({"type": "join", "room": "club", "version": 1}))
            .await;
        // The token's metadata wins over what the client claims.
        assert_eq!(
            b.expect("joined").await["peers"],
            json!([{"id": "alice", "metadata": {"role": "host"}}])
        );

        let mut wrong_room = Client::connect(&server, &format!("/signal?token={anyone}")).await;
        wrong_room
            .send(json!({"type": "join", "room": "elsewhere", "version": 1}))
            .await;
        wrong_room.expect_error("unauthorized", true).await;
        assert_eq!(wrong_room.expect_close().await.0, CloseCode::Policy);

        let mut twin = Client::connect(&server, &format!("/signal?token={alice}")).await;
        twin.send(json!({"type": "join", "room": "club", "version": 1}))
            .await;
        twin.expect_error("duplicate-peer", true).await;
        a.expect("peer-joined").await; // b
        a.expect_silence(200).await; // and neither the refused nor the twin
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn allowed_origins_are_enforced_before_upgrade() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://app.example".into()];
    let server = Running::start(cfg).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/signal", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = connect_async(request).await.expect_err("must be refused");
    assert!(err.to_string().contains("403"), "{err}");
    let mut request = format!("ws://{}/signal", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    assert!(connect_async(request).await.is_ok());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn presence_lists_peers_and_can_be_turned_off() {
    let server = Running::start(config()).await.unwrap();
    let base = format!("http://{}", server.addr);
    let (_a, ja) = Client::join(&server, "lobby", json!({"name": "ann"})).await;
    let (_b, jb) = Client::join(&server, "lobby", json!({})).await;
    let body: Value = reqwest::get(format!("{base}/rooms/lobby"))
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        body,
        json!({"room": "lobby", "exists": true, "count": 2, "capacity": 50,
               "peers": [{"id": ja["peerId"], "metadata": {"name": "ann"}}, {"id": jb["peerId"], "metadata": {}}]})
    );
    let empty: Value = reqwest::get(format!("{base}/rooms/nobody-here"))
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        empty,
        json!({"room": "nobody-here", "exists": false, "count": 0, "peers": []})
    );
    assert_eq!(
        reqwest::get(format!("{base}/rooms/bad%20name"))
            .await
            .unwrap()
            .status(),
        400
    );
    server.stop().await.unwrap();

    let mut cfg = config();
    cfg.no_presence = true;
    let server = Running::start(cfg).await.unwrap();
    assert_eq!(
        reqwest::get(format!("http://{}/rooms/lobby", server.addr))
            .await
            .unwrap()
            .status(),
        404
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_sends_going_away_to_every_client() {
    let server = Running::start(config()).await.unwrap();
    let (mut a, _) = Client::join(&server, "bye", json!({})).await;
    let mut idle = Client::connect(&server, "/signal").await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(
        a.expect_close().await,
        (CloseCode::Away, "server shutting down".into())
    );
    assert_eq!(idle.expect_close().await.0, CloseCode::Away);
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn after_a_server_restart_peers_resume_with_their_ids() {
    let mut cfg = config();
    cfg.resume_secret = Some("kept-across-restarts".into());
    let first = Running::start(cfg.clone()).await.unwrap();
    let (mut ann, ja) = Client::join(&first, "phoenix", json!({"name": "ann"})).await;
    let (mut bob, jb) = Client::join(&first, "phoenix", json!({"name": "bob"})).await;
    ann.expect("peer-joined").await;
    let port = first.addr.port();
    first.stop().await.unwrap();
    assert_eq!(ann.expect_close().await.0, CloseCode::Away);
    assert_eq!(bob.expect_close().await.0, CloseCode::Away);

    cfg.port = port;
    let second = Running::start(cfg).await.unwrap();
    let mut ann2 = Client::connect(&second, "/signal").await;
    let resume = |token: &Value, name: &str| json!({"type": "join", "room": "phoenix", "version": 1, "resume": token, "metadata": {"name": name}});
    ann2.send(resume(&ja["resumeToken"], "ann")).await;
    let back_a = ann2.expect("joined").await;
    assert_eq!(
        (&back_a["peerId"], &back_a["resumed"], &back_a["peers"]),
        (&ja["peerId"], &json!(true), &json!([]))
    );
    let mut bob2 = Client::connect(&second, "/signal").await;
    bob2.send(resume(&jb["resumeToken"], "bob")).await;
    let back_b = bob2.expect("joined").await;
    assert_eq!(back_b["peerId"], jb["peerId"]);
    assert_eq!(
        back_b["peers"],
        json!([{"id": ja["peerId"], "metadata": {"name": "ann"}}])
    );
    // The server announces bob (it is new to this process); SDKs that still know bob ignore it.
    assert_eq!(ann2.expect("peer-joined").await["peer"]["id"], jb["peerId"]);
    // Signaling works between the restored ids.
    ann2.send(json!({"type": "signal", "to": jb["peerId"], "payload": {"kind": "bye"}}))
        .await;
    assert_eq!(bob2.expect("signal").await["from"], ja["peerId"]);

    // A pre-restart token restores once; once the restored client has its renewed token (its
    // first pong), a replay is refused.
    ping_pong(&mut ann2).await;
    let mut replay = Client::connect(&second, "/signal").await;
    replay.send(resume(&ja["resumeToken"], "mallory")).await;
    replay.expect_error("invalid-resume", false).await;
    second.stop().await.unwrap();
}
