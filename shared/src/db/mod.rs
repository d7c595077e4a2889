//! Executors: apply planned steps to a database engine. One module per engine; the [`Target`] enum is the
//! only place that dispatches between them.

pub mod postgres;

pub use postgres::{Received, TargetSummary};

use crate::config::{Config, Engine, TargetConfig};
use crate::error::SyncError;
use crate::okta::OktaEvent;
use crate::secrets::Secrets;
use crate::status_lookup::StatusLookup;
use std::sync::Arc;

/// One configured database, with its kept connection.
#[derive(Debug)]
pub enum Target {
    Postgres(postgres::PgTarget),
}

impl Target {
    pub fn new(cfg: &TargetConfig, config: &Config) -> Result<Self, SyncError> {
        match cfg.engine {
            Engine::Postgres => Ok(Target::Postgres(postgres::PgTarget::new(cfg, config)?)),
            Engine::Mysql => Err(SyncError::Permanent(format!(
                "target {}: mysql is not supported yet",
                cfg.name
            ))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Postgres(t) => t.name(),
        }
    }

    pub async fn reconcile(
        &mut self,
        secrets: &Secrets,
        listing: &crate::reconcile::Listing,
        dry_run: bool,
    ) -> Result<crate::reconcile::ReconcileReport, SyncError> {
        match self {
            Target::Postgres(t) => t.reconcile(secrets, listing, dry_run).await,
        }
    }

    pub async fn apply(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        events: &[OktaEvent],
        refused: &[OktaEvent],
        status_lookup: Option<&Arc<StatusLookup>>,
    ) -> Result<TargetSummary, SyncError> {
        match self {
            Target::Postgres(t) => {
                t.apply(secrets, received, events, refused, status_lookup)
                    .await
            }
        }
    }
}
