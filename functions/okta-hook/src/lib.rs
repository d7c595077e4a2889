//! The `okta-hook` Lambda: the HTTP contract of DESIGN.md over [`okta_rds_sync::engine::Engine`].
//!
//! | request | response |
//! | --- | --- |
//! | other method | 405 |
//! | missing / wrong / empty / truncated secret header | 401, nothing recorded |
//! | GET with `x-okta-verification-challenge` | 200 `{"verification": "<value>"}` |
//! | POST body over the limit | 413 |
//! | POST body not JSON or not an Okta delivery | 400 |
//! | POST delivery applied | 200 with a JSON summary |
//! | POST delivery not applied (database unreachable, …) but durably queued | 200, `"queued": true` |
//! | POST delivery neither applied nor queued | 503 (Okta retries once) |
//!
//! Error bodies are fixed strings: no internals, no secrets.

use std::time::{Duration, Instant};

use lambda_http::http::{HeaderName, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use okta_rds_sync::config::Config;
use okta_rds_sync::converge::Received;
use okta_rds_sync::engine::Engine;
use okta_rds_sync::okta::parse_delivery;
use okta_rds_sync::queue::{QueueSeal, QueuedDelivery, RetryQueue};
use okta_rds_sync::secrets::Secrets;
use okta_rds_sync::verify::HookSecret;
use serde_json::json;
use tokio::sync::Mutex;

pub const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
const MAX_CHALLENGE_BYTES: usize = 1024;
/// A rejected secret may mean the hook secret was just rotated: re-read it, but at most this often, so
/// that unauthenticated requests cannot drive Secrets Manager calls.
const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Time left for queueing after the engine's budget; Okta gives up at 3 s.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Everything a warm function keeps between invocations.
#[derive(Debug)]
pub struct HookApp {
    header: HeaderName,
    secret_arn: String,
    max_body_bytes: usize,
    engine: Engine,
    queue: Option<RetryQueue>,
    last_forced_refresh: Mutex<Option<Instant>>,
}

impl HookApp {
    /// Build from a validated config; no network I/O happens here (cold start stays short).
    pub fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let ttl = Duration::from_secs(config.hook.secret_ttl_seconds);
        let secrets = Secrets::new(sdk, ttl).map_err(|e| e.to_string())?;
        let engine = Engine::new(config, secrets, sdk).map_err(|e| e.to_string())?;
        let header = HeaderName::from_bytes(config.hook.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| "config: hook.header: must be a valid HTTP header name".to_owned())?;
        Ok(Self {
            header,
            secret_arn: config.hook.secret_arn.clone(),
            max_body_bytes: config.hook.max_body_bytes,
            engine,
            queue: config
                .hook
                .retry_queue_url
                .as_deref()
                .map(|url| RetryQueue::new(sdk, url)),
            last_forced_refresh: Mutex::new(None),
        })
    }

    /// `Ok(true)` when the configured header carries the current or previous hook secret.
    async fn authenticate(&self, presented: Option<&[u8]>) -> Result<bool, String> {
        if presented.is_none_or(<[u8]>::is_empty) {
            return Ok(false);
        }
        if self.hook_secret(false).await?.accepts(presented) {
            return Ok(true);
        }
        let mut last = self.last_forced_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < FORCED_REFRESH_INTERVAL) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        Ok(self.hook_secret(true).await?.accepts(presented))
    }

    /// Fetch the hook secret and connect to every target now, so the first delivery after a cold start
    /// finds both ready. Spawned at start-up beside the runtime's first poll; failures are logged and left
    /// to the first delivery, which tries again.
    pub async fn warm_up(&self) {
        // The database's secret is asked first: its chain (secret, connect, bootstrap) is the long one.
        let ((), secret) = tokio::join!(self.engine.warm_up(), self.hook_secret(false));
        if let Err(e) = secret {
            tracing::warn!(error = %e, "warm-up: hook secret not read yet");
        }
    }

    async fn hook_secret(&self, refresh: bool) -> Result<HookSecret, String> {
        let text = self
            .engine
            .secrets()
            .get(&self.secret_arn, refresh)
            .await
            .map_err(|e| e.to_string())?;
        HookSecret::parse(&text).map_err(|e| format!("hook secret {}: {e}", self.secret_arn))
    }
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, json!({ "error": message }))
}

