//! Flat decoding of the tagged wire types: every field of every variant is optional here, then
//! `TryFrom` checks that the fields the `type` needs are present. Values of type `J` go
//! straight to their own deserializer (no buffering), so raw and JS values pass through intact.

use serde::Deserialize;

use crate::{
    ClientMsg, ErrorCode, IceCandidate, LeaveReason, PeerInfo, ServerMsg, SessionDescription, SignalPayload,
    StreamRole,
};

fn need<T>(value: Option<T>, what: &'static str) -> Result<T, &'static str> {
    value.ok_or(what)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ClientKind {
    Join,
    Signal,
    Metadata,
    Leave,
    Ping,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientFrame<J> {
    #[serde(rename = "type")]
    kind: ClientKind,
    room: Option<String>,
    version: Option<u32>,
    metadata: Option<J>,
    resume: Option<String>,
    capacity: Option<u32>,
    to: Option<String>,
    payload: Option<J>,
    ts: Option<f64>,
}

impl<J> TryFrom<ClientFrame<J>> for ClientMsg<J> {
    type Error = &'static str;

    fn try_from(f: ClientFrame<J>) -> Result<Self, &'static str> {
        Ok(match f.kind {
            ClientKind::Join => ClientMsg::Join {
                room: f.room,
                version: need(f.version, "join needs `version`")?,
                metadata: f.metadata,
                resume: f.resume,
                capacity: f.capacity,
            },
            ClientKind::Signal => ClientMsg::Signal {
                to: need(f.to, "signal needs `to`")?,
                payload: need(f.payload, "signal needs a non-null `payload`")?,
            },
            ClientKind::Metadata => ClientMsg::Metadata {
                metadata: need(f.metadata, "metadata needs a non-null `metadata`")?,
            },
            ClientKind::Leave => ClientMsg::Leave,
            ClientKind::Ping => ClientMsg::Ping { ts: f.ts },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ServerKind {
    Joined,
    PeerJoined,
    PeerLeft,
    Signal,
    MetadataUpdated,
    RoomFull,
    Error,
    Pong,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerFrame<J> {
    #[serde(rename = "type")]
    kind: ServerKind,
    version: Option<u32>,
    room: Option<String>,
    peer_id: Option<String>,
    resume_token: Option<String>,
    peers: Option<Vec<PeerInfo<J>>>,
    capacity: Option<u32>,
    resumed: Option<bool>,
    peer: Option<PeerInfo<J>>,
    reason: Option<LeaveReason>,
    from: Option<String>,
    payload: Option<J>,
    metadata: Option<J>,
    code: Option<ErrorCode>,
    message: Option<String>,
    fatal: Option<bool>,
    ts: Option<f64>,
}

impl<J> TryFrom<ServerFrame<J>> for ServerMsg<J> {
    type Error = &'static str;

    fn try_from(f: ServerFrame<J>) -> Result<Self, &'static str> {
        Ok(match f.kind {
            ServerKind::Joined => ServerMsg::Joined {
                version: need(f.version, "joined needs `version`")?,
                room: need(f.room, "joined needs `room`")?,
                peer_id: need(f.peer_id, "joined needs `peerId`")?,
                resume_token: need(f.resume_token, "joined needs `resumeToken`")?,
                peers: f.peers.unwrap_or_default(),
                capacity: need(f.capacity, "joined needs `capacity`")?,
                resumed: f.resumed.unwrap_or(false),
            },
            ServerKind::PeerJoined => ServerMsg::PeerJoined {
                peer: need(f.peer, "peer-joined needs `peer`")?,
            },
            ServerKind::PeerLeft => ServerMsg::PeerLeft {
                peer_id: need(f.peer_id, "peer-left needs `peerId`")?,
                reason: need(f.reason, "peer-left needs `reason`")?,
            },
            ServerKind::Signal => ServerMsg::Signal {
                from: need(f.from, "signal needs `from`")?,
                payload: need(f.payload, "signal needs `payload`")?,
            },
            ServerKind::MetadataUpdated => ServerMsg::MetadataUpdated {
                peer_id: need(f.peer_id, "metadata-updated needs `peerId`")?,
                metadata: need(f.metadata, "metadata-updated needs `metadata`")?,
            },
            ServerKind::RoomFull => ServerMsg::RoomFull {
                room: need(f.room, "room-full needs `room`")?,
                capacity: need(f.capacity, "room-full needs `capacity`")?,
            },
            ServerKind::Error => ServerMsg::Error {
                code: need(f.code, "error needs a known `code`")?,
                message: f.message.unwrap_or_default(),
                fatal: f.fatal.unwrap_or(false),
            },
            ServerKind::Pong => ServerMsg::Pong {
                ts: f.ts,
                resume_token: f.resume_token,
            },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PayloadKind {
    Description,
    Candidate,
    Bye,
    App,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PayloadFrame<J> {
    kind: PayloadKind,
    description: Option<SessionDescription>,
    roles: Option<Vec<StreamRole>>,
    candidate: Option<IceCandidate>,
    data: Option<J>,
}

impl<J> TryFrom<PayloadFrame<J>> for SignalPayload<J> {
    type Error = &'static str;

    fn try_from(f: PayloadFrame<J>) -> Result<Self, &'static str> {
        Ok(match f.kind {
            PayloadKind::Description => SignalPayload::Description {
                description: need(f.description, "description payload needs `description`")?,
                roles: f.roles.unwrap_or_default(),
            },
            PayloadKind::Candidate => SignalPayload::Candidate {
                candidate: f.candidate,
            },
            PayloadKind::Bye => SignalPayload::Bye,
            PayloadKind::App => SignalPayload::App {
                data: need(f.data, "app payload needs `data`")?,
            },
        })
    }
}
