//! Lambda entry point of the retry worker (SQS event source with ReportBatchItemFailures).
#![recursion_limit = "256"]

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use okta_rds_sync::secrets::Secrets;
use retry_worker::Worker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = okta_rds_sync::startup::start().await?;
    let secrets = Secrets::new(&sdk, Duration::from_secs(config.hook.secret_ttl_seconds))?;
    let worker = Worker::new(&config, secrets, &sdk, Worker::message_budget_from_env())?;
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let deadline = okta_rds_sync::startup::deadline_instant(event.context.deadline);
            Ok::<_, Error>(worker.handle_batch(event.payload, deadline).await)
        },
    ))
    .await
}
