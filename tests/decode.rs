//! Drift guard for the browser's hand-written wire codec (`src/web/decode.rs`): it must decode
//! exactly what serde decodes (`serde_wasm_bindgen`, which the SDK used before, over the same
//! `JSON.parse` output) and encode exactly the text serde encoded, which the server (`serde_json`)
//! reads back to the same value. Every `ServerMsg` and `SignalPayload` variant, the config object,
//! and malformed input of every kind (wrong types, missing fields, unknown tags, arrays for
//! objects, huge, negative and fractional integers, wrongly typed fields the `type` does not use).
//!
//! The codec file is compiled into this test on its own (`#[path]`); serde is only a
//! dev-dependency here, never part of the package.
#![cfg(target_arch = "wasm32")]

#[path = "../src/web/decode.rs"]
#[allow(dead_code)]
mod decode;

use decode::Js;
use js_sys::{Object, Reflect, JSON};
use rtcroom_protocol::{
    ClientMsg, ErrorCode, IceCandidate, PeerInfo, SdpKind, ServerMsg, SessionDescription, SignalPayload,
    StreamRole,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The SDK's old pass-through value: the serde reference for `Js`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct P(#[serde(with = "serde_wasm_bindgen::preserve")] JsValue);

fn parse(text: &str) -> JsValue {
    JSON::parse(text).unwrap_or_else(|_| panic!("test JSON must parse: {text}"))
}

/// A JS value as JSON text, for comparing pass-through values.
fn text_of(value: &JsValue) -> String {
    JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| "<not JSON>".into())
}

fn js_text(j: Js) -> String {
    text_of(&j.0)
}

fn p_text(p: P) -> String {
    text_of(&p.0)
}

fn map_peer<A, B>(p: PeerInfo<A>, f: &impl Fn(A) -> B) -> PeerInfo<B> {
    PeerInfo {
        id: p.id,
        metadata: p.metadata.map(f),
    }
}

fn map_server<A, B>(m: ServerMsg<A>, f: &impl Fn(A) -> B) -> ServerMsg<B> {
    match m {
        ServerMsg::Joined {
            version,
            room,
            peer_id,
            resume_token,
            peers,
            capacity,
            resumed,
        } => ServerMsg::Joined {
            version,
            room,
            peer_id,
            resume_token,
            peers: peers.into_iter().map(|p| map_peer(p, f)).collect(),
            capacity,
            resumed,
        },
        ServerMsg::PeerJoined { peer } => ServerMsg::PeerJoined {
            peer: map_peer(peer, f),
        },
        ServerMsg::PeerLeft { peer_id, reason } => ServerMsg::PeerLeft { peer_id, reason },
        ServerMsg::Signal { from, payload } => ServerMsg::Signal {
            from,
            payload: f(payload),
        },
        ServerMsg::MetadataUpdated { peer_id, metadata } => ServerMsg::MetadataUpdated {
            peer_id,
            metadata: f(metadata),
        },
        ServerMsg::RoomFull { room, capacity } => ServerMsg::RoomFull { room, capacity },
        ServerMsg::Error { code, message, fatal } => ServerMsg::Error { code, message, fatal },
        ServerMsg::Pong { ts, resume_token } => ServerMsg::Pong { ts, resume_token },
    }
}

fn map_payload<A, B>(p: SignalPayload<A>, f: &impl Fn(A) -> B) -> SignalPayload<B> {
    match p {
        SignalPayload::Description { description, roles } => {
            SignalPayload::Description { description, roles }
        }
        SignalPayload::Candidate { candidate } => SignalPayload::Candidate { candidate },
        SignalPayload::Bye => SignalPayload::Bye,
        SignalPayload::App { data } => SignalPayload::App { data: f(data) },
    }
}

fn map_client<A, B>(m: ClientMsg<A>, f: &impl Fn(A) -> B) -> ClientMsg<B> {
    match m {
        ClientMsg::Join {
            room,
            version,
            metadata,
            resume,
            capacity,
        } => ClientMsg::Join {
            room,
            version,
            metadata: metadata.map(f),
            resume,
            capacity,
        },
        ClientMsg::Signal { to, payload } => ClientMsg::Signal {
            to,
            payload: f(payload),
        },
        ClientMsg::Metadata { metadata } => ClientMsg::Metadata {
            metadata: f(metadata),
        },
        ClientMsg::Leave => ClientMsg::Leave,
        ClientMsg::Ping { ts } => ClientMsg::Ping { ts },
    }
}

