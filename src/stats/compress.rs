//! getStats delta compression, rtcstats dump fileFormat 3.
//!
//! Algorithm and tables follow github.com/rtcstats/rtcstats,
//! `packages/rtcstats-shared/compression.js` (`statsCompression`, `statsDecompression`,
//! `statsTypeTable`, `statsPropertyTable`, `statsPropertyTableDecompression`). The numbers are
//! part of the format and must never be reassigned. Output key order follows JS object
//! semantics (integer-like keys first, ascending), so the JSON text is the one rtcstats-js sends.
//!
//! Two deliberate differences from rtcstats-js, both only visible in corner cases and both still
//! read back by the upstream reader: certificate reports are recognised by their *raw* `type`
//! (upstream looks at the delta, which loses `type` after the first poll), and `*Id` references
//! are rewritten even when a raw id happens to equal its new id.

use std::collections::BTreeMap;

use super::value::Value;

/// `type` values (upstream `statsTypeTable`).
const TYPES: &[(&str, u8)] = &[
    ("inbound-rtp", 1),
    ("outbound-rtp", 2),
    ("remote-inbound-rtp", 3),
    ("remote-outbound-rtp", 4),
    ("transport", 5),
    ("candidate-pair", 6),
    ("local-candidate", 7),
    ("remote-candidate", 8),
    ("data-channel", 9),
    ("peer-connection", 10),
    ("certificate", 11),
    ("media-source", 12),
    ("media-playout", 13),
    ("codec", 14),
];

