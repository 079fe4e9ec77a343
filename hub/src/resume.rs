//! Resume tokens: `epoch~room~peer~expiry~nonce~binding~mac`, HMAC-SHA256 signed. They are
//! self-contained, so a *restarted* server (new epoch, same `--resume-secret`) can still verify
//! a token from before the restart and give the peer back its id. Nobody in the room then sees
//! leave/join for a server restart.
//!
//! What keeps a token from being used by someone else:
//! - it expires `token_ttl` after it was issued (the resume grace plus the longest a connected
//!   client stays silent); the server renews it with every `pong`, so only a peer that is away
//!   holds an aging token;
//! - it is bound to the authenticated identity that got it (`binding`: a digest of the JWT's
//!   `sub`, else its `peerId`, else the whole JWT), so another member's JWT cannot present it;
//! - within one server process it must be the peer's current token (spent on use), and a token
//!   from before a restart restores its peer once.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use web_time::{SystemTime, UNIX_EPOCH};

/// Who a resume token belongs to: a digest of the authenticated identity, or anonymous when
/// the server takes no JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(String);

impl Default for Binding {
    fn default() -> Binding {
        Binding::anonymous()
    }
}

impl Binding {
    pub fn anonymous() -> Binding {
        Binding("-".into())
    }

    /// The binding of an authenticated identity (hashed: tokens never carry the identity).
    pub fn of(identity: &str) -> Binding {
        let hash = Sha256::digest(identity.as_bytes());
        Binding(hex(&hash[..12]))
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaim {
    pub epoch: u64,
    pub room: String,
    pub peer: String,
    /// Unix time (ms) after which the token is void.
    pub expiry_ms: u64,
    pub binding: Binding,
}

pub struct ResumeKeys {
    key: Hmac<Sha256>,
    /// Identifies this server process: tokens of another epoch come from before a restart.
    pub epoch: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ResumeKeys {
    /// `secret`: shared across restarts to keep tokens valid; `None` picks a random one (a
    /// restart then ends every session's identity, and clients join afresh).
    pub fn new(secret: Option<&str>) -> ResumeKeys {
        let key_bytes = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        ResumeKeys {
            // HMAC takes keys of any length.
            key: Hmac::new_from_slice(&key_bytes).unwrap_or_else(|_| unreachable!()),
            epoch: rand::random(),
        }
    }

    fn sign(&self, body: &str) -> [u8; 32] {
        let mut mac = self.key.clone();
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A new token for `peer` in `room`, valid for `ttl` from now.
    pub fn issue(&self, room: &str, peer: &str, binding: &Binding, ttl: Duration) -> String {
        self.issue_at(room, peer, binding, unix_ms() + ttl.as_millis() as u64)
    }

    fn issue_at(&self, room: &str, peer: &str, binding: &Binding, expiry_ms: u64) -> String {
        let nonce: u64 = rand::random();
        let body = format!(
            "{:x}~{room}~{peer}~{expiry_ms}~{nonce:x}~{}",
            self.epoch, binding.0
        );
        format!("{body}~{}", hex(&self.sign(&body)[..16]))
    }

    /// The claim of an authentic token that is still valid at `now_ms` (unix ms).
    pub fn verify(&self, token: &str, now_ms: u64) -> Option<ResumeClaim> {
        let (body, mac) = token.rsplit_once('~')?;
        let expected = self.sign(body);
        // Constant-time comparison of the hex tags.
        let given = mac.as_bytes();
        let want = hex(&expected[..16]);
        if given.len() != want.len()
            || given
                .iter()
                .zip(want.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return None;
        }
        let mut parts = body.split('~');
        let epoch = u64::from_str_radix(parts.next()?, 16).ok()?;
        let room = parts.next()?.to_string();
        let peer = parts.next()?.to_string();
        let expiry_ms: u64 = parts.next()?.parse().ok()?;
        let _nonce = parts.next()?;
        let binding = Binding(parts.next()?.to_string());
        (parts.next().is_none() && expiry_ms >= now_ms).then_some(ResumeClaim {
            epoch,
            room,
            peer,
            expiry_ms,
            binding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_across_epochs_with_the_same_secret_only() {
        let before = ResumeKeys::new(Some("s3cret"));
        let after = ResumeKeys::new(Some("s3cret"));
        let other = ResumeKeys::new(Some("other"));
        let alice = Binding::of("alice");
        let token = before.issue("room-1", "peer.a", &alice, Duration::from_secs(60));
        let claim = after.verify(&token, unix_ms()).expect("valid after a restart");
        assert_eq!(
            (
                claim.epoch,
                claim.room.as_str(),
                claim.peer.as_str(),
                &claim.binding
            ),
            (before.epoch, "room-1", "peer.a", &alice)
        );
        assert_ne!(claim.epoch, after.epoch);
        assert!(other.verify(&token, unix_ms()).is_none(), "another secret");
        let forged = token.replacen("peer.a", "peer.b", 1);
        assert!(after.verify(&forged, unix_ms()).is_none(), "tampered");
        let rebound = token.replacen(&alice.0, &Binding::of("bob").0, 1);
        assert!(after.verify(&rebound, unix_ms()).is_none(), "rebound");
        assert_ne!(
            before.issue("room-1", "peer.a", &alice, Duration::from_secs(60)),
            token,
            "every token is new"
        );
        for junk in ["", "~", "a~b~c~d~e", "zz~r~p~1~00~-", &format!("{token}x")] {
            assert!(after.verify(junk, unix_ms()).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn tokens_expire_at_their_deadline() {
        let keys = ResumeKeys::new(Some("s"));
        let token = keys.issue_at("r", "p", &Binding::anonymous(), 1_000);
        assert!(keys.verify(&token, 1_000).is_some());
        assert!(keys.verify(&token, 1_001).is_none());
    }

    #[test]
    fn bindings_name_nobody_in_clear_and_differ_per_identity() {
        let (a, b) = (Binding::of("alice"), Binding::of("bob"));
        assert_ne!(a, b);
        assert!(!a.0.contains("alice") && a.0.len() == 24);
        assert_ne!(a, Binding::anonymous());
    }
}
