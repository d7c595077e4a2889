//! The MySQL and MariaDB engine (RDS for MySQL 8.0/8.4, RDS for MariaDB 10.6+): [`MyBackend`] implements
//! the pipeline's [`Backend`] and [`Unit`] traits over one kept `mysql_async` connection.
//!
//! Desired state of a managed user: the account `'<name>'@'%'` identified with the IAM plugin `AS 'RDS'`,
//! `REQUIRE SSL`, unlocked, holding the marker role and its per-user role `ors_<okta id>` as its default
//! role, which holds exactly the mapped roles (so they are active at login without `SET ROLE`, on MariaDB
//! too, which activates one default role). Offboarded: `ACCOUNT LOCK`, mapped roles revoked, every live
//! connection killed.
//!
//! DDL commits implicitly here, so no transaction spans account changes: a unit writes the state (InnoDB) in
//! one transaction, which the first account change commits, and each step is safe when cut short and
//! converges on the next run. Users are serialized with `GET_LOCK`; a dry run only plans.
//!
//! - [`connection`]: TLS, credentials (rotation), the session settings, the server's flavor and limits;
//! - [`store`]: the state tables; [`catalog`]: accounts, steps, start-up checks; [`sessions`]: kills;
//! - [`sql`]: every SQL text, and the one quoting function; [`error`]: error classification.

pub mod catalog;
pub mod connection;
pub mod error;
mod sessions;
pub mod sql;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};

use crate::audit::AuditEntry;
use crate::config::{Config, TargetConfig};
use crate::converge::{Backend, SessionsEnded, Unit};
use crate::db::discovery::Discovery;
use crate::db::readers::{Readers, end_sessions_everywhere};
use crate::db::roles::TargetRoles;
use crate::error::SyncError;
use crate::journal::{FactBatch, Stamp, UserFacts};
use crate::naming::{NameLimit, NameRules};
use crate::okta::{GroupRef, OktaEvent};
use crate::plan::{ActualRole, Mapping, Step, UserPlan};
use crate::secrets::Secrets;
use connection::{Connection, Link};
use error::my;
use sql::Flavor;

/// Accounts RDS and the server keep for themselves: never altered.
const SYSTEM_ACCOUNTS: &[&str] = &[
    "rdsadmin",
    "rdsrepladmin",
    "root",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
    "mariadb.sys",
    "rds_superuser_role",
];

/// Names a login must never take on MySQL/MariaDB (besides [`SYSTEM_ACCOUNTS`]).
const MYSQL_RESERVED_PREFIXES: &[&str] =
    &["mysql.", "mariadb.", "rds_", "rds", sql::USER_ROLE_PREFIX];
const MYSQL_RESERVED_NAMES: &[&str] = &[
    "rdsadmin",
    "rdsrepladmin",
    "root",
    "public",
    "none",
    "current_user",
    "current_role",
];

/// How long a unit waits for each user's lock.
const USER_LOCK_SECONDS: u64 = 2;

/// What a MySQL target is: fixed at start.
#[derive(Debug)]
pub struct MySettings {
    cfg: TargetConfig,
    tables: store::Tables,
    roles: TargetRoles,
}

/// One MySQL or MariaDB target and its kept connection.
#[derive(Debug)]
pub struct MyBackend {
    settings: MySettings,
    link: Link,
    readers: Readers<Link>,
    bootstrapped: bool,
    /// The salt of lock names (read at bootstrap).
    lock_salt: String,
}

impl MyBackend {
    pub fn new(
        cfg: &TargetConfig,
        config: &Config,
        discovery: Option<Discovery>,
    ) -> Result<Self, SyncError> {
        let tables = store::Tables::new(&cfg.state_schema)
            .map_err(|e| SyncError::permanent(format!("state_schema: {e}")))?;
        let roles = TargetRoles::new(cfg, config, SYSTEM_ACCOUNTS, &[&cfg.marker_role]);
        Ok(Self {
            settings: MySettings {
                cfg: cfg.clone(),
                tables,
                roles,
            },
            link: Link::default(),
            readers: Readers::new(cfg, discovery),
            bootstrapped: false,
            lock_salt: String::new(),
        })
    }

    fn connection(&mut self) -> Result<&mut Connection, SyncError> {
        self.link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))
    }

    /// The server's flavor (once connected).
    pub fn flavor(&self) -> Option<Flavor> {
        self.link.conn.as_ref().map(|c| c.flavor)
    }
}

/// One unit of work on a MySQL target: a state transaction on the kept connection, and the users' locks.
#[derive(Debug)]
pub struct MyUnit<'a> {
    conn: &'a mut Connection,
    settings: &'a MySettings,
    lock_salt: &'a str,
}

