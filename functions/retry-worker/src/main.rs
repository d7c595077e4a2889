//! Lambda entry point of the retry worker (SQS event source with ReportBatchItemFailures).
#![recursion_limit = "256"]

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use okta_rds_sync::engine::Engine;
use okta_rds_sync::secrets::Secrets;

/// The worker has no Okta waiting on it: it may wait longer for a database that is coming back.
const BUDGET: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = okta_rds_sync::startup::start().await?;
    let secrets = Secrets::new(&sdk, Duration::from_secs(config.hook.secret_ttl_seconds))?;
    let engine = Engine::with_budget(&config, secrets, BUDGET)?;
    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            Ok::<_, Error>(retry_worker::handle_batch(engine, event.payload).await)
        },
    ))
    .await
}
