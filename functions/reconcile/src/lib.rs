//! The `reconcile` Lambda: list every mapped Okta group and converge every target to it.
//!
//! Invocation payload (a scheduled EventBridge event carries none of these fields: a real run):
//! - `{"dry_run": true}`: return the plan per target (roles to create, grants, revokes, sessions to
//!   terminate) without changing anything;
//! - `{"check": true}`: a dry run that fails the invocation when the databases differ from Okta (a drift
//!   gate for CI or monitoring).

use std::time::{Duration, Instant};

use okta_rds_sync::config::Config;
use okta_rds_sync::engine::Engine;
use okta_rds_sync::okta_api::{OktaClient, OktaCredentials};
use okta_rds_sync::reconcile::fetch_listing;
use okta_rds_sync::secrets::Secrets;
use serde::Deserialize;
use serde_json::{Value, json};

/// Budget per target: no Okta waiting; a full run may touch thousands of users.
const BUDGET: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Deserialize)]
pub struct ReconcileRequest {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub check: bool,
}

impl ReconcileRequest {
    /// The request in an invocation payload. Other fields (a scheduled event's) are ignored, but a
    /// malformed `dry_run` or `check` is an error: it must never turn a requested dry run into a real run.
    pub fn from_payload(payload: Value) -> Result<Self, String> {
        let expected = "invalid request (expected {\"dry_run\": bool, \"check\": bool})";
        match payload {
            Value::Null => Ok(Self::default()),
            // serde would also read a struct from an array: only an object is a request.
            Value::Object(_) => {
                serde_json::from_value(payload).map_err(|e| format!("{expected}: {e}"))
            }
            _ => Err(format!("{expected}: not a JSON object")),
        }
    }
}

#[derive(Debug)]
pub struct ReconcileApp {
    config: Config,
    engine: Engine,
    okta: OktaClient,
}

impl ReconcileApp {
    /// Reads the Okta service app's key from Secrets Manager (once, at start).
    pub async fn new(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self, String> {
        let (Some(org), Some(arn)) = (
            config.okta.org_url.clone(),
            config.okta.api_secret_arn.clone(),
        ) else {
            return Err("config: okta.org_url and okta.api_secret_arn are required by the reconcile function".into());
        };
        let secrets = Secrets::new(sdk, Duration::from_secs(config.hook.secret_ttl_seconds))
            .map_err(|e| e.to_string())?;
        let creds =
            OktaCredentials::parse(&secrets.get(&arn, false).await.map_err(|e| e.to_string())?)
                .map_err(|e| format!("{arn}: {e}"))?;
        let okta = OktaClient::new(&org, &creds, &config.okta.scopes).map_err(|e| e.to_string())?;
        let engine =
            Engine::with_budget(&config, secrets, sdk, BUDGET).map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            engine,
            okta,
        })
    }

    /// Run once. `Err` fails the invocation: Okta or a target failed, or (`check`) the databases drifted.
    /// `deadline` is the invocation's: Okta's listing (with its rate-limit waits) must end by three
    /// quarters of the time left, so the databases still get the rest.
    pub async fn handle(
        &self,
        request: ReconcileRequest,
        deadline: Option<Instant>,
    ) -> Result<Value, String> {
        let dry_run = request.dry_run || request.check;
        let listing_deadline = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Instant::now() + left.mul_f64(0.75)
        });
        self.okta.set_deadline(listing_deadline);
        let listing = fetch_listing(&self.okta, &self.config)
            .await
            .map_err(|e| e.to_string())?;
        let reports = self.engine.reconcile(&listing, dry_run).await;
        let drift = reports.iter().any(|r| r.as_ref().is_ok_and(|r| r.drift()));
        let failed: Vec<String> = reports
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        let body = json!({
            "dry_run": dry_run,
            "listed_at": listing.listed_at,
            "run_id": listing.run_id,
            "groups": listing.groups.iter().map(|(id, m)| json!({ "id": id, "members": m.len() })).collect::<Vec<_>>(),
            "drift": drift,
            "targets": reports.iter().map(|r| match r {
                Ok(report) => json!(report),
                Err(e) => json!({ "error": e.to_string() }),
            }).collect::<Vec<_>>(),
        });
        tracing::info!(run_id = %listing.run_id, dry_run, drift, "reconcile finished");
        if !failed.is_empty() {
            return Err(format!(
                "reconcile failed on {} target(s): {}",
                failed.len(),
                failed.join("; ")
            ));
        }
        if request.check && drift {
            return Err(format!("drift: the databases differ from Okta: {body}"));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_strictly() {
        let scheduled = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        let r = ReconcileRequest::from_payload(scheduled).unwrap();
        assert!(!r.dry_run && !r.check);
        assert!(
            ReconcileRequest::from_payload(json!({"dry_run": true}))
                .unwrap()
                .dry_run
        );
        assert!(
            ReconcileRequest::from_payload(json!({"check": true}))
                .unwrap()
                .check
        );
        assert!(!ReconcileRequest::from_payload(Value::Null).unwrap().dry_run);
        for bad in [
            json!({"dry_run": "yes"}),
            json!({"check": 1}),
            json!("dry_run"),
            json!([true]),
        ] {
            assert!(
                ReconcileRequest::from_payload(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
