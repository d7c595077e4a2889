//! The `retry-worker` Lambda: applies deliveries that `okta-hook` queued, with the same engine.
//!
//! Reports partial batch failures (`batchItemFailures`): only messages that failed for a transient reason
//! go back to the queue, and after the queue's `maxReceiveCount` they move to the dead-letter queue.
//! Permanent failures (bad configuration, a refused target) are logged and audited by the engine and not
//! retried: retrying cannot fix them, and the reconcile heals the users once the cause is fixed. Messages
//! that are not queued deliveries at all are poison: they are failed every time and so end in the DLQ.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use okta_rds_sync::db::Received;
use okta_rds_sync::engine::Engine;
use okta_rds_sync::okta::parse_delivery;
use okta_rds_sync::queue::QueuedDelivery;

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Applied,
    /// Will be retried (transient failure).
    Retry,
    /// Not retried: a permanent failure, logged and audited.
    Dropped,
    /// Not a queued delivery; left to the DLQ.
    Poison,
}

pub async fn handle_message(engine: &Engine, body: &str) -> Disposition {
    let queued = match QueuedDelivery::decode(body) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(error = %e, "poison message");
            return Disposition::Poison;
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
    let report = engine.apply(&delivery, &received).await;
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

/// Handle one SQS batch.
pub async fn handle_batch(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.unwrap_or_default();
        let disposition = handle_message(engine, record.body.as_deref().unwrap_or_default()).await;
        if matches!(disposition, Disposition::Retry | Disposition::Poison) {
            response.add_failure(id);
        }
    }
    response
}
