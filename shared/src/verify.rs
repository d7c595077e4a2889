//! Authentication of Okta deliveries: the static secret Okta sends in a configured header.
//!
//! Okta event hooks carry no signature; the header value is the only proof. It is compared in constant
//! time: both sides are hashed with SHA-256 (so the comparison does not leak the secret's length) and the
//! digests compared with `subtle`. During a rotation the current and the previous secret are both accepted;
//! both are always compared, so timing does not tell which one matched.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The hook secret as stored in Secrets Manager.
#[derive(Clone)]
pub struct HookSecret {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookSecret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookSecretError {
    #[error("the hook secret is empty")]
    Empty,
    #[error("the hook secret is JSON but has no non-empty \"current\" string")]
    NoCurrent,
}

impl HookSecret {
    /// A SecretString is either the header value itself or `{"current": "...", "previous": "..."}`.
    pub fn parse(secret_string: &str) -> Result<Self, HookSecretError> {
        if let Ok(serde_json::Value::Object(map)) =
            serde_json::from_str::<serde_json::Value>(secret_string)
        {
            let get = |k: &str| {
                map.get(k)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
            };
            let current = get("current").ok_or(HookSecretError::NoCurrent)?;
            return Ok(Self {
                current: current.as_bytes().to_vec(),
                previous: get("previous").map(|p| p.as_bytes().to_vec()),
            });
        }
        if secret_string.is_empty() {
            return Err(HookSecretError::Empty);
        }
        Ok(Self {
            current: secret_string.as_bytes().to_vec(),
            previous: None,
        })
    }

    /// The current secret, then the previous one if any (for deriving keys from them).
    pub(crate) fn values(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.current.as_slice()).chain(self.previous.as_deref())
    }

    /// Whether the presented header value matches the current or the previous secret.
    pub fn accepts(&self, presented: Option<&[u8]>) -> bool {
        let Some(presented) = presented.filter(|p| !p.is_empty()) else {
            return false;
        };
        let presented = Sha256::digest(presented);
        let current = Sha256::digest(&self.current).ct_eq(&presented);
        let previous = match &self.previous {
            Some(prev) => Sha256::digest(prev).ct_eq(&presented),
            None => subtle::Choice::from(0),
        };
        bool::from(current | previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_secret() {
        let s = HookSecret::parse("Bearer s3cret-value").unwrap();
        assert!(s.accepts(Some(b"Bearer s3cret-value")));
        for bad in [
            &b""[..],
            b"Bearer s3cret-valu",
            b"Bearer s3cret-value ",
            b"bearer s3cret-value",
            b"x",
        ] {
            assert!(!s.accepts(Some(bad)), "{bad:?}");
        }
        assert!(!s.accepts(None));
    }

    #[test]
    fn rotation_accepts_current_and_previous_only() {
        let s = HookSecret::parse(r#"{"current":"new-secret","previous":"old-secret"}"#).unwrap();
        assert!(s.accepts(Some(b"new-secret")));
        assert!(s.accepts(Some(b"old-secret")));
        assert!(!s.accepts(Some(b"older-secret")));
        assert!(!s.accepts(Some(br#"{"current":"new-secret","previous":"old-secret"}"#)));
        let only = HookSecret::parse(r#"{"current":"new-secret","previous":""}"#).unwrap();
        assert!(!only.accepts(Some(b"")));
    }

    #[test]
    fn bad_secrets_are_errors() {
        assert_eq!(HookSecret::parse("").unwrap_err(), HookSecretError::Empty);
        assert_eq!(
            HookSecret::parse(r#"{"previous":"x"}"#).unwrap_err(),
            HookSecretError::NoCurrent
        );
        assert_eq!(
            HookSecret::parse(r#"{"current":""}"#).unwrap_err(),
            HookSecretError::NoCurrent
        );
        assert!(!format!("{:?}", HookSecret::parse("topsecret").unwrap()).contains("topsecret"));
    }
}
