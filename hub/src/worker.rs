//! The serverless hub: this crate's rooms in a SharedWorker, one MessagePort per connection.
//! Every same-origin tab that uses `SharedWorkerTransport` talks to the same worker, so tabs
//! meet in rooms exactly as WebSocket clients of `rtcroom-server` do: same frames, same limits,
//! same presence, resume and timeouts, from the same code.
//!
//! Port messages, tab → worker: a string is a protocol frame; `{hello: {timeoutMs}}` sets the
//! connection's liveness timeout, `{alive: 1}` and `{pong: 1}` are signs of life, `{bye: 1}`
//! is the tab closing the connection. Worker → tab: a string is a protocol frame,
//! `{ping: 1}` asks for a sign of life (the resume probe), `{close, reason}` ends the
//! connection as a WebSocket close would.
//!
//! Events only queue; one loop drains the queue into the hub, so nothing is dropped and no JS
//! runs while the state is borrowed (posting to a port is asynchronous).

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    rc::Rc,
    sync::atomic::Ordering,
    time::Duration,
};

use js_sys::{Function, Object, Reflect};
use rtcroom_protocol::{close as close_code, LeaveReason};
use wasm_bindgen::{prelude::*, JsCast};
use web_sys::{MessageEvent, MessagePort};

use crate::{
    frames::{FrameLimits, Reader},
    resume::{Binding, ResumeKeys},
    rooms::{ConnHandle, ConnId, Full, Hub, HubLimits, Instant, Link, Outgoing},
};

/// How often the worker checks liveness and the hub's timers.
const TICK_MS: i32 = 250;
/// A connection silent this long is removed with `peer-left(timeout)` unless its `hello` says
/// otherwise (the tab's transport sends `alive` every second).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's outgoing side: its port, and a flag the worker reads after each hub call.
#[derive(Clone)]
pub struct PortLink {
    port: MessagePort,
    closed: Rc<Cell<bool>>,
}

fn post(port: &MessagePort, value: &JsValue) {
    // A port whose tab is gone swallows messages; posting plain strings and objects cannot
    // throw a DataCloneError.
    let _ = port.post_message(value);
}

fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in entries {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}

impl PortLink {
    fn close(&self, code: u16, reason: &str) {
        if !self.closed.replace(true) {
            let message = object(&[
                ("close", JsValue::from(code)),
                ("reason", JsValue::from_str(reason)),
            ]);
            post(&self.port, &message);
        }
    }
}

impl Link for PortLink {
    type Text = String;

    fn try_send(&self, out: Outgoing<String>) -> Result<(), Full> {
        if self.closed.get() {
            return Ok(());
        }
        match out {
            // Posted at once: the share is given back when the guard drops here.
            Outgoing::Text(text) | Outgoing::Shared(text, _) => post(&self.port, &JsValue::from_str(&text)),
            Outgoing::Ping => post(&self.port, &object(&[("ping", JsValue::from(1))])),
            Outgoing::Close(code, reason) => self.close(code, reason),
        }
        Ok(())
    }

    fn kill(&self) {
        self.close(close_code::TOO_SLOW, "too slow");
    }
}

/// What arrives from the ports and the timer, in order.
enum Event {
    Message(ConnId, JsValue),
    Tick,
}

struct Conn {
    port: MessagePort,
    link: PortLink,
    reader: Reader,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    last_seen: Instant,
    timeout: Duration,
    evicted: bool,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

struct State {
    hub: Hub<PortLink>,
    conns: HashMap<ConnId, Conn>,
}

struct Shared {
    state: RefCell<State>,
    inbox: RefCell<VecDeque<Event>>,
    /// The drain loop is running (an event queued meanwhile is taken by it).
    draining: Cell<bool>,
}

impl Shared {
    fn push(self: &Rc<Self>, event: Event) {
        self.inbox.borrow_mut().push_back(event);
        if self.draining.replace(true) {
            return;
        }
        loop {
            let next = self.inbox.borrow_mut().pop_front();
            let Some(event) = next else { break };
            if let Ok(mut state) = self.state.try_borrow_mut() {
                state.handle(event);
            }
        }
        self.draining.set(false);
    }
}

fn number(value: &JsValue, key: &str) -> Option<f64> {
    Reflect::get(value, &JsValue::from_str(key)).ok()?.as_f64()
}

fn has(value: &JsValue, key: &str) -> bool {
    Reflect::get(value, &JsValue::from_str(key)).is_ok_and(|v| !v.is_undefined() && !v.is_null())
}

impl State {
    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Message(id, data) => self.message(id, data, now),
            Event::Tick => self.tick(now),
        }
        self.reap(now);
    }

    fn message(&mut self, id: ConnId, data: JsValue, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_seen = now;
        conn.seen.fetch_add(1, Ordering::Relaxed);
        if let Some(text) = data.as_string() {
            let read = conn.reader.read(&text, now);
            conn.reader.apply(&mut self.hub, read, now);
        } else if has(&data, "bye") {
            conn.link.closed.set(true);
        } else if has(&data, "hello") {
            let hello = Reflect::get(&data, &JsValue::from_str("hello")).unwrap_or(JsValue::UNDEFINED);
            if let Some(ms) = number(&hello, "timeoutMs").filter(|ms| ms.is_finite() && *ms >= 100.0) {
                conn.timeout = Duration::from_millis(ms.min(3_600_000.0) as u64);
            }
        } else if !has(&data, "alive") && !has(&data, "pong") {
            // Structured data where a frame belongs: the same violation as a binary frame.
            let reader = &mut conn.reader;
            reader.violation(
                &mut self.hub,
                rtcroom_protocol::ErrorCode::MalformedFrame,
                "frames are JSON text",
            );
        }
    }

    fn tick(&mut self, now: Instant) {
        for (&id, conn) in self.conns.iter_mut() {
            if !conn.evicted && now.saturating_duration_since(conn.last_seen) >= conn.timeout {
                conn.evicted = true;
                self.hub.evict(
                    id,
                    LeaveReason::Timeout,
                    (close_code::HEARTBEAT_TIMEOUT, "heartbeat timeout"),
                );
            }
        }
        self.hub.tick(now);
    }

    /// Connections closed by either side leave the hub (their peers keep their place for the
    /// resume grace, as after a dropped socket).
    fn reap(&mut self, now: Instant) {
        let closed: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.link.closed.get())
            .map(|(&id, _)| id)
            .collect();
        for id in closed {
            if let Some(conn) = self.conns.remove(&id) {
                conn.port.set_onmessage(None);
                conn.port.close();
            }
            self.hub.disconnected(id, now);
        }
    }
}

