//! Small bridges between Rust and JS: pass-through values, time, typed errors, and the
//! two RTCPeerConnection methods web-sys lacks.

use std::{cell::RefCell, rc::Weak};

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::RtcPeerConnection;

use crate::error::SdkError;

pub use super::decode::Js;

#[wasm_bindgen]
extern "C" {
    /// The two `RTCPeerConnection` methods web-sys does not bind.
    #[wasm_bindgen(js_name = RTCPeerConnection)]
    type PeerConnectionExt;
    #[wasm_bindgen(method, js_name = setLocalDescription)]
    fn set_local_description(this: &PeerConnectionExt) -> Promise;
    #[wasm_bindgen(method, js_name = restartIce)]
    fn restart_ice(this: &PeerConnectionExt);
}

/// `setLocalDescription()` without arguments: the browser creates the right offer or answer
/// (what perfect negotiation relies on).
pub fn set_local_description_implicit(pc: &RtcPeerConnection) -> Promise {
    pc.unchecked_ref::<PeerConnectionExt>().set_local_description()
}

pub fn restart_ice(pc: &RtcPeerConnection) {
    pc.unchecked_ref::<PeerConnectionExt>().restart_ice()
}

/// JS calls (event emitters, Promise resolvers) queued while a shell's state is borrowed.
#[derive(Default)]
pub struct Outbox(Vec<(Function, [JsValue; 3])>);

impl Outbox {
    pub fn call(&mut self, f: &Function, args: [JsValue; 3]) {
        self.0.push((f.clone(), args));
    }

    /// Resolves or rejects a Promise with `value`.
    pub fn settle(&mut self, f: Function, value: JsValue) {
        self.0.push((f, [value, JsValue::UNDEFINED, JsValue::UNDEFINED]));
    }
}

/// A browser shell around a sans-IO core: `process` carries out what the core decided.
pub trait Shell {
    fn process(&mut self);
    fn outbox(&mut self) -> &mut Outbox;
}

/// Every callback enters a shell through here: borrow the state, run `f` and the core's
/// actions, release the borrow, and only then call JS. An app listener that calls back into
/// the SDK (e.g. `leave()` inside `peer-left`) is therefore safe.
pub fn with<T: Shell>(weak: &Weak<RefCell<T>>, f: impl FnOnce(&mut T)) {
    let Some(rc) = weak.upgrade() else { return };
    let calls = {
        let Ok(mut inner) = rc.try_borrow_mut() else {
            return;
        };
        f(&mut inner);
        inner.process();
        std::mem::take(&mut inner.outbox().0)
    };
    for (f, [a, b, c]) in calls {
        let _ = f.call3(&JsValue::NULL, &a, &b, &c);
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

/// A JS `Error` carrying `code` and `fatal`, for rejected Promises and `error` events.
pub fn error_value(error: &SdkError) -> JsValue {
    let js_error = js_sys::Error::new(&error.message);
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
