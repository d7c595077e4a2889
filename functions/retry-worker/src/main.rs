//! Lambda entry point of the retry worker (SQS event source with ReportBatchItemFailures).
#![recursion_limit = "256"]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use okta_rds_sync::secrets::Secrets;
use retry_worker::Worker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = okta_rds_sync::startup::start().await?;
    let secrets = Secrets::new(&sdk, Duration::from_secs(config.hook.secret_ttl_seconds))?;
    let worker = Worker::new(&config, secrets, Worker::message_budget_from_env())?;
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let deadline = instant_of(event.context.deadline);
            Ok::<_, Error>(worker.handle_batch(event.payload, deadline).await)
        },
    ))
    .await
}

/// The invocation's deadline (milliseconds since the epoch) on the monotonic clock.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
