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

use tokio_postgres::Transaction;

use crate::audit::AuditEntry;
use crate::config::{Config, TargetConfig};
use crate::converge::{Backend, SessionsEnded, Unit};
use crate::db::discovery::Discovery;
use crate::db::readers::{Readers, end_sessions_everywhere};
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
    readers: Readers<Link>,
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
    pub fn new(
        cfg: &TargetConfig,
        config: &Config,
        discovery: Option<Discovery>,
    ) -> Result<Self, SyncError> {
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
            readers: Readers::new(cfg, discovery),
            bootstrapped: false,
        })
    }

    fn connection(&mut self) -> Result<&mut connection::Connection, SyncError> {
        self.link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))
    }

    /// The kept connection, with its prepared statements.
    fn db(&mut self) -> Result<store::Db<'_, tokio_postgres::Client>, SyncError> {
        let conn = self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        Ok(store::Db {
            client: &conn.client,
            statements: &mut conn.statements,
        })
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
    statements: &'a mut store::Statements,
    settings: &'a PgSettings,
    server_version: i32,
    /// Some step granted a role or IAM: the master check runs before commit (only then).
    granted: bool,
}

impl<'a> PgUnit<'a> {
    fn db(&mut self) -> store::Db<'_, Transaction<'a>> {
        store::Db {
            client: &self.tx,
            statements: self.statements,
        }
    }
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

    /// Connected, bootstrapped, and every statement a delivery runs prepared (all in one round trip).
    async fn ready(&mut self, secrets: &Secrets) -> Result<(), SyncError> {
        if self.bootstrapped && self.link.alive().await {
            return Ok(());
        }
        let conn = self.link.reconnect(&self.settings.cfg, secrets).await?;
        let mut statements = self.settings.state.statements();
        statements.extend([
            sql::TERMINATE_SESSIONS,
            sql::COUNT_SESSIONS,
            sql::REMAINING_MEMBERSHIPS,
        ]);
        let connection::Connection {
            client,
            statements: prepared,
            ..
        } = conn;
        if self.bootstrapped {
            return prepared.prepare_all(client, &statements).await;
        }
        // The survey and the statements go out together: on a current target (every cold start but the
        // first) that is one round trip. Preparing only parses, so nothing runs before the checks pass;
        // statements of a state schema that did not exist yet are prepared again once it does.
        let (checked, early) = tokio::join!(
            bootstrap::bootstrap(&self.settings, client),
            prepared.prepare_all(client, &statements)
        );
        if let Err(e) = checked {
            // Not kept: the next attempt connects and runs every check again.
            self.link.conn = None;
            return Err(e);
        }
        self.bootstrapped = true;
        if early.is_err() {
            prepared.prepare_all(client, &statements).await?;
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

    async fn reconnect_if_closed(
        &mut self,
        error: &SyncError,
        secrets: &Secrets,
    ) -> Result<bool, SyncError> {
        // Never bootstrapped: there is no kept connection to lose, and `ready` connects and checks again.
        if !self.bootstrapped || !self.link.closed_by(error) {
            return Ok(false);
        }
        tracing::info!(target = %self.settings.cfg.name, error = %error, "the kept connection was closed; reconnecting");
        self.link.reconnect(&self.settings.cfg, secrets).await?;
        Ok(true)
    }

    /// `BEGIN`: one round trip (the session's settings bound every statement).
    async fn begin(&mut self) -> Result<PgUnit<'_>, SyncError> {
        let settings = &self.settings;
        let connection::Connection {
            client,
            statements,
            server_version,
            ..
        } = self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        let tx = client.transaction().await.map_err(pg("begin"))?;
        Ok(PgUnit {
            tx,
            statements,
            settings,
            server_version: *server_version,
            granted: false,
        })
    }

    async fn managed_users(&mut self) -> Result<Vec<String>, SyncError> {
        let statement = self.settings.state.managed_users.clone();
        store::okta_ids(&mut self.db()?, &statement, &[]).await
    }

    async fn group_members(&mut self, group_id: &str) -> Result<Vec<String>, SyncError> {
        let statement = self.settings.state.group_members.clone();
        store::okta_ids(&mut self.db()?, &statement, &[&group_id]).await
    }

    async fn terminate_sessions(
        &mut self,
        secrets: &Secrets,
        roles: &[String],
    ) -> Result<SessionsEnded, SyncError> {
        let conn = self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        let mut writer = store::Db {
            client: &conn.client,
            statements: &mut conn.statements,
        };
        end_sessions_everywhere(
            &self.settings.cfg.name,
            sessions::terminate(&mut writer, roles),
            &mut self.readers,
            secrets,
            roles,
        )
        .await
    }

    async fn count_sessions(&mut self, roles: &[String]) -> Result<i64, SyncError> {
        let counts = sessions::count_per_role(&mut self.db()?, roles).await?;
        Ok(counts.values().sum())
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let state = self.settings.state.clone();
        store::insert_audit(&mut self.db()?, &state, delivery_id, entries).await
    }
}

impl Unit for PgUnit<'_> {
    async fn claim_and_lock(
        &mut self,
        delivery_id: &str,
        events: &[OktaEvent],
        lock: &[String],
    ) -> Result<Option<HashSet<String>>, SyncError> {
        let state = &self.settings.state;
        store::claim_and_lock(&mut self.db(), state, delivery_id, events, lock).await
    }

