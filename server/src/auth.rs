//! Who may join which room: HS256 JWTs in the `token` query parameter, and allowed origins.

use std::time::Duration;

use axum::{
    extract::ws::{CloseFrame, Message, WebSocketUpgrade},
    response::Response,
};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

use rtcroom_hub::Binding;

/// Claims of a signaling token. `room` is required. `peerId` and `metadata` are optional; when
/// present, they are what the peer gets, whatever its `join` says. `sub` names the user.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalClaims {
    pub room: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub peer_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Box<RawValue>>,
}

impl SignalClaims {
    /// Who this token authenticates, for binding resume tokens: the `sub`, else the `peerId`,
    /// else the token itself (a client without either can resume only with the same JWT).
    pub fn principal(&self, token: &str) -> Binding {
        match (&self.sub, &self.peer_id) {
            (Some(sub), _) => Binding::of(&format!("sub:{sub}")),
            (None, Some(peer)) => Binding::of(&format!("peer:{peer}")),
            (None, None) => Binding::of(&format!("jwt:{token}")),
        }
    }
}

/// Clock skew allowed for `exp`/`nbf` unless `--jwt-leeway-secs` says otherwise (the JWT
/// library's own default, 60 s, kept expired tokens working for a minute).
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(5);

/// Verifies a token with the shared secret and the default leeway.
pub fn verify<C: serde::de::DeserializeOwned>(secret: &str, token: Option<&str>) -> Result<C, &'static str> {
    verify_with_leeway(secret, token, DEFAULT_JWT_LEEWAY)
}

/// Verifies a token with the shared secret, allowing `leeway` of clock skew. The error text
/// becomes the close reason, so it is short and says what is wrong without echoing the token.
pub fn verify_with_leeway<C: serde::de::DeserializeOwned>(
    secret: &str,
    token: Option<&str>,
    leeway: Duration,
) -> Result<C, &'static str> {
    let token = token.filter(|t| !t.is_empty()).ok_or("missing token")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = leeway.as_secs();
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
    close_at_once(ws, crate::hub::close_code::POLICY, reason)
}

/// Completes the upgrade only to close it with `code` and `reason`.
pub fn close_at_once(ws: WebSocketUpgrade, code: u16, reason: &'static str) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    })
}
