//! Lambda entry point: load the config once, then serve invocations with the kept [`okta_hook::HookApp`].

use std::convert::Infallible;

use lambda_http::{Error, Request, service_fn};
use okta_rds_sync::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    okta_rds_sync::logging::init();
    let path = Config::default_path();
    let config = Config::load(&path)
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = okta_hook::HookApp::new(&config, &sdk)
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let app = &app;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(okta_hook::handle(app, request).await)
    }))
    .await
}
