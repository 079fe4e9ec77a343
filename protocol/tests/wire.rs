//! The wire format as JSON text: round trips, tolerance of unknown fields, and no panics on
//! arbitrary input.

use proptest::prelude::*;
use rtcroom_protocol::*;
use serde_json::{json, Value};

type Client = ClientMsg<Value>;
type Server = ServerMsg<Value>;

fn roundtrip_client(text: &str) -> Client {
    let msg: Client = serde_json::from_str(text).expect(text);
    let again: Client = serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
    assert_eq!(msg, again);
    msg
}

#[test]
fn client_frames_decode_with_camel_case_fields_and_ignore_unknown_ones() {
    let join = roundtrip_client(
        r#"{"type":"join","room":"r1","version":1,"metadata":{"name":"ann"},"resume":"t","capacity":4,"extra":true}"#,
    );
    assert_eq!(
        join,
        ClientMsg::Join {
            room: Some("r1".into()),
            version: 1,
            metadata: Some(json!({"name": "ann"})),
            resume: Some("t".into()),
            capacity: Some(4),
        }
    );
    assert_eq!(
        roundtrip_client(r#"{"type":"join","version":1}"#),
        ClientMsg::Join {
            room: None,
            version: 1,
            metadata: None,
            resume: None,
            capacity: None
        }
    );
    assert_eq!(
        roundtrip_client(r#"{"type":"signal","to":"p2","payload":{"kind":"bye"}}"#),
        ClientMsg::Signal {
            to: "p2".into(),
            payload: json!({"kind": "bye"})
        }
    );
    assert_eq!(roundtrip_client(r#"{"type":"leave"}"#), ClientMsg::Leave);
    assert_eq!(
        roundtrip_client(r#"{"type":"ping","ts":12.5}"#),
        ClientMsg::Ping { ts: Some(12.5) }
    );
    assert_eq!(
        roundtrip_client(r#"{"type":"metadata","metadata":{"muted":true}}"#),
        ClientMsg::Metadata {
            metadata: json!({"muted": true})
        }
    );
}

#[test]
fn unknown_type_and_missing_fields_are_errors_not_panics() {
    assert!(serde_json::from_str::<Client>(r#"{"type":"dance"}"#).is_err());
    assert!(serde_json::from_str::<Client>(r#"{"type":"signal","to":"x"}"#).is_err());
    assert!(serde_json::from_str::<Client>(r#"{"type":"join"}"#).is_err());
    assert!(serde_json::from_str::<Client>(r#"{"room":"r"}"#).is_err());
    assert!(serde_json::from_str::<Client>(r#"[1,2]"#).is_err());
}

#[test]
fn server_frames_have_the_documented_shape() {
    let joined: Server = ServerMsg::Joined {
        version: 1,
        room: "r".into(),
        peer_id: "a".into(),
        resume_token: "tok".into(),
        peers: vec![PeerInfo {
            id: "b".into(),
            metadata: Some(json!({"n": 1})),
        }],
        capacity: 4,
        resumed: false,
    };
    assert_eq!(
        serde_json::to_value(&joined).unwrap(),
        json!({"type": "joined", "version": 1, "room": "r", "peerId": "a", "resumeToken": "tok",
               "peers": [{"id": "b", "metadata": {"n": 1}}], "capacity": 4, "resumed": false})
    );
    let left: Server = ServerMsg::PeerLeft {
        peer_id: "b".into(),
        reason: LeaveReason::Timeout,
    };
    assert_eq!(
        serde_json::to_value(&left).unwrap(),
        json!({"type": "peer-left", "peerId": "b", "reason": "timeout"})
    );
    let err: Server = ServerMsg::Error {
        code: ErrorCode::RoomLimit,
        message: "m".into(),
        fatal: true,
    };
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"type": "error", "code": "room-limit", "message": "m", "fatal": true})
    );
    for code in [
        ErrorCode::MalformedFrame,
        ErrorCode::QueueFull,
        ErrorCode::UnsupportedVersion,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
    let decoded: Server =
        serde_json::from_str(r#"{"type":"metadata-updated","peerId":"x","metadata":{}}"#).unwrap();
    assert_eq!(
        decoded,
        ServerMsg::MetadataUpdated {
            peer_id: "x".into(),
            metadata: json!({})
        }
    );
}

#[test]
fn signal_payloads_match_rtc_dictionaries() {
    let description: SignalPayload<Value> =
        serde_json::from_str(r#"{"kind":"description","description":{"type":"offer","sdp":"v=0"}}"#).unwrap();
    assert_eq!(
        description,
        SignalPayload::Description {
            description: SessionDescription {
                kind: SdpKind::Offer,
                sdp: "v=0".into()
            },
            roles: vec![],
            seq: None,
        }
    );
    let numbered: SignalPayload<Value> =
        serde_json::from_str(r#"{"kind":"description","description":{"type":"offer","sdp":""},"seq":3}"#)
            .unwrap();
    assert!(matches!(
        numbered,
        SignalPayload::Description { seq: Some(3), .. }
    ));
    assert!(serde_json::to_string(&numbered).unwrap().ends_with(r#""seq":3}"#));
    let with_roles: SignalPayload<Value> = serde_json::from_str(
        r#"{"kind":"description","description":{"type":"answer","sdp":""},"roles":[{"stream":"s1","role":"screen"}]}"#,
    )
    .unwrap();
    let SignalPayload::Description { roles, .. } = &with_roles else {
        panic!()
    };
    assert_eq!(
        roles,
        &[StreamRole {
            stream: "s1".into(),
            role: "screen".into()
        }]
    );
    let text = serde_json::to_string(&with_roles).unwrap();
    assert_eq!(
        serde_json::from_str::<SignalPayload<Value>>(&text).unwrap(),
        with_roles
    );
    let candidate: SignalPayload<Value> = serde_json::from_str(
        r#"{"kind":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    )
    .unwrap();
    let SignalPayload::Candidate { candidate: Some(c) } = candidate else {
        panic!("{candidate:?}")
    };
    assert_eq!((c.sdp_mid.as_deref(), c.sdp_m_line_index), (Some("0"), Some(0)));
    let end: SignalPayload<Value> = serde_json::from_str(r#"{"kind":"candidate","candidate":null}"#).unwrap();
    assert_eq!(end, SignalPayload::Candidate { candidate: None });
    let app: SignalPayload<Value> = serde_json::from_str(r#"{"kind":"app","data":[1,"x"]}"#).unwrap();
    assert_eq!(
        app,
        SignalPayload::App {
            data: json!([1, "x"])
        }
    );
}

#[test]
fn version_negotiation_picks_the_highest_common_version() {
    assert_eq!(negotiate_version(PROTOCOL_VERSION), Some(PROTOCOL_VERSION));
    assert_eq!(negotiate_version(PROTOCOL_VERSION + 5), Some(PROTOCOL_VERSION));
    assert_eq!(negotiate_version(0), None);
}

#[test]
fn room_names_are_path_and_log_safe() {
    assert!(valid_room_name("team-42_a.b"));
    assert!(valid_room_name(".a") && valid_room_name("..x"));
    for bad in ["", "a b", "a/b", "ü", &"x".repeat(65), ".", "..", "..."] {
        assert!(!valid_room_name(bad), "{bad:?}");
    }
}

#[test]
fn only_refusals_of_the_client_end_a_session() {
    use rtcroom_protocol::close::{self, recovery, Recovery};
    assert_eq!(recovery(close::POLICY), Recovery::Refused);
    assert_eq!(recovery(close::REPLACED), Recovery::Replaced);
    assert_eq!(recovery(close::KICKED), Recovery::Kicked);
    for code in [
        close::NORMAL,
        close::GOING_AWAY,
        close::INVALID_DATA,
        close::TOO_BIG,
        close::TRY_AGAIN_LATER,
        close::TOO_SLOW,
        close::HEARTBEAT_TIMEOUT,
        close::JOIN_TIMEOUT,
        1006,
        4408,
        4999,
    ] {
        assert_eq!(recovery(code), Recovery::Reconnect, "{code}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Client>(&bytes);
        let _ = serde_json::from_slice::<Server>(&bytes);
        let _ = serde_json::from_slice::<SignalPayload<Value>>(&bytes);
    }

    #[test]
    fn decoding_json_shaped_text_never_panics(
        kind in prop_oneof![Just("join".to_string()), Just("signal".to_string()), Just("leave".to_string()), Just("ping".to_string()), "[a-z-]{0,12}"],
        field in "[a-zA-Z]{0,8}",
        value in prop_oneof![Just("null".to_string()), Just("{}".to_string()), "-?[0-9]{1,20}(\\.[0-9]+)?", "\"[^\"\\\\]{0,16}\""],
    ) {
        let text = format!(r#"{{"type":"{kind}","{field}":{value},"version":{value},"to":{value},"payload":{value}}}"#);
        let _ = serde_json::from_str::<Client>(&text);
    }
}

#[test]
fn every_error_code_parses_from_its_serde_spelling() {
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        assert!(seen.insert(code), "{code:?} twice in ALL");
    }
    assert_eq!(ErrorCode::parse("no-such-code"), None);
}