fn ours_server(text: &str) -> Option<ServerMsg<String>> {
    decode::server_msg_from_json(text).map(|m| map_server(m, &js_text))
}

fn serde_server(text: &str) -> Option<ServerMsg<String>> {
    let value = JSON::parse(text).ok()?;
    serde_wasm_bindgen::from_value::<ServerMsg<P>>(value)
        .ok()
        .map(|m| map_server(m, &p_text))
}

fn ours_payload(value: &JsValue) -> Option<SignalPayload<String>> {
    decode::signal_payload(value).map(|p| map_payload(p, &js_text))
}

fn serde_payload(value: &JsValue) -> Option<SignalPayload<String>> {
    serde_wasm_bindgen::from_value::<SignalPayload<P>>(value.clone())
        .ok()
        .map(|p| map_payload(p, &p_text))
}

const ALL_CODES: [&str; 13] = [
    "malformed-frame",
    "unknown-type",
    "frame-too-large",
    "rate-limited",
    "invalid-state",
    "unsupported-version",
    "invalid-argument",
    "unknown-peer",
    "duplicate-peer",
    "invalid-resume",
    "unauthorized",
    "room-limit",
    "queue-full",
];

const VALID_SERVER: &[&str] = &[
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","peers":[{"id":"b","metadata":{"name":"B","n":[1,2.5,null]}},{"id":"c"}],"capacity":50,"resumed":true}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","peers":null,"capacity":4294967295,"resumed":null,"extra":[1,{"x":2}]}"#,
    r#"{"type":"joined","version":-0,"room":"","peerId":"a","resumeToken":"t","peers":[],"capacity":1e3,"resumed":false}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","peers":[{"id":"b","metadata":null}],"capacity":2}"#,
    r#"{"type":"peer-joined","peer":{"id":"b"}}"#,
    r#"{"type":"peer-joined","peer":{"id":"b","metadata":{"name":"Bé \"q\" \u2028"}}}"#,
    r#"{"type":"peer-joined","peer":{"id":"b","metadata":"just a string","other":1}}"#,
    r#"{"type":"peer-left","peerId":"b","reason":"left"}"#,
    r#"{"type":"peer-left","peerId":"b","reason":"timeout"}"#,
    r#"{"type":"peer-left","peerId":"b","reason":"kicked"}"#,
    r#"{"type":"signal","from":"b","payload":{"kind":"bye"}}"#,
    r#"{"type":"signal","from":"b","payload":"text"}"#,
    r#"{"type":"signal","from":"b","payload":0}"#,
    r#"{"type":"signal","from":"b","payload":false}"#,
    r#"{"type":"signal","from":"b","payload":[]}"#,
    r#"{"type":"metadata-updated","peerId":"b","metadata":{"name":"B2"}}"#,
    r#"{"type":"room-full","room":"r","capacity":2}"#,
    r#"{"type":"error","code":"room-limit","message":"full","fatal":true}"#,
    r#"{"type":"error","code":"rate-limited"}"#,
    r#"{"type":"error","code":"unknown-peer","message":null,"fatal":null}"#,
    r#"{"type":"pong"}"#,
    r#"{"type":"pong","ts":null}"#,
    r#"{"type":"pong","ts":1732201234567.25}"#,
    r#"{"type":"pong","ts":-0}"#,
    r#"{"type":"pong","ts":1e400}"#,
    r#"{"type":"pong","ts":-1.5e-300}"#,
    r#"{"type":"pong","ts":5,"resumeToken":"a~b"}"#,
    r#"{"type":"pong","room":null,"peer":null,"code":null,"unknown":"x"}"#,
    // serde's externally tagged form of unit enum variants.
    r#"{"type":{"pong":null}}"#,
    r#"{"type":"error","code":{"queue-full":null}}"#,
    r#"{"type":"peer-left","peerId":"b","reason":{"kicked":null}}"#,
];

