//! Small bridges between Rust and JS: pass-through values, time, typed errors, and the
//! browser methods the shell calls while its state is borrowed.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
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

    #[wasm_bindgen(js_name = RTCDataChannel)]
    type Channel;
    /// Throws when the channel is closing or its buffer is full.
    #[wasm_bindgen(method, catch)]
    fn send(this: &Channel, data: &JsValue) -> Result<(), JsValue>;

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

/// `channel.send(data)`; `Err` when the browser refuses (closing, buffer full).
pub fn channel_send(channel: &JsValue, data: &JsValue) -> Result<(), JsValue> {
    channel.unchecked_ref::<Channel>().send(data)
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

/// `code` and `reason` of a WebSocket `close` event (1006: it had none). Read as properties:
/// an `instanceof` and two getters per event type cost package size for nothing.
pub fn close_of(event: &JsValue) -> (u16, String) {
    let code = get(event, "code").as_f64().map_or(1006, |c| c as u16);
    (code, get(event, "reason").as_string().unwrap_or_default())
}

/// `data` of a `message` event, if it is text.
pub fn text_of(event: &JsValue) -> Option<String> {
    get(event, "data").as_string()
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis`: one import, where `web_sys::window()` costs an `instanceof` and four.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    /// Anything with `addEventListener` (a pc, a socket, a stream, the page).
    type Target;
    #[wasm_bindgen(method, catch, js_name = addEventListener)]
    fn add_listener(this: &Target, name: &str, f: &Function) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = removeEventListener)]
    fn remove_listener(this: &Target, name: &str, f: &Function) -> Result<(), JsValue>;
}

pub fn global() -> JsValue {
    GLOBAL.with(JsValue::clone)
}

/// Calls `f` once after `ms` (for Promise rejections: nothing to cancel, nothing to drop).
pub fn after(f: &Function, ms: i32) {
    let _ = set_timeout(f, ms);
}

/// A timer that fires once unless dropped first (what gloo-timers' `Timeout` does, without its
/// own imports and code; see docs/benchmarks.md).
pub struct Timer {
    id: JsValue,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    pub fn new(ms: u32, f: impl FnOnce() + 'static) -> Timer {
        let mut f = Some(f);
        let callback = Closure::<dyn FnMut()>::new(move || {
            if let Some(f) = f.take() {
                f();
            }
        });
        let id = set_timeout(callback.as_ref().unchecked_ref(), ms.min(i32::MAX as u32) as i32);
        Timer {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}

type Settled = Box<dyn FnOnce(Result<JsValue, JsValue>)>;
type Pair = (Closure<dyn FnMut(JsValue)>, Closure<dyn FnMut(JsValue)>);

/// Calls `f` once with the outcome of `promise` (any value: a non-Promise settles at once,
/// in a later microtask). The two closures live until then and are freed on settling: this
/// is what wasm-bindgen-futures' `JsFuture` + `spawn_local` did for this crate, without the
/// executor's code and imports (see docs/benchmarks.md). A Promise that never settles keeps
/// them, as a pending `JsFuture` would.
pub fn settle(promise: &JsValue, f: Settled) {
    let slot: Rc<RefCell<Option<Pair>>> = Rc::default();
    let f = Rc::new(Cell::new(Some(f)));
    let make = |ok: bool| {
        let (slot, f) = (slot.clone(), f.clone());
        Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| {
            let pair = slot.borrow_mut().take();
            if let Some(f) = f.take() {
                f(if ok { Ok(v) } else { Err(v) });
            }
            drop(pair); // frees both closures (this one once the call returns)
        })
    };
    let (on_ok, on_err) = (make(true), make(false));
    let _ = Promise::resolve(promise).then2(&on_ok, &on_err);
    *slot.borrow_mut() = Some((on_ok, on_err));
}

/// An event listener that lives as long as this value: added when made, removed on drop.
/// (gloo-events does the same with an options object: three more imports and its code, ~0.2 KB
/// gzip that the package's budget cannot spare; see docs/benchmarks.md.)
pub struct Listener {
    target: Target,
    name: &'static str,
    callback: Closure<dyn FnMut(JsValue)>,
}

impl Listener {
    pub fn new(target: &JsValue, name: &'static str, mut f: impl FnMut(&JsValue) + 'static) -> Listener {
        let callback = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| f(&e));
        let target: Target = target.clone().unchecked_into();
        let _ = target.add_listener(name, callback.as_ref().unchecked_ref());
        Listener {
            target,
            name,
            callback,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_listener(self.name, self.callback.as_ref().unchecked_ref());
    }
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

pub fn set(target: &JsValue, key: &str, value: &JsValue) {
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
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
