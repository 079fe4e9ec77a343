#![cfg(not(target_arch = "wasm32"))]
//! Golden tests of getStats delta compression (rtcstats fileFormat 3) against hand-checked
//! outputs in tests/fixtures/stats/, plus round trips through the decompressor.

use proptest::prelude::*;
use rtcroom::stats::compress::{decompress, StatsCompressor};
use rtcroom::stats::value::Value;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sample(n: u32) -> Value {
    Value::parse(&fixture(&format!("chrome-{n}.json"))).unwrap()
}

fn expected(n: u32) -> String {
    fixture(&format!("chrome-{n}.expected.json")).trim().to_string()
}

#[test]
fn golden_first_second_and_unchanged_poll() {
    let mut compressor = StatsCompressor::new();
    for n in 1..=3 {
        let delta = compressor.compress(&sample(n)).to_json();
        assert_eq!(delta, expected(n), "chrome-{n}");
        // Our writer is valid JSON with the same meaning serde_json sees.
        let ours: serde_json::Value = serde_json::from_str(&delta).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&expected(n)).unwrap();
        assert_eq!(ours, theirs);
    }
}

#[test]
fn golden_is_independent_per_compressor() {
    // A fresh compressor (a new socket) starts over: full reports and ids from "0".
    let mut first = StatsCompressor::new();
    first.compress(&sample(1));
    let mut fresh = StatsCompressor::new();
    let full = fresh.compress(&sample(2));
    assert!(full
        .get("0")
        .is_some_and(|r| r.get("type") == Some(&Value::Number(14.0))));
    assert!(
        full.as_object().unwrap().iter().all(|(_, r)| !r.is_null()),
        "nothing was removed yet"
    );
}

/// Raw report id → compressed id, as assigned in the golden files.
const IDS: &[(&str, &str)] = &[
    ("CIT01_111", "0"),
    ("CIT01_96", "1"),
    ("CP4abc_9xyz", "2"),
    ("I4abc", "3"),
    ("I9xyz", "4"),
    ("IT01A1111", "5"),
    ("IT01V2222", "6"),
    ("OT01A3333", "7"),
    ("RIA3333", "8"),
    ("SA5", "9"),
    ("T01", "10"),
    ("P", "11"),
    ("CP4abc_7new", "12"),
    ("I7new", "13"),
];

