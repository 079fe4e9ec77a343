//! Signaling transports. Both carry the frames of `docs/protocol.md`:
//! - a WebSocket to `rtcroom-server`;
//! - a JS object the app supplies (`config.transport`): `send(text)`, an `onmessage` property
//!   the SDK sets, and optionally `connect()` (may return a Promise), `close()` and `onclose`.
//!   The JS wrapper's `SharedWorkerTransport` (serverless same-origin tabs, the server's hub in
//!   a SharedWorker) is one of these.
//!
//! Listeners and closures live in [`Socket`] and are detached when it is dropped.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use web_sys::WebSocket;

use super::js::Listener;

/// What a transport reports, tagged by the caller with the socket's generation so late events
/// of a replaced socket are ignored.
pub enum TransportEvent {
    Open,
    Message(String),
    Closed { code: u16, reason: String },
}

pub enum Socket {
    WebSocket {
        ws: WebSocket,
        _listeners: [Listener; 3],
    },
    Custom {
        target: JsValue,
        _on_message: Closure<dyn FnMut(JsValue)>,
        _on_close: Closure<dyn FnMut(JsValue)>,
    },
}

fn call_method(target: &JsValue, name: &str, arg: Option<&JsValue>) -> Result<JsValue, JsValue> {
    let method = Reflect::get(target, &JsValue::from_str(name))?;
    match method.dyn_ref::<Function>() {
        Some(f) => match arg {
            Some(a) => f.call1(target, a),
            None => f.call0(target),
        },
        None => Ok(JsValue::UNDEFINED),
    }
}

impl Socket {
    /// Opens a WebSocket to `url`. `Err` when the URL is unusable.
    pub fn websocket(
        url: &str,
        on_event: impl Fn(TransportEvent) + Clone + 'static,
    ) -> Result<Socket, String> {
        let ws = WebSocket::new(url)
            .map_err(|err| crate::text::cat(&["cannot open ", url, ": ", &super::js::describe(&err)]))?;
        let open = {
            let on_event = on_event.clone();
            Listener::new(&ws, "open", move |_| on_event(TransportEvent::Open))
        };
        let message = {
            let on_event = on_event.clone();
            Listener::new(&ws, "message", move |event| {
                if let Some(text) = super::js::text_of(event) {
                    on_event(TransportEvent::Message(text));
                }
            })
        };
        let close = Listener::new(&ws, "close", move |event| {
            let (code, reason) = super::js::close_of(event);
            on_event(TransportEvent::Closed { code, reason });
        });
        Ok(Socket::WebSocket {
            ws,
            _listeners: [open, message, close],
        })
    }

    /// Attaches to an app-supplied transport object and `connect()`s it.
    pub fn custom(
        target: &JsValue,
        on_event: impl Fn(TransportEvent) + Clone + 'static,
    ) -> Result<Socket, String> {
        if !Reflect::get(target, &"send".into()).is_ok_and(|f| f.is_function()) {
            return Err("config.transport must have a send(text) method".into());
        }
        let on_message = {
            let on_event = on_event.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |data: JsValue| {
                // A string, or anything with a string `data` (a MessageEvent).
                let text = data
                    .as_string()
                    .or_else(|| Reflect::get(&data, &"data".into()).ok()?.as_string());
                if let Some(text) = text {
                    on_event(TransportEvent::Message(text));
                }
            })
        };
        let on_close = {
            let on_event = on_event.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |info: JsValue| {
                let code = Reflect::get(&info, &"code".into())
                    .ok()
                    .and_then(|c| c.as_f64())
                    .unwrap_or(1006.0);
                let reason = Reflect::get(&info, &"reason".into())
                    .ok()
                    .and_then(|r| r.as_string())
                    .unwrap_or_default();
                on_event(TransportEvent::Closed {
                    code: code as u16,
                    reason,
                });
            })
        };
        let _ = Reflect::set(target, &"onmessage".into(), on_message.as_ref());
        let _ = Reflect::set(target, &"onclose".into(), on_close.as_ref());
        let connected = call_method(target, "connect", None);
        // Settled in a later microtask even when `connect()` returns nothing: `Open` never
        // comes while the socket is being made.
        let connected = connected.map(|v| if v.is_undefined() { JsValue::TRUE } else { v });
        let outcome = match connected {
            Ok(value) => value,
            Err(err) => Promise::reject(&err).into(),
        };
        super::js::settle(
            &outcome,
            Box::new(move |result| match result {
                Ok(_) => on_event(TransportEvent::Open),
                Err(err) => {
                    let reason = Reflect::get(&err, &"message".into())
                        .ok()
                        .and_then(|m| m.as_string());
                    on_event(TransportEvent::Closed {
                        code: 1006,
                        reason: reason.unwrap_or_default(),
                    });
                }
            }),
        );
        Ok(Socket::Custom {
            target: target.clone(),
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// What sends on this socket, to be used with nothing borrowed: a custom transport's
    /// `send` is app code (and may answer at once).
    pub fn sender(&self) -> Sender {
        match self {
            Socket::WebSocket { ws, .. } => Sender::WebSocket(ws.clone()),
            Socket::Custom { target, .. } => Sender::Custom(target.clone()),
        }
    }
}

pub enum Sender {
    WebSocket(WebSocket),
    Custom(JsValue),
}

impl Sender {
    pub fn send(&self, text: &str) {
        match self {
            Sender::WebSocket(ws) => {
                let _ = ws.send_with_str(text);
            }
            Sender::Custom(target) => {
                let _ = call_method(target, "send", Some(&JsValue::from_str(text)));
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        match self {
            Socket::WebSocket { ws, .. } => {
                let _ = ws.close();
            }
            Socket::Custom { target, .. } => {
                // Detach first: the closures are freed right after this.
                let _ = Reflect::set(target, &"onmessage".into(), &JsValue::NULL);
                let _ = Reflect::set(target, &"onclose".into(), &JsValue::NULL);
                let _ = call_method(target, "close", None);
            }
        }
    }
}
