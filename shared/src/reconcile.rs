//! The reconcile: a full listing of every mapped Okta group, turned into facts stamped with the listing time
//! and converged by the same planner and executor as hook deliveries. It heals lost or late events; because
//! its facts carry the listing time, it never undoes a hook event published after the listing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::okta_api::{OktaClient, OktaError, OktaUser};
use crate::plan::UserPlan;

/// Who a reconcile's changes are attributed to in the audit trail.
pub const RECONCILE_ACTOR: &str = "okta-rds-sync reconcile";

/// Every mapped group's members, as read from Okta starting at `listed_at`.
#[derive(Debug, Clone)]
pub struct Listing {
    pub listed_at: DateTime<Utc>,
    /// Stamps the facts (with `listed_at`) and names the run in the audit trail.
    pub run_id: String,
    pub groups: Vec<(String, Vec<OktaUser>)>,
}

/// The mapped group ids of the whole config (each listed once).
pub fn mapped_group_ids(config: &Config) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for g in &config.grants {
        if !ids.contains(&g.okta_group) {
            ids.push(g.okta_group.clone());
        }
    }
    ids
}

/// List the members of every mapped group.
pub async fn fetch_listing(client: &OktaClient, config: &Config) -> Result<Listing, OktaError> {
    let listed_at = Utc::now();
    let ids = mapped_group_ids(config);
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        let members = client.group_members(&id).await?;
        groups.push((id, members));
    }
    Ok(Listing {
        listed_at,
        run_id: format!("reconcile-{}", listed_at.format("%Y%m%dT%H%M%S%.6fZ")),
        groups,
    })
}

/// One user's planned (dry run) or made changes on one target, for reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedUser {
    pub okta_id: String,
    pub role: Option<String>,
    pub steps: Vec<String>,
    pub refusals: Vec<String>,
    pub terminate_sessions: bool,
}

impl PlannedUser {
    /// Users with something to do (or refuse).
    pub fn from_plan(plan: &UserPlan) -> Option<Self> {
        if plan.steps.is_empty() && plan.refusals.is_empty() {
            return None;
        }
        Some(Self {
            okta_id: plan.okta_id.clone(),
            role: plan.role.clone(),
            steps: plan.steps.iter().map(|s| format!("{s:?}")).collect(),
            refusals: plan.refusals.iter().map(ToString::to_string).collect(),
            terminate_sessions: plan.terminate_sessions && !plan.entitled,
        })
    }
}

/// What a reconcile did (or would do) on one target.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReconcileReport {
    pub target: String,
    pub dry_run: bool,
    pub users: usize,
    pub changes: usize,
    pub refused: usize,
    pub failed: usize,
    /// Users not entitled who keep access (refused or failed offboarding).
    pub access_left: usize,
    /// Sessions terminated (real run) or live sessions of roles that lose access (dry run).
    pub sessions: i64,
    pub plan: Vec<PlannedUser>,
}

impl ReconcileReport {
    /// The database differs from Okta: changes or session kills were needed, or some are impossible
    /// (a user who is not entitled keeps access, or a change failed).
    pub fn drift(&self) -> bool {
        self.changes > 0 || self.sessions > 0 || self.access_left > 0 || self.failed > 0
    }
}
