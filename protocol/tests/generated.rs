//! What `derive(Wire)` generates agrees with serde's own derives: every variant of every tagged
//! type written by serde's `Serialize` reads back through the generated flat decoding, the
//! flat-frame rules hold, and the unit enums' spellings are serde's.

use rtcroom_protocol::*;
use serde_json::{json, value::RawValue, Value};

fn roundtrip<T>(value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(&back, value, "{text}");
    text
}

fn client_msgs() -> Vec<ClientMsg<Value>> {
    vec![
        ClientMsg::Join {
            room: Some("r".into()),
            version: 1,
            metadata: Some(json!({"name": "ann"})),
            resume: Some("t".into()),
            capacity: Some(4),
        },
        ClientMsg::Join {
            room: None,
            version: u32::MAX,
            metadata: None,
            resume: None,
            capacity: None,
        },
        ClientMsg::Signal {
            to: "b".into(),
            payload: json!([1, "x", null]),
        },
        ClientMsg::Metadata { metadata: json!({}) },
        ClientMsg::Leave,
        ClientMsg::Ping { ts: Some(12.5) },
        ClientMsg::Ping { ts: None },
    ]
}

fn server_msgs() -> Vec<ServerMsg<Value>> {
    let mut msgs = vec![
        ServerMsg::Joined {
            version: 1,
            room: "r".into(),
            peer_id: "a".into(),
            resume_token: "t".into(),
            peers: vec![
                PeerInfo {
                    id: "b".into(),
                    metadata: Some(json!({"n": 1})),
                },
                PeerInfo {
                    id: "c".into(),
                    metadata: None,
                },
            ],
            capacity: 4,
            resumed: true,
        },
        ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: "b".into(),
                metadata: None,
            },
        },
        ServerMsg::Signal {
            from: "b".into(),
            payload: json!("text"),
        },
        ServerMsg::MetadataUpdated {
            peer_id: "b".into(),
            metadata: json!({"a": [1]}),
        },
        ServerMsg::RoomFull {
            room: "r".into(),
            capacity: 2,
        },
        ServerMsg::Pong {
            ts: Some(1.5),
            resume_token: Some("t2".into()),
        },
        ServerMsg::Pong {
            ts: None,
            resume_token: None,
        },
    ];
    for reason in LeaveReason::ALL {
        msgs.push(ServerMsg::PeerLeft {
            peer_id: "b".into(),
            reason,
        });
    }
    for code in ErrorCode::ALL {
        msgs.push(ServerMsg::Error {
            code,
            message: "m".into(),
            fatal: true,
        });
    }
    msgs
}

fn payloads() -> Vec<SignalPayload<Value>> {
    let mut list = vec![
        SignalPayload::Description {
            description: SessionDescription {
                kind: SdpKind::Offer,
                sdp: "v=0\r\n".into(),
            },
            roles: vec![StreamRole {
                stream: "s".into(),
                role: "camera".into(),
            }],
            seq: Some(2),
        },
        SignalPayload::Candidate {
            candidate: Some(IceCandidate {
                candidate: "candidate:1".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: Some("u".into()),
            }),
        },
        SignalPayload::Candidate {
            candidate: Some(IceCandidate {
                candidate: "c".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
                username_fragment: None,
            }),
        },
        SignalPayload::Candidate { candidate: None },
        SignalPayload::Bye,
        // Not `null`: in a flat frame `null` is a missing field, so `app` needs non-null data
        // (as before the derive; the SDK's codec agrees).
        SignalPayload::App { data: json!(0) },
    ];
    for kind in SdpKind::ALL {
        list.push(SignalPayload::Description {
            description: SessionDescription {
                kind,
                sdp: String::new(),
            },
            roles: vec![],
            seq: None,
        });
    }
    list
}

#[test]
fn every_variant_written_by_serde_reads_back_through_the_flat_decoding() {
    let mut tags = Vec::new();
    for msg in client_msgs() {
        let text = roundtrip(&msg);
        tags.push(serde_json::from_str::<Value>(&text).unwrap()["type"].clone());
    }
    for tag in ClientMsg::<Value>::TAGS {
        assert!(tags.contains(&json!(tag)), "{tag} not covered");
    }
    tags.clear();
    for msg in server_msgs() {
        let text = roundtrip(&msg);
        tags.push(serde_json::from_str::<Value>(&text).unwrap()["type"].clone());
    }
    for tag in ServerMsg::<Value>::TAGS {
        assert!(tags.contains(&json!(tag)), "{tag} not covered");
    }
    tags.clear();
    for payload in payloads() {
        let text = roundtrip(&payload);
        tags.push(serde_json::from_str::<Value>(&text).unwrap()["kind"].clone());
    }
    for tag in SignalPayload::<Value>::TAGS {
        assert!(tags.contains(&json!(tag)), "{tag} not covered");
    }
    assert_eq!(
        ClientMsg::<Value>::TAGS,
        ["join", "signal", "metadata", "leave", "ping"]
    );
}

