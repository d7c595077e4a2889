//! Lambda entry point of the reconcile (EventBridge schedule, or invoked by hand).
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use reconcile::{ReconcileApp, ReconcileRequest};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = okta_rds_sync::startup::start().await?;
    let app = ReconcileApp::new(config, &sdk)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request = ReconcileRequest::from_payload(event.payload).map_err(Error::from)?;
        let deadline = okta_rds_sync::startup::deadline_instant(event.context.deadline);
        app.handle(request, Some(deadline))
            .await
            .map_err(Error::from)
    }))
    .await
}