const INVALID_SERVER: &[&str] = &[
    "",
    "not json",
    "null",
    "1",
    "true",
    r#""joined""#,
    "[]",
    r#"["joined"]"#,
    "{}",
    r#"{"type":"nope"}"#,
    r#"{"type":"JOINED"}"#,
    r#"{"type":5}"#,
    r#"{"type":null}"#,
    r#"{"type":{}}"#,
    r#"{"type":["pong"]}"#,
    r#"{"type":{"pong":1}}"#,
    r#"{"type":{"pong":null,"other":null}}"#,
    r#"{"type":"joined"}"#,
    r#"{"type":"joined","room":"r","peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":"1","room":"r","peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":-1,"room":"r","peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":1.5,"room":"r","peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":4294967296}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":9007199254740993}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":1e400}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":-1e400}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":true}"#,
    r#"{"type":"joined","version":1,"room":5,"peerId":"a","resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":null,"resumeToken":"t","capacity":50}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","capacity":50}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":{}}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":"b"}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":["b"]}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":[{"metadata":{}}]}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":[{"id":5}]}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"peers":[{"id":"b"},null]}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"resumed":"yes"}"#,
    r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":50,"resumed":1}"#,
    r#"{"type":"peer-joined"}"#,
    r#"{"type":"peer-joined","peer":null}"#,
    r#"{"type":"peer-joined","peer":"b"}"#,
    r#"{"type":"peer-joined","peer":[]}"#,
    r#"{"type":"peer-joined","peer":["b"]}"#,
    r#"{"type":"peer-joined","peer":{"id":null}}"#,
    r#"{"type":"peer-left","peerId":"b"}"#,
    r#"{"type":"peer-left","peerId":"b","reason":"gone"}"#,
    r#"{"type":"peer-left","peerId":"b","reason":"Left"}"#,
    r#"{"type":"peer-left","reason":"left"}"#,
    r#"{"type":"signal","from":"b"}"#,
    r#"{"type":"signal","from":"b","payload":null}"#,
    r#"{"type":"signal","payload":{}}"#,
    r#"{"type":"signal","from":7,"payload":{}}"#,
    r#"{"type":"metadata-updated","peerId":"b"}"#,
    r#"{"type":"metadata-updated","peerId":"b","metadata":null}"#,
    r#"{"type":"room-full","room":"r"}"#,
    r#"{"type":"room-full","capacity":2}"#,
    r#"{"type":"room-full","room":"r","capacity":2.5}"#,
    r#"{"type":"error"}"#,
    r#"{"type":"error","code":null}"#,
    r#"{"type":"error","code":"new-code"}"#,
    r#"{"type":"error","code":5}"#,
    r#"{"type":"error","code":"room-limit","message":5}"#,
    r#"{"type":"error","code":"room-limit","fatal":"true"}"#,
    r#"{"type":"pong","ts":"1"}"#,
    r#"{"type":"pong","ts":true}"#,
    r#"{"type":"pong","ts":[1]}"#,
    // Known fields the `type` does not use are still checked.
    r#"{"type":"pong","room":5}"#,
    r#"{"type":"pong","peer":"x"}"#,
    r#"{"type":"pong","peers":"x"}"#,
    r#"{"type":"pong","code":"nope"}"#,
    r#"{"type":"pong","reason":"gone"}"#,
    r#"{"type":"pong","resumed":"no"}"#,
    r#"{"type":"pong","version":-1}"#,
    r#"{"type":"pong","fatal":0}"#,
    r#"{"type":"signal","from":"b","payload":{},"resumeToken":1}"#,
    r#"{"type":"pong","resumeToken":7}"#,
];

#[wasm_bindgen_test]
fn server_frames_decode_as_serde_does() {
    let mut valid: Vec<String> = VALID_SERVER.iter().map(|s| s.to_string()).collect();
    for code in ALL_CODES {
        valid.push(format!(
            r#"{{"type":"error","code":"{code}","message":"m","fatal":false}}"#
        ));
    }
    for text in &valid {
        let ours = ours_server(text);
        assert!(ours.is_some(), "should decode: {text}");
        assert_eq!(ours, serde_server(text), "differs from serde: {text}");
    }
    for text in INVALID_SERVER {
        let theirs = serde_server(text);
        assert!(
            theirs.is_none(),
            "serde accepts what this test calls invalid: {text}"
        );
        assert_eq!(ours_server(text), None, "should not decode: {text}");
    }
}

