//! Who may join which room: HS256 JWTs in the `token` query parameter, and allowed origins.

use axum::{
    extract::ws::{CloseFrame, Message, WebSocketUpgrade},
    response::Response,
};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Claims of a signaling token. `room` is required. `peerId` and `metadata` are optional; when
/// present, they are what the peer gets, whatever its `join` says.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalClaims {
    pub room: String,
    #[serde(default)]
    pub peer_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Box<RawValue>>,
}

/// Verifies a token with the shared secret. The error text becomes the close reason, so it is
/// short and says what is wrong without echoing the token.
pub fn verify<C: serde::de::DeserializeOwned>(secret: &str, token: Option<&str>) -> Result<C, &'static str> {
    let token = token.filter(|t| !t.is_empty()).ok_or("missing token")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    decode::<C>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .map(|data| data.claims)
        .map_err(|err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "token signature invalid",
            jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
            _ => "token invalid",
        })
}

/// True when `origin` may connect: no list configured, or the origin is on it.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    allowed.is_empty() || origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}

/// Completes the WebSocket upgrade only to close it with 1008 and `reason`, so a client can tell
/// "unauthorized" from a network error (browsers hide HTTP statuses of failed upgrades).
pub fn refuse(ws: WebSocketUpgrade, reason: &'static str) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let frame = CloseFrame {
            code: crate::hub::close_code::POLICY,
            reason: reason.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    })
}
