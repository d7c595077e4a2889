//! The durable retry path: a verified delivery that could not be applied at once is put on an SQS queue
//! and applied later by the `retry-worker` function with the same engine.
//!
//! A message carries the delivery exactly as Okta sent it and the time it was received (offboarding
//! durations and the clock-skew rule count from the original receipt), sealed with an HMAC-SHA256 over all
//! of it. The key is derived (HKDF) from the hook secret, which only Okta and the functions know, so
//! whoever else can write to the queue (`sqs:SendMessage` anywhere in the account) cannot make the worker
//! apply anything: a message that does not verify is poison and ends in the dead-letter queue.

use std::time::{Duration, Instant};

use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::verify::HookSecret;

/// Message format version. Version 1 carried no MAC and is refused.
const FORMAT: u32 = 2;
const MAC_DOMAIN: &[u8] = b"okta-rds-sync queued delivery v2";

/// Why a queued message is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("not a queued delivery: {0}")]
    Malformed(String),
    #[error("unknown queued delivery format {0}")]
    Format(u32),
    #[error("the message's MAC does not verify with the hook secret (forged or altered)")]
    BadMac,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDelivery {
    pub format: u32,
    pub delivery_id: String,
    pub received_at: DateTime<Utc>,
    /// The Okta delivery body (JSON text).
    pub body: String,
    /// HMAC-SHA256 of the fields above (base64url), see [`QueueSeal`].
    #[serde(default)]
    pub mac: String,
}

/// Signs and verifies queued deliveries with keys derived from the hook secret: the current secret
/// signs; the current or the previous one (during a rotation) verifies.
pub struct QueueSeal {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for QueueSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueSeal(<redacted>)")
    }
}

impl QueueSeal {
    pub fn new(secret: &HookSecret) -> Self {
        Self {
            keys: secret.values().filter_map(derive_key).collect(),
        }
    }

    fn mac(key: &hmac::Key, q: &QueuedDelivery) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(key, &signed_bytes(q)).as_ref())
    }

    fn verifies(&self, q: &QueuedDelivery) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(q.mac.as_bytes()) else {
            return false;
        };
        let message = signed_bytes(q);
        // Every key is tried, so timing does not tell which one matched.
        self.keys
            .iter()
            .map(|k| hmac::verify(k, &message, &tag).is_ok())
            .fold(false, |any, ok| any | ok)
    }
}

/// HKDF-SHA256 of the secret to a MAC key (a key of its own, never the header value itself).
fn derive_key(secret: &[u8]) -> Option<hmac::Key> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"okta-rds-sync retry queue");
    let prk = salt.extract(secret);
    let okm = prk.expand(&[b"message MAC v2"], hmac::HMAC_SHA256).ok()?;
    Some(hmac::Key::from(okm))
}