/// Handle one request. Never fails: every outcome is an HTTP response.
pub async fn handle(app: &HookApp, request: Request) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let response = route(app, request, started).await;
    tracing::info!(
        method = %method,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

async fn route(app: &HookApp, request: Request, started: Instant) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert("allow", "GET, POST".parse().expect("static header"));
        return r;
    }
    let presented = request.headers().get(&app.header).map(|v| v.as_bytes());
    match app.authenticate(presented).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(method = %request.method(), "rejected request: missing or wrong hook secret");
            return error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        Err(e) => {
            tracing::error!(error = %e, "hook secret unavailable");
            return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
    }
    if request.method() == Method::GET {
        return verification(&request);
    }
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if body.len() > app.max_body_bytes {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let delivery = match parse_delivery(body) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "rejected body");
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    for ignored in &delivery.ignored {
        tracing::info!(
            delivery_id = %delivery.event_id,
            event_uuid = ignored.uuid.as_deref().unwrap_or(""),
            event_type = ignored.event_type.as_deref().unwrap_or(""),
            reason = ignored.reason.as_str(),
            "event ignored"
        );
    }
    let received_at =
        chrono::Utc::now() - chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let received = Received {
        delivery_id: delivery.event_id.clone(),
        at: started,
        wall: received_at,
    };
    let report = app.engine.apply(&delivery, &received).await;
    let targets: Vec<serde_json::Value> = report
        .targets
        .iter()
        .map(|(name, result)| match result {
            Ok(summary) => json!(summary),
            Err(e) => json!({ "target": name, "error": if e.is_transient() { "unavailable" } else { "failed" } }),
        })
        .collect();
    let queued = !report.all_applied() && queue(app, &delivery.event_id, received_at, body).await;
    let status = if report.all_applied() || queued {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond(
        status,
        json!({
            "delivery": delivery.event_id,
            "events": delivery.events.len(),
            "ignored": delivery.ignored.len(),
            "refused_events": report.refused_events,
            "queued": queued,
            "targets": targets,
        }),
    )
}

/// Put a delivery that was not fully applied on the retry queue; `true` once it is durably stored.
async fn queue(
    app: &HookApp,
    delivery_id: &str,
    received_at: chrono::DateTime<chrono::Utc>,
    body: &[u8],
) -> bool {
    let Some(queue) = &app.queue else {
        return false;
    };
    // The message is sealed with a key derived from the hook secret, so the worker applies nothing that
    // did not pass through here.
    let seal = match app.hook_secret(false).await {
        Ok(secret) => QueueSeal::new(&secret),
        Err(e) => {
            tracing::error!(delivery_id, error = %e, "hook secret unavailable; delivery not queued");
            return false;
        }
    };
    let message = QueuedDelivery::sealed(delivery_id, received_at, body, &seal);
    match queue.send(&message, QUEUE_TIMEOUT).await {
        Ok(()) => {
            tracing::warn!(
                delivery_id,
                "delivery not applied everywhere; queued for the retry worker"
            );
            true
        }
        Err(e) => {
            tracing::error!(delivery_id, error = %e, "delivery neither applied nor queued; Okta will retry once");
            false
        }
    }
}

fn verification(request: &Request) -> Response<Body> {
    match request
        .headers()
        .get(CHALLENGE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if !v.is_empty() && v.len() <= MAX_CHALLENGE_BYTES => {
            tracing::info!("answered Okta verification challenge");
            respond(StatusCode::OK, json!({ "verification": v }))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "missing x-okta-verification-challenge header",
        ),
    }
}