/// The hub of one origin's tabs; `hub/worker.js` makes one per SharedWorker.
#[wasm_bindgen]
pub struct HubWorker {
    shared: Rc<Shared>,
    timer: JsValue,
    _on_tick: Closure<dyn FnMut()>,
}

fn global_call(name: &str, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let global = js_sys::global();
    let f: Function = Reflect::get(&global, &JsValue::from_str(name))?.dyn_into()?;
    match args {
        [a] => f.call1(&global, a),
        [a, b] => f.call2(&global, a, b),
        _ => f.call0(&global),
    }
}

#[wasm_bindgen]
impl HubWorker {
    /// A hub with the server's default limits and a fresh resume secret.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<HubWorker, JsValue> {
        let shared = Rc::new(Shared {
            state: RefCell::new(State {
                hub: Hub::new(HubLimits::default(), ResumeKeys::new(None)),
                conns: HashMap::new(),
            }),
            inbox: RefCell::new(VecDeque::new()),
            draining: Cell::new(false),
        });
        let on_tick = {
            let weak = Rc::downgrade(&shared);
            Closure::<dyn FnMut()>::new(move || {
                if let Some(shared) = weak.upgrade() {
                    shared.push(Event::Tick);
                }
            })
        };
        let timer = global_call("setInterval", &[on_tick.as_ref(), &JsValue::from(TICK_MS)])?;
        Ok(HubWorker {
            shared,
            timer,
            _on_tick: on_tick,
        })
    }

    /// A tab's new connection (the port of its `connect` event).
    pub fn connect(&self, port: MessagePort) {
        let link = PortLink {
            port: port.clone(),
            closed: Rc::new(Cell::new(false)),
        };
        let handle = ConnHandle::new(link.clone());
        let (seen, room_size) = (handle.seen.clone(), handle.room_size.clone());
        let Ok(mut state) = self.shared.state.try_borrow_mut() else {
            return;
        };
        let id = state.hub.register(handle);
        let on_message = {
            let weak = Rc::downgrade(&self.shared);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                if let Some(shared) = weak.upgrade() {
                    shared.push(Event::Message(id, event.data()));
                }
            })
        };
        // Setting onmessage starts the port: messages the tab sent before are delivered now.
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let now = Instant::now();
        state.conns.insert(
            id,
            Conn {
                port,
                link,
                reader: Reader::new(
                    id,
                    FrameLimits::default(),
                    room_size,
                    Ok(None),
                    None,
                    Binding::anonymous(),
                    now,
                ),
                seen,
                last_seen: now,
                timeout: DEFAULT_TIMEOUT,
                evicted: false,
                _on_message: on_message,
            },
        );
    }

    /// Connections, rooms and peers now (for tests and a debug page).
    pub fn counts(&self) -> JsValue {
        let Ok(state) = self.shared.state.try_borrow() else {
            return JsValue::NULL;
        };
        let c = state.hub.counts();
        object(&[
            ("connections", JsValue::from(c.connections as u32)),
            ("rooms", JsValue::from(c.rooms as u32)),
            ("peers", JsValue::from(c.peers as u32)),
        ])
    }
}

impl Drop for HubWorker {
    fn drop(&mut self) {
        let _ = global_call("clearInterval", &[&self.timer]);
        if let Ok(mut state) = self.shared.state.try_borrow_mut() {
            for (_, conn) in state.conns.drain() {
                conn.port.set_onmessage(None);
                conn.port.close();
            }
        }
    }
}
