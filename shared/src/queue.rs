//! The durable retry path: a verified delivery that could not be applied at once is put on an SQS queue
//! and applied later by the `retry-worker` function with the same engine.
//!
//! A message carries the delivery exactly as Okta sent it (it was authenticated before being queued; the
//! queue is private to the stack) and the time it was received, so offboarding durations still count from
//! the original receipt.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Message format version, so a future change can be recognized.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDelivery {
    pub format: u32,
    pub delivery_id: String,
    pub received_at: DateTime<Utc>,
    /// The Okta delivery body (JSON text).
    pub body: String,
}

impl QueuedDelivery {
    pub fn new(delivery_id: &str, received_at: DateTime<Utc>, body: &[u8]) -> Self {
        Self {
            format: FORMAT,
            delivery_id: delivery_id.to_owned(),
            received_at,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let q: Self =
            serde_json::from_str(text).map_err(|e| format!("not a queued delivery: {e}"))?;
        if q.format != FORMAT {
            return Err(format!("unknown queued delivery format {}", q.format));
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

    #[test]
    fn round_trip_and_bad_messages() {
        let q = QueuedDelivery::new(
            "d1",
            "2026-03-02T14:05:11Z".parse().unwrap(),
            b"{\"eventId\":\"d1\"}",
        );
        assert_eq!(QueuedDelivery::decode(&q.encode()).unwrap(), q);
        assert!(QueuedDelivery::decode("not json").is_err());
        let future = q.encode().replace("\"format\":1", "\"format\":9");
        assert!(
            QueuedDelivery::decode(&future)
                .unwrap_err()
                .contains("format 9")
        );
        assert!(q.received_instant() <= Instant::now());
    }
}
