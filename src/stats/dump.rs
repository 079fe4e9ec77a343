//! Reads a collector dump file (fileFormat 3) back into full events and checks the invariants
//! this SDK promises. Used by the tests and `rtcroom-dump`.
//!
//! File: line 1 `RTCStatsDump`, line 2 a JSON metadata object with `"fileFormat": 3`, then one
//! JSON array per line, the last one `["close", null, <code>, {reason, counters}?, <delta>]`
//! written by the collector. Modelled on upstream `readRTCStatsDump` (github.com/rtcstats/rtcstats,
//! `packages/rtcstats-shared/dump.js`): every rule that reader relies on is checked (see
//! [`read_dump`]), plus this SDK's own invariants.

use super::compress::{decompress, TIMESTAMP_KEY};
use super::methods::{decompress_method, CREATE, GET_STATS};
use super::value::Value;

/// Deltas at or above this are absolute epoch times (ms): only the first line may carry one.
pub const ABSOLUTE_THRESHOLD_MS: f64 = 1e11;

/// One event with its method, time and (for getStats) full reports restored.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpEvent {
    /// Absolute time (ms since the epoch).
    pub time: f64,
    pub method: String,
    pub pc: Option<String>,
    pub value: Value,
    pub extra: Vec<Value>,
}

/// A parsed and checked dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    pub metadata: Value,
    /// Events between the metadata and the collector's close line.
    pub events: Vec<DumpEvent>,
    /// The close code of the collector's last line.
    pub close_code: f64,
    /// The close line's object of reason and counters (`Value::Null` when it has none).
    pub close_info: Value,
}

/// Where and why a dump is invalid (line numbers start at 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    pub line: usize,
    pub reason: String,
}

fn fail<T>(line: usize, reason: impl Into<String>) -> Result<T, DumpError> {
    Err(DumpError {
        line,
        reason: reason.into(),
    })
}

/// Builds a dump file as the collector writes it: header, metadata, the socket's lines and the
/// close line (for tests and tools).
pub fn write_dump(lines: &[String], close_code: u16, close_delta: f64) -> String {
    let mut out = String::from("RTCStatsDump\n{\"fileFormat\":3}\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    let close = Value::Array(vec![
        Value::str("close"),
        Value::Null,
        Value::Number(f64::from(close_code)),
        Value::Number(close_delta),
    ]);
    out.push_str(&close.to_json());
    out.push('\n');
    out
}

/// Per-pc decoding state.
struct PcState {
    id: String,
    base: Value,
    /// Compressed report ids seen so far ("0", "1", … in order).
    ids: usize,
}

