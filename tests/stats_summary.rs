#![cfg(not(target_arch = "wasm32"))]
//! The in-page summary from raw getStats results (the Chrome-like fixtures).

use rtcroom::stats::summary::summarize;
use rtcroom::stats::value::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    Value::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn first_sample_has_no_rates() {
    let s = summarize(None, &fixture("chrome-1.json"));
    assert_eq!(s.local_candidate_type.as_deref(), Some("host"));
    assert_eq!(s.remote_candidate_type.as_deref(), Some("srflx"));
    assert!(close(s.rtt_ms, 12.0));
    assert_eq!(s.audio.inbound_bitrate_bps, None);
    assert_eq!(s.video.inbound_bitrate_bps, None);
    // Without a previous sample, loss is cumulative: 2 of 100.
    assert!(close(s.audio.inbound_packet_loss, 0.02));
    assert!(close(s.audio.jitter_ms, 4.0));
    assert!(close(s.video.inbound_fps, 30.0));
}

#[test]
fn second_sample_has_rates_from_byte_deltas() {
    let s = summarize(Some(&fixture("chrome-1.json")), &fixture("chrome-2.json"));
    assert_eq!(s.local_candidate_type.as_deref(), Some("host"));
    assert_eq!(s.remote_candidate_type.as_deref(), Some("prflx"));
    assert!(close(s.rtt_ms, 30.0));
    assert!(close(s.audio.inbound_bitrate_bps, 36_000.0)); // 4500 bytes in 1 s
    assert!(close(s.audio.outbound_bitrate_bps, 32_000.0)); // 4000 bytes in 1 s
    assert!(close(s.video.inbound_bitrate_bps, 2_400_000.0)); // 300000 bytes in 1 s
    assert_eq!(s.video.outbound_bitrate_bps, None);
    assert!(close(s.audio.inbound_packet_loss, 0.0));
    assert!(close(s.video.inbound_packet_loss, 3.0 / 303.0));
    assert!(close(s.audio.outbound_packet_loss, 0.0));
    assert!(close(s.audio.jitter_ms, 5.0));
    assert!(close(s.video.jitter_ms, 10.0));
    assert!(close(s.video.inbound_fps, 30.0));
    assert_eq!(s.audio.inbound_fps, None);
}

#[test]
fn fps_from_frame_counters_and_firefox_selected_pair() {
    let before = Value::parse(
        r#"{"in":{"type":"inbound-rtp","kind":"video","timestamp":1000,"framesDecoded":10,"bytesReceived":0},
            "out":{"type":"outbound-rtp","kind":"video","timestamp":1000,"framesEncoded":100,"bytesSent":1000}}"#,
    )
    .unwrap();
    let after = Value::parse(
        r#"{"in":{"type":"inbound-rtp","kind":"video","timestamp":3000,"framesDecoded":60,"bytesReceived":500},
            "out":{"type":"outbound-rtp","kind":"video","timestamp":3000,"framesEncoded":160,"bytesSent":500},
            "p":{"type":"candidate-pair","selected":true,"localCandidateId":"l","remoteCandidateId":"r"},
            "l":{"type":"local-candidate","candidateType":"relay"},
            "r":{"type":"remote-candidate","candidateType":"host"},
            "ri":{"type":"remote-inbound-rtp","kind":"video","roundTripTime":0.1,"fractionLost":0.25}}"#,
    )
    .unwrap();
    let s = summarize(Some(&before), &after);
    assert!(close(s.video.inbound_fps, 25.0));
    assert!(close(s.video.outbound_fps, 30.0));
    assert!(close(s.video.inbound_bitrate_bps, 2000.0));
    assert_eq!(
        s.video.outbound_bitrate_bps, None,
        "a counter that went backwards gives no rate"
    );
    assert_eq!(s.local_candidate_type.as_deref(), Some("relay"));
    assert!(close(s.rtt_ms, 100.0), "RTCP round trip when the pair has none");
    assert!(close(s.video.outbound_packet_loss, 0.25));
    assert_eq!(summarize(None, &Value::Null), Default::default());
}
