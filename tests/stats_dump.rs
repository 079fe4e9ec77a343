#![cfg(not(target_arch = "wasm32"))]
//! The dump reader: a whole trace with realistic reports reads back into full reports, and
//! each broken invariant is rejected with its line.

use rtcroom::stats::dump::{read_dump, write_dump};
use rtcroom::stats::trace::{Action, Trace, TraceConfig};
use rtcroom::stats::value::Value;

const T0: f64 = 1_712_345_678_000.0;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    Value::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sent(trace: &mut Trace) -> Vec<String> {
    std::iter::from_fn(|| trace.poll_action())
        .filter_map(|a| match a {
            Action::Send { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

/// A short call: header, pc, state changes, three polls and the final close.
fn call_lines() -> Vec<String> {
    let mut trace = Trace::new(TraceConfig::default());
    let mut info = Value::object();
    info.set("hardwareConcurrency", Value::Number(8.0));
    let g = trace.connect(T0, info);
    trace.socket_open(1, T0 + 20.0);
    let pc = trace
        .create_pc(g, T0 + 30.0, &Value::parse(r#"{"iceServers":[]}"#).unwrap())
        .unwrap();
    trace.record(
        g,
        T0 + 40.0,
        "createOffer",
        Some(&pc),
        Value::Null,
        vec![Value::str("2-0")],
    );
    trace.record(
        g,
        T0 + 900.0,
        "onconnectionstatechange",
        Some(&pc),
        Value::str("connected"),
        vec![],
    );
    for (n, t) in [(1, 901.5), (2, 1901.5), (3, 2901.5)] {
        let extra = if n == 1 {
            vec![Value::str("connected-0")]
        } else {
            vec![]
        };
        trace.record(
            g,
            T0 + t,
            "getStats",
            Some(&pc),
            fixture(&format!("chrome-{n}.json")),
            extra,
        );
    }
    trace.record(g, T0 + 3000.0, "close", Some(&pc), Value::Null, vec![]);
    trace.record(g, T0 + 3001.0, ":hangup", None, Value::str("user"), vec![]);
    sent(&mut trace)
}

#[test]
fn whole_call_reads_back() {
    let lines = call_lines();
    assert!(
        lines[0].starts_with(r#"[39,null,{"hardwareConcurrency":8},{"generation":1,"socket":0,"seq":0},"#)
    );
    let dump = read_dump(&write_dump(&lines, 1000, 5.0)).unwrap();
    assert_eq!(dump.close_code, 1000.0);
    let methods: Vec<&str> = dump.events.iter().map(|e| e.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "create",
            "create",
            "createOffer",
            "onconnectionstatechange",
            "getStats",
            "getStats",
            "getStats",
            "close",
            ":hangup"
        ]
    );
    assert_eq!(dump.events[0].time, T0 + 20.0);
    assert_eq!(dump.events[4].time, T0 + 901.5);
    assert_eq!(dump.events[4].extra, vec![Value::str("connected-0")]);
    let stats = &dump.events[5].value;
    // The transport points at the new pair, which points at the new remote candidate.
    let transport = stats.get("10").unwrap();
    assert_eq!(transport.get("type"), Some(&Value::str("transport")));
    assert_eq!(transport.get("bytesSent"), Some(&Value::Number(27000.0)));
    let pair = stats
        .get(
            transport
                .get("selectedCandidatePairId")
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let remote = stats
        .get(pair.get("remoteCandidateId").unwrap().as_str().unwrap())
        .unwrap();
    assert_eq!(remote.get("candidateType"), Some(&Value::str("prflx")));
    assert!(
        stats.get("2").is_none() && stats.get("4").is_none(),
        "removed reports are gone"
    );
    assert_eq!(
        dump.events[6].value.get("5").unwrap().get("timestamp"),
        Some(&Value::Number(T0 + 2901.5))
    );
}

fn expect_error(lines: &[&str], line: usize, reason: &str) {
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let err = read_dump(&write_dump(&lines, 1000, 0.0)).unwrap_err();
    assert_eq!(err.line, line, "{err:?}");
    assert!(err.reason.contains(reason), "{err:?}");
}

const HEADER: &str = r#"[39,null,{},1712345678000]"#;

#[test]
fn rejects_broken_dumps() {
    assert_eq!(read_dump("nope\n").unwrap_err().line, 1);
    assert!(read_dump("RTCStatsDump\n{\"fileFormat\":2}\n")
        .unwrap_err()
        .reason
        .contains("fileFormat"));
    expect_error(&[r#"[":x",null,{},1712345678000]"#], 3, "first event");
    expect_error(&[r#"[39,null,{},5]"#], 3, "absolute");
    expect_error(&[HEADER, r#"[":x",null,{},1712345678000]"#], 4, "second absolute");
    expect_error(&[HEADER, r#"[":x",null,{},-1]"#], 4, "non-negative");
    expect_error(&[HEADER, r#"["g","PC_0",{"t":1},0]"#], 4, "first event of its pc");
    expect_error(&[HEADER, r#"[":x","pc0",null,0]"#], 4, "PC_<n>");
    expect_error(
        &[HEADER, r#"[39,"PC_0",{},0]"#, r#"["g","PC_0",{"1":{"a":1}},0]"#],
        5,
        "skips",
    );
    expect_error(
        &[HEADER, r#"[39,"PC_0",{},0]"#, r#"["g","PC_0",{"0":{"5":"7"}},0]"#],
        5,
        "missing",
    );
    expect_error(
        &[HEADER, r#"[39,"PC_0",{},0]"#, r#"["g","PC_0",{"0":null},0]"#],
        5,
        "nulls",
    );
    expect_error(&[HEADER, r#"[99,null,{},0]"#], 4, "unknown method");
    // A reference to an id given out earlier and since removed is what the browser reported
    // (ids are never reused, so it is unambiguous); one to an id never given out is not.
    let removed = [
        HEADER,
        r#"[39,"PC_0",{},0]"#,
        r#"["g","PC_0",{"0":{"5":"1"},"1":{"type":1}},0]"#,
        r#"["g","PC_0",{"1":null},0]"#,
    ];
    let lines: Vec<String> = removed.iter().map(|l| l.to_string()).collect();
    let dump = read_dump(&write_dump(&lines, 1000, 0.0)).unwrap();
    assert_eq!(
        dump.events[3].value.get("0").unwrap().get("transportId"),
        Some(&Value::str("1"))
    );
    expect_error(
        &[HEADER, r#"[39,"PC_0",{},0]"#, r#"["g","PC_0",{"0":{"5":"1"}},0]"#],
        5,
        "missing",
    );
    let no_close = format!("RTCStatsDump\n{{\"fileFormat\":3}}\n{HEADER}\n{HEADER}\n");
    assert!(read_dump(&no_close).unwrap_err().reason.contains("close"));
}

/// The rtcstats reference reader (`readRTCStatsDump`) adds the last item of every line to its
/// running time, so a close line with its counters after the delta gave the close event the
/// time `"[object Object]1796…"`. The reader checks what the reference reader relies on.
#[test]
fn every_line_must_end_with_a_numeric_time_delta_as_the_reference_reader_needs() {
    let body = format!("{HEADER}\n[\":x\",null,{{}},5]\n");
    let dump = |tail: &str| format!("RTCStatsDump\n{{\"fileFormat\":3}}\n{body}{tail}\n");
    // The collector's close line: code, then the counters, then the delta.
    let ok = read_dump(&dump(
        r#"["close",null,1001,{"reason":"server-shutdown","malformed":0},680]"#,
    ))
    .unwrap();
    assert_eq!(ok.close_code, 1001.0);
    assert_eq!(
        read_dump(&dump(r#"["close",null,1000,3]"#)).unwrap().close_code,
        1000.0
    );
    // Counters after the delta: the last item is not a number.
    let err = read_dump(&dump(r#"["close",null,1001,680,{"malformed":0}]"#)).unwrap_err();
    assert_eq!(err.line, 5, "{err:?}");
    assert!(err.reason.contains("time delta"), "{err:?}");
    // The same rule for events: a string or a missing delta is not a time.
    expect_error(&[HEADER, r#"[":x",null,{},"5"]"#], 4, "time delta");
    expect_error(&[HEADER, r#"[":x",null,5]"#], 4, "fewer than 4");
    // The magic line is "RTCStatsDump\n" exactly; the metadata is an object; an empty line is
    // skipped but a line of whitespace is not JSON.
    let crlf = dump(r#"["close",null,1000,3]"#).replacen('\n', "\r\n", 1);
    assert_eq!(read_dump(&crlf).unwrap_err().line, 1);
    let null_meta = dump(r#"["close",null,1000,3]"#).replace("{\"fileFormat\":3}", "null");
    assert_eq!(read_dump(&null_meta).unwrap_err().line, 2);
    let blank = dump(r#"["close",null,1000,3]"#).replace("\n[\":x\"", "\n\n[\":x\"");
    assert!(read_dump(&blank).is_ok());
    let spaces = dump(r#"["close",null,1000,3]"#).replace("\n[\":x\"", "\n  \n[\":x\"");
    assert_eq!(read_dump(&spaces).unwrap_err().line, 4);
}