/// Property names (upstream `statsPropertyTable`; `timestamp` is the string "t").
const PROPERTIES: &[(&str, u8)] = &[
    ("payloadType", 4),
    ("transportId", 5),
    ("mimeType", 6),
    ("clockRate", 7),
    ("channels", 8),
    ("sdpFmtpLine", 9),
    ("ssrc", 10),
    ("kind", 11),
    ("codecId", 12),
    ("packetsReceived", 14),
    ("packetsLost", 15),
    ("jitter", 16),
    ("trackIdentifier", 17),
    ("mid", 18),
    ("remoteId", 19),
    ("framesDecoded", 20),
    ("keyFramesDecoded", 21),
    ("framesDropped", 22),
    ("frameWidth", 23),
    ("frameHeight", 24),
    ("framesPerSecond", 25),
    ("qpSum", 26),
    ("totalDecodeTime", 27),
    ("totalInterFrameDelay", 28),
    ("totalSquaredInterFrameDelay", 29),
    ("pauseCount", 30),
    ("totalPausesDuration", 31),
    ("freezeCount", 32),
    ("totalFreezesDuration", 33),
    ("lastPacketReceivedTimestamp", 34),
    ("headerBytesReceived", 35),
    ("packetsDiscarded", 36),
    ("fecPacketsReceived", 37),
    ("fecPacketsDiscarded", 38),
    ("fecBytesReceived", 39),
    ("fecSsrc", 40),
    ("bytesReceived", 41),
    ("nackCount", 42),
    ("firCount", 43),
    ("pliCount", 44),
    ("totalProcessingDelay", 45),
    ("estimatedPlayoutTimestamp", 46),
    ("jitterBufferDelay", 47),
    ("jitterBufferTargetDelay", 48),
    ("jitterBufferEmittedCount", 49),
    ("jitterBufferMinimumDelay", 50),
    ("totalSamplesReceived", 51),
    ("concealedSamples", 52),
    ("silentConcealedSamples", 53),
    ("concealmentEvents", 54),
    ("insertedSamplesForDeceleration", 55),
    ("removedSamplesForAcceleration", 56),
    ("audioLevel", 57),
    ("totalAudioEnergy", 58),
    ("totalSamplesDuration", 59),
    ("framesReceived", 60),
    ("decoderImplementation", 61),
    ("playoutId", 62),
    ("powerEfficientDecoder", 63),
    ("framesAssembledFromMultiplePackets", 64),
    ("totalAssemblyTime", 65),
    ("contentType", 66),
    ("googTimingFrameInfo", 67),
    ("retransmittedPacketsReceived", 68),
    ("retransmittedBytesReceived", 69),
    ("rtxSsrc", 70),
    ("totalCorruptionProbability", 71),
    ("totalSquaredCorruptionProbability", 72),
    ("corruptionMeasurements", 73),
    ("localId", 74),
    ("roundTripTime", 75),
    ("totalRoundTripTime", 76),
    ("fractionLost", 77),
    ("roundTripTimeMeasurements", 78),
    ("packetsSent", 79),
    ("bytesSent", 80),
    ("mediaSourceId", 81),
    ("rid", 82),
    ("encodingIndex", 83),
    ("headerBytesSent", 84),
    ("retransmittedPacketsSent", 85),
    ("retransmittedBytesSent", 86),
    ("targetBitrate", 87),
    ("totalEncodedBytesTarget", 88),
    ("framesSent", 89),
    ("hugeFramesSent", 90),
    ("framesEncoded", 91),
    ("keyFramesEncoded", 92),
    ("totalEncodeTime", 93),
    ("totalPacketSendDelay", 94),
    ("qualityLimitationReason", 95),
    ("qualityLimitationDurations", 96),
    ("qualityLimitationResolutionChanges", 97),
    ("encoderImplementation", 98),
    ("powerEfficientEncoder", 99),
    ("active", 100),
    ("scalabilityMode", 101),
    ("remoteTimestamp", 102),
    ("reportsSent", 103),
    ("echoReturnLoss", 104),
    ("echoReturnLossEnhancement", 105),
    ("width", 106),
    ("height", 107),
    ("frames", 108),
    ("synthesizedSamplesDuration", 109),
    ("synthesizedSamplesEvents", 110),
    ("totalPlayoutDelay", 111),
    ("totalSamplesCount", 112),
    ("dataChannelsOpened", 113),
    ("dataChannelsClosed", 114),
    ("label", 115),
    ("protocol", 116),
    ("dataChannelIdentifier", 117),
    ("state", 118),
    ("messagesSent", 119),
    ("messagesReceived", 120),
    ("iceRole", 121),
    ("iceLocalUsernameFragment", 122),
    ("dtlsState", 123),
    ("iceState", 124),
    ("selectedCandidatePairId", 125),
    ("localCertificateId", 126),
    ("remoteCertificateId", 127),
    ("tlsVersion", 128),
    ("dtlsCipher", 129),
    ("dtlsRole", 130),
    ("srtpCipher", 131),
    ("selectedCandidatePairChanges", 132),
    ("rtcpTransportStatsId", 133),
    ("address", 134),
    ("port", 135),
    ("candidateType", 136),
    ("priority", 137),
    ("url", 138),
    ("relayProtocol", 139),
    ("foundation", 140),
    ("relatedAddress", 141),
    ("relatedPort", 142),
    ("usernameFragment", 143),
    ("tcpType", 144),
    ("networkType", 145),
    ("localCandidateId", 148),
    ("remoteCandidateId", 149),
    ("nominated", 150),
    ("lastPacketSentTimestamp", 151),
    ("currentRoundTripTime", 152),
    ("availableOutgoingBitrate", 153),
    ("availableIncomingBitrate", 154),
    ("requestsReceived", 155),
    ("requestsSent", 156),
    ("responsesReceived", 157),
    ("responsesSent", 158),
    ("consentRequestsSent", 159),
    ("packetsDiscardedOnSend", 160),
    ("bytesDiscardedOnSend", 161),
    ("fingerprint", 163),
    ("fingerprintAlgorithm", 164),
    ("base64Certificate", 165),
    ("issuerCertificateId", 166),
];

/// Numbers upstream only decompresses (`statsPropertyTableDecompression`); we send these names
/// uncompressed, as rtcstats-js does.
const PROPERTIES_DECOMPRESS_ONLY: &[(&str, u8)] = &[
    ("psnrMeasurements", 167),
    ("psnrSum", 168),
    ("packetsReceivedWithEct1", 169),
    ("packetsReceivedWithCe", 170),
    ("packetsReportedAsLost", 171),
    ("packetsReportedAsLostButRecovered", 172),
    ("packetsWithBleachedEct1Marking", 173),
    ("packetsSentWithEct1", 174),
    ("ccfbMessagesSent", 175),
    ("ccfbMessagesReceived", 176),
];

/// Properties rtcstats drops from every report (obsolete or redundant).
const DROPPED: &[&str] = &["isRemote", "ip", "mediaType", "writable"];