/// The `GET_LOCK` name of an Okta user (at most 64 characters): keyed by the target's secret salt, so no
/// other account can compute it and hold it.
fn lock_name(salt: &str, okta_id: &str) -> String {
    let digest = Sha256::digest(format!("{salt}:{okta_id}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("okta-rds-sync:{hex}")
}

impl Backend for MyBackend {
    type Unit<'a> = MyUnit<'a>;
    const IAM_REMOVED_ON_OFFBOARD: bool = false;
    const TRANSACTIONAL_DDL: bool = false;

    async fn ready(&mut self, secrets: &Secrets) -> Result<(), SyncError> {
        if self.link.alive().await {
            return Ok(());
        }
        let conn = self.link.reconnect(&self.settings.cfg, secrets).await?;
        if !self.bootstrapped {
            self.lock_salt = bootstrap(&self.settings, conn).await?;
            self.bootstrapped = true;
        }
        Ok(())
    }

    fn names(&self) -> NameRules {
        let (engine, limit) = match &self.link.conn {
            Some(c) => (c.flavor.name(), c.name_limit),
            None => ("MySQL", NameLimit::Chars(32)),
        };
        NameRules {
            engine,
            limit,
            reserved_prefixes: MYSQL_RESERVED_PREFIXES,
            reserved_names: MYSQL_RESERVED_NAMES,
        }
    }

    fn protected_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.settings.roles.protected.iter().cloned().collect();
        names.extend(self.link.conn.as_ref().map(|c| c.master.clone()));
        names
    }

    /// [`Backend::ready`] pings every time on MySQL: a closed connection is already replaced.
    async fn reconnect_if_closed(
        &mut self,
        _error: &SyncError,
        _secrets: &Secrets,
    ) -> Result<bool, SyncError> {
        Ok(false)
    }

    async fn begin(&mut self) -> Result<MyUnit<'_>, SyncError> {
        let (settings, lock_salt) = (&self.settings, self.lock_salt.as_str());
        let conn = self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?;
        // A unit cut short (a time budget) may have left a transaction open and locks held.
        conn.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(my("begin"))?;
        if conn.locks_held {
            conn.conn
                .query_drop("SELECT RELEASE_ALL_LOCKS()")
                .await
                .map_err(my("release locks"))?;
            conn.locks_held = false;
        }
        conn.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(my("begin"))?;
        Ok(MyUnit {
            conn,
            settings,
            lock_salt,
        })
    }

    async fn managed_users(&mut self) -> Result<Vec<String>, SyncError> {
        let tables = self.settings.tables.clone();
        store::managed_users(&mut self.connection()?.conn, &tables).await
    }

    async fn group_members(&mut self, group_id: &str) -> Result<Vec<String>, SyncError> {
        let tables = self.settings.tables.clone();
        store::group_members(&mut self.connection()?.conn, &tables, group_id).await
    }

    async fn terminate_sessions(
        &mut self,
        secrets: &Secrets,
        roles: &[String],
    ) -> Result<SessionsEnded, SyncError> {
        let writer = &mut self
            .link
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("not connected"))?
            .conn;
        end_sessions_everywhere(
            &self.settings.cfg.name,
            sessions::terminate(writer, roles),
            &mut self.readers,
            secrets,
            roles,
        )
        .await
    }

    async fn count_sessions(&mut self, roles: &[String]) -> Result<i64, SyncError> {
        let live = sessions::live(&mut self.connection()?.conn, roles).await?;
        Ok(i64::try_from(live.len()).unwrap_or(i64::MAX))
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let tables = self.settings.tables.clone();
        store::insert_audit(&mut self.connection()?.conn, &tables, delivery_id, entries).await
    }
}

