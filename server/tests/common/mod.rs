//! Shared by the signaling tests: a real WebSocket client (tokio-tungstenite) against the
//! server on an ephemeral loopback port.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtcroom_server::{Config, Running};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// Bound on every wait for a frame.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn config() -> Config {
    let mut config = Config::defaults();
    config.port = 0;
    config
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(server: &Running, path: &str) -> Client {
        let (ws, _) = connect_async(format!("ws://{}{path}", server.addr))
            .await
            .expect("connect");
        Client { ws }
    }

    /// Connects and joins `room`; returns the client and its `joined` frame.
    pub async fn join(server: &Running, room: &str, metadata: Value) -> (Client, Value) {
        let mut client = Client::connect(server, "/signal").await;
        client
            .send(json!({"type": "join", "room": room, "version": 1, "metadata": metadata}))
            .await;
        let joined = client.expect("joined").await;
        (client, joined)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Next text frame as JSON (pings are answered by tungstenite while reading).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match next.expect("socket ended").expect("socket error") {
                Message::Text(text) => return serde_json::from_str(&text).expect("server sent JSON"),
                Message::Close(frame) => panic!("closed while waiting for a frame: {frame:?}"),
                _ => continue,
            }
        }
    }

    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
        frame
    }

    pub async fn expect_error(&mut self, code: &str, fatal: bool) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(
            (frame["code"].as_str(), frame["fatal"].as_bool()),
            (Some(code), Some(fatal)),
            "{frame}"
        );
        frame
    }

    /// Asserts no text frame arrives within `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => panic!("expected silence, got {text}"),
                Ok(Some(Ok(Message::Close(frame)))) => panic!("expected silence, got close {frame:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("expected silence, socket ended: {other:?}"),
            }
        }
    }

    /// Waits for the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (CloseCode, String) {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
                Some(Ok(Message::Close(None))) => return (CloseCode::Status, String::new()),
                Some(Ok(_)) => continue,
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    }
}

pub async fn ping_pong(client: &mut Client) {
    client.send(json!({"type": "ping", "ts": 7})).await;
    assert_eq!(client.expect("pong").await["ts"], 7.0);
}

pub trait JsonBody {
    async fn json_value(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}