/// What the server sends (`serde_json`, its own encoder) the SDK reads back to the same value.
#[wasm_bindgen_test]
fn server_encoded_frames_decode_to_the_same_value() {
    use serde_json::{json, Value};
    let mut frames: Vec<ServerMsg<Value>> = vec![
        ServerMsg::Joined {
            version: 1,
            room: "team-42".into(),
            peer_id: "alice".into(),
            resume_token: "tok".into(),
            peers: vec![
                PeerInfo {
                    id: "bob".into(),
                    metadata: Some(json!({"name": "Bob", "n": 3})),
                },
                PeerInfo {
                    id: "carol".into(),
                    metadata: None,
                },
            ],
            capacity: 50,
            resumed: false,
        },
        ServerMsg::Joined {
            version: 1,
            room: "r".into(),
            peer_id: "a".into(),
            resume_token: "t".into(),
            peers: vec![],
            capacity: u32::MAX,
            resumed: true,
        },
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: "bob".into(),
                metadata: Some(json!({"name": "é\u{2028}\"x\""})),
            },
        },
        ServerMsg::PeerLeft {
            peer_id: "bob".into(),
            reason: rtcroom_protocol::LeaveReason::Timeout,
        },
        ServerMsg::Signal {
            from: "bob".into(),
            payload: json!({"kind": "candidate", "candidate": null}),
        },
        ServerMsg::MetadataUpdated {
            peer_id: "bob".into(),
            metadata: json!({"a": [1, 2]}),
        },
        ServerMsg::RoomFull {
            room: "r".into(),
            capacity: 2,
        },
        ServerMsg::Pong {
            ts: Some(1732201234567.5),
            resume_token: Some("ab~cd".into()),
        },
        ServerMsg::Pong {
            ts: None,
            resume_token: None,
        },
    ];
    for code in ALL_CODES {
        let code: ErrorCode = serde_json::from_value(json!(code)).unwrap();
        frames.push(ServerMsg::Error {
            code,
            message: "why".into(),
            fatal: true,
        });
    }
    for frame in frames {
        let text = serde_json::to_string(&frame).unwrap();
        let expected = map_server(frame, &|v: Value| serde_json::to_string(&v).unwrap());
        assert_eq!(ours_server(&text), Some(expected), "server frame: {text}");
    }
}

const VALID_PAYLOADS: &[&str] = &[
    r#"{"kind":"description","description":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}"#,
    r#"{"kind":"description","description":{"type":"answer","sdp":"v=0\r\n"},"roles":[{"stream":"s1","role":"camera"},{"stream":"s2","role":"screen","x":1}]}"#,
    r#"{"kind":"description","description":{"type":"pranswer"},"roles":[]}"#,
    r#"{"kind":"description","description":{"type":"rollback","sdp":""},"roles":null}"#,
    r#"{"kind":"description","description":{"type":{"offer":null},"sdp":"v=0"}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":65535}}"#,
    r#"{"kind":"candidate","candidate":null}"#,
    r#"{"kind":"candidate"}"#,
    r#"{"kind":"bye"}"#,
    r#"{"kind":"bye","data":null,"description":null,"extra":{"a":1}}"#,
    r#"{"kind":{"bye":null}}"#,
    r#"{"kind":"app","data":{"chat":"hi","n":[1,2,{"deep":true}]}}"#,
    r#"{"kind":"app","data":"text"}"#,
    r#"{"kind":"app","data":0}"#,
    r#"{"kind":"app","data":false}"#,
    r#"{"kind":"app","data":[]}"#,
];