impl Unit for MyUnit<'_> {
    async fn claim_and_lock(
        &mut self,
        delivery_id: &str,
        events: &[OktaEvent],
        lock: &[String],
    ) -> Result<Option<HashSet<String>>, SyncError> {
        let tables = &self.settings.tables;
        let claimed = if store::claim_delivery(&mut self.conn.conn, tables, delivery_id).await? {
            Some(store::claim_events(&mut self.conn.conn, tables, events).await?)
        } else {
            None
        };
        self.lock_users(lock).await?;
        Ok(claimed)
    }

    async fn lock_users(&mut self, ids: &[String]) -> Result<(), SyncError> {
        let mut names: Vec<String> = ids.iter().map(|id| lock_name(self.lock_salt, id)).collect();
        // The same order in every unit, so two units never wait on each other's locks in a cycle.
        names.sort();
        for chunk in names.chunks(100) {
            self.conn.locks_held = true;
            let calls = vec![format!("GET_LOCK(?, {USER_LOCK_SECONDS})"); chunk.len()].join(" + ");
            let params: Vec<mysql_async::Value> = chunk
                .iter()
                .map(|n| mysql_async::Value::from(n.clone()))
                .collect();
            let got: Option<Option<i64>> = self
                .conn
                .conn
                .exec_first(format!("SELECT {calls}"), params)
                .await
                .map_err(my("lock users"))?;
            if got.flatten() != Some(i64::try_from(chunk.len()).unwrap_or(i64::MAX)) {
                return Err(SyncError::transient(
                    "lock users: another delivery holds a user's lock",
                ));
            }
        }
        Ok(())
    }

    async fn record_group_deletion(
        &mut self,
        group: &GroupRef,
        stamp: &Stamp,
    ) -> Result<Vec<String>, SyncError> {
        store::record_group_deletion(&mut self.conn.conn, &self.settings.tables, group, stamp).await
    }

    async fn write_facts(&mut self, batch: &FactBatch, mapping: &Mapping) -> Result<(), SyncError> {
        store::write_facts(&mut self.conn.conn, &self.settings.tables, batch, mapping).await
    }

    async fn read_facts(
        &mut self,
        users: &[String],
    ) -> Result<BTreeMap<String, UserFacts>, SyncError> {
        store::read_facts(&mut self.conn.conn, &self.settings.tables, users).await
    }

    async fn read_roles(
        &mut self,
        names: &[String],
        _users: &[String],
    ) -> Result<BTreeMap<String, ActualRole>, SyncError> {
        let (flavor, master) = (self.conn.flavor, self.conn.master.clone());
        catalog::read_roles(&mut self.conn.conn, flavor, self.settings, &master, names).await
    }

    async fn run_steps(
        &mut self,
        plans: &[&UserPlan],
    ) -> Result<Vec<Result<(), String>>, SyncError> {
        let flavor = self.conn.flavor;
        let mut outcomes = Vec::with_capacity(plans.len());
        for plan in plans {
            outcomes
                .push(catalog::run_steps(&mut self.conn.conn, flavor, self.settings, plan).await?);
        }
        Ok(outcomes)
    }

    /// MySQL's REVOKE removes a role whoever granted it: nothing to re-check.
    async fn steps_not_taken(&mut self, _revokes: &[Step]) -> Result<Vec<usize>, SyncError> {
        Ok(Vec::new())
    }

    async fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> Result<(), SyncError> {
        store::insert_audit(
            &mut self.conn.conn,
            &self.settings.tables,
            delivery_id,
            entries,
        )
        .await
    }

    async fn finish(
        self,
        commit: bool,
        roles: &[(String, String)],
        delivery_id: &str,
        audit: &[AuditEntry],
    ) -> Result<(), SyncError> {
        let tables = &self.settings.tables;
        store::record_roles(&mut self.conn.conn, tables, roles).await?;
        store::insert_audit(&mut self.conn.conn, tables, delivery_id, audit).await?;
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        self.conn.conn.query_drop(end).await.map_err(my("commit"))?;
        self.conn
            .conn
            .query_drop("SELECT RELEASE_ALL_LOCKS()")
            .await
            .map_err(my("release locks"))?;
        self.conn.locks_held = false;
        Ok(())
    }
}

/// First use of a target: the marker role and the state tables, then the start-up checks. Returns the
/// target's lock salt.
async fn bootstrap(settings: &MySettings, conn: &mut Connection) -> Result<String, SyncError> {
    let marker = sql::create_marker_role(conn.flavor, &settings.cfg.marker_role)
        .map_err(|e| SyncError::permanent(e.to_string()))?;
    conn.conn
        .query_drop(marker)
        .await
        .map_err(my("create marker role"))?;
    for statement in sql::state_schema_ddl(&settings.cfg.state_schema)
        .map_err(|e| SyncError::permanent(e.to_string()))?
    {
        conn.conn
            .query_drop(statement)
            .await
            .map_err(my("create state tables"))?;
    }
    catalog::check_target(&mut conn.conn, conn.flavor, settings).await?;
    let mut salt = [0u8; 32];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| SyncError::permanent("no randomness for the lock salt"))?;
    let fresh: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let table = format!(
        "{}.settings",
        sql::quote_ident(&settings.cfg.state_schema)
            .map_err(|e| SyncError::permanent(e.to_string()))?
    );
    conn.conn
        .exec_drop(
            format!("INSERT IGNORE INTO {table} (name, value) VALUES ('lock_salt', ?)"),
            (fresh,),
        )
        .await
        .map_err(my("lock salt"))?;
    conn.conn
        .query_first(format!(
            "SELECT value FROM {table} WHERE name = 'lock_salt'"
        ))
        .await
        .map_err(my("lock salt"))?
        .ok_or_else(|| SyncError::permanent("lock salt missing"))
}
