//! What every function does at cold start: logging, the validated config, the AWS SDK configuration
//! (region, credentials and `AWS_ENDPOINT_URL` from the environment). No network I/O.

use crate::config::{Config, ConfigError};

pub async fn start() -> Result<(Config, aws_config::SdkConfig), ConfigError> {
    crate::logging::init();
    let config = Config::load(&Config::default_path())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok((config, sdk))
}
