//! The PostgreSQL engine (RDS for PostgreSQL, Aurora PostgreSQL): [`PgBackend`] implements the pipeline's
//! [`Backend`] and [`Unit`] traits over one kept connection; a unit of work is one transaction, and each
//! user's steps run inside a savepoint.
//!
//! - [`connection`]: TLS, credentials (rotation), the pinned session options;
//! - [`bootstrap`]: marker role, state schema, the start-up safety checks;
//! - [`store`]: the state schema (claims, facts, recorded roles, audit);
//! - [`catalog`]: roles as the planner sees them, steps, what the catalog says after;
//! - [`sessions`]: terminating sessions;
//! - [`sql`]: every SQL text, and the one identifier-quoting function;
//! - [`error`]: SQLSTATE classification.

mod bootstrap;
mod catalog;
pub mod connection;
pub mod error;
mod sessions;
pub mod sql;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use tokio_postgres::Transaction;

use crate::audit::AuditEntry;
use crate::config::{Config, TargetConfig};
use crate::converge::{Backend, SessionCounts, Unit};
use crate::db::roles::TargetRoles;
use crate::error::SyncError;
use crate::journal::{FactBatch, Stamp, UserFacts};
use crate::naming::{NameRules, POSTGRES_NAMES};
use crate::okta::{GroupRef, OktaEvent};
use crate::plan::{ActualRole, Mapping, Step, UserPlan};
use crate::secrets::Secrets;
use connection::Link;
use error::pg;

/// RDS's own roles: never altered, even if they carried our marker.
const RDS_ROLES: &[&str] = &[
    "rds_superuser",
    "rdsadmin",
    "rdsrepladmin",
    "rds_password",
    "rds_replication",
    "rdstopmgr",
];

/// What a PostgreSQL target is: fixed at start.
#[derive(Debug)]
pub struct PgSettings {
    cfg: TargetConfig,
    state: sql::StateSql,
    roles: TargetRoles,
}

/// One PostgreSQL target and its kept connection.
pub struct PgBackend {
    settings: PgSettings,
    link: Link,
    bootstrapped: bool,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("target", &self.settings.cfg.name)
            .field("connected", &self.link.conn.is_some())
            .finish()
    }
}

impl PgBackend {
    pub fn new(cfg: &TargetConfig, config: &Config) -> Result<Self, SyncError> {
        let state = sql::StateSql::new(&cfg.state_schema)
            .map_err(|e| SyncError::permanent(format!("state_schema: {e}")))?;
        let roles = TargetRoles::new(cfg, config, RDS_ROLES, &[cfg.iam_role(), &cfg.marker_role]);
        Ok(Self {
            settings: PgSettings {
                cfg: cfg.clone(),
                state,
                roles,
            },
            link: Link::default(),
            bootstrapped: false,
        })
    }

    fn connection(&mut self) -> Result<&mut connection::Connection, SyncError> {
        self.link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))
    }

    /// The value of a setting on the kept connection (for tests and diagnostics).
    pub async fn show(&mut self, setting: &str) -> Result<String, SyncError> {
        let conn = self.connection()?;
        Ok(conn
            .client
            .query_one("SELECT pg_catalog.current_setting($1)", &[&setting])
            .await
            .map_err(pg("show"))?
            .get(0))
    }
}

/// One transaction on a PostgreSQL target.
pub struct PgUnit<'a> {
    tx: Transaction<'a>,
    settings: &'a PgSettings,
    /// Some step granted a role or IAM: the master check runs before commit (only then).
    granted: bool,
}

impl std::fmt::Debug for PgUnit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUnit")
            .field("target", &self.settings.cfg.name)
            .finish()
    }
}

impl Backend for PgBackend {
    type Unit<'a> = PgUnit<'a>;
    const IAM_REMOVED_ON_OFFBOARD: bool = true;
    const TRANSACTIONAL_DDL: bool = true;

    async fn ready(&mut self, secrets: &Secrets) -> Result<(), SyncError> {
        if self.link.alive().await {
            return Ok(());
        }
        let conn = self.link.reconnect(&self.settings.cfg, secrets).await?;
        if !self.bootstrapped {
            bootstrap::bootstrap(&self.settings, &conn.client).await?;
            self.bootstrapped = true;
        }
        Ok(())
    }

    fn names(&self) -> NameRules {
        POSTGRES_NAMES
    }

