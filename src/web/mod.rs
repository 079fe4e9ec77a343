//! JS-facing exports. Everything here is a thin shell over the core.

use wasm_bindgen::prelude::*;

/// Talc instead of std's dlmalloc: ~3 KB less gzip and faster (its wasm benchmarks). Single
/// threaded: this crate is built without the `atomics` target feature.
#[cfg(not(target_feature = "atomics"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Runs once when the module is instantiated: a panic (a bug, never outside input) is written
/// to the console with its message and place instead of an opaque `unreachable`. (Not
/// console_error_panic_hook: its formatting machinery costs ~1 KB gzip.)
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        let mut message = String::from("rtcroom panicked (a bug, please report it): ");
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        message.push_str(what.unwrap_or("?"));
        if let Some(at) = info.location() {
            message.push_str(" at ");
            message.push_str(at.file());
            message.push(':');
            crate::text::push_int(&mut message, i64::from(at.line()));
        }
        console_error(&message);
    }));
}

/// The SDK version, e.g. `"0.1.0"`. index.js answers the same without the wasm (the build
/// writes it in); this one is what its test compares with.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// The signaling protocol version this SDK speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u32 {
    rtcroom_protocol::PROTOCOL_VERSION
}

mod decode;
mod js;
mod room;
mod stats;
mod transport;
