//! The `retry-worker` Lambda: applies deliveries that `okta-hook` queued, with the same engine.
//!
//! Every message must carry a valid MAC (a key derived from the hook secret, see
//! [`okta_rds_sync::queue`]): anything else is poison, however well-formed, since anyone in the account with
//! `sqs:SendMessage` could have written it. Reports partial batch failures (`batchItemFailures`): only
//! messages that failed for a transient reason (or were not reached before the invocation's deadline) go
//! back to the queue, and after the queue's `maxReceiveCount` they move to the dead-letter queue. Permanent
//! failures (bad configuration, a refused target) are logged and audited by the engine and not retried:
//! retrying cannot fix them, and the reconcile heals the users once the cause is fixed. Poison messages are
//! failed every time and so end in the DLQ.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use okta_rds_sync::config::Config;
use okta_rds_sync::converge::Received;
use okta_rds_sync::engine::Engine;
use okta_rds_sync::okta::parse_delivery;
use okta_rds_sync::queue::{QueueError, QueueSeal, QueuedDelivery};
use okta_rds_sync::secrets::Secrets;
use okta_rds_sync::verify::HookSecret;
use tokio::sync::Mutex;

/// Environment variable with the time one delivery may take (milliseconds; the template sets it so that
/// a full batch fits in the function's timeout).
pub const MESSAGE_BUDGET_ENV: &str = "OKTA_RDS_SYNC_MESSAGE_BUDGET_MS";
/// Default time one delivery may take: no Okta is waiting, but a batch of 10 must fit in the timeout.
pub const DEFAULT_MESSAGE_BUDGET: Duration = Duration::from_secs(5);
/// Kept free before the invocation's deadline (answering, logging).
const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);
/// A MAC that does not verify may mean the hook secret was rotated: re-read it, at most this often.
const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Applied,
    /// Will be retried (transient failure, or not reached before the deadline).
    Retry,
    /// Not retried: a permanent failure, logged and audited.
    Dropped,
    /// Not a queued delivery, or not sealed with the hook secret; left to the DLQ.
    Poison,
}

/// The worker: the engine, and the hook secret that seals queued deliveries.
#[derive(Debug)]
pub struct Worker {
    engine: Engine,
    hook_secret_arn: String,
    message_budget: Duration,
    last_forced_refresh: Mutex<Option<Instant>>,
}

impl Worker {
    pub fn new(
        config: &Config,
        secrets: Secrets,
        aws: &aws_config::SdkConfig,
        message_budget: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            engine: Engine::with_budget(config, secrets, aws, message_budget)
                .map_err(|e| e.to_string())?,
            hook_secret_arn: config.hook.secret_arn.clone(),
            message_budget,
            last_forced_refresh: Mutex::new(None),
        })
    }

    /// The budget per message from [`MESSAGE_BUDGET_ENV`], or the default.
    pub fn message_budget_from_env() -> Duration {
        std::env::var(MESSAGE_BUDGET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_MESSAGE_BUDGET, Duration::from_millis)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    async fn seal(&self, refresh: bool) -> Result<QueueSeal, String> {
        let text = self
            .engine
            .secrets()
            .get(&self.hook_secret_arn, refresh)
            .await
            .map_err(|e| e.to_string())?;
        let secret = HookSecret::parse(&text).map_err(|e| e.to_string())?;
        Ok(QueueSeal::new(&secret))
    }

    /// Open a message: its MAC is checked with the cached hook secret, then once more with a fresh read
    /// (the secret may have been rotated since it was cached).
    async fn open(&self, body: &str) -> Result<Result<QueuedDelivery, QueueError>, String> {
        let first = QueuedDelivery::open(body, &self.seal(false).await?);
        if first != Err(QueueError::BadMac) {
            return Ok(first);
        }
        let mut last = self.last_forced_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < FORCED_REFRESH_INTERVAL) {
            return Ok(first);
        }
        *last = Some(Instant::now());
        Ok(QueuedDelivery::open(body, &self.seal(true).await?))
    }

    /// Apply one message within `budget`.
    pub async fn handle_message(&self, body: &str, budget: Duration) -> Disposition {
        let queued = match self.open(body).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                tracing::error!(
                    target: "audit",
                    action = "queue_message_rejected",
                    outcome = "refused",
                    detail = %e,
                    "queued message rejected; it goes to the dead-letter queue"
                );
                return Disposition::Poison;
            }
            Err(e) => {
                tracing::error!(error = %e, "hook secret unavailable; message retried");
                return Disposition::Retry;
            }
        };
        let delivery = match parse_delivery(queued.body.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(delivery_id = %queued.delivery_id, error = %e, "poison message");
                return Disposition::Poison;
            }
        };
        let received = Received {
            delivery_id: queued.delivery_id.clone(),
            at: queued.received_instant(),
            wall: queued.received_at,
        };
        let report = self.engine.apply_within(&delivery, &received, budget).await;
        if report.all_applied() {
            tracing::info!(delivery_id = %queued.delivery_id, "queued delivery applied");
            Disposition::Applied
        } else if report.any_transient() {
            Disposition::Retry
        } else {
            tracing::error!(delivery_id = %queued.delivery_id, "queued delivery failed permanently; not retried");
            Disposition::Dropped
        }
    }

    /// Handle one SQS batch before `deadline` (the invocation's): each message gets the configured budget
    /// or what is left before the deadline, whichever is less; messages not reached go back to the queue.
    pub async fn handle_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.unwrap_or_default();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN);
            let disposition = if left < Duration::from_millis(200) {
                tracing::warn!(message_id = %id, "no time left in this invocation; message retried");
                Disposition::Retry
            } else {
                let body = record.body.as_deref().unwrap_or_default();
                self.handle_message(body, self.message_budget.min(left))
                    .await
            };
            if matches!(disposition, Disposition::Retry | Disposition::Poison) {
                response.add_failure(id);
            }
        }
        response
    }
}