    async fn lock_users(&mut self, ids: &[String]) -> Result<(), SyncError> {
        let state = &self.settings.state;
        store::lock_users(&mut self.db(), state, ids).await
    }

    async fn record_group_deletion(
        &mut self,
        group: &GroupRef,
        stamp: &Stamp,
    ) -> Result<Vec<String>, SyncError> {
        let state = &self.settings.state;
        store::record_group_deletion(&mut self.db(), state, group, stamp).await
    }

    async fn write_facts(&mut self, batch: &FactBatch, mapping: &Mapping) -> Result<(), SyncError> {
        let state = &self.settings.state;
        store::write_facts(&mut self.db(), state, batch, mapping).await
    }

    async fn read_facts(
        &mut self,
        users: &[String],
    ) -> Result<BTreeMap<String, UserFacts>, SyncError> {
        let state = &self.settings.state;
        store::read_facts(&mut self.db(), state, users).await
    }

    async fn read_roles(
        &mut self,
        names: &[String],
        users: &[String],
    ) -> Result<BTreeMap<String, ActualRole>, SyncError> {
        let settings = self.settings;
        catalog::read_roles(&mut self.db(), settings, names, users).await
    }

    async fn run_steps(
        &mut self,
        plans: &[&UserPlan],
    ) -> Result<Vec<Result<(), String>>, SyncError> {
        let outcomes = catalog::run_steps(&self.tx, self.settings, plans).await?;
        self.granted |= plans.iter().zip(&outcomes).any(|(plan, outcome)| {
            outcome.is_ok()
                && plan
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::Grant { .. } | Step::EnableIam { .. }))
        });
        Ok(outcomes)
    }

    /// Before PostgreSQL 16 a membership has one grant, which any revoke removes: nothing to re-read.
    async fn steps_not_taken(&mut self, revokes: &[Step]) -> Result<Vec<usize>, SyncError> {
        if self.server_version < 160_000 {
            return Ok(Vec::new());
        }
        let settings = self.settings;
        catalog::steps_not_taken(&mut self.db(), settings, revokes).await
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let state = &self.settings.state;
        store::insert_audit(&mut self.db(), state, delivery_id, entries).await
    }

    /// Records the roles and the audit, then the RDS rule before committing changes that granted anything:
    /// the master must never end up with the IAM role's privileges. Memberships that would give them (made
    /// by someone else) are revoked first; what is still left rolls the transaction back. Units that only
    /// revoke are never blocked by this.
    async fn finish(
        mut self,
        commit: bool,
        roles: &[(String, String)],
        delivery_id: &str,
        audit: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let settings = self.settings;
        let iam = settings.cfg.iam_role();
        let mut locked_out = store::finish(
            &mut self.db(),
            &settings.state,
            roles,
            delivery_id,
            audit,
            iam,
        )
        .await?;
        if self.granted && locked_out {
            catalog::heal_master(&self.tx, settings).await?;
            locked_out = catalog::master_locked_out(&self.tx, settings).await?;
        }
        if self.granted && locked_out {
            self.tx.rollback().await.map_err(pg("rollback"))?;
            return Err(SyncError::permanent(format!(
                "target {}: these changes would give the master user the privileges of {iam:?}; rolled back",
                settings.cfg.name
            )));
        }
        if commit {
            self.tx.commit().await.map_err(pg("commit"))
        } else {
            self.tx.rollback().await.map_err(pg("rollback"))
        }
    }
}