/// Top-level key carrying the newest report timestamp.
pub const TIMESTAMP_KEY: &str = "t";

/// The wire key for a stats property name (a number as a string, "t", or the name itself).
pub fn compress_property(name: &str) -> String {
    if name == "timestamp" {
        return TIMESTAMP_KEY.to_string();
    }
    match PROPERTIES.iter().find(|(n, _)| *n == name) {
        Some((_, id)) => id.to_string(),
        None => name.to_string(),
    }
}

/// The property name for a wire key (unknown keys are returned unchanged).
pub fn decompress_property(key: &str) -> String {
    if key == TIMESTAMP_KEY {
        return "timestamp".to_string();
    }
    key.parse::<u8>()
        .ok()
        .filter(|id| id.to_string() == key)
        .and_then(|id| {
            PROPERTIES
                .iter()
                .chain(PROPERTIES_DECOMPRESS_ONLY)
                .find(|(_, n)| *n == id)
        })
        .map_or_else(|| key.to_string(), |(name, _)| (*name).to_string())
}

/// The wire value of a stats `type`.
pub fn compress_type(type_name: &str) -> Value {
    match TYPES.iter().find(|(n, _)| *n == type_name) {
        Some((_, id)) => Value::Number(f64::from(*id)),
        None => Value::str(type_name),
    }
}

/// The `type` name of a wire value (unknown values are returned unchanged).
pub fn decompress_type(wire: &Value) -> Value {
    match wire {
        Value::Number(n) => TYPES
            .iter()
            .find(|(_, id)| f64::from(*id) == *n)
            .map_or_else(|| wire.clone(), |(name, _)| Value::str(name)),
        _ => wire.clone(),
    }
}

/// Whether JS treats `key` as an array index (such keys come first, ascending, in a JS object).
fn is_index_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 10
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'))
        && key.parse::<u64>().is_ok_and(|n| n < u64::from(u32::MAX))
}