#[test]
fn unit_enums_spell_as_serde_does() {
    fn check<T: serde::Serialize>(
        all: &[T],
        as_str: fn(&T) -> &'static str,
        parse: fn(&str) -> Option<usize>,
    ) {
        for (i, value) in all.iter().enumerate() {
            assert_eq!(serde_json::to_value(value).unwrap(), json!(as_str(value)));
            assert_eq!(parse(as_str(value)), Some(i));
        }
        assert_eq!(parse("no-such-name"), None);
    }
    check(
        &LeaveReason::ALL,
        |v| v.as_str(),
        |s| LeaveReason::parse(s).map(|v| v as usize),
    );
    check(
        &ErrorCode::ALL,
        |v| v.as_str(),
        |s| ErrorCode::parse(s).map(|v| v as usize),
    );
    check(
        &SdpKind::ALL,
        |v| v.as_str(),
        |s| SdpKind::parse(s).map(|v| v as usize),
    );
    assert_eq!(SdpKind::Pranswer.as_str(), "pranswer");
    assert_eq!(ErrorCode::UnsupportedVersion.as_str(), "unsupported-version");
}

#[test]
fn flat_frames_check_every_known_field_and_require_what_the_tag_needs() {
    type Server = ServerMsg<Value>;
    let ok = |text: &str| serde_json::from_str::<Server>(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let err = |text: &str| match serde_json::from_str::<Server>(text) {
        Ok(msg) => panic!("accepted {text}: {msg:?}"),
        Err(e) => e.to_string(),
    };
    // Unknown fields ignored; `null` is missing for every field of a flat frame.
    assert_eq!(
        ok(r#"{"type":"pong","ts":null,"room":null,"extra":{"x":1}}"#),
        ServerMsg::Pong {
            ts: None,
            resume_token: None
        }
    );
    // `#[serde(default)]` fields.
    assert_eq!(
        ok(r#"{"type":"error","code":"queue-full","message":null}"#),
        ServerMsg::Error {
            code: ErrorCode::QueueFull,
            message: String::new(),
            fatal: false
        }
    );
    let joined =
        ok(r#"{"type":"joined","version":1,"room":"r","peerId":"a","resumeToken":"t","capacity":2}"#);
    assert!(matches!(joined, ServerMsg::Joined { peers, resumed: false, .. } if peers.is_empty()));
    // serde's one-key form of the tag.
    assert!(matches!(ok(r#"{"type":{"pong":null}}"#), ServerMsg::Pong { .. }));
    // A known field of another variant, wrongly typed.
    err(r#"{"type":"pong","room":5}"#);
    err(r#"{"type":"pong","reason":"gone"}"#);
    // Required fields, named in the error.
    assert!(err(r#"{"type":"peer-left","reason":"left"}"#).contains("peer-left needs `peerId`"));
    assert!(err(r#"{"type":"signal","from":"b","payload":null}"#).contains("signal needs `payload`"));
    err(r#"{"type":"nope"}"#);
    err(r#"{"room":"r"}"#);
    let payload = |text: &str| serde_json::from_str::<SignalPayload<Value>>(text).ok();
    assert_eq!(
        payload(r#"{"kind":"description","description":{"type":"answer"}}"#),
        Some(SignalPayload::Description {
            description: SessionDescription {
                kind: SdpKind::Answer,
                sdp: String::new()
            },
            roles: vec![],
            seq: None,
        })
    );
    // In a plain struct, `default` covers a missing field, not `null` (serde's rule).
    assert_eq!(
        payload(r#"{"kind":"description","description":{"type":"answer","sdp":null}}"#),
        None
    );
    assert_eq!(payload(r#"{"kind":"bye","candidate":5}"#), None);
}

/// The reason for flat frames: opaque values reach their own deserializer, so the server's
/// `RawValue` relays the payload byte for byte.
#[test]
fn pass_through_values_keep_their_bytes() {
    let text = r#"{"to":"b","payload":{"b": 1.50,  "a":[ ]},"type":"signal"}"#;
    let msg: ClientMsg<Box<RawValue>> = serde_json::from_str(text).unwrap();
    let ClientMsg::Signal { to, payload } = msg else {
        panic!("{msg:?}")
    };
    assert_eq!((to.as_str(), payload.get()), ("b", r#"{"b": 1.50,  "a":[ ]}"#));
    let join: ClientMsg<Box<RawValue>> =
        serde_json::from_str(r#"{"type":"join","version":1,"metadata":{"x" : 1e3}}"#).unwrap();
    assert!(matches!(join, ClientMsg::Join { metadata: Some(m), .. } if m.get() == r#"{"x" : 1e3}"#));
}
