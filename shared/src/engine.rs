//! The engine: a delivery in, every target converged (or a classified error per target) out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::converge::{Received, TargetSummary};
use crate::db::Target;
use crate::error::SyncError;
use crate::journal::refuse_future;
use crate::okta::Delivery;
use crate::secrets::Secrets;
use crate::status_lookup::StatusLookup;

#[derive(Debug)]
pub struct Engine {
    secrets: Secrets,
    targets: Vec<Mutex<Target>>,
    budget: Duration,
    max_clock_skew: Duration,
    /// Okta's API, for users whose status was never seen (when the config names it).
    status_lookup: Option<Arc<StatusLookup>>,
}

/// What happened on each target.
#[derive(Debug)]
pub struct DeliveryReport {
    pub targets: Vec<(String, Result<TargetSummary, SyncError>)>,
    /// Events refused (and audited) for a `published` time later than receipt plus the clock skew.
    pub refused_events: usize,
}

impl DeliveryReport {
    pub fn all_applied(&self) -> bool {
        self.targets.iter().all(|(_, r)| r.is_ok())
    }

    /// Some target failed for a reason that a later retry can fix.
    pub fn any_transient(&self) -> bool {
        self.targets
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(SyncError::is_transient))
    }
}

impl Engine {
    /// An engine that gives all targets together `hook.budget_ms` per delivery (the hook's budget).
    /// `aws` reaches the AWS APIs a target may need besides Secrets Manager (RDS, to discover readers).
    pub fn new(
        config: &Config,
        secrets: Secrets,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, SyncError> {
        Self::with_budget(
            config,
            secrets,
            aws,
            Duration::from_millis(config.hook.budget_ms),
        )
    }

    /// An engine with another budget per delivery (the retry worker has no Okta waiting on it).
    pub fn with_budget(
        config: &Config,
        secrets: Secrets,
        aws: &aws_config::SdkConfig,
        budget: Duration,
    ) -> Result<Self, SyncError> {
        let targets = config
            .targets
            .iter()
            .map(|t| Target::new(t, config, aws).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            secrets,
            targets,
            budget,
            max_clock_skew: Duration::from_secs(config.hook.max_clock_skew_seconds),
            status_lookup: StatusLookup::from_config(config),
        })
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Converge every target to a full Okta listing (or, with `dry_run`, report what that would change).
    pub async fn reconcile(
        &self,
        listing: &crate::reconcile::Listing,
        dry_run: bool,
    ) -> Vec<Result<crate::reconcile::ReconcileReport, SyncError>> {
        let mut reports = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let mut target = target.lock().await;
            let result = target.reconcile(&self.secrets, listing, dry_run).await;
            if let Err(e) = &result {
                tracing::error!(db_target = %target.name(), error = %e, "reconcile failed");
            }
            reports.push(result);
        }
        reports
    }

    /// Apply a verified delivery to every target, all within the engine's time budget.
    /// Connect to every target at once and bootstrap it, before any delivery needs it (started at cold
    /// start, beside the runtime's first poll). A target that fails is left for the first delivery, which
    /// tries again and reports the error.
    pub async fn warm_up(&self) {
        let secrets = &self.secrets;
        futures_util::future::join_all(self.targets.iter().map(|target| async move {
            let mut target = target.lock().await;
            if let Err(e) = target.ready(secrets).await {
                tracing::warn!(db_target = %target.name(), error = %e,
                    "warm-up: not connected yet; the first delivery tries again");
            }
        }))
        .await;
    }

    pub async fn apply(&self, delivery: &Delivery, received: &Received) -> DeliveryReport {
        self.apply_within(delivery, received, self.budget).await
    }

    /// Apply a verified delivery to every target, all within `budget`.
    pub async fn apply_within(
        &self,
        delivery: &Delivery,
        received: &Received,
        budget: Duration,
    ) -> DeliveryReport {
        let deadline = tokio::time::Instant::now() + budget;
        let (events, refused) = refuse_future(&delivery.events, received.wall, self.max_clock_skew);
        for e in &refused {
            tracing::error!(
                delivery_id = %received.delivery_id,
                event_uuid = %e.uuid,
                published = %e.published.to_rfc3339(),
                received = %received.wall.to_rfc3339(),
                "event stamped later than receipt plus the allowed clock skew: refused (forged, or a broken clock)"
            );
        }
        let mut targets = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let mut target = target.lock().await;
            let name = target.name().to_owned();
            let result = tokio::time::timeout_at(
                deadline,
                target.apply(
                    &self.secrets,
                    received,
                    &events,
                    &refused,
                    self.status_lookup.as_ref(),
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(SyncError::transient(format!(
                    "target {name}: time budget exceeded"
                )))
            });
            if let Err(e) = &result {
                tracing::error!(db_target = %name, delivery_id = %received.delivery_id, error = %e, "delivery not applied");
            }
            targets.push((name, result));
        }
        DeliveryReport {
            targets,
            refused_events: refused.len(),
        }
    }
}
