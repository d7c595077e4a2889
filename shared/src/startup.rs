//! What every function does at cold start: logging, the validated config, the AWS SDK configuration
//! (region, credentials and `AWS_ENDPOINT_URL` from the environment). No network I/O.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ConfigError};

pub async fn start() -> Result<(Config, aws_config::SdkConfig), ConfigError> {
    crate::logging::init();
    let config = Config::load(&Config::default_path())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok((config, sdk))
}

/// An invocation's deadline (Lambda gives milliseconds since the epoch) on the monotonic clock.
pub fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