const INVALID_PAYLOADS: &[&str] = &[
    "null",
    "0",
    r#""bye""#,
    "[]",
    r#"[{"kind":"bye"}]"#,
    "{}",
    r#"{"kind":null}"#,
    r#"{"kind":"BYE"}"#,
    r#"{"kind":"nope"}"#,
    r#"{"kind":7}"#,
    r#"{"kind":{"bye":{}}}"#,
    r#"{"kind":"app"}"#,
    r#"{"kind":"app","data":null}"#,
    r#"{"kind":"description"}"#,
    r#"{"kind":"description","description":null}"#,
    r#"{"kind":"description","description":"v=0"}"#,
    r#"{"kind":"description","description":[]}"#,
    r#"{"kind":"description","description":{"sdp":"v=0"}}"#,
    r#"{"kind":"description","description":{"type":"OFFER","sdp":"v=0"}}"#,
    r#"{"kind":"description","description":{"type":"offer","sdp":null}}"#,
    r#"{"kind":"description","description":{"type":"offer","sdp":5}}"#,
    r#"{"kind":"description","description":{"type":"offer"},"roles":{}}"#,
    r#"{"kind":"description","description":{"type":"offer"},"roles":["camera"]}"#,
    r#"{"kind":"description","description":{"type":"offer"},"roles":[{"stream":"s"}]}"#,
    r#"{"kind":"description","description":{"type":"offer"},"roles":[{"stream":"s","role":5}]}"#,
    r#"{"kind":"candidate","candidate":"candidate:1"}"#,
    r#"{"kind":"candidate","candidate":{}}"#,
    r#"{"kind":"candidate","candidate":[]}"#,
    r#"{"kind":"candidate","candidate":{"candidate":null}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":65536}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":-1}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":0.5}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":"0"}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMLineIndex":1e400}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","sdpMid":0}}"#,
    r#"{"kind":"candidate","candidate":{"candidate":"c","usernameFragment":false}}"#,
    // Known fields the `kind` does not use are still checked.
    r#"{"kind":"bye","candidate":5}"#,
    r#"{"kind":"bye","description":{"type":"nope"}}"#,
    r#"{"kind":"bye","roles":"x"}"#,
    r#"{"kind":"app","data":1,"roles":[1]}"#,
];

