//! The signaling transport: a WebSocket to `rtcroom-server`. Its listeners live in this struct
//! and are removed when it is dropped.

use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What a socket reports, tagged with the socket's generation so late events of a replaced
/// socket are ignored.
pub enum TransportEvent {
    Open,
    Message(String),
    Closed { code: u16, reason: String },
}

pub struct Socket {
    ws: WebSocket,
    _listeners: [EventListener; 3],
}

impl Socket {
    /// Opens `url`; `on_event` receives everything the socket reports. `Err` when the URL is
    /// unusable (reported like a failed connection by the caller).
    pub fn open(url: &str, on_event: impl Fn(TransportEvent) + Clone + 'static) -> Result<Socket, String> {
        let ws = WebSocket::new(url).map_err(|err| format!("cannot open {url}: {err:?}"))?;
        let open = {
            let on_event = on_event.clone();
            EventListener::new(&ws, "open", move |_| on_event(TransportEvent::Open))
        };
        let message = {
            let on_event = on_event.clone();
            EventListener::new(&ws, "message", move |event| {
                let data = event.dyn_ref::<MessageEvent>().and_then(|m| m.data().as_string());
                if let Some(text) = data {
                    on_event(TransportEvent::Message(text));
                }
            })
        };
        let close = EventListener::new(&ws, "close", move |event| {
            let (code, reason) = event
                .dyn_ref::<CloseEvent>()
                .map(|c| (c.code(), c.reason()))
                .unwrap_or((1006, String::new()));
            on_event(TransportEvent::Closed { code, reason });
        });
        Ok(Socket {
            ws,
            _listeners: [open, message, close],
        })
    }

    pub fn send(&self, text: &str) {
        let _ = self.ws.send_with_str(text);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}
