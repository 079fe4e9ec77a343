//! What an in-page UI shows, computed from raw (uncompressed) getStats results.
//!
//! Rates need two samples: pass the previous result too. Counters are matched by report id;
//! a counter that went backwards (a restarted stream) contributes nothing.

use super::value::Value;

/// One medium's numbers. None: not measurable from the samples given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaSummary {
    /// Received bits per second (sum of inbound-rtp `bytesReceived` deltas).
    pub inbound_bitrate_bps: Option<f64>,
    /// Sent bits per second (sum of outbound-rtp `bytesSent` deltas).
    pub outbound_bitrate_bps: Option<f64>,
    /// Fraction (0..1) of inbound packets lost: between the samples, or since the start
    /// without a previous sample.
    pub inbound_packet_loss: Option<f64>,
    /// Fraction (0..1) the remote side reports lost (remote-inbound-rtp `fractionLost`, worst).
    pub outbound_packet_loss: Option<f64>,
    /// Inbound jitter in ms (worst stream).
    pub jitter_ms: Option<f64>,
    /// Frames per second received (video only).
    pub inbound_fps: Option<f64>,
    /// Frames per second sent (video only; highest layer).
    pub outbound_fps: Option<f64>,
}

/// The whole in-page summary of one peer connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `candidateType` of the selected pair's local candidate: host, srflx, prflx or relay.
    pub local_candidate_type: Option<String>,
    /// `candidateType` of the selected pair's remote candidate.
    pub remote_candidate_type: Option<String>,
    /// Round-trip time in ms (selected pair, else RTCP).
    pub rtt_ms: Option<f64>,
    pub audio: MediaSummary,
    pub video: MediaSummary,
}

fn reports(stats: &Value) -> impl Iterator<Item = (&str, &Value)> {
    stats
        .as_object()
        .unwrap_or_default()
        .iter()
        .map(|(id, r)| (id.as_str(), r))
}

fn of_type<'a>(stats: &'a Value, type_name: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
    reports(stats).filter(move |(_, r)| r.get("type").and_then(Value::as_str) == Some(type_name))
}

fn num(report: &Value, key: &str) -> Option<f64> {
    report.get(key).and_then(Value::as_f64).filter(|n| n.is_finite())
}

fn kind(report: &Value) -> Option<&str> {
    report
        .get("kind")
        .or_else(|| report.get("mediaType"))
        .and_then(Value::as_str)
}

fn report_by_id<'a>(stats: &'a Value, id: &str) -> Option<&'a Value> {
    stats.get(id).or_else(|| {
        reports(stats)
            .find(|(_, r)| r.get("id").and_then(Value::as_str) == Some(id))
            .map(|(_, r)| r)
    })
}

/// The selected candidate pair: the transport's `selectedCandidatePairId`, else a pair
/// flagged `selected` (Firefox), else a nominated succeeded one.
fn selected_pair(stats: &Value) -> Option<&Value> {
    let from_transport = of_type(stats, "transport")
        .filter_map(|(_, t)| t.get("selectedCandidatePairId").and_then(Value::as_str))
        .find_map(|id| report_by_id(stats, id));
    from_transport
        .or_else(|| {
            of_type(stats, "candidate-pair")
                .map(|(_, p)| p)
                .find(|p| p.get("selected") == Some(&Value::Bool(true)))
        })
        .or_else(|| {
            of_type(stats, "candidate-pair").map(|(_, p)| p).find(|p| {
                p.get("nominated") == Some(&Value::Bool(true))
                    && p.get("state").and_then(Value::as_str) == Some("succeeded")
            })
        })
}

fn candidate_type(stats: &Value, pair: &Value, key: &str) -> Option<String> {
    let id = pair.get(key)?.as_str()?;
    Some(
        report_by_id(stats, id)?
            .get("candidateType")?
            .as_str()?
            .to_string(),
    )
}

/// Per-stream (delta of `counter`, delta seconds) between the two samples.
fn deltas<'a>(
    previous: Option<&'a Value>,
    current: &'a Value,
    type_name: &'a str,
    medium: &'a str,
    counter: &'a str,
) -> impl Iterator<Item = (f64, f64)> + 'a {
    of_type(current, type_name)
        .filter(move |(_, r)| kind(r) == Some(medium))
        .filter_map(move |(id, r)| {
            let before = report_by_id(previous?, id)?;
            let dv = num(r, counter)? - num(before, counter)?;
            let dt = (num(r, "timestamp")? - num(before, "timestamp")?) / 1000.0;
            (dv >= 0.0 && dt > 0.0).then_some((dv, dt))
        })
}