/// Reorders entries the way a JS object enumerates them: index keys ascending, then the rest in
/// insertion order.
pub fn js_key_order(entries: &mut [(String, Value)]) {
    let rank = |key: &str| match is_index_key(key) {
        true => key.parse::<u64>().unwrap_or(0),
        false => u64::MAX,
    };
    // Insertion sort: stable, linear on the inputs seen here (ids are either all non-index
    // strings or already nearly ascending), and a fraction of the wasm of std's sort (~6 KB).
    for i in 1..entries.len() {
        let r = rank(&entries[i].0);
        let mut j = i;
        while j > 0 && rank(&entries[j - 1].0) > r {
            entries.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// JS `===` on values from JSON: objects and arrays are never identical.
fn strict_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => a == b,
    }
}

/// A report being compressed: (raw id, raw `type`, remaining properties).
type DeltaReport = (String, Option<String>, Vec<(String, Value)>);

/// The delta compressor of one peer connection on one socket: the previous raw report and the
/// id map live here. Start a new one for every socket so each dump decodes on its own.
#[derive(Debug, Default, Clone)]
pub struct StatsCompressor {
    base: Vec<(String, Value)>,
    ids: BTreeMap<String, String>,
}

impl StatsCompressor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compresses one raw getStats result (an object of reports keyed by id) against the
    /// previous one and makes it the new base.
    pub fn compress(&mut self, raw: &Value) -> Value {
        let mut reports: Vec<(String, Value)> = raw.as_object().map(<[_]>::to_vec).unwrap_or_default();
        js_key_order(&mut reports);

        // Reports that were transmitted before and are gone now are sent as null.
        let removed: Vec<String> = self
            .base
            .iter()
            .filter(|(id, _)| self.ids.contains_key(id) && !reports.iter().any(|(r, _)| r == id))
            .map(|(id, _)| id.clone())
            .collect();

        let mut delta: Vec<DeltaReport> = Vec::new();
        for (id, report) in &reports {
            let Value::Object(props) = report else { continue };
            let raw_type = report.get("type").and_then(Value::as_str).map(str::to_string);
            let mut props = props.clone();
            props.retain(|(name, _)| name != "id");
            if let Some((_, base)) = self.base.iter().find(|(b, _)| b == id) {
                let had_props = !props.is_empty();
                props.retain_mut(|(name, value)| keep_changed(base.get(name), value));
                if had_props && props.is_empty() {
                    continue;
                }
            }
            delta.push((id.clone(), raw_type, props));
        }

        // The newest timestamp moves to the top level; reports carrying it lose theirs.
        let newest = delta
            .iter()
            .filter_map(|(_, _, props)| props.iter().find(|(n, _)| n == "timestamp")?.1.as_f64())
            .fold(None, |max: Option<f64>, t| Some(max.map_or(t, |m| m.max(t))));
        if let Some(newest) = newest {
            delta.retain_mut(|(_, _, props)| {
                let before = props.len();
                props.retain(|(n, v)| !(n == "timestamp" && v.as_f64() == Some(newest)));
                !(props.is_empty() && before > 0)
            });
        }

        // Certificates and obsolete properties are dropped.
        delta.retain(|(_, raw_type, _)| raw_type.as_deref() != Some("certificate"));
        for (_, raw_type, props) in &mut delta {
            let transport = raw_type.as_deref() == Some("transport");
            props.retain(|(n, _)| {
                !DROPPED.contains(&n.as_str())
                    && !(transport && (n == "localCertificateId" || n == "remoteCertificateId"))
            });
        }

        // Ids become "0", "1", … in first-seen order and are never reused.
        for (id, _, _) in &delta {
            if !self.ids.contains_key(id) {
                let next = self.ids.len().to_string();
                self.ids.insert(id.clone(), next);
            }
        }

        let mut out: Vec<(String, Value)> = Vec::with_capacity(delta.len() + removed.len() + 1);
        for (id, _, props) in delta {
            let new_id = self.ids.get(&id).cloned().unwrap_or(id);
            out.push((new_id, Value::Object(self.compress_report(props))));
        }
        for id in removed {
            if let Some(new_id) = self.ids.get(&id) {
                out.push((new_id.clone(), Value::Null));
            }
        }
        js_key_order(&mut out);
        if let Some(newest) = newest {
            out.push((TIMESTAMP_KEY.to_string(), Value::Number(newest)));
        }
        self.base = reports;
        Value::Object(out)
    }

    /// Rewrites `*Id` references to the new ids and compresses property names and `type`.
    fn compress_report(&self, props: Vec<(String, Value)>) -> Vec<(String, Value)> {
        let mut kept = Vec::with_capacity(props.len());
        let mut renamed = Vec::new();
        for (name, value) in props {
            let value = if name.ends_with("Id") {
                let target = match &value {
                    Value::String(s) => self.ids.get(s),
                    other => self.ids.get(&other.to_json()),
                };
                // An unresolvable reference is left out, as JSON.stringify drops `undefined`.
                match target {
                    Some(new_id) => Value::str(new_id),
                    None => continue,
                }
            } else if name == "type" {
                match &value {
                    Value::String(t) => compress_type(t),
                    _ => value,
                }
            } else {
                value
            };
            let key = compress_property(&name);
            if key == name {
                kept.push((name, value));
            } else {
                renamed.push((key, value));
            }
        }
        kept.extend(renamed);
        js_key_order(&mut kept);
        kept
    }
}

/// Delta rule for one property: false if it equals the base (dropped), true if it must be sent.
/// Objects are compared one level deep and keep only their changed members.
fn keep_changed(base: Option<&Value>, value: &mut Value) -> bool {
    match value {
        Value::Array(_) => base.is_none_or(|b| b.to_json() != value.to_json()),
        Value::Object(members) => {
            if let Some(base @ Value::Object(_)) = base {
                members.retain(|(k, v)| !base.get(k).is_some_and(|b| strict_equal(b, v)));
            }
            !members.is_empty()
        }
        _ => base.is_none_or(|b| !strict_equal(b, value)),
    }
}

