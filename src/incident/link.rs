//! One-tap acknowledge links: `{public_url}/ack/{token}`, where the token names one incident
//! and one person (or none: a receiver's group robot, whose confirm page asks who) and when it
//! expires, signed with HMAC-SHA256 under `oncall.link_secret`. Rotating the secret voids
//! every link already sent; the token is the only credential the link carries.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub incident: i64,
    pub person: Option<String>,
    pub expires: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired")]
    Expired,
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    // HMAC takes a key of any length: this cannot fail.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// A token for `claim`, signed with `secret`.
pub fn sign(secret: &[u8], claim: &Claim) -> String {
    let payload = format!(
        "{}.{}.{}",
        claim.incident,
        claim.expires.timestamp(),
        claim.person.as_deref().unwrap_or("")
    );
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(secret, &payload))
    )
}

/// The claim of a token signed with `secret`, if it is still valid at `now`.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Claim, LinkError> {
    let (payload, sig) = token.split_once('.').ok_or(LinkError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(LinkError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| LinkError::Invalid)?;
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| LinkError::Invalid)?;
    m.update(payload.as_bytes());
    // Constant-time comparison.
    m.verify_slice(&sig).map_err(|_| LinkError::Invalid)?;
    let mut parts = payload.splitn(3, '.');
    let incident = parts.next().and_then(|s| s.parse().ok());
    let expires = parts
        .next()
        .and_then(|s| s.parse().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0));
    let person = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
    let (Some(incident), Some(expires)) = (incident, expires) else {
        return Err(LinkError::Invalid);
    };
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(Claim {
        incident,
        person,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_one_incident_and_person_expires_and_dies_with_its_secret() {
        let now = Utc::now();
        let claim = Claim {
            incident: 42,
            person: Some("zhangsan".into()),
            expires: DateTime::from_timestamp(now.timestamp() + 3600, 0).unwrap(),
        };
        let token = sign(b"k1", &claim);
        assert_eq!(verify(b"k1", &token, now), Ok(claim.clone()));
        assert_eq!(verify(b"k2", &token, now), Err(LinkError::Invalid));
        assert_eq!(
            verify(b"k1", &token, claim.expires),
            Err(LinkError::Expired)
        );
        // Another person or incident in the payload breaks the signature.
        let forged = sign(
            b"other",
            &Claim {
                incident: 43,
                ..claim.clone()
            },
        );
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, sig) = token.split_once('.').unwrap();
        assert_eq!(
            verify(b"k1", &format!("{payload}.{sig}"), now),
            Err(LinkError::Invalid)
        );
        let nobody = Claim {
            person: None,
            ..claim
        };
        assert_eq!(verify(b"k1", &sign(b"k1", &nobody), now), Ok(nobody));
        assert_eq!(verify(b"k1", "garbage", now), Err(LinkError::Invalid));
    }
}
