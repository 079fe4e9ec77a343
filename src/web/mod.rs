//! JS-facing exports. Everything here is a thin shell over the core.

use wasm_bindgen::prelude::*;

/// Talc instead of std's dlmalloc: ~3 KB less gzip and faster (its wasm benchmarks). Single
/// threaded: this crate is built without the `atomics` target feature.
#[cfg(not(target_feature = "atomics"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Runs once when the module is instantiated: a panic (a bug, never outside input) is written
/// to the console with its message instead of an opaque `unreachable`.
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The SDK version, e.g. `"0.1.0"`.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// The signaling protocol version this SDK speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u32 {
    rtcroom_protocol::PROTOCOL_VERSION
}

/// Whether this page can make calls: `RTCPeerConnection` exists and media devices are reachable
/// (media devices need a secure context: https or localhost).
#[wasm_bindgen(js_name = webrtcSupported)]
pub fn webrtc_supported() -> bool {
    let global = js_sys::global();
    let has = |target: &JsValue, name: &str| {
        js_sys::Reflect::get(target, &JsValue::from_str(name)).is_ok_and(|value| !value.is_undefined())
    };
    let navigator =
        js_sys::Reflect::get(&global, &JsValue::from_str("navigator")).unwrap_or(JsValue::UNDEFINED);
    has(&global, "RTCPeerConnection") && has(&navigator, "mediaDevices")
}

mod decode;
mod js;
mod peer;
mod session;
mod stats_trace;
mod transport;
