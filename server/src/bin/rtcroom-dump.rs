//! `rtcroom-dump [--events] FILE...`: reads collector dumps (`docs/stats-format.md`) with the
//! SDK's reader (`rtcroom::stats::dump::read_dump`: restores getStats, checks the invariants) and
//! prints one JSON line per file:
//!
//! ```text
//! {"file":…,"ok":true,"generation":G,"socket":K,"firstSeq":S,"startTime":…,"events":N,
//!  "methods":{"<method>":count,…},"pcs":{"PC_0":{"<method>":count}},"getStats":{"PC_0":n},"closeCode":c,
//!  "close":{"reason":…,"malformed":n,"tooLarge":n,"rateLimited":n}}
//! {"file":…,"ok":false,"line":L,"reason":"…"}
//! ```
//!
//! `events` counts every event between the metadata and the collector's close line, the header
//! included (so it equals the collector's last possible ack). `generation`, `socket` and
//! `firstSeq` come from the header's extra object; null when it has none (dumps of other
//! clients). With `--events`, `"list":[[seq|null, method, pc|null], …]` names every event
//! after the header, `"custom"` the app's `:name` events with their values and `"media"` the
//! `navigator.mediaDevices.*` / `MediaStreamTrack.*` events as [method, value, extra]. `seq`
//! counts up from `firstSeq` for every traced message; `:resume` markers carry none (null),
//! and the collector's close line is not an event.
//!
//! Exit code 0 when every file is ok, 1 otherwise (2 for a usage error). Unreadable files are
//! reported as not ok (`line` 0).

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Parser;
use rtcroom::stats::{dump::read_dump, methods::GET_STATS, trace::RESUME_EVENT, Value};
use serde::Serialize;
use serde_json::Value as Json;

/// Reads rtcroom collector dumps and prints one JSON summary line per file.
#[derive(Debug, Parser)]
#[command(name = "rtcroom-dump", version)]
struct Args {
    /// Also list every event after the header as [seq, method, pc].
    #[arg(long)]
    events: bool,
    /// Dump files (`*.rtcstats`) written by rtcroom-server's /rtcstats collector.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    file: String,
    ok: bool,
    generation: Json,
    /// The client's trace id (`traceId` in the header's client info): the same for every dump
    /// of one `StatsTrace`, across generations and reconnects.
    trace_id: Json,
    socket: Json,
    first_seq: Json,
    start_time: Json,
    events: usize,
    methods: BTreeMap<String, u64>,
    pcs: BTreeMap<String, BTreeMap<String, u64>>,
    get_stats: BTreeMap<String, u64>,
    close_code: Json,
    /// The close line's reason and counters (`{"reason", "malformed", "tooLarge",
    /// "rateLimited"}` from rtcroom-server), or null.
    close: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Vec<(Json, String, Option<String>)>>,
    /// With `--events`: the app's custom events (`:name`) with their values.
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<Vec<(String, Json)>>,
    /// With `--events`: media events (`navigator.mediaDevices.*`, `MediaStreamTrack.*`) as
    /// [method, value, extra].
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<Vec<(String, Json, Json)>>,
}

#[derive(Debug, Serialize)]
struct Failure {
    file: String,
    ok: bool,
    line: usize,
    reason: String,
}

/// A JSON number: an integer when the value is one (seq 3, not 3.0).
fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

fn field(object: Option<&Value>, key: &str) -> Json {
    object
        .and_then(|o| o.get(key))
        .and_then(Value::as_f64)
        .map_or(Json::Null, number)
}

/// The summary line of one file.
fn summarize(path: &Path, with_events: bool) -> Result<Summary, Failure> {
    let file = path.display().to_string();
    let failure = |line, reason: String| Failure {
        file: file.clone(),
        ok: false,
        line,
        reason,
    };
    let text = std::fs::read(path).map_err(|err| failure(0, format!("cannot read: {err}")))?;
    let text = String::from_utf8(text).map_err(|err| failure(0, format!("not UTF-8: {err}")))?;
    let dump = read_dump(&text).map_err(|err| failure(err.line, err.reason))?;

    // read_dump guarantees at least one event, the header (`create`, pc null).
    let header = dump.events.first().and_then(|e| e.extra.first());
    let first_seq = header.and_then(|h| h.get("seq")).and_then(Value::as_f64);
    let mut methods = BTreeMap::new();
    let mut pcs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut get_stats = BTreeMap::new();
    let mut list = Vec::new();
    let mut custom = Vec::new();
    let mut media = Vec::new();
    let mut next_seq = first_seq;
    for (index, event) in dump.events.iter().enumerate() {
        *methods.entry(event.method.clone()).or_insert(0) += 1;
        // The trace marks a pc's first event on a socket with `:resume` (unless it is its
        // `create`); an app's own `:resume` event for a pc already seen is a traced message.
        let mut marker = false;
        if let Some(pc) = &event.pc {
            let counts = pcs.entry(pc.clone()).or_default();
            marker = event.method == RESUME_EVENT && counts.is_empty();
            *counts.entry(event.method.clone()).or_insert(0) += 1;
            if event.method == GET_STATS {
                *get_stats.entry(pc.clone()).or_insert(0) += 1;
            }
        }
        if index == 0 || !with_events {
            continue;
        }
        let seq = if marker {
            Json::Null
        } else {
            let seq = next_seq;
            next_seq = next_seq.map(|s| s + 1.0);
            seq.map_or(Json::Null, number)
        };
        let json = |v: &Value| serde_json::from_str(&v.to_json()).unwrap_or(Json::Null);
        if event.method.starts_with(':') && !marker {
            custom.push((event.method.clone(), json(&event.value)));
        }
        if event.method.starts_with("navigator.mediaDevices.")
            || event.method.starts_with("MediaStreamTrack.")
        {
            let extra = json(&Value::Array(event.extra.clone()));
            media.push((event.method.clone(), json(&event.value), extra));
        }
        list.push((seq, event.method.clone(), event.pc.clone()));
    }
    Ok(Summary {
        file,
        ok: true,
        generation: field(header, "generation"),
        trace_id: dump
            .events
            .first()
            .and_then(|e| e.value.get("traceId"))
            .and_then(Value::as_str)
            .map_or(Json::Null, Json::from),
        socket: field(header, "socket"),
        first_seq: first_seq.map_or(Json::Null, number),
        start_time: field(Some(&dump.metadata), "startTime"),
        events: dump.events.len(),
        methods,
        pcs,
        get_stats,
        close_code: number(dump.close_code),
        close: serde_json::from_str(&dump.close_info.to_json()).unwrap_or(Json::Null),
        list: with_events.then_some(list),
        custom: with_events.then_some(custom),
        media: with_events.then_some(media),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    for path in &args.files {
        let line = match summarize(path, args.events) {
            Ok(summary) => serde_json::to_string(&summary),
            Err(failure) => {
                all_ok = false;
                serde_json::to_string(&failure)
            }
        };
        let line = line.unwrap_or_else(|err| {
            all_ok = false;
            let file = path.display().to_string();
            serde_json::json!({"file": file, "ok": false, "line": 0, "reason": err.to_string()}).to_string()
        });
        if writeln!(out, "{line}").is_err() {
            // stdout closed (e.g. piped into `head`): nothing more to report.
            return ExitCode::from(1);
        }
    }
    let _ = out.flush();
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
