//! A function process (ours or the peer) polling its own Runtime API emulator, invoked as Okta would.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use okta_rds_sync_tests::runtime::RuntimeApi;
use serde_json::Value;

pub struct Function {
    api: RuntimeApi,
    child: Child,
}

impl Function {
    /// Start `program` with `env`; the clock for a cold start starts before this call.
    pub async fn spawn(program: &Path, env: &[(&str, String)]) -> Result<Self, String> {
        let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
        let child = api
            .spawn_function(program, env, None)
            .map_err(|e| format!("{}: {e}", program.display()))?;
        Ok(Self { api, child })
    }

    /// Invoke with an API Gateway v2 request; how long the answer took, and its decoded body. Panics
    /// unless the answer is a 200.
    pub async fn invoke(&self, request: &str) -> (Duration, Value) {
        let started = Instant::now();
        let answer = self
            .api
            .invoke(Bytes::from(request.to_owned()), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}"));
        let took = started.elapsed();
        let answer: Value = serde_json::from_slice(&answer).expect("JSON answer");
        assert_eq!(answer["statusCode"], 200, "unexpected answer: {answer}");
        let body = answer["body"]
            .as_str()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        (took, body)
    }

    /// Peak resident set (VmHWM) of the process so far, in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panics unless okta-hook's answer says every event was taken and every target applied it: a fast answer
/// that did nothing would be a false figure.
pub fn assert_applied(body: &Value, events: usize) {
    assert_eq!(body["events"], events, "events counted: {body}");
    assert_eq!(body["ignored"], 0, "events ignored: {body}");
    assert_eq!(body["refused_events"], 0, "events refused: {body}");
    assert_eq!(body["queued"], false, "delivery queued: {body}");
    let targets = body["targets"].as_array().expect("targets");
    assert!(
        !targets.is_empty() && targets.iter().all(|t| t.get("error").is_none()),
        "a target failed: {body}"
    );
}