/// What the collector can restore from a raw result: certificates, `id`, certificate ids and
/// obsolete properties gone, references renamed.
fn normalized(raw: &Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (id, report) in raw.as_object().unwrap() {
        if report.get("type").and_then(Value::as_str) == Some("certificate") {
            continue;
        }
        let new_id = IDS.iter().find(|(raw, _)| raw == id).unwrap().1;
        let mut fields = serde_json::Map::new();
        for (name, value) in report.as_object().unwrap() {
            if [
                "id",
                "isRemote",
                "ip",
                "mediaType",
                "writable",
                "localCertificateId",
                "remoteCertificateId",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            let value = match (name.ends_with("Id"), value) {
                (true, Value::String(target)) => {
                    Value::str(IDS.iter().find(|(raw, _)| raw == target).unwrap().1)
                }
                _ => value.clone(),
            };
            fields.insert(name.clone(), serde_json::from_str(&value.to_json()).unwrap());
        }
        out.insert(new_id.to_string(), serde_json::Value::Object(fields));
    }
    serde_json::Value::Object(out)
}

#[test]
fn round_trip_restores_every_sample() {
    let mut compressor = StatsCompressor::new();
    let mut base = Value::object();
    for n in 1..=3 {
        let raw = sample(n);
        let delta = Value::parse(&compressor.compress(&raw).to_json()).unwrap();
        base = decompress(&base, &delta);
        let restored: serde_json::Value = serde_json::from_str(&base.to_json()).unwrap();
        let mut wanted = normalized(&raw);
        if n == 3 {
            // Format quirk (upstream too): a report that did not change at all, not even its
            // own older timestamp, is restored with the newest timestamp.
            wanted["8"]["timestamp"] = serde_json::json!(1712345680901.5);
        }
        assert_eq!(restored, wanted, "chrome-{n}");
    }
}

#[test]
fn nested_objects_and_arrays() {
    let one = Value::parse(
        r#"{"OT":{"id":"OT","timestamp":1,"type":"outbound-rtp","qualityLimitationDurations":{"other":0,"cpu":0,"bandwidth":2.93,"none":0.073},"trackIds":["a"]}}"#,
    )
    .unwrap();
    let two = Value::parse(
        r#"{"OT":{"id":"OT","timestamp":2,"type":"outbound-rtp","qualityLimitationDurations":{"other":0,"cpu":0,"bandwidth":3,"none":0.073},"trackIds":["a","b"]}}"#,
    )
    .unwrap();
    let three = Value::parse(
        r#"{"OT":{"id":"OT","timestamp":3,"type":"outbound-rtp","qualityLimitationDurations":{"other":0,"cpu":0,"bandwidth":3,"none":0.073},"trackIds":["a","b"]}}"#,
    )
    .unwrap();
    let mut c = StatsCompressor::new();
    assert_eq!(
        c.compress(&one).to_json(),
        r#"{"0":{"96":{"other":0,"cpu":0,"bandwidth":2.93,"none":0.073},"type":2,"trackIds":["a"]},"t":1}"#
    );
    assert_eq!(
        c.compress(&two).to_json(),
        r#"{"0":{"96":{"bandwidth":3},"trackIds":["a","b"]},"t":2}"#
    );
    assert_eq!(c.compress(&three).to_json(), r#"{"t":3}"#);
}

#[test]
fn falsy_changes_and_removed_reports() {
    let one =
        Value::parse(r#"{"a":{"timestamp":1,"framesPerSecond":30,"x":true},"b":{"timestamp":1}}"#).unwrap();
    let two = Value::parse(r#"{"a":{"timestamp":2,"framesPerSecond":0,"x":false}}"#).unwrap();
    let mut c = StatsCompressor::new();
    let d1 = c.compress(&one);
    // "b" has only a timestamp equal to the newest: it becomes empty and is dropped, so it is
    // never transmitted and never reported removed.
    assert_eq!(d1.to_json(), r#"{"0":{"25":30,"x":true},"t":1}"#);
    let d2 = c.compress(&two);
    assert_eq!(d2.to_json(), r#"{"0":{"25":0,"x":false},"t":2}"#);
    let three = Value::parse(r#"{"c":{"timestamp":3,"v":1}}"#).unwrap();
    assert_eq!(c.compress(&three).to_json(), r#"{"0":null,"1":{"v":1},"t":3}"#);
}

proptest! {
    #[test]
    fn numbers_read_back_exactly(bits in any::<u64>()) {
        let n = f64::from_bits(bits);
        prop_assume!(n.is_finite());
        let text = Value::Number(n).to_json();
        // std's parser is correctly rounded (serde_json's default one is not).
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back, if n == 0.0 { 0.0 } else { n });
        prop_assert_eq!(Value::parse(&text).unwrap(), Value::Number(back));
    }

    #[test]
    fn strings_read_back_exactly(s in any::<String>()) {
        let text = Value::String(s.clone()).to_json();
        let back: String = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(Value::parse(&text).unwrap(), Value::String(s));
    }

    /// `json_len` (the trace's record-size check) is exact for strings and integers and never
    /// below the written length.
    #[test]
    fn json_len_bounds_the_written_length(
        s in any::<String>(),
        int in -9.0e15f64..9.0e15,
        bits in any::<u64>(),
    ) {
        let int = int.trunc();
        let exact = Value::Array(vec![
            Value::String(s.clone()),
            Value::Number(int),
            Value::Null,
            Value::Bool(false),
            Value::Object(vec![(s, Value::Array(vec![]))]),
        ]);
        prop_assert_eq!(exact.json_len(), exact.to_json().len());
        let n = Value::Number(f64::from_bits(bits));
        prop_assert!(n.json_len() >= n.to_json().len());
        // The longest decimal form JS prints (a shrunk failure of this property).
        let longest = Value::Number(-1.1089538441554233e-06);
        prop_assert!(longest.json_len() >= longest.to_json().len(), "{}", longest.to_json());
    }

    #[test]
    fn parser_never_panics(s in any::<String>()) {
        let _ = Value::parse(&s);
    }

    #[test]
    fn compression_round_trips(polls in prop::collection::vec(
        prop::collection::btree_map("[a-e]", [0u8..4, 0u8..4, 0u8..4], 0..5), 1..6)) {
        // Random small reports with a fixed field set (the format cannot express a field that
        // disappears from a report that stays), one timestamp per poll.
        let mut c = StatsCompressor::new();
        let mut base = Value::object();
        for (i, poll) in polls.iter().enumerate() {
            let t = 1000.0 + i as f64;
            let raw = Value::Object(poll.iter().map(|(id, fields)| {
                let mut report: Vec<(String, Value)> = vec![("timestamp".into(), Value::Number(t))];
                report.extend(fields.iter().enumerate().map(|(k, v)| (format!("f{k}"), Value::Number(f64::from(*v)))));
                (id.clone(), Value::Object(report))
            }).collect());
            let delta = Value::parse(&c.compress(&raw).to_json()).unwrap();
            base = decompress(&base, &delta);
            // Every raw report is restored under some id with the same fields.
            prop_assert_eq!(base.as_object().unwrap().len(), poll.len());
            for fields in poll.values() {
                let found = base.as_object().unwrap().iter().any(|(_, r)| {
                    fields.iter().enumerate().all(|(k, v)| r.get(&format!("f{k}")) == Some(&Value::Number(f64::from(*v))))
                        && r.as_object().unwrap().len() == fields.len() + 1
                });
                prop_assert!(found, "poll {} report {:?} not restored in {}", i, fields, base.to_json());
            }
        }
    }
}