fn bitrate(
    previous: Option<&Value>,
    current: &Value,
    type_name: &str,
    medium: &str,
    counter: &str,
) -> Option<f64> {
    deltas(previous, current, type_name, medium, counter)
        .map(|(bytes, secs)| bytes * 8.0 / secs)
        .fold(None, |sum, rate| Some(sum.unwrap_or(0.0) + rate))
}

fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

fn inbound_loss(previous: Option<&Value>, current: &Value, medium: &str) -> Option<f64> {
    let (mut lost, mut received, mut any) = (0.0, 0.0, false);
    for (id, r) in of_type(current, "inbound-rtp").filter(|(_, r)| kind(r) == Some(medium)) {
        let (Some(l), Some(p)) = (num(r, "packetsLost"), num(r, "packetsReceived")) else {
            continue;
        };
        let base = previous.and_then(|prev| report_by_id(prev, id));
        let (l0, p0) = match base {
            Some(b) => (
                num(b, "packetsLost").unwrap_or(0.0),
                num(b, "packetsReceived").unwrap_or(0.0),
            ),
            None => (0.0, 0.0),
        };
        if p < p0 {
            continue;
        }
        lost += l - l0;
        received += p - p0;
        any = true;
    }
    let total = lost.max(0.0) + received;
    (any && total > 0.0).then(|| (lost.max(0.0) / total).clamp(0.0, 1.0))
}

fn fps(
    previous: Option<&Value>,
    current: &Value,
    type_name: &str,
    frames_counter: &str,
    combine_max: bool,
) -> Option<f64> {
    let reported = of_type(current, type_name)
        .filter(|(_, r)| kind(r) == Some("video"))
        .filter_map(|(_, r)| num(r, "framesPerSecond"));
    let reported = if combine_max {
        max(reported)
    } else {
        reported.fold(None, |s, v| Some(s.unwrap_or(0.0) + v))
    };
    reported.or_else(|| {
        let rates = deltas(previous, current, type_name, "video", frames_counter).map(|(f, s)| f / s);
        if combine_max {
            max(rates)
        } else {
            rates.fold(None, |s, v| Some(s.unwrap_or(0.0) + v))
        }
    })
}

fn media(previous: Option<&Value>, current: &Value, medium: &str) -> MediaSummary {
    let video = medium == "video";
    MediaSummary {
        inbound_bitrate_bps: bitrate(previous, current, "inbound-rtp", medium, "bytesReceived"),
        outbound_bitrate_bps: bitrate(previous, current, "outbound-rtp", medium, "bytesSent"),
        inbound_packet_loss: inbound_loss(previous, current, medium),
        outbound_packet_loss: max(of_type(current, "remote-inbound-rtp")
            .filter(|(_, r)| kind(r) == Some(medium))
            .filter_map(|(_, r)| num(r, "fractionLost"))),
        jitter_ms: max(of_type(current, "inbound-rtp")
            .filter(|(_, r)| kind(r) == Some(medium))
            .filter_map(|(_, r)| num(r, "jitter"))
            .map(|j| j * 1000.0)),
        inbound_fps: if video {
            fps(previous, current, "inbound-rtp", "framesDecoded", false)
        } else {
            None
        },
        outbound_fps: if video {
            fps(previous, current, "outbound-rtp", "framesEncoded", true)
        } else {
            None
        },
    }
}

/// Summarizes `current` (one raw getStats result: report id → report), using `previous` (the
/// raw result before it) for rates.
pub fn summarize(previous: Option<&Value>, current: &Value) -> Summary {
    let pair = selected_pair(current);
    let rtt_ms = pair
        .and_then(|p| num(p, "currentRoundTripTime"))
        .or_else(|| max(of_type(current, "remote-inbound-rtp").filter_map(|(_, r)| num(r, "roundTripTime"))))
        .map(|s| s * 1000.0);
    Summary {
        local_candidate_type: pair.and_then(|p| candidate_type(current, p, "localCandidateId")),
        remote_candidate_type: pair.and_then(|p| candidate_type(current, p, "remoteCandidateId")),
        rtt_ms,
        audio: media(previous, current, "audio"),
        video: media(previous, current, "video"),
    }
}
