//! The hub behind WebSockets: `rtcroom-hub`'s sans-IO rooms, with each connection's link a
//! bounded channel to its socket task and a switch that cuts it off.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use rtcroom_hub::{
    close_code, ConnId, FrameLimits, Full, Grant, HubCounts, HubLimits, JoinRequest, Raw, Reader,
    OUTGOING_QUEUE,
};

/// What a connection task writes to its socket.
pub type Outgoing = rtcroom_hub::Outgoing<Utf8Bytes>;
/// The server's hub: rooms whose members are WebSocket tasks.
pub type Hub = rtcroom_hub::Hub<WsLink>;
pub type ConnHandle = rtcroom_hub::ConnHandle<WsLink>;

/// A socket task's outgoing side.
#[derive(Debug, Clone)]
pub struct WsLink {
    pub tx: mpsc::Sender<Outgoing>,
    /// Cancelled when the client cannot keep up: the write loop closes the socket (1008).
    pub kill: CancellationToken,
}

impl WsLink {
    pub fn new(tx: mpsc::Sender<Outgoing>) -> WsLink {
        WsLink {
            tx,
            kill: CancellationToken::new(),
        }
    }
}

impl rtcroom_hub::Link for WsLink {
    type Text = Utf8Bytes;

    fn try_send(&self, out: Outgoing) -> Result<(), Full> {
        match self.tx.try_send(out) {
            Err(mpsc::error::TrySendError::Full(_)) => Err(Full),
            // A closed channel: the task is ending and the hub hears `disconnected` next.
            _ => Ok(()),
        }
    }

    fn kill(&self) {
        self.kill.cancel();
    }
}