    fn protected_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.settings.roles.protected.iter().cloned().collect();
        names.extend(self.link.conn.as_ref().map(|c| c.master.clone()));
        names
    }

    async fn begin(&mut self, timeout: Duration) -> Result<PgUnit<'_>, SyncError> {
        let settings = &self.settings;
        let conn = self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        let version = conn.server_version;
        let tx = conn.client.transaction().await.map_err(pg("begin"))?;
        let timeout = format!("{}ms", timeout.as_millis());
        tx.batch_execute(&sql::transaction_settings(&timeout, version))
            .await
            .map_err(pg("session settings"))?;
        Ok(PgUnit {
            tx,
            settings,
            granted: false,
        })
    }

    async fn managed_users(&mut self) -> Result<Vec<String>, SyncError> {
        let statement = self.settings.state.managed_users.clone();
        store::okta_ids(&self.connection()?.client, &statement, &[]).await
    }

    async fn group_members(&mut self, group_id: &str) -> Result<Vec<String>, SyncError> {
        let statement = self.settings.state.group_members.clone();
        store::okta_ids(&self.connection()?.client, &statement, &[&group_id]).await
    }

    async fn terminate_sessions(&mut self, roles: &[String]) -> Result<SessionCounts, SyncError> {
        sessions::terminate(&self.connection()?.client, roles).await
    }

    async fn count_sessions(&mut self, roles: &[String]) -> Result<i64, SyncError> {
        let counts = sessions::count_per_role(&self.connection()?.client, roles).await?;
        Ok(counts.values().sum())
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let state = &self.settings.state;
        let conn = self
            .link
            .conn
            .as_ref()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        store::insert_audit(&conn.client, state, delivery_id, entries).await
    }
}

impl Unit for PgUnit<'_> {
    async fn claim_delivery(&mut self, delivery_id: &str) -> Result<bool, SyncError> {
        store::claim_delivery(&self.tx, &self.settings.state, delivery_id).await
    }

    async fn claim_events(&mut self, events: &[OktaEvent]) -> Result<HashSet<String>, SyncError> {
        store::claim_events(&self.tx, &self.settings.state, events).await
    }

    async fn lock_users(&mut self, ids: &[String]) -> Result<(), SyncError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Row locks in the master's own state table: an ordinary login can neither take nor block them
        // (advisory locks share one namespace with every login).
        self.tx
            .query_one(&self.settings.state.lock_users, &[&ids])
            .await
            .map_err(pg("lock users"))?;
        Ok(())
    }

    async fn record_group_deletion(
        &mut self,
        group: &GroupRef,
        stamp: &Stamp,
    ) -> Result<Vec<String>, SyncError> {
        store::record_group_deletion(&self.tx, &self.settings.state, group, stamp).await
    }

    async fn write_facts(&mut self, batch: &FactBatch, mapping: &Mapping) -> Result<(), SyncError> {
        store::write_facts(&self.tx, &self.settings.state, batch, mapping).await
    }

    async fn read_facts(
        &mut self,
        users: &[String],
    ) -> Result<BTreeMap<String, UserFacts>, SyncError> {
        store::read_facts(&self.tx, &self.settings.state, users).await
    }

    async fn read_roles(
        &mut self,
        names: &[String],
        users: &[String],
    ) -> Result<BTreeMap<String, ActualRole>, SyncError> {
        catalog::read_roles(&self.tx, self.settings, names, users).await
    }

    async fn run_steps(&mut self, plan: &UserPlan) -> Result<Result<(), String>, SyncError> {
        let outcome = catalog::run_steps(&self.tx, self.settings, plan).await?;
        self.granted |= outcome.is_ok()
            && plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::Grant { .. } | Step::EnableIam { .. }));
        Ok(outcome)
    }

    async fn steps_not_taken(&mut self, revokes: &[Step]) -> Result<Vec<usize>, SyncError> {
        catalog::steps_not_taken(&self.tx, self.settings, revokes).await
    }

    async fn record_roles(&mut self, roles: &[(String, String)]) -> Result<(), SyncError> {
        store::record_roles(&self.tx, &self.settings.state, roles).await
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        store::insert_audit(&self.tx, &self.settings.state, delivery_id, entries).await
    }

    /// Before committing changes that granted anything, the RDS rule: the master must never end up with the
    /// IAM role's privileges. Memberships that would give them (made by someone else) are revoked first;
    /// what is still left rolls the transaction back. Revoking units are never blocked by this.
    async fn finish(self, commit: bool) -> Result<(), SyncError> {
        if self.granted && catalog::master_locked_out(&self.tx, self.settings).await? {
            catalog::heal_master(&self.tx, self.settings).await?;
        }
        if self.granted && catalog::master_locked_out(&self.tx, self.settings).await? {
            self.tx.rollback().await.map_err(pg("rollback"))?;
            return Err(SyncError::permanent(format!(
                "target {}: these changes would give the master user the privileges of {:?}; rolled back",
                self.settings.cfg.name,
                self.settings.cfg.iam_role()
            )));
        }
        if commit {
            self.tx.commit().await.map_err(pg("commit"))
        } else {
            self.tx.rollback().await.map_err(pg("rollback"))
        }
    }
}
