//! Resume tokens: `epoch~room~peer~expiry~nonce~mac`, HMAC-SHA256 signed. They are self-contained,
//! so a *restarted* server (new epoch, same `--resume-secret`) can still verify a token from
//! before the restart and give the peer back its id. Nobody in the room then sees leave/join
//! for a server restart. Tokens from the current epoch must also match the server's own record,
//! so they rotate and are spent on use.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;

/// How long a token stays usable after it was issued (it is re-issued on every resume).
pub const TOKEN_TTL_SECS: u64 = 24 * 3600;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaim {
    pub epoch: u64,
    pub room: String,
    pub peer: String,
}

pub struct ResumeKeys {
    key: hmac::Key,
    /// Identifies this server process: tokens of another epoch come from before a restart.
    pub epoch: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
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
            key: hmac::Key::new(hmac::HMAC_SHA256, &key_bytes),
            epoch: rand::random(),
        }
    }

    pub fn issue(&self, room: &str, peer: &str) -> String {
        let nonce: u64 = rand::random();
        let body = format!(
            "{:x}~{room}~{peer}~{}~{nonce:x}",
            self.epoch,
            unix_now() + TOKEN_TTL_SECS
        );
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}~{}", hex(&tag.as_ref()[..16]))
    }

    /// The claim of an authentic, unexpired token.
    pub fn verify(&self, token: &str) -> Option<ResumeClaim> {
        let (body, mac) = token.rsplit_once('~')?;
        let expected = hmac::sign(&self.key, body.as_bytes());
        // Constant-time comparison of the hex tags.
        let given = mac.as_bytes();
        let want = hex(&expected.as_ref()[..16]);
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
        let expiry: u64 = parts.next()?.parse().ok()?;
        let _nonce = parts.next()?;
        (parts.next().is_none() && expiry >= unix_now()).then_some(ResumeClaim { epoch, room, peer })
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
        let token = before.issue("room-1", "peer.a");
        let claim = after.verify(&token).expect("valid after a restart");
        assert_eq!(
            claim,
            ResumeClaim {
                epoch: before.epoch,
                room: "room-1".into(),
                peer: "peer.a".into()
            }
        );
        assert_ne!(claim.epoch, after.epoch);
        assert!(other.verify(&token).is_none(), "another secret");
        let forged = token.replacen("peer.a", "peer.b", 1);
        assert!(after.verify(&forged).is_none(), "tampered");
        assert_ne!(before.issue("room-1", "peer.a"), token, "every token is new");
        for junk in ["", "~", "a~b~c~d~e", "zz~r~p~1~00", &format!("{token}x")] {
            assert!(after.verify(junk).is_none(), "{junk:?}");
        }
    }
}
