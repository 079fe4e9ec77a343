//! Small bridges between Rust and JS: pass-through values, time, typed errors, and the
//! browser methods the shell calls while its state is borrowed.

use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::RtcPeerConnection;

use crate::error::{code, SdkError};

#[wasm_bindgen]
extern "C" {
    /// `RTCPeerConnection`, `MediaStream` and `MediaStreamTrack` methods, all bound with
    /// `catch`. They run while a shell's state is borrowed, on objects the app can reach (a
    /// pc it closed through `peer.peerConnection`, a pc whose methods a tracer wrapped, a
    /// stream it passed in): an exception unwinding through the borrow would leave the session
    /// borrowed, i.e. dead, so every one comes back as an `Err` instead.
    #[wasm_bindgen(js_name = RTCPeerConnection)]
    type Pc;
    #[wasm_bindgen(method, catch, js_name = setLocalDescription)]
    fn set_local_description(this: &Pc) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = setRemoteDescription)]
    fn set_remote_description(this: &Pc, init: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = addIceCandidate)]
    fn add_ice_candidate(this: &Pc, init: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = getStats)]
    fn get_stats(this: &Pc) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = restartIce)]
    fn restart_ice(this: &Pc) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = addTrack)]
    fn add_track(this: &Pc, track: &JsValue, stream: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = removeTrack)]
    fn remove_track(this: &Pc, sender: &JsValue) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = createDataChannel)]
    fn create_data_channel(this: &Pc, label: &str, init: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn close(this: &Pc) -> Result<(), JsValue>;

    #[wasm_bindgen(js_name = MediaStream)]
    type Stream;
    #[wasm_bindgen(method, catch, js_name = getTracks)]
    fn get_tracks(this: &Stream) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = MediaStreamTrack)]
    type Track;
    #[wasm_bindgen(method, catch)]
    fn stop(this: &Track) -> Result<(), JsValue>;
}

fn pc(pc: &RtcPeerConnection) -> &Pc {
    pc.unchecked_ref()
}

/// A Promise-returning method's result as a real Promise (a wrapper may return anything).
fn promise(result: Result<JsValue, JsValue>) -> Promise {
    match result {
        Ok(value) => Promise::resolve(&value),
        Err(err) => Promise::reject(&err),
    }
}

/// `setLocalDescription()` without arguments: the browser creates the right offer or answer
/// (what perfect negotiation relies on).
pub fn set_local_description_implicit(p: &RtcPeerConnection) -> Promise {
    promise(pc(p).set_local_description())
}

pub fn set_remote_description(p: &RtcPeerConnection, init: &JsValue) -> Promise {
    promise(pc(p).set_remote_description(init))
}

/// `addIceCandidate(init)`; `null` for the end of candidates.
pub fn add_ice_candidate(p: &RtcPeerConnection, init: &JsValue) -> Promise {
    promise(pc(p).add_ice_candidate(init))
}

pub fn get_stats(p: &RtcPeerConnection) -> Promise {
    promise(pc(p).get_stats())
}

pub fn restart_ice(p: &RtcPeerConnection) -> Result<(), JsValue> {
    pc(p).restart_ice()
}

/// The `RTCRtpSender`.
pub fn add_track(p: &RtcPeerConnection, track: &JsValue, stream: &JsValue) -> Result<JsValue, JsValue> {
    pc(p).add_track(track, stream)
}

pub fn remove_track(p: &RtcPeerConnection, sender: &JsValue) -> Result<(), JsValue> {
    pc(p).remove_track(sender)
}

pub fn create_data_channel(p: &RtcPeerConnection, label: &str, init: &JsValue) -> Result<JsValue, JsValue> {
    pc(p).create_data_channel(label, init)
}

pub fn close(p: &RtcPeerConnection) {
    let _ = pc(p).close();
}

/// A stream's tracks; none when `getTracks` throws or returns something else.
pub fn tracks(stream: &JsValue) -> Array {
    match stream.unchecked_ref::<Stream>().get_tracks() {
        Ok(list) if Array::is_array(&list) => list.unchecked_into(),
        _ => Array::new(),
    }
}

pub fn stop_track(track: &JsValue) {
    let _ = track.unchecked_ref::<Track>().stop();
}

/// The `id` of a stream or track, read without trusting the object.
pub fn id(v: &JsValue) -> String {
    get(v, "id").as_string().unwrap_or_default()
}

/// What a thrown value says: its `message` (browsers name the method and the reason there),
/// else its text.
pub fn describe(err: &JsValue) -> String {
    get(err, "message")
        .as_string()
        .or_else(|| err.as_string())
        .unwrap_or_default()
}

/// An `invalid-argument` error (never fatal: the call is refused, the session goes on).
pub fn invalid(message: impl Into<String>) -> JsValue {
    error_value(&SdkError::new(code::INVALID_ARGUMENT, message, false))
}

pub fn now() -> f64 {
    js_sys::Date::now()
}

/// A plain object from key/value pairs, for event details.
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in pairs {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}

/// A JS `Error` carrying `code` and `fatal`, for rejected Promises and `error` events; a
/// `TypeError` for `invalid-argument`, as JS APIs throw for bad arguments.
pub fn error_value(error: &SdkError) -> JsValue {
    let js_error = if error.code == code::INVALID_ARGUMENT {
        js_sys::TypeError::new(&error.message).unchecked_into()
    } else {
        js_sys::Error::new(&error.message)
    };
    let _ = Reflect::set(&js_error, &"code".into(), &error.code.into());
    let _ = Reflect::set(&js_error, &"fatal".into(), &error.fatal.into());
    js_error.into()
}

pub fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A JS value as a stats [`crate::stats::Value`], walked directly (no JSON text, so no float
/// parser in the wasm). Functions and symbols become `null`.
pub fn stats_value(value: &JsValue) -> crate::stats::Value {
    use crate::stats::Value;
    if let Some(b) = value.as_bool() {
        Value::Bool(b)
    } else if let Some(n) = value.as_f64() {
        Value::Number(n)
    } else if let Some(text) = value.as_string() {
        Value::String(text)
    } else if js_sys::Array::is_array(value) {
        Value::Array(
            js_sys::Array::from(value)
                .iter()
                .map(|v| stats_value(&v))
                .collect(),
        )
    } else if value.is_object() && !value.is_function() {
        let entries = Object::entries(value.unchecked_ref());
        Value::Object(
            entries
                .iter()
                .filter_map(|entry| {
                    let pair = js_sys::Array::from(&entry);
                    Some((pair.get(0).as_string()?, stats_value(&pair.get(1))))
                })
                .collect(),
        )
    } else {
        Value::Null
    }
}
