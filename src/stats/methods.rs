//! The rtcstats method table: traced method names are sent as small numbers.
//!
//! Source: github.com/rtcstats/rtcstats, `packages/rtcstats-shared/compression.js`
//! (`methodTable` and `methodTableDecompression`). The numbers are part of the dump format and
//! must never be reassigned. Custom app events (names starting with `:`) and unknown names are
//! sent as-is.

use super::value::Value;

/// rtcstats-js compresses `getStats` to the string "g" (1 is decompression-only).
pub const GET_STATS: &str = "getStats";
/// The per-socket header and the per-peer-connection constructor event.
pub const CREATE: &str = "create";
pub const SET_CONFIGURATION: &str = "setConfiguration";
pub const CLOSE: &str = "close";

/// (full name, number) as rtcstats-js sends them.
const METHODS: &[(&str, u8)] = &[
    ("createOffer", 2),
    ("createOfferOnSuccess", 3),
    ("createOfferOnFailure", 12),
    ("createAnswer", 4),
    ("createAnswerOnSuccess", 5),
    ("createAnswerOnFailure", 13),
    ("setLocalDescription", 6),
    ("setLocalDescriptionOnSuccess", 7),
    ("setLocalDescriptionOnFailure", 14),
    ("setRemoteDescription", 8),
    ("setRemoteDescriptionOnSuccess", 9),
    ("setRemoteDescriptionOnFailure", 15),
    ("addIceCandidate", 10),
    ("addIceCandidateOnSuccess", 11),
    ("addIceCandidateOnFailure", 16),
    ("onicecandidate", 20),
    ("onicecandidateerror", 21),
    ("ontrack", 22),
    ("onsignalingstatechange", 23),
    ("oniceconnectionstatechange", 24),
    ("onconnectionstatechange", 25),
    ("onicegatheringstatechange", 26),
    ("onnegotiationneeded", 27),
    ("ondatachannel", 28),
    ("addTrack", 30),
    ("addTrackOnSuccess", 31),
    ("addTransceiver", 32),
    ("addTransceiverOnSuccess", 33),
    ("removeTrack", 34),
    ("createDataChannel", 35),
    ("close", 36),
    ("restartIce", 37),
    ("setConfiguration", 38),
    ("create", 39),
    ("constraints", 40),
    ("setCodecPreferences", 41),
    ("setHeaderExtensionsToNegotiate", 42),
    ("setParameters", 50),
    ("replaceTrack", 51),
    ("navigator.mediaDevices.getUserMedia", 60),
    ("navigator.mediaDevices.getUserMediaOnSuccess", 61),
    // 62 is unused upstream: a duplicate key made getUserMediaOnFailure 65 in every release.
    ("navigator.mediaDevices.getDisplayMedia", 63),
    ("navigator.mediaDevices.getDisplayMediaOnSuccess", 64),
    ("navigator.mediaDevices.getUserMediaOnFailure", 65),
    ("navigator.mediaDevices.enumerateDevices", 66),
    ("navigator.mediaDevices.ondevicechange", 67),
    ("MediaStreamTrack.stop", 70),
    ("MediaStreamTrack.applyConstraints", 71),
    ("MediaStreamTrack.onended", 72),
    ("MediaStreamTrack.onmute", 73),
    ("MediaStreamTrack.onunmute", 74),
    ("HTMLMediaElement.resize", 80),
];

/// Numbers only ever decompressed (upstream `methodTableDecompression`).
const DECOMPRESS_ONLY: &[(&str, u8)] = &[
    ("getStats", 1),
    ("navigator.mediaDevices.getDisplayMediaOnFailure", 68),
];

/// The wire form of a method name: its number, "g" for getStats, else the name itself.
pub fn compress_method(name: &str) -> Value {
    if name == GET_STATS {
        return Value::str("g");
    }
    match METHODS.iter().find(|(n, _)| *n == name) {
        Some((_, id)) => Value::Number(f64::from(*id)),
        None => Value::str(name),
    }
}

/// The full method name of a wire method (numbers, "g" or a plain name). None for other kinds
/// or unknown numbers.
pub fn decompress_method(wire: &Value) -> Option<String> {
    match wire {
        Value::String(s) if s == "g" => Some(GET_STATS.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => METHODS
            .iter()
            .chain(DECOMPRESS_ONLY)
            .find(|(_, id)| f64::from(*id) == *n)
            .map(|(name, _)| (*name).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_unknown_and_custom() {
        assert_eq!(compress_method("create"), Value::Number(39.0));
        assert_eq!(compress_method("getStats"), Value::str("g"));
        assert_eq!(
            compress_method("navigator.mediaDevices.getUserMediaOnFailure"),
            Value::Number(65.0)
        );
        assert_eq!(compress_method(":myEvent"), Value::str(":myEvent"));
        assert_eq!(
            decompress_method(&Value::Number(1.0)).as_deref(),
            Some("getStats")
        );
        assert_eq!(decompress_method(&Value::Number(99.0)), None);
        for (name, _) in METHODS {
            assert_eq!(decompress_method(&compress_method(name)).as_deref(), Some(*name));
        }
    }
}
