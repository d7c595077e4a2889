//! Database engines behind the pipeline of [`crate::converge`]: one folder per engine, each implementing
//! its `Backend` and `Unit` traits. The [`Target`] enum is the only place that dispatches between them.

pub mod discovery;
pub mod mysql;
pub mod postgres;
pub mod readers;
pub mod recheck;
pub mod roles;

use std::sync::Arc;

use crate::config::{Config, Engine, TargetConfig};
use crate::converge::{Received, TargetRunner, TargetSummary};
use crate::error::SyncError;
use crate::okta::OktaEvent;
use crate::reconcile::{Listing, ReconcileReport};
use crate::secrets::Secrets;
use crate::status_lookup::StatusLookup;

/// One configured database, with its kept connection. (Few targets, made once: the size difference of the
/// variants does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Postgres(TargetRunner<postgres::PgBackend>),
    Mysql(TargetRunner<mysql::MyBackend>),
}

/// Call the same method on whichever engine the target has.
macro_rules! dispatch {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            Target::Postgres($t) => $call,
            Target::Mysql($t) => $call,
        }
    };
}

impl Target {
    /// `aws` reaches the RDS API when the target discovers its readers.
    pub fn new(
        cfg: &TargetConfig,
        config: &Config,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, SyncError> {
        let discovery = match cfg.discover_readers {
            true => Some(discovery::Discovery::new(
                aws_sdk_rds::Client::new(aws),
                discovery::Source::for_target(cfg).map_err(SyncError::permanent)?,
            )),
            false => None,
        };
        match cfg.engine {
            Engine::Postgres => Ok(Target::Postgres(TargetRunner::new(
                cfg,
                config,
                postgres::PgBackend::new(cfg, config, discovery)?,
            ))),
            Engine::Mysql => Ok(Target::Mysql(TargetRunner::new(
                cfg,
                config,
                mysql::MyBackend::new(cfg, config, discovery)?,
            ))),
        }
    }

    pub fn name(&self) -> &str {
        dispatch!(self, t => t.name())
    }

    /// Connect and bootstrap now (a warm-up at cold start), so the first delivery finds the connection made.
    pub async fn ready(&mut self, secrets: &Secrets) -> Result<(), SyncError> {
        dispatch!(self, t => t.ready(secrets).await)
    }

    pub async fn reconcile(
        &mut self,
        secrets: &Secrets,
        listing: &Listing,
        dry_run: bool,
    ) -> Result<ReconcileReport, SyncError> {
        dispatch!(self, t => t.reconcile(secrets, listing, dry_run).await)
    }

    pub async fn apply(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        events: &[OktaEvent],
        refused: &[OktaEvent],
        status_lookup: Option<&Arc<StatusLookup>>,
    ) -> Result<TargetSummary, SyncError> {
        dispatch!(self, t => t.apply(secrets, received, events, refused, status_lookup).await)
    }
}