/// Restores full reports from the previous full reports (`base`, keyed by the short ids) and
/// one compressed delta, as upstream `statsDecompression` does.
pub fn decompress(base: &Value, delta: &Value) -> Value {
    let mut stats: Vec<(String, Value)> = Vec::new();
    let mut timestamp = None;
    for (key, report) in delta.as_object().unwrap_or_default() {
        if key == TIMESTAMP_KEY {
            timestamp = report.as_f64();
            continue;
        }
        let restored = match report {
            Value::Object(props) => {
                let mut out = Value::object();
                for (name, value) in props {
                    let name = decompress_property(name);
                    let value = if name == "type" {
                        decompress_type(value)
                    } else {
                        value.clone()
                    };
                    out.set(&name, value);
                }
                out
            }
            other => other.clone(),
        };
        stats.push((key.clone(), restored));
    }
    let mut result = Value::object();
    for (id, base_report) in base.as_object().unwrap_or_default() {
        let slot = stats.iter().position(|(k, _)| k == id);
        let restored = match slot.map(|i| &stats[i].1) {
            Some(Value::Null) => continue,
            None => {
                let mut copy = base_report.clone();
                if let Some(t) = timestamp {
                    copy.set("timestamp", Value::Number(t));
                }
                copy
            }
            Some(new) => {
                let has_own_timestamp = new.get("timestamp").is_some();
                let mut merged = new.clone();
                for (name, old) in base_report.as_object().unwrap_or_default() {
                    match (merged.get(name), old) {
                        (None, _) => merged.set(name, old.clone()),
                        (Some(Value::Object(fresh)), Value::Object(_)) => {
                            let mut object = old.clone();
                            for (k, v) in fresh.clone() {
                                object.set(&k, v);
                            }
                            merged.set(name, object);
                        }
                        _ => {}
                    }
                }
                if let (false, Some(t)) = (has_own_timestamp, timestamp) {
                    merged.set("timestamp", Value::Number(t));
                }
                merged
            }
        };
        result.set(id, restored);
    }
    for (id, report) in stats {
        if result.get(&id).is_some() || report.is_null() {
            continue;
        }
        let mut report = report;
        if report.get("timestamp").is_none() {
            if let Some(t) = timestamp {
                report.set("timestamp", Value::Number(t));
            }
        }
        result.set(&id, report);
    }
    result
}

/// A copy of an RTCConfiguration without TURN credentials (`iceServers[].credential` and
/// `.username`), for `create` and `setConfiguration` events.
pub fn sanitize_configuration(config: &Value) -> Value {
    let mut copy = config.clone();
    if let Some(Value::Array(servers)) = copy.get_mut("iceServers") {
        for server in servers {
            server.remove("credential");
            server.remove("username");
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        Value::parse(s).unwrap()
    }

    #[test]
    fn tables_round_trip() {
        for (name, _) in PROPERTIES {
            assert_eq!(decompress_property(&compress_property(name)), *name);
        }
        for (name, _) in TYPES {
            assert_eq!(decompress_type(&compress_type(name)), Value::str(name));
        }
        assert_eq!(compress_property("timestamp"), "t");
        assert_eq!(compress_property("psnrSum"), "psnrSum");
        assert_eq!(decompress_property("168"), "psnrSum");
        assert_eq!(decompress_property("0168"), "0168");
    }

    #[test]
    fn identical_input_compresses_to_empty() {
        let stats = parse(r#"{"a":{"id":"a","x":1}}"#);
        let mut c = StatsCompressor::new();
        c.compress(&stats);
        assert_eq!(c.compress(&stats).to_json(), "{}");
    }

    #[test]
    fn js_order_puts_index_keys_first() {
        let mut v = vec![
            ("b".to_string(), Value::Null),
            ("10".to_string(), Value::Null),
            ("2".to_string(), Value::Null),
            ("01".to_string(), Value::Null),
        ];
        js_key_order(&mut v);
        let keys: Vec<_> = v.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["2", "10", "b", "01"]);
    }

    #[test]
    fn sanitizes_credentials() {
        let config = parse(
            r#"{"iceServers":[{"urls":"turn:x","username":"u","credential":"c"}],"bundlePolicy":"max-bundle"}"#,
        );
        assert_eq!(
            sanitize_configuration(&config).to_json(),
            r#"{"iceServers":[{"urls":"turn:x"}],"bundlePolicy":"max-bundle"}"#
        );
    }

    #[test]
    fn hostile_shapes_do_not_panic() {
        let mut c = StatsCompressor::new();
        for text in [
            "null",
            "[]",
            "5",
            r#"{"a":5}"#,
            r#"{"a":{"fooId":{"x":1},"v":null}}"#,
            r#"{"a":{"v":[1]}}"#,
        ] {
            let delta = c.compress(&parse(text));
            let _ = decompress(&parse("{}"), &delta);
        }
    }
}
