//! Log setup for the functions: JSON lines when Lambda's `AWS_LAMBDA_LOG_FORMAT` is `JSON`, level from
//! `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), default INFO.
//!
//! Some dependencies log raw payloads at TRACE: `lambda_runtime` logs the whole invocation event (with the
//! Okta secret header), the AWS SDK logs response bodies (secret values). Those targets are capped at DEBUG
//! whatever level is asked for, so no secret reaches the logs.

use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Targets that may log payloads or secret values at TRACE.
const PAYLOAD_LOGGERS: &[&str] = &[
    "lambda_runtime",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_secretsmanager",
    "aws_secretsmanager_caching",
    "hyper",
    "h2",
    "rustls",
    "tokio_postgres",
];

/// The filter for a requested level.
pub fn filter(requested: LevelFilter) -> Targets {
    let capped = requested.min(LevelFilter::DEBUG);
    PAYLOAD_LOGGERS
        .iter()
        .fold(Targets::new().with_default(requested), |t, target| {
            t.with_target(*target, capped)
        })
}

fn requested_level() -> LevelFilter {
    std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Install the global subscriber (once, at start).
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter = filter(requested_level());
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_target(true),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time(),
            )
            .try_init()
    };
    if result.is_err() {
        tracing::debug!("a global subscriber was already installed");
    }
}

/// Whether a level is enabled for a target under `filter` (used in tests and by callers that build
/// expensive log fields).
pub fn would_log(filter: &Targets, target: &str, level: Level) -> bool {
    filter.would_enable(target, &level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_loggers_never_reach_trace() {
        let f = filter(LevelFilter::TRACE);
        assert!(!would_log(
            &f,
            "lambda_runtime::layers::api_response",
            Level::TRACE
        ));
        assert!(!would_log(
            &f,
            "aws_smithy_runtime::client::orchestrator",
            Level::TRACE
        ));
        assert!(would_log(&f, "lambda_runtime", Level::DEBUG));
        assert!(would_log(&f, "okta_rds_sync::db", Level::TRACE));
        let info = filter(LevelFilter::INFO);
        assert!(would_log(&info, "audit", Level::INFO));
        assert!(!would_log(&info, "lambda_runtime", Level::DEBUG));
    }
}
