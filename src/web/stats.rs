//! Stats values for JS: summaries and counters as plain objects, getStats as a stats value,
//! and the trace options of `StatsTrace` and of `RoomSession`'s `config.stats`.

use js_sys::{Array, Object, Promise};
use wasm_bindgen::prelude::*;

use super::js::{self, object, stats_value};
use crate::stats::{AckMode, Counters, MediaSummary, Summary, TraceConfig, Value};

fn opt_num(value: Option<f64>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_f64)
}

/// The in-page summary as the JS object of `peer.stats()` and the `stats` event.
pub(super) fn summary_value(summary: &Summary) -> JsValue {
    let media = |m: &MediaSummary| {
        object(&[
            ("inboundBitrateBps", opt_num(m.inbound_bitrate_bps)),
            ("outboundBitrateBps", opt_num(m.outbound_bitrate_bps)),
            ("inboundPacketLoss", opt_num(m.inbound_packet_loss)),
            ("outboundPacketLoss", opt_num(m.outbound_packet_loss)),
            ("jitterMs", opt_num(m.jitter_ms)),
            ("inboundFps", opt_num(m.inbound_fps)),
            ("outboundFps", opt_num(m.outbound_fps)),
        ])
    };
    let text = |s: &Option<String>| s.as_deref().map_or(JsValue::NULL, JsValue::from_str);
    object(&[
        ("localCandidateType", text(&summary.local_candidate_type)),
        ("remoteCandidateType", text(&summary.remote_candidate_type)),
        ("rttMs", opt_num(summary.rtt_ms)),
        ("audio", media(&summary.audio)),
        ("video", media(&summary.video)),
    ])
}

/// How long a getStats may take before it counts as failed: Firefox never settles one
/// started just before `close()`.
const GET_STATS_TIMEOUT_MS: i32 = 1000;

/// Calls `f` with a getStats result as a plain stats value (report id → report), or an error
/// after [`GET_STATS_TIMEOUT_MS`].
pub(super) fn get_stats(promise: Promise, f: impl FnOnce(Result<Value, JsValue>) + 'static) {
    let timeout = Promise::new(&mut |_, reject| js::after(&reject, GET_STATS_TIMEOUT_MS));
    let race = Promise::race(&Array::of2(&promise, &timeout));
    js::settle(
        &race,
        Box::new(move |report| {
            f(report.and_then(|r| Ok(stats_value(&Object::from_entries(&r)?.into()))));
        }),
    );
}

pub(super) fn counters_value(counters: &Counters) -> JsValue {
    object(&[
        ("recorded", (counters.recorded as f64).into()),
        ("dropped", (counters.dropped as f64).into()),
        ("delivered", (counters.delivered as f64).into()),
        ("lostAtClose", (counters.lost_at_close as f64).into()),
        ("tooLarge", (counters.too_large as f64).into()),
        ("refused", (counters.refused as f64).into()),
    ])
}

fn num(options: &JsValue, key: &str) -> Option<f64> {
    js::get(options, key)
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// The trace options of `StatsTrace` and of `RoomSession`'s `config.stats`: the trace's
/// tunables and the getStats interval.
pub(super) fn trace_config(options: &JsValue) -> (TraceConfig, f64) {
    let defaults = TraceConfig::default();
    let ack_mode = match js::get(options, "ackMode").as_string().as_deref() {
        Some("required") => AckMode::Required,
        Some("never") => AckMode::Never,
        _ => AckMode::Auto,
    };
    let config = TraceConfig {
        max_buffered: num(options, "maxBuffered").map_or(defaults.max_buffered, |n| n.max(1.0) as usize),
        backoff_initial_ms: num(options, "backoffInitialMs").unwrap_or(defaults.backoff_initial_ms),
        backoff_max_ms: num(options, "backoffMaxMs").unwrap_or(defaults.backoff_max_ms),
        close_grace_ms: num(options, "closeGraceMs").unwrap_or(defaults.close_grace_ms),
        ack_mode,
        // At least room for a marker: a smaller limit would refuse every record.
        max_record_bytes: num(options, "maxRecordBytes")
            .map_or(defaults.max_record_bytes, |n| n.max(1024.0) as usize),
    };
    let interval_ms = num(options, "intervalMs").unwrap_or(crate::stats::poll::DEFAULT_INTERVAL_MS);
    (config, interval_ms)
}