#[wasm_bindgen_test]
fn signal_payloads_decode_as_serde_does() {
    for text in VALID_PAYLOADS {
        let value = parse(text);
        let ours = ours_payload(&value);
        assert!(ours.is_some(), "should decode: {text}");
        assert_eq!(ours, serde_payload(&value), "differs from serde: {text}");
        // The same payload inside a relayed `signal` frame.
        let frame = format!(r#"{{"type":"signal","from":"b","payload":{text}}}"#);
        let Some(ServerMsg::Signal { payload, .. }) = decode::server_msg_from_json(&frame) else {
            panic!("signal frame should decode: {frame}");
        };
        assert_eq!(ours_payload(&payload.0), ours, "inside a frame: {text}");
    }
    for text in INVALID_PAYLOADS {
        let value = parse(text);
        assert!(
            serde_payload(&value).is_none(),
            "serde accepts what this test calls invalid: {text}"
        );
        assert_eq!(ours_payload(&value), None, "should not decode: {text}");
    }
}

#[wasm_bindgen_test]
fn ice_candidates_decode_as_serde_does() {
    let texts = [
        r#"{"candidate":"candidate:1 1 udp 1 192.0.2.1 5 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}"#,
        r#"{"candidate":"c","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}"#,
        r#"{"candidate":"c"}"#,
        r#"{"candidate":"c","sdpMLineIndex":65536}"#,
        r#"{"candidate":"c","sdpMLineIndex":-0}"#,
        r#"{"sdpMid":"0"}"#,
        r#"{"candidate":1}"#,
        "null",
        "[]",
        r#""c""#,
    ];
    for text in texts {
        let value = parse(text);
        let theirs = serde_wasm_bindgen::from_value::<IceCandidate>(value.clone()).ok();
        assert_eq!(decode::ice_candidate(value), theirs, "candidate: {text}");
    }
    // A real one from the browser (what the `icecandidate` listener decodes).
    let init = web_sys::RtcIceCandidateInit::new(
        "candidate:842163049 1 udp 1677729535 192.0.2.1 49203 typ srflx raddr 0.0.0.0 rport 0 generation 0",
    );
    init.set_sdp_mid(Some("0"));
    init.set_sdp_m_line_index(Some(0));
    let candidate = web_sys::RtcIceCandidate::new(&init).expect("RTCIceCandidate");
    let json: JsValue = candidate.to_json().into();
    let ours = decode::ice_candidate(json.clone());
    assert!(ours.is_some(), "browser candidate: {}", text_of(&json));
    assert_eq!(ours, serde_wasm_bindgen::from_value::<IceCandidate>(json).ok());
}

/// Pass-through values used in the encoder tests.
const VALUES: &[&str] = &[
    r#"{"name":"Ann","tags":["a","b"],"n":1.5,"deep":{"x":null}}"#,
    r#""just text with \"quotes\" and é \u2028""#,
    "0",
    "false",
    "[]",
];

fn client_msgs<J>(j: impl Fn(&str) -> J) -> Vec<ClientMsg<J>> {
    let mut msgs = vec![
        ClientMsg::Join {
            room: Some("team-42".into()),
            version: 1,
            metadata: Some(j(VALUES[0])),
            resume: Some("resume-token".into()),
            capacity: Some(4),
        },
        ClientMsg::Join {
            room: None,
            version: 1,
            metadata: None,
            resume: None,
            capacity: None,
        },
        ClientMsg::Join {
            room: Some("r".into()),
            version: u32::MAX,
            metadata: None,
            resume: None,
            capacity: Some(0),
        },
        ClientMsg::Metadata {
            metadata: j(VALUES[0]),
        },
        ClientMsg::Leave,
        ClientMsg::Ping {
            ts: Some(1732201234567.25),
        },
        ClientMsg::Ping { ts: Some(0.1 + 0.2) },
        ClientMsg::Ping { ts: None },
    ];
    for value in VALUES {
        msgs.push(ClientMsg::Signal {
            to: "peer-\"b\"".into(),
            payload: j(value),
        });
    }
    msgs.push(ClientMsg::Signal {
        to: "b".into(),
        payload: j(r#"{"kind":"description","description":{"type":"offer","sdp":"v=0\r\n"}}"#),
    });
    msgs
}

fn payloads<J>(j: impl Fn(&str) -> J) -> Vec<SignalPayload<J>> {
    let mut list = vec![
        SignalPayload::Description {
            description: SessionDescription {
                kind: SdpKind::Offer,
                sdp: "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\na=msid-semantic: WMS s1\r\n".into(),
            },
            roles: vec![
                StreamRole {
                    stream: "s1".into(),
                    role: "camera".into(),
                },
                StreamRole {
                    stream: "{s2}".into(),
                    role: "screen".into(),
                },
            ],
        },
        SignalPayload::Candidate {
            candidate: Some(IceCandidate {
                candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: Some("abcd".into()),
            }),
        },
        SignalPayload::Candidate {
            candidate: Some(IceCandidate {
                candidate: "c".into(),
                sdp_mid: None,
                sdp_m_line_index: Some(u16::MAX),
                username_fragment: None,
            }),
        },
        SignalPayload::Candidate {
            candidate: Some(IceCandidate {
                candidate: String::new(),
                sdp_mid: None,
                sdp_m_line_index: None,
                username_fragment: None,
            }),
        },
        SignalPayload::Candidate { candidate: None },
        SignalPayload::Bye,
    ];
    for kind in [
        SdpKind::Offer,
        SdpKind::Answer,
        SdpKind::Pranswer,
        SdpKind::Rollback,
    ] {
        list.push(SignalPayload::Description {
            description: SessionDescription {
                kind,
                sdp: String::new(),
            },
            roles: vec![],
        });
    }
    for value in VALUES {
        list.push(SignalPayload::App { data: j(value) });
    }
    list
}

fn serde_text<T: Serialize>(value: &T) -> String {
    let js = value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("serde serializes");
    text_of(&js)
}

fn json_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

#[wasm_bindgen_test]
fn client_frames_encode_as_serde_did_and_the_server_reads_them() {
    let ours = client_msgs(|t| Js(parse(t)));
    let theirs = client_msgs(|t| P(parse(t)));
    assert_eq!(ours.len(), theirs.len());
    for (msg, reference) in ours.into_iter().zip(theirs) {
        let text = decode::client_msg_json(&msg).expect("encodes");
        // Byte for byte what the serde build sent.
        assert_eq!(text, serde_text(&reference));
        // The server's decoder (serde_json, as in server/src/signal.rs) reads the same value.
        let server: ClientMsg<serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("server rejects {text}: {e}"));
        assert_eq!(
            server,
            map_client(msg, &|j: Js| json_value(&text_of(&j.0))),
            "{text}"
        );
    }
    // JSON.stringify failing (a cyclic payload) is `None`, not a panic.
    let cyclic = Object::new();
    Reflect::set(&cyclic, &"self".into(), &cyclic).unwrap();
    let msg = ClientMsg::Signal {
        to: "b".into(),
        payload: Js(cyclic.into()),
    };
    assert_eq!(decode::client_msg_json(&msg), None);
}

#[wasm_bindgen_test]
fn signal_payloads_encode_as_serde_did_and_decode_back() {
    let ours = payloads(|t| Js(parse(t)));
    let theirs = payloads(|t| P(parse(t)));
    for (payload, reference) in ours.into_iter().zip(theirs) {
        let value = decode::signal_payload_value(&payload);
        let text = text_of(&value);
        assert_eq!(text, serde_text(&reference));
        let expected = map_payload(payload, &js_text);
        // Read back by this codec, by serde in the browser, and by serde_json.
        assert_eq!(ours_payload(&value).as_ref(), Some(&expected), "{text}");
        assert_eq!(ours_payload(&parse(&text)).as_ref(), Some(&expected), "{text}");
        assert_eq!(serde_payload(&parse(&text)).as_ref(), Some(&expected), "{text}");
        let native: SignalPayload<serde_json::Value> = serde_json::from_str(&text).expect("serde_json");
        assert_eq!(
            map_payload(native, &|v| serde_json::to_string(&v).unwrap()),
            map_payload(expected, &|t| serde_json::to_string(&json_value(&t)).unwrap()),
        );
    }
}

/// The serde definitions the config used to be read with.
mod reference {
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct RawRetry {
        initial_delay_ms: Option<f64>,
        max_delay_ms: Option<f64>,
        factor: Option<f64>,
        jitter: Option<f64>,
        max_attempts: Option<i32>,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct RawIce {
        max_restarts: Option<u32>,
        disconnected_grace_ms: Option<f64>,
        restart_timeout_ms: Option<f64>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RawConfig {
        room: String,
        url: Option<String>,
        token: Option<String>,
        capacity: Option<u32>,
        #[serde(default)]
        retry: RawRetry,
        #[serde(default)]
        ice: RawIce,
        heartbeat_interval_ms: Option<f64>,
        heartbeat_timeout_ms: Option<f64>,
        connect_timeout_ms: Option<f64>,
        join_attempts: Option<u32>,
    }

    impl From<RawConfig> for super::decode::RawConfig {
        fn from(c: RawConfig) -> Self {
            super::decode::RawConfig {
                room: c.room,
                url: c.url,
                token: c.token,
                capacity: c.capacity,
                retry: super::decode::RawRetry {
                    initial_delay_ms: c.retry.initial_delay_ms,
                    max_delay_ms: c.retry.max_delay_ms,
                    factor: c.retry.factor,
                    jitter: c.retry.jitter,
                    max_attempts: c.retry.max_attempts,
                },
                ice: super::decode::RawIce {
                    max_restarts: c.ice.max_restarts,
                    disconnected_grace_ms: c.ice.disconnected_grace_ms,
                    restart_timeout_ms: c.ice.restart_timeout_ms,
                },
                heartbeat_interval_ms: c.heartbeat_interval_ms,
                heartbeat_timeout_ms: c.heartbeat_timeout_ms,
                connect_timeout_ms: c.connect_timeout_ms,
                join_attempts: c.join_attempts,
            }
        }
    }
}

fn serde_config(value: &JsValue) -> Option<decode::RawConfig> {
    serde_wasm_bindgen::from_value::<reference::RawConfig>(value.clone())
        .ok()
        .map(Into::into)
}

#[wasm_bindgen_test]
fn config_decodes_as_serde_does() {
    let valid = [
        r#"{"room":"r"}"#,
        r#"{"room":"team-42","url":"ws://h/signal","token":"jwt","capacity":4,
            "retry":{"initialDelayMs":250,"maxDelayMs":5000.5,"factor":2,"jitter":0.2,"maxAttempts":-1},
            "ice":{"maxRestarts":3,"disconnectedGraceMs":1500,"restartTimeoutMs":8000},
            "heartbeatIntervalMs":1000,"heartbeatTimeoutMs":3000,"connectTimeoutMs":2500,"joinAttempts":2,
            "iceServers":[{"urls":"turn:t"}],"metadata":{"name":"Ann"},"stats":{"url":"x"}}"#,
        r#"{"room":"r","url":null,"token":null,"capacity":null,"heartbeatIntervalMs":null,"connectTimeoutMs":null,"joinAttempts":null}"#,
        r#"{"room":"r","retry":{},"ice":{}}"#,
        r#"{"room":"r","retry":[],"ice":[]}"#,
        r#"{"room":"r","retry":{"maxAttempts":2147483647,"factor":1e400},"ice":{"maxRestarts":4294967295}}"#,
        r#"{"room":"r","retry":{"maxAttempts":-2147483648,"initialDelayMs":null}}"#,
        r#"{"room":"","capacity":-0}"#,
    ];
    for text in valid {
        let value = parse(text);
        let ours = decode::raw_config(&value);
        assert!(ours.is_ok(), "should decode: {text}: {ours:?}");
        assert_eq!(ours.ok(), serde_config(&value), "differs from serde: {text}");
    }
    let invalid = [
        "null",
        "5",
        r#""r""#,
        "[]",
        "{}",
        r#"{"room":5}"#,
        r#"{"room":null}"#,
        r#"{"room":["r"]}"#,
        r#"{"room":"r","url":5}"#,
        r#"{"room":"r","token":{}}"#,
        r#"{"room":"r","capacity":-1}"#,
        r#"{"room":"r","capacity":1.5}"#,
        r#"{"room":"r","capacity":"2"}"#,
        r#"{"room":"r","capacity":4294967296}"#,
        r#"{"room":"r","retry":null}"#,
        r#"{"room":"r","retry":"fast"}"#,
        r#"{"room":"r","retry":5}"#,
        r#"{"room":"r","retry":{"factor":"2"}}"#,
        r#"{"room":"r","retry":{"jitter":true}}"#,
        r#"{"room":"r","retry":{"maxAttempts":2147483648}}"#,
        r#"{"room":"r","retry":{"maxAttempts":1.5}}"#,
        r#"{"room":"r","ice":null}"#,
        r#"{"room":"r","ice":{"maxRestarts":-1}}"#,
        r#"{"room":"r","ice":{"restartTimeoutMs":"1"}}"#,
        r#"{"room":"r","heartbeatIntervalMs":"1000"}"#,
        r#"{"room":"r","heartbeatTimeoutMs":[]}"#,
        r#"{"room":"r","connectTimeoutMs":"10s"}"#,
        r#"{"room":"r","joinAttempts":1.5}"#,
        r#"{"room":"r","joinAttempts":1e400}"#,
    ];
    for text in invalid {
        let value = parse(text);
        assert!(serde_config(&value).is_none(), "serde accepts: {text}");
        let message = decode::raw_config(&value).expect_err(text);
        assert!(
            message.starts_with("invalid RoomSession config: "),
            "{text}: {message}"
        );
    }
    // Not JSON: a function is no config; an explicit `undefined` reads as missing.
    let function = js_sys::Function::new_no_args("return 1");
    assert!(decode::raw_config(&function.into()).is_err());
    let config = parse(r#"{"room":"r","url":"ws://h/signal"}"#);
    for key in ["url", "capacity", "joinAttempts", "token"] {
        Reflect::set(&config, &key.into(), &JsValue::UNDEFINED).unwrap();
    }
    assert_eq!(decode::raw_config(&config).ok(), serde_config(&config));
    // The one deliberate difference: `retry: undefined` (or `ice: undefined`), e.g. from
    // `{ ...defaults, retry: opts.retry }`, is the default here; serde called it an error.
    Reflect::set(&config, &"retry".into(), &JsValue::UNDEFINED).unwrap();
    Reflect::set(&config, &"ice".into(), &JsValue::UNDEFINED).unwrap();
    assert!(serde_config(&config).is_none());
    let ours = decode::raw_config(&config).expect("undefined sections are defaults");
    assert_eq!(ours.retry, decode::RawRetry::default());
    assert_eq!(ours.ice, decode::RawIce::default());
}
