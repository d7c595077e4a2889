//! Lambda entry point: load the config once, start connecting (the warm-up), then serve invocations with
//! the kept [`okta_hook::HookApp`].

use std::convert::Infallible;

use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, sdk) = okta_rds_sync::startup::start().await?;
    let app = okta_hook::HookApp::new(&config, &sdk)
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    // The app lives as long as the process: the warm-up task and every invocation share it.
    let app: &'static okta_hook::HookApp = Box::leak(Box::new(app));
    tokio::spawn(app.warm_up());
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(okta_hook::handle(app, request).await)
    }))
    .await
}