/// Parses `text` and checks.
///
/// What the reference reader relies on (it stops, or computes garbage times, otherwise): the
/// file starts with `RTCStatsDump\n` exactly; lines are split on `\n` only; line 2 is a JSON
/// object; every other line is empty (skipped) or exactly one JSON value; each event is an
/// array `[method, pc, value, …extra, delta]` of at least 4 items whose **last item is a
/// finite number**, the time delta it adds to its running time (the first one absolute); a
/// getStats value is an object and never a pc's first event (its base is made on the pc's first
/// event). The collector's close line is read the same way.
///
/// This SDK's own invariants: arrays only; `fileFormat` 3; exactly one absolute time (the first
/// event's, >= 1e11) and non-negative deltas; the first event is `create` with a null pc; pc
/// ids are `PC_<n>`; getStats ids are assigned "0", "1", … without gaps and every `*Id`
/// reference in a restored report names a report present in it (or removed earlier); the last
/// line is the collector's close line `["close", null, code, {…}?, delta]`.
pub fn read_dump(text: &str) -> Result<Dump, DumpError> {
    let Some(rest) = text.strip_prefix("RTCStatsDump\n") else {
        return fail(1, "the file does not start with RTCStatsDump and a \\n");
    };
    // A `\r` left at a line's end is JSON whitespace, as for `JSON.parse`.
    let mut lines = rest.split('\n').enumerate().map(|(i, l)| (i + 2, l));
    let metadata = match lines.next() {
        Some((n, line)) => Value::parse(line).or_else(|e| fail(n, format!("metadata: {}", e.reason)))?,
        None => return fail(2, "missing metadata"),
    };
    if metadata.as_object().is_none() {
        return fail(2, "metadata is not an object");
    }
    if metadata.get("fileFormat").and_then(Value::as_f64) != Some(3.0) {
        return fail(2, "metadata.fileFormat is not 3");
    }
    // Only empty lines are skipped: a line of whitespace is not JSON for the reference reader.
    let body: Vec<(usize, &str)> = lines.filter(|(_, l)| !l.is_empty()).collect();
    let Some((&(close_line, close_text), events)) = body.split_last() else {
        return fail(3, "no events and no close line");
    };

    let mut out = Vec::with_capacity(events.len());
    let mut pcs: Vec<PcState> = Vec::new();
    let mut time = 0.0;
    for (index, &(n, line)) in events.iter().enumerate() {
        let parsed = Value::parse(line).or_else(|e| fail(n, format!("not JSON: {}", e.reason)))?;
        let Some(items) = parsed.as_array() else {
            return fail(n, "not an array");
        };
        if items.len() < 4 {
            return fail(n, "fewer than 4 items");
        }
        let Some(method) = decompress_method(&items[0]) else {
            return fail(n, "unknown method");
        };
        let pc = match &items[1] {
            Value::Null => None,
            Value::String(s) if s.strip_prefix("PC_").is_some_and(|d| d.parse::<u32>().is_ok()) => {
                Some(s.clone())
            }
            _ => return fail(n, "pc id is neither null nor PC_<n>"),
        };
        let delta = match items[items.len() - 1].as_f64() {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            _ => return fail(n, "the last item, the time delta, is not a non-negative number"),
        };
        if index == 0 {
            if method != CREATE || pc.is_some() {
                return fail(n, "first event is not create with a null pc");
            }
            if delta < ABSOLUTE_THRESHOLD_MS {
                return fail(n, "first time is not an absolute epoch time");
            }
            time = delta;
        } else {
            if delta >= ABSOLUTE_THRESHOLD_MS {
                return fail(n, "a second absolute timestamp");
            }
            time += delta;
        }
        let mut value = items[2].clone();
        let extra = items[3..items.len() - 1].to_vec();
        if let Some(pc_id) = &pc {
            let known = pcs.iter().position(|p| &p.id == pc_id);
            let state = match known {
                Some(i) => &mut pcs[i],
                None if method == GET_STATS => return fail(n, "getStats is the first event of its pc"),
                None => {
                    pcs.push(PcState {
                        id: pc_id.clone(),
                        base: Value::object(),
                        ids: 0,
                    });
                    let last = pcs.len() - 1;
                    &mut pcs[last]
                }
            };
            if method == GET_STATS {
                let Some(entries) = value.as_object() else {
                    return fail(n, "getStats value is not an object");
                };
                for (key, report) in entries {
                    if key == TIMESTAMP_KEY {
                        continue;
                    }
                    let Ok(id) = key.parse::<usize>() else {
                        return fail(n, format!("report id {key:?}"));
                    };
                    if id > state.ids || (id == state.ids && report.is_null()) {
                        return fail(n, format!("report id {key} skips or nulls an unassigned id"));
                    }
                    if id == state.ids {
                        state.ids += 1;
                    }
                }
                value = decompress(&state.base, &value);
                check_references(&value, state.ids).or_else(|reason| fail(n, reason))?;
                state.base = value.clone();
            }
        } else if method == GET_STATS {
            return fail(n, "getStats without a pc");
        }
        out.push(DumpEvent {
            time,
            method,
            pc,
            value,
            extra,
        });
    }
    if out.is_empty() {
        return fail(close_line, "no events before the close line");
    }

    let close = Value::parse(close_text).or_else(|e| fail(close_line, format!("not JSON: {}", e.reason)))?;
    let valid_delta = |d: &f64| d.is_finite() && *d >= 0.0 && *d < ABSOLUTE_THRESHOLD_MS;
    let (close_code, close_info) = match close.as_array() {
        Some([Value::String(m), Value::Null, Value::Number(code), Value::Number(d)])
            if m == "close" && valid_delta(d) =>
        {
            (*code, Value::Null)
        }
        // The collector's reason and counters go before the delta: the last item is the time.
        Some(
            [Value::String(m), Value::Null, Value::Number(code), info @ Value::Object(_), Value::Number(d)],
        ) if m == "close" && valid_delta(d) => (*code, info.clone()),
        Some([.., last]) if last.as_f64().is_none() => {
            return fail(close_line, "the last item, the time delta, is not a number")
        }
        _ => {
            return fail(
                close_line,
                "last line is not [\"close\", null, code, {…}?, delta]",
            )
        }
    };
    Ok(Dump {
        metadata,
        events: out,
        close_code,
        close_info,
    })
}

/// Every `*Id` string in a report must name a report of the same result, or one removed earlier
/// (`assigned` ids have been given out; they are never reused). Browsers do leave such
/// references, e.g. a codec naming a transport that BUNDLE just removed.
fn check_references(stats: &Value, assigned: usize) -> Result<(), String> {
    let known =
        |target: &str| stats.get(target).is_some() || target.parse::<usize>().is_ok_and(|id| id < assigned);
    for (id, report) in stats.as_object().unwrap_or_default() {
        for (name, value) in report.as_object().unwrap_or_default() {
            if let (true, Value::String(target)) = (name.ends_with("Id"), value) {
                if !known(target) {
                    return Err(format!("report {id}: {name} -> {target} is missing"));
                }
            }
        }
    }
    Ok(())
}