/// The bytes a MAC covers: a domain tag, then each field length-prefixed (so no two messages share them).
fn signed_bytes(q: &QueuedDelivery) -> Vec<u8> {
    let received = q.received_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let format = q.format.to_string();
    let mut out = Vec::with_capacity(MAC_DOMAIN.len() + q.body.len() + 128);
    out.extend_from_slice(MAC_DOMAIN);
    for part in [
        format.as_bytes(),
        q.delivery_id.as_bytes(),
        received.as_bytes(),
        q.body.as_bytes(),
    ] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

impl QueuedDelivery {
    /// A delivery to queue, sealed with the current hook secret's key.
    pub fn sealed(
        delivery_id: &str,
        received_at: DateTime<Utc>,
        body: &[u8],
        seal: &QueueSeal,
    ) -> Self {
        let mut q = Self {
            format: FORMAT,
            delivery_id: delivery_id.to_owned(),
            received_at,
            body: String::from_utf8_lossy(body).into_owned(),
            mac: String::new(),
        };
        if let Some(key) = seal.keys.first() {
            q.mac = QueueSeal::mac(key, &q);
        }
        q
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse a message and check its MAC.
    pub fn open(text: &str, seal: &QueueSeal) -> Result<Self, QueueError> {
        let q: Self =
            serde_json::from_str(text).map_err(|e| QueueError::Malformed(e.to_string()))?;
        if q.format != FORMAT {
            return Err(QueueError::Format(q.format));
        }
        if !seal.verifies(&q) {
            return Err(QueueError::BadMac);
        }
        Ok(q)
    }

    /// The receipt instant on this process's clock (for durations since receipt).
    pub fn received_instant(&self) -> Instant {
        let age = (Utc::now() - self.received_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
    }
}

/// An SQS queue of deliveries.
#[derive(Debug, Clone)]
pub struct RetryQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl RetryQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: &str) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(sdk),
            url: url.to_owned(),
        }
    }

    /// Queue a delivery, giving up after `timeout` (the caller still has to answer Okta in time).
    pub async fn send(&self, delivery: &QueuedDelivery, timeout: Duration) -> Result<(), String> {
        let send = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(delivery.encode())
            .send();
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "queue {}: {}",
                self.url,
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )),
            Err(_) => Err(format!("queue {}: no answer within {timeout:?}", self.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(secret: &str) -> QueueSeal {
        QueueSeal::new(&HookSecret::parse(secret).unwrap())
    }

    fn sample(s: &QueueSeal) -> QueuedDelivery {
        QueuedDelivery::sealed(
            "d1",
            "2026-03-02T14:05:11.123456789Z".parse().unwrap(),
            b"{\"eventId\":\"d1\"}",
            s,
        )
    }

    #[test]
    fn sealed_messages_round_trip() {
        let s = seal("Bearer current");
        let q = sample(&s);
        assert_eq!(QueuedDelivery::open(&q.encode(), &s).unwrap(), q);
        assert!(q.received_instant() <= Instant::now());
        assert!(!q.mac.is_empty() && !q.encode().contains("Bearer current"));
    }

    #[test]
    fn forged_altered_unsigned_and_foreign_messages_are_refused() {
        let s = seal("Bearer current");
        let q = sample(&s);
        let altered = [
            QueuedDelivery {
                body: "{\"eventId\":\"d2\"}".into(),
                ..q.clone()
            },
            QueuedDelivery {
                delivery_id: "d2".into(),
                ..q.clone()
            },
            QueuedDelivery {
                received_at: "2999-01-01T00:00:00Z".parse().unwrap(),
                ..q.clone()
            },
            QueuedDelivery {
                mac: String::new(),
                ..q.clone()
            },
            QueuedDelivery {
                mac: "not base64 !".into(),
                ..q.clone()
            },
        ];
        for a in altered {
            assert_eq!(
                QueuedDelivery::open(&a.encode(), &s),
                Err(QueueError::BadMac)
            );
        }
        // Sealed with another secret.
        let other = sample(&seal("Bearer other"));
        assert_eq!(
            QueuedDelivery::open(&other.encode(), &s),
            Err(QueueError::BadMac)
        );
        // Version 1 messages had no MAC.
        let v1 = q.encode().replace("\"format\":2", "\"format\":1");
        assert_eq!(QueuedDelivery::open(&v1, &s), Err(QueueError::Format(1)));
        assert!(matches!(
            QueuedDelivery::open("not json", &s),
            Err(QueueError::Malformed(_))
        ));
    }

    #[test]
    fn a_rotation_keeps_messages_sealed_with_the_previous_secret_valid() {
        let before = seal("Bearer old");
        let q = sample(&before);
        let during = seal(r#"{"current":"Bearer new","previous":"Bearer old"}"#);
        assert!(QueuedDelivery::open(&q.encode(), &during).is_ok());
        let after = seal("Bearer new");
        assert_eq!(
            QueuedDelivery::open(&q.encode(), &after),
            Err(QueueError::BadMac)
        );
        // New messages are sealed with the current secret.
        let fresh = sample(&during);
        assert!(QueuedDelivery::open(&fresh.encode(), &after).is_ok());
    }
}
