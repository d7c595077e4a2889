//! Applying deliveries to a PostgreSQL target.
//!
//! One connection per target, kept across warm invocations and checked before use. Per delivery, one
//! transaction: claim the delivery and event ids, lock the touched users, record facts, read facts and
//! catalog back, plan, run each user's steps inside a savepoint, write the audit rows, check the master
//! user is not locked out, commit. Live sessions are terminated after the commit, and re-checked until none
//! is left.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::audit::{ACCESS_LEFT, AuditEntry, Outcome};
use crate::config::{Config, TargetConfig};
use crate::error::{SyncError, classify_pg};
use crate::journal::{Fact, FactBatch, Stamp, UserFacts, UserStatus, facts_of, status_from_okta};
use crate::okta::{GroupRef, OktaEvent, is_okta_id};
use crate::plan::Step;
use crate::plan::{ActualRole, ActualRoles, Mapping, UserPlan, plan_user, role_name_for};
use crate::reconcile::{Listing, PlannedUser, RECONCILE_ACTOR, ReconcileReport};
use crate::secrets::Secrets;
use crate::sql::postgres as sql;
use crate::status_lookup::StatusLookup;
use std::sync::Arc;

/// Longest wait for Okta's answers about users whose status was never seen (inside a delivery's budget).
const STATUS_LOOKUP_TIMEOUT: Duration = Duration::from_millis(800);

/// How a delivery reached us: its id and when it was received (offboarding durations count from `at`;
/// `wall` bounds the `published` time of its events).
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery_id: String,
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

/// What one delivery did on one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub duplicate_delivery: bool,
    pub new_events: usize,
    pub duplicate_events: usize,
    pub users: usize,
    pub changes: usize,
    pub refused: usize,
    pub failed: usize,
    /// Users not entitled in Okta who keep access (a refusal or a failed change): an alarm, and drift.
    pub access_left: usize,
    pub sessions_terminated: i64,
}

pub struct PgTarget {
    settings: Settings,
    link: Link,
}

/// What a target is: fixed at start.
struct Settings {
    cfg: TargetConfig,
    mapping: Mapping,
    /// `(grant index, roles, allow_privileged)` for the start-up checks.
    grants: Vec<(usize, Vec<String>, bool)>,
    state: sql::StateSql,
    /// Roles never created, adopted or altered unless ours; logins never map onto these names.
    protected: Vec<String>,
    /// RDS's own roles and ours (IAM, marker): never altered even if they carry our marker.
    untouchable: Vec<String>,
}

/// The kept connection to a target, and what it takes to make one.
#[derive(Default)]
struct Link {
    tls: Option<MakeRustlsConnect>,
    conn: Option<Connection>,
    bootstrapped: bool,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("name", &self.settings.cfg.name)
            .field("connected", &self.link.conn.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct Connection {
    client: Client,
    server_version: i32,
    /// The master user's name (from the secret): never a role name for a login.
    master: String,
}

impl PgTarget {
    pub fn new(cfg: &TargetConfig, config: &Config) -> Result<Self, SyncError> {
        let state = sql::StateSql::new(&cfg.state_schema)
            .map_err(|e| SyncError::Permanent(format!("state_schema: {e}")))?;
        let mapping = Mapping::new(config, &cfg.name);
        let mut untouchable: Vec<String> = [
            "rds_superuser",
            "rdsadmin",
            "rdsrepladmin",
            "rds_password",
            "rds_replication",
            "rdstopmgr",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        untouchable.extend([cfg.iam_role.clone(), cfg.marker_role.clone()]);
        let mut protected = untouchable.clone();
        protected.extend(cfg.protected_roles.iter().cloned());
        protected.extend(mapping.managed_roles());
        let grants = config
            .grants
            .iter()
            .enumerate()
            .filter(|(_, g)| g.target == cfg.name)
            .map(|(i, g)| (i, g.roles.clone(), g.allow_privileged))
            .collect();
        Ok(Self {
            settings: Settings {
                cfg: cfg.clone(),
                mapping,
                grants,
                state,
                protected,
                untouchable,
            },
            link: Link::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.cfg.name
    }

    /// Apply the events of one delivery; `refused` are its events stamped in the future, audited only.
    ///
    /// Up to `users_per_transaction` touched users, everything happens in one transaction (facts and plan
    /// read under the users' locks). A bigger delivery (a large batch, or the deletion of a large group)
    /// records its facts in one transaction without locks, then converges its users in batches of that
    /// size, each its own transaction: one advisory lock per user would exhaust PostgreSQL's shared lock
    /// table (`max_locks_per_transaction` x connections, small on small RDS instances).
    pub async fn apply(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        events: &[OktaEvent],
        refused: &[OktaEvent],
        status_lookup: Option<&Arc<StatusLookup>>,
    ) -> Result<TargetSummary, SyncError> {
        let settings = &self.settings;
        let (name, mapping, state) = (&settings.cfg.name, &settings.mapping, &settings.state);
        let conn = self.link.connection(settings, secrets).await?;
        let server_version = conn.server_version;
        let pg = |ctx: &'static str| move |e: tokio_postgres::Error| classify_pg(ctx, &e);
        let mut summary = TargetSummary {
            target: name.clone(),
            ..TargetSummary::default()
        };

        let tx = begin(&mut conn.client, server_version, "2s").await?;

        // A delivery seen before records no facts, but its users are still re-converged: if the first
        // attempt committed and then failed (say, while terminating sessions), Okta's retry finishes it.
        let duplicate = tx
            .query_opt(&state.claim_delivery, &[&received.delivery_id])
            .await
            .map_err(pg("claim delivery"))?
            .is_none();
        summary.duplicate_delivery = duplicate;
        let refusals: Vec<AuditEntry> = refused
            .iter()
            .map(|e| future_event_audit(name, received, e))
            .collect();
        insert_audit(&tx, state, &received.delivery_id, &refusals).await?;
        let new_uuids = if duplicate {
            HashSet::new()
        } else {
            claim_events(&tx, state, events).await?
        };
        let fresh: Vec<&OktaEvent> = events
            .iter()
            .filter(|e| new_uuids.contains(&e.uuid))
            .collect();
        summary.new_events = fresh.len();
        summary.duplicate_events = events.len() - fresh.len();

        // Which users this delivery touches, and through which events (for the audit trail).
        let mut touched: BTreeMap<String, Vec<&OktaEvent>> = BTreeMap::new();
        for e in events {
            if let Some(u) = &e.user {
                touched.entry(u.id.clone()).or_default().push(e);
            }
        }
        // Users with news in this delivery: only their refusals are audited (again and again would be noise).
        let with_news: HashSet<&str> = fresh
            .iter()
            .filter_map(|e| e.user.as_ref().map(|u| u.id.as_str()))
            .collect();
        let cap = settings.cfg.users_per_transaction;
        let mut locked = touched.len() <= cap;
        if locked {
            let ids: Vec<String> = touched.keys().cloned().collect();
            tx.query_one(sql::LOCK_USERS, &[&ids])
                .await
                .map_err(pg("lock users"))?;
        }

        let mut news_by_group: Vec<String> = Vec::new();
        // Joining a group that is not mapped is not news; leaving any group, or its deletion, always is
        // (the group may have been mapped before: its stored memberships must follow).
        let batch = FactBatch::reduce(fresh.iter().flat_map(|e| facts_of(e)).filter(|f| match f {
            Fact::Membership {
                group,
                member: true,
                ..
            } => mapping.group_is_mapped(group),
            _ => true,
        }));
        for (group, stamp) in &batch.deleted_groups {
            tx.execute(
                &state.upsert_deleted_group,
                &[&group.id, &stamp.published, &stamp.uuid],
            )
            .await
            .map_err(pg("record group deletion"))?;
            let rows = tx
                .query(
                    &state.void_group_memberships,
                    &[&group.id, &stamp.published, &stamp.uuid],
                )
                .await
                .map_err(pg("end group memberships"))?;
            let event = fresh.iter().find(|e| e.uuid == stamp.uuid);
            let extra: Vec<String> = rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .filter(|u| !touched.contains_key(u))
                .collect();
            locked = locked && touched.len() + extra.len() <= cap;
            if locked {
                tx.query_one(sql::LOCK_USERS, &[&extra])
                    .await
                    .map_err(pg("lock users"))?;
            }
            for user in rows.iter().map(|r| r.get::<_, String>(0)) {
                touched.entry(user).or_default().extend(event.copied());
            }
            news_by_group.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        write_facts(&tx, state, mapping, &batch).await?;
        let with_news: HashSet<&str> = with_news
            .into_iter()
            .chain(news_by_group.iter().map(String::as_str))
            .collect();

        let touched: BTreeMap<String, Provenance> = touched
            .into_iter()
            .map(|(id, events)| {
                let provenance = Provenance {
                    uuids: events.iter().map(|e| e.uuid.clone()).collect(),
                    actor: events
                        .iter()
                        .max_by_key(|e| e.published)
                        .map(|e| e.actor.clone())
                        .unwrap_or_default(),
                    news: with_news.contains(id.as_str()),
                };
                (id, provenance)
            })
            .collect();
        let mut ctx = settings.ctx(received, &conn.master);
        ctx.status_lookup = status_lookup.map(|l| (l, secrets));
        if locked {
            let converged = converge(tx, &ctx, &touched, &mut summary, false).await?;
            kill_sessions(&conn.client, &ctx, converged.offboarded, &mut summary).await?;
            return Ok(summary);
        }
        tx.commit().await.map_err(pg("commit facts"))?;
        let users: Vec<(String, Provenance)> = touched.into_iter().collect();
        for batch in users.chunks(cap) {
            let touched: BTreeMap<String, Provenance> = batch.iter().cloned().collect();
            let converged =
                converge_locked(conn, &ctx, &touched, None, "2s", &mut summary, false).await?;
            kill_sessions(&conn.client, &ctx, converged.offboarded, &mut summary).await?;
        }
        Ok(summary)
    }

    /// Converge every listed and every managed user to a full Okta listing, in batches of
    /// `users_per_transaction` users (each its own transaction: bounded locks, short transactions next to
    /// live hook traffic). With `dry_run`, the same steps run and are rolled back, and live sessions are
    /// counted.
    pub async fn reconcile(
        &mut self,
        secrets: &Secrets,
        listing: &Listing,
        dry_run: bool,
    ) -> Result<ReconcileReport, SyncError> {
        let started = Instant::now();
        let settings = &self.settings;
        let (name, mapping, state) = (&settings.cfg.name, &settings.mapping, &settings.state);
        let conn = self.link.connection(settings, secrets).await?;
        let pg = |ctx: &'static str| move |e: tokio_postgres::Error| classify_pg(ctx, &e);

        // The facts of the listing, per user; users in the state but no longer listed lose the membership.
        let stamp = Stamp {
            published: listing.listed_at,
            uuid: listing.run_id.clone(),
        };
        let mut facts: BTreeMap<String, Vec<Fact>> = conn
            .client
            .query(&state.managed_users, &[])
            .await
            .map_err(pg("read managed users"))?
            .iter()
            .map(|r| (r.get(0), Vec::new()))
            .collect();
        for (group_id, members) in &listing.groups {
            let group = GroupRef {
                id: group_id.clone(),
                name: String::new(),
            };
            if !mapping.group_is_mapped(&group) {
                continue;
            }
            let listed: BTreeSet<&str> = members.iter().map(|u| u.id.as_str()).collect();
            for u in members.iter().filter(|u| is_okta_id(&u.id)) {
                let user = facts.entry(u.id.clone()).or_default();
                user.push(Fact::Login {
                    user: u.id.clone(),
                    login: u.profile.login.clone(),
                    stamp: stamp.clone(),
                });
                user.push(Fact::Status {
                    user: u.id.clone(),
                    status: status_from_okta(&u.status),
                    stamp: stamp.clone(),
                });
                user.push(Fact::Membership {
                    user: u.id.clone(),
                    group: group.clone(),
                    member: true,
                    stamp: stamp.clone(),
                });
            }
            let recorded = conn
                .client
                .query(&state.group_members, &[group_id])
                .await
                .map_err(pg("read group members"))?;
            for id in recorded
                .iter()
                .map(|r| r.get::<_, String>(0))
                .filter(|u| !listed.contains(u.as_str()))
            {
                let fact = Fact::Membership {
                    user: id.clone(),
                    group: group.clone(),
                    member: false,
                    stamp: stamp.clone(),
                };
                facts.entry(id).or_default().push(fact);
            }
        }

        let provenance = Provenance {
            uuids: vec![listing.run_id.clone()],
            actor: RECONCILE_ACTOR.into(),
            news: true,
        };
        let received = Received {
            delivery_id: listing.run_id.clone(),
            at: started,
            wall: listing.listed_at,
        };
        let ctx = settings.ctx(&received, &conn.master);
        let mut report = ReconcileReport {
            target: name.clone(),
            dry_run,
            ..ReconcileReport::default()
        };
        let users: Vec<(String, Vec<Fact>)> = facts.into_iter().collect();
        for batch in users.chunks(settings.cfg.users_per_transaction) {
            let facts = FactBatch::reduce(batch.iter().flat_map(|(_, f)| f.iter().cloned()));
            let touched: BTreeMap<String, Provenance> = batch
                .iter()
                .map(|(id, _)| (id.clone(), provenance.clone()))
                .collect();
            let mut summary = TargetSummary {
                target: name.clone(),
                ..TargetSummary::default()
            };
            let converged = converge_locked(
                conn,
                &ctx,
                &touched,
                Some(&facts),
                "30s",
                &mut summary,
                dry_run,
            )
            .await?;
            report.sessions += if dry_run {
                let roles: Vec<String> = converged
                    .offboarded
                    .iter()
                    .map(|o| o.role.clone())
                    .collect();
                let rows = conn
                    .client
                    .query(sql::COUNT_SESSIONS, &[&roles])
                    .await
                    .map_err(pg("count sessions"))?;
                rows.iter().map(|r| r.get::<_, i64>(1)).sum::<i64>()
            } else {
                kill_sessions(&conn.client, &ctx, converged.offboarded, &mut summary).await?;
                summary.sessions_terminated
            };
            report.users += summary.users;
            report.changes += summary.changes;
            report.refused += summary.refused;
            report.failed += summary.failed;
            report.access_left += summary.access_left;
            report
                .plan
                .extend(converged.plans.iter().filter_map(PlannedUser::from_plan));
        }
        Ok(report)
    }
}

impl Link {
    /// A working connection: the kept one if it still answers, else a new one (re-reading the master
    /// secret once if the password was rotated), bootstrapped on first use.
    async fn connection(
        &mut self,
        settings: &Settings,
        secrets: &Secrets,
    ) -> Result<&mut Connection, SyncError> {
        let alive = match &self.conn {
            Some(c) if !c.client.is_closed() => c.client.simple_query(sql::PING).await.is_ok(),
            _ => false,
        };
        if !alive {
            self.conn = None;
            let conn = match self.connect(settings, secrets, false).await {
                Err(SyncError::Auth(first)) => {
                    tracing::warn!(target = %settings.cfg.name, error = %first, "master password rejected; re-reading the secret");
                    self.connect(settings, secrets, true).await?
                }
                other => other?,
            };
            if !self.bootstrapped {
                settings.bootstrap(&conn).await?;
                self.bootstrapped = true;
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SyncError::Transient("connection lost".into()))
    }

    async fn connect(
        &mut self,
        settings: &Settings,
        secrets: &Secrets,
        refresh: bool,
    ) -> Result<Connection, SyncError> {
        let creds = secrets
            .master_credentials(&settings.cfg.secret_arn, refresh)
            .await
            .map_err(|e| SyncError::Transient(e.to_string()))?;
        if self.tls.is_none() {
            let tls = crate::tls::client_config(settings.cfg.ca_file.as_deref())
                .map_err(|e| SyncError::Permanent(e.to_string()))?;
            self.tls = Some(MakeRustlsConnect::new(tls));
        }
        let tls = self
            .tls
            .clone()
            .ok_or_else(|| SyncError::Permanent("TLS not configured".into()))?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&settings.cfg.host)
            .port(settings.cfg.port)
            .dbname(&settings.cfg.database)
            .user(&creds.username)
            .password(creds.password.as_bytes())
            .ssl_mode(SslMode::Require)
            .application_name("okta-rds-sync")
            .options(sql::SESSION_OPTIONS)
            .connect_timeout(Duration::from_millis(settings.cfg.connect_timeout_ms));
        let (client, connection) = pg
            .connect(tls)
            .await
            .map_err(|e| classify_pg("connect", &e))?;
        let target = settings.cfg.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(%target, error = %e, "database connection closed");
            }
        });
        let version: i32 = client
            .query_one(sql::SERVER_VERSION, &[])
            .await
            .map_err(|e| classify_pg("server version", &e))?
            .get(0);
        Ok(Connection {
            client,
            server_version: version,
            master: creds.username.clone(),
        })
    }
}

impl Settings {
    /// Create the marker role and the state schema, then refuse to run on an unsafe target.
    async fn bootstrap(&self, conn: &Connection) -> Result<(), SyncError> {
        let client = &conn.client;
        let name = &self.cfg.name;
        let pg = |ctx: &'static str| move |e: tokio_postgres::Error| classify_pg(ctx, &e);
        let create_marker = sql::create_marker_role(&self.cfg.marker_role)
            .map_err(|e| SyncError::Permanent(e.to_string()))?;
        let exists = client
            .query(sql::EXISTING_ROLES, &[&vec![self.cfg.marker_role.clone()]])
            .await
            .map_err(pg("marker role"))?;
        if exists.is_empty() {
            let created = client.batch_execute(&create_marker).await;
            match created {
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
                other => other.map_err(pg("create marker role"))?,
            }
        }
        self.create_state_schema(client).await?;

        let iam = &self.cfg.iam_role;
        let existing = |names: Vec<String>| async move {
            let rows = client
                .query(sql::EXISTING_ROLES, &[&names])
                .await
                .map_err(pg("read roles"))?;
            Ok::<BTreeSet<String>, SyncError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        };
        if existing(vec![iam.clone()]).await?.is_empty() {
            return Err(SyncError::Permanent(format!(
                "target {name}: role {iam:?} does not exist (is IAM database authentication enabled?)"
            )));
        }
        let master_inherits: bool = client
            .query_one(sql::MASTER_INHERITS_ROLE, &[iam])
            .await
            .map_err(pg("master check"))?
            .get(0);
        if master_inherits {
            return Err(SyncError::Permanent(format!(
                "target {name}: the master user has the privileges of {iam:?}; refusing to run (its password login is disabled on RDS)"
            )));
        }
        let mapped: Vec<String> = self
            .mapping
            .managed_roles()
            .into_iter()
            .filter(|r| r != iam)
            .collect();
        let found = existing(mapped.clone()).await?;
        let missing: Vec<&String> = mapped.iter().filter(|r| !found.contains(*r)).collect();
        if !missing.is_empty() {
            return Err(SyncError::Permanent(format!(
                "target {name}: mapped roles do not exist: {missing:?}"
            )));
        }
        for (index, roles, allow_privileged) in &self.grants {
            if *allow_privileged {
                continue;
            }
            let rows = client
                .query(sql::PRIVILEGED_ROLES, &[roles])
                .await
                .map_err(pg("privilege check"))?;
            if let Some(row) = rows.first() {
                let role: String = row.get(0);
                return Err(SyncError::Permanent(format!(
                    "grants[{index}]: role {role:?} is privileged (superuser, CREATEROLE, BYPASSRLS or rds_superuser); \
                     set allow_privileged = true on that grant if this is intended"
                )));
            }
        }
        Ok(())
    }

    /// Create the state schema and its tables (idempotent, serialized by an advisory lock), refusing a
    /// schema or table that the master does not own: whoever owns them could make the master run their code.
    async fn create_state_schema(&self, client: &Client) -> Result<(), SyncError> {
        let pg = |ctx: &'static str| move |e: tokio_postgres::Error| classify_pg(ctx, &e);
        let ddl = sql::state_schema_ddl(&self.cfg.state_schema)
            .map_err(|e| SyncError::Permanent(e.to_string()))?;
        let (create_schema, tables) = ddl
            .split_first()
            .ok_or_else(|| SyncError::Permanent("state schema DDL is empty".into()))?;
        let script = format!("BEGIN; {}; {create_schema}", sql::BOOTSTRAP_LOCK);
        let result = async {
            client.batch_execute(&script).await.map_err(pg("create state schema"))?;
            let row = client
                .query_one(sql::STATE_SCHEMA_OWNERSHIP, &[&self.cfg.state_schema])
                .await
                .map_err(pg("state schema owner"))?;
            let (owned, owner, foreign): (bool, String, Vec<String>) =
                (row.get(0), row.get(1), row.get(2));
            if !owned || !foreign.is_empty() {
                return Err(SyncError::Permanent(format!(
                    "target {}: state schema {:?} (owner {owner:?}, objects owned by others: {foreign:?}) is not \
                     owned by the master user only; refusing to use it",
                    self.cfg.name, self.cfg.state_schema
                )));
            }
            client
                .batch_execute(&format!("{}; COMMIT", tables.join("; ")))
                .await
                .map_err(pg("create state schema"))
        }
        .await;
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// What `converge` needs, for one delivery or reconcile run.
    fn ctx<'a>(&'a self, received: &'a Received, master: &str) -> Ctx<'a> {
        let mut protected: BTreeSet<String> = self.protected.iter().cloned().collect();
        protected.insert(master.to_owned());
        Ctx {
            name: &self.cfg.name,
            marker: &self.cfg.marker_role,
            iam: &self.cfg.iam_role,
            mapping: &self.mapping,
            state: &self.state,
            protected,
            untouchable: &self.untouchable,
            received,
            status_lookup: None,
        }
    }
}

/// Begin a change transaction with bounded waits (`statement_timeout`) and, on PostgreSQL 16+, without
/// making the master a member of the roles it creates (it would inherit `rds_iam`).
async fn begin<'c>(
    client: &'c mut Client,
    server_version: i32,
    statement_timeout: &str,
) -> Result<Transaction<'c>, SyncError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| classify_pg("begin", &e))?;
    tx.batch_execute(&sql::transaction_settings(
        statement_timeout,
        server_version,
    ))
    .await
    .map_err(|e| classify_pg("session settings", &e))?;
    Ok(tx)
}

/// Where a user's changes come from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub uuids: Vec<String>,
    pub actor: String,
    /// The user has new facts (refusals are audited only then, not on every re-run).
    pub news: bool,
}

/// What `converge` needs to know about the target.
struct Ctx<'a> {
    name: &'a str,
    marker: &'a str,
    iam: &'a str,
    mapping: &'a Mapping,
    state: &'a sql::StateSql,
    /// Protected names, the master's included.
    protected: BTreeSet<String>,
    untouchable: &'a [String],
    received: &'a Received,
    /// Okta's API for users whose status was never seen (deliveries only; a listing has statuses).
    status_lookup: Option<(&'a Arc<StatusLookup>, &'a Secrets)>,
}

/// A role that lost access and whose sessions must end.
#[derive(Debug, Clone)]
struct Offboarded {
    okta_id: String,
    role: String,
    uuids: Vec<String>,
    actor: String,
    changed: bool,
}

struct Converged {
    offboarded: Vec<Offboarded>,
    plans: Vec<UserPlan>,
}

/// One transaction: lock the `touched` users, record `facts` (if any), and converge them.
async fn converge_locked(
    conn: &mut Connection,
    ctx: &Ctx<'_>,
    touched: &BTreeMap<String, Provenance>,
    facts: Option<&FactBatch>,
    statement_timeout: &str,
    summary: &mut TargetSummary,
    dry_run: bool,
) -> Result<Converged, SyncError> {
    let tx = begin(&mut conn.client, conn.server_version, statement_timeout).await?;
    let ids: Vec<&String> = touched.keys().collect();
    tx.query_one(sql::LOCK_USERS, &[&ids])
        .await
        .map_err(|e| classify_pg("lock users", &e))?;
    if let Some(facts) = facts {
        write_facts(&tx, ctx.state, ctx.mapping, facts).await?;
    }
    converge(tx, ctx, touched, summary, dry_run).await
}

/// Plan every touched user from the recorded facts and the catalog, run the steps (one savepoint per user),
/// audit, check the master is not locked out, then commit (or, for a dry run, roll everything back).
async fn converge(
    tx: Transaction<'_>,
    ctx: &Ctx<'_>,
    touched: &BTreeMap<String, Provenance>,
    summary: &mut TargetSummary,
    dry_run: bool,
) -> Result<Converged, SyncError> {
    let (name, marker, iam, mapping, state, protected, received) = (
        ctx.name,
        ctx.marker,
        ctx.iam,
        ctx.mapping,
        ctx.state,
        &ctx.protected,
        ctx.received,
    );
    let pg = |c: &'static str| move |e: tokio_postgres::Error| classify_pg(c, &e);
    let users: Vec<String> = touched.keys().cloned().collect();
    summary.users += users.len();
    let mut facts = read_facts(&tx, state, &users).await?;
    let unverified = verify_statuses(&tx, ctx, &mut facts).await?;
    let mut candidates: Vec<String> = Vec::new();
    for f in facts.values() {
        candidates.extend(f.role_name.clone());
        if let Some(Ok(n)) = f
            .login
            .as_deref()
            .map(|l| role_name_for(mapping, l, protected))
        {
            candidates.push(n);
        }
    }
    let protected_list: Vec<String> = protected.iter().cloned().collect();
    let roles = read_roles(&tx, &candidates, marker, &protected_list, ctx.untouchable).await?;

    let mut audit: Vec<AuditEntry> = Vec::new();
    let mut recorded: Vec<(String, String)> = Vec::new();
    let mut offboarded: Vec<Offboarded> = Vec::new();
    let mut plans: Vec<UserPlan> = Vec::new();
    // Revokes made, with the index of their audit entry: checked against the catalog afterwards.
    let mut revoked: Vec<(String, String, usize)> = Vec::new();
    for (okta_id, user_facts) in &facts {
        let provenance = touched.get(okta_id).cloned().unwrap_or_default();
        if let Some(why) = unverified.get(okta_id) {
            // Okta's API is configured but did not answer for this user: change nothing for them now.
            summary.refused += 1;
            audit.push(AuditEntry {
                target: name.to_owned(),
                delivery_id: received.delivery_id.clone(),
                event_uuids: provenance.uuids.clone(),
                actor: provenance.actor.clone(),
                okta_id: Some(okta_id.clone()),
                role: user_facts.role_name.clone(),
                action: "status_unverified".into(),
                detail: Some(format!(
                    "the user's status was never seen and Okta's API did not give it ({why}); nothing \
                     changed for this user (the reconcile or the next event will converge them)"
                )),
                outcome: Outcome::Refused,
                duration_ms: ms(received.at.elapsed()),
            });
            continue;
        }
        let by_login = user_facts
            .login
            .as_deref()
            .and_then(|l| role_name_for(mapping, l, protected).ok())
            .and_then(|n| roles.get(&n));
        let recorded_role = user_facts.role_name.as_ref().and_then(|n| roles.get(n));
        let plan = plan_user(
            user_facts,
            ActualRoles {
                recorded: recorded_role,
                by_login,
            },
            mapping,
            protected,
        );
        let (uuids, actor) = (provenance.uuids.clone(), provenance.actor.clone());
        let entry =
            |action: &str, role: Option<String>, detail: Option<String>, outcome| AuditEntry {
                target: name.to_owned(),
                delivery_id: received.delivery_id.clone(),
                event_uuids: uuids.clone(),
                actor: actor.clone(),
                okta_id: Some(okta_id.clone()),
                role,
                action: action.to_owned(),
                detail,
                outcome,
                duration_ms: ms(received.at.elapsed()),
            };
        for r in plan.refusals.iter().filter(|_| provenance.news) {
            summary.refused += 1;
            audit.push(entry(
                r.code(),
                r.role().map(str::to_owned),
                Some(r.to_string()),
                Outcome::Refused,
            ));
        }
        plans.push(plan.clone());
        let outcome = run_steps(&tx, &plan, marker).await?;
        let failed_to_offboard = outcome.is_err() && !plan.entitled && !plan.steps.is_empty();
        if plan.access_left || failed_to_offboard {
            summary.access_left += 1;
            let reason = match &outcome {
                Err(message) => format!("revoking access failed: {message}"),
                Ok(()) => plan
                    .refusals
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            audit.push(entry(
                ACCESS_LEFT,
                plan.role.clone(),
                Some(format!(
                    "not entitled in Okta, but the role keeps its access: {reason}"
                )),
                Outcome::Refused,
            ));
        }
        match outcome {
            Ok(()) => {
                for step in &plan.steps {
                    summary.changes += 1;
                    let mut detail = step_detail(step);
                    if matches!(step, Step::SetLogin { login: true, .. })
                        && user_facts.status.is_none()
                    {
                        detail.push_str(
                            " (status_unverified: no lifecycle event or listing seen for this user; \
                             set [okta] org_url and api_secret_arn to look it up)",
                        );
                    }
                    if let Step::Revoke { granted, from } = step {
                        revoked.push((from.clone(), granted.clone(), audit.len()));
                    }
                    audit.push(entry(
                        sql::step_action(step),
                        plan.role.clone(),
                        Some(detail),
                        Outcome::Applied,
                    ));
                }
                if let Some(role) = &plan.role
                    && user_facts.role_name.as_ref() != Some(role)
                {
                    recorded.push((okta_id.clone(), role.clone()));
                }
                if plan.terminate_sessions
                    && let Some(role) = &plan.role
                {
                    offboarded.push(Offboarded {
                        okta_id: okta_id.clone(),
                        role: role.clone(),
                        uuids: uuids.clone(),
                        actor: actor.clone(),
                        changed: !plan.steps.is_empty(),
                    });
                }
            }
            Err(message) => {
                summary.failed += 1;
                audit.push(entry(
                    "apply",
                    plan.role.clone(),
                    Some(message),
                    Outcome::Failed,
                ));
            }
        }
    }
    if !revoked.is_empty() {
        audit_remaining_memberships(&tx, &revoked, &mut audit, summary).await?;
    }
    if !recorded.is_empty() {
        let (ids, names): (Vec<String>, Vec<String>) = recorded.into_iter().unzip();
        tx.execute(&state.record_roles, &[&ids, &names])
            .await
            .map_err(pg("record roles"))?;
    }
    insert_audit(&tx, state, &received.delivery_id, &audit).await?;
    let master_locked_out: bool = tx
        .query_one(sql::MASTER_INHERITS_ROLE, &[&iam])
        .await
        .map_err(pg("master check"))?
        .get(0);
    if master_locked_out {
        tx.rollback().await.map_err(pg("rollback"))?;
        return Err(SyncError::Permanent(format!(
            "target {name}: these changes would give the master user the privileges of {iam:?}; rolled back"
        )));
    }
    if dry_run {
        tx.rollback().await.map_err(pg("rollback"))?;
    } else {
        tx.commit().await.map_err(pg("commit"))?;
        for entry in &audit {
            entry.log();
        }
    }
    Ok(Converged { offboarded, plans })
}

/// Re-read the memberships just revoked: any that survived (PostgreSQL 16+ keeps one another role also
/// granted) turns its audit entry into a failure, so the audit says what is true and the alarm fires.
async fn audit_remaining_memberships(
    tx: &Transaction<'_>,
    revoked: &[(String, String, usize)],
    audit: &mut [AuditEntry],
    summary: &mut TargetSummary,
) -> Result<(), SyncError> {
    let members: Vec<&str> = revoked.iter().map(|r| r.0.as_str()).collect();
    let granted: Vec<&str> = revoked.iter().map(|r| r.1.as_str()).collect();
    let rows = tx
        .query(sql::REMAINING_MEMBERSHIPS, &[&members, &granted])
        .await
        .map_err(|e| classify_pg("re-read memberships", &e))?;
    for row in rows {
        let (member, role): (String, String) = (row.get(0), row.get(1));
        for (_, _, index) in revoked.iter().filter(|r| r.0 == member && r.1 == role) {
            if let Some(entry) = audit.get_mut(*index) {
                entry.outcome = Outcome::Failed;
                entry.detail = Some(format!(
                    "revoked {role} but the membership remains: another role granted it too (PostgreSQL \
                     16+ revokes only the revoking role's grant); revoke it as that grantor"
                ));
                summary.changes = summary.changes.saturating_sub(1);
                summary.failed += 1;
            }
        }
    }
    Ok(())
}

/// Look up, through Okta's API (when configured), the status of users who would be entitled but whose status
/// was never seen, record each answer as a status fact stamped with the lookup time, and put it in `facts`.
/// Returns the users Okta did not answer for, and why.
async fn verify_statuses(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    facts: &mut BTreeMap<String, UserFacts>,
) -> Result<BTreeMap<String, String>, SyncError> {
    let Some((lookup, secrets)) = ctx.status_lookup else {
        return Ok(BTreeMap::new());
    };
    let unknown: Vec<String> = facts
        .values()
        .filter(|f| f.status.is_none() && !ctx.mapping.roles_for(&f.groups).is_empty())
        .map(|f| f.okta_id.clone())
        .collect();
    if unknown.is_empty() {
        return Ok(BTreeMap::new());
    }
    let answers = lookup
        .statuses(secrets, &unknown, STATUS_LOOKUP_TIMEOUT)
        .await;
    let mut found = Vec::new();
    let mut unanswered = BTreeMap::new();
    for (id, answer) in answers {
        match answer {
            Ok(looked_up) => {
                if let Some(f) = facts.get_mut(&id) {
                    f.status = Some(looked_up.status);
                }
                let stamp = Stamp {
                    published: looked_up.at,
                    uuid: format!("okta-api:{}", looked_up.at.timestamp_micros()),
                };
                found.push(Fact::Status {
                    user: id,
                    status: looked_up.status,
                    stamp,
                });
            }
            Err(why) => {
                tracing::warn!(okta_user = %id, error = %why, "Okta user status lookup failed");
                unanswered.insert(id, why);
            }
        }
    }
    write_facts(tx, ctx.state, ctx.mapping, &FactBatch::reduce(found)).await?;
    Ok(unanswered)
}

/// After commit: kill the sessions of every role that lost access and prove none is left. A failure is
/// audited, the other roles are still handled, and the error makes Okta retry (the retry re-converges).
async fn kill_sessions(
    client: &Client,
    ctx: &Ctx<'_>,
    offboarded: Vec<Offboarded>,
    summary: &mut TargetSummary,
) -> Result<(), SyncError> {
    let (name, state, received) = (ctx.name, ctx.state, ctx.received);
    // After commit: kill sessions of every role that lost access, and prove none is left. A failure is
    // audited, the other roles are still handled, and the error makes Okta retry (the retry re-converges).
    let mut session_audit = Vec::new();
    let roles: Vec<String> = offboarded.iter().map(|o| o.role.clone()).collect();
    let killed = terminate_sessions(client, &roles).await;
    for Offboarded {
        okta_id,
        role,
        uuids,
        actor,
        changed,
    } in offboarded
    {
        let (outcome, detail) = match &killed {
            Ok(counts) => {
                let (terminated, remaining) = counts.get(&role).copied().unwrap_or_default();
                summary.sessions_terminated += terminated;
                if !(changed || terminated > 0 || remaining > 0) {
                    continue;
                }
                let outcome = if remaining == 0 {
                    Outcome::Applied
                } else {
                    Outcome::Failed
                };
                (
                    outcome,
                    format!("{terminated} terminated, {remaining} remaining"),
                )
            }
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        session_audit.push(AuditEntry {
            target: name.to_owned(),
            delivery_id: received.delivery_id.clone(),
            event_uuids: uuids,
            actor,
            okta_id: Some(okta_id),
            role: Some(role),
            action: "terminate_sessions".into(),
            detail: Some(detail),
            outcome,
            duration_ms: ms(received.at.elapsed()),
        });
    }
    if !session_audit.is_empty() {
        insert_audit(client, state, &received.delivery_id, &session_audit).await?;
        for entry in &session_audit {
            entry.log();
        }
    }
    killed.map(|_| ())
}

/// The audit record of an event refused for a `published` time later than receipt plus the clock skew.
fn future_event_audit(target: &str, received: &Received, event: &OktaEvent) -> AuditEntry {
    AuditEntry {
        target: target.to_owned(),
        delivery_id: received.delivery_id.clone(),
        event_uuids: vec![event.uuid.clone()],
        actor: event.actor.clone(),
        okta_id: event.user.as_ref().map(|u| u.id.clone()),
        role: None,
        action: "refuse_event".into(),
        detail: Some(format!(
            "{} published {} but received {}: later than the allowed clock skew; not recorded",
            event.kind.as_str(),
            event.published.to_rfc3339(),
            received.wall.to_rfc3339()
        )),
        outcome: Outcome::Refused,
        duration_ms: ms(received.at.elapsed()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn step_detail(step: &crate::plan::Step) -> String {
    use crate::plan::Step;
    match step {
        Step::Create { role } => format!("created {role}"),
        Step::Rename { from, to } => format!("{from} -> {to}"),
        Step::SetLogin { login, .. } => if *login { "LOGIN" } else { "NOLOGIN" }.to_owned(),
        Step::Grant { granted, .. } => format!("granted {granted}"),
        Step::Revoke { granted, .. } => format!("revoked {granted}"),
    }
}

async fn claim_events(
    tx: &Transaction<'_>,
    state: &sql::StateSql,
    events: &[OktaEvent],
) -> Result<HashSet<String>, SyncError> {
    let uuids: Vec<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let published: Vec<DateTime<Utc>> = events.iter().map(|e| e.published).collect();
    let rows = tx
        .query(&state.claim_events, &[&uuids, &types, &published])
        .await
        .map_err(|e| classify_pg("claim events", &e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// `(user, value, published, uuid)` columns of a fact batch, bound as arrays.
type FactColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<DateTime<Utc>>, Vec<&'a str>);

async fn write_facts(
    tx: &Transaction<'_>,
    state: &sql::StateSql,
    mapping: &Mapping,
    batch: &FactBatch,
) -> Result<(), SyncError> {
    let pg = |ctx: &'static str| move |e: tokio_postgres::Error| classify_pg(ctx, &e);
    if !batch.logins.is_empty() {
        let (u, l, p, id): FactColumns<'_> = unzip4(
            batch
                .logins
                .iter()
                .map(|(u, l, s)| (u.as_str(), l.as_str(), s.published, s.uuid.as_str())),
        );
        tx.execute(&state.upsert_logins, &[&u, &l, &p, &id])
            .await
            .map_err(pg("record logins"))?;
    }
    if !batch.statuses.is_empty() {
        let (u, st, p, id): FactColumns<'_> = unzip4(
            batch
                .statuses
                .iter()
                .map(|(u, st, s)| (u.as_str(), st.as_str(), s.published, s.uuid.as_str())),
        );
        tx.execute(&state.upsert_statuses, &[&u, &st, &p, &id])
            .await
            .map_err(pg("record statuses"))?;
    }
    if !batch.memberships.is_empty() {
        let m = &batch.memberships;
        let users: Vec<&str> = m.iter().map(|x| x.0.as_str()).collect();
        let gids: Vec<&str> = m.iter().map(|x| x.1.id.as_str()).collect();
        let gnames: Vec<&str> = m.iter().map(|x| x.1.name.as_str()).collect();
        let member: Vec<bool> = m.iter().map(|x| x.2).collect();
        let published: Vec<DateTime<Utc>> = m.iter().map(|x| x.3.published).collect();
        let uuids: Vec<&str> = m.iter().map(|x| x.3.uuid.as_str()).collect();
        let mapped: Vec<bool> = m.iter().map(|x| mapping.group_is_mapped(&x.1)).collect();
        tx.execute(
            &state.upsert_memberships,
            &[&users, &gids, &gnames, &member, &published, &uuids, &mapped],
        )
        .await
        .map_err(pg("record memberships"))?;
    }
    Ok(())
}

fn unzip4<A, B, C, D>(
    items: impl Iterator<Item = (A, B, C, D)>,
) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, x, y, z) in items {
        a.push(w);
        b.push(x);
        c.push(y);
        d.push(z);
    }
    (a, b, c, d)
}

async fn read_facts(
    tx: &Transaction<'_>,
    state: &sql::StateSql,
    users: &[String],
) -> Result<BTreeMap<String, UserFacts>, SyncError> {
    let mut facts: BTreeMap<String, UserFacts> = BTreeMap::new();
    let rows = tx
        .query(&state.read_users, &[&users])
        .await
        .map_err(|e| classify_pg("read users", &e))?;
    for r in rows {
        let okta_id: String = r.get(0);
        let status: Option<String> = r.get(2);
        facts.insert(
            okta_id.clone(),
            UserFacts {
                okta_id,
                login: r.get(1),
                status: status.as_deref().and_then(UserStatus::parse),
                groups: Vec::new(),
                role_name: r.get(3),
            },
        );
    }
    let rows = tx
        .query(&state.read_memberships, &[&users])
        .await
        .map_err(|e| classify_pg("read memberships", &e))?;
    for r in rows {
        if let Some(f) = facts.get_mut(&r.get::<_, String>(0)) {
            f.groups.push(GroupRef {
                id: r.get(1),
                name: r.get(2),
            });
        }
    }
    Ok(facts)
}

async fn read_roles(
    tx: &Transaction<'_>,
    names: &[String],
    marker: &str,
    protected: &[String],
    untouchable: &[String],
) -> Result<BTreeMap<String, ActualRole>, SyncError> {
    let rows = tx
        .query(
            sql::READ_ROLES,
            &[&names, &marker, &protected, &untouchable],
        )
        .await
        .map_err(|e| classify_pg("read roles", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let comment: Option<String> = r.get(3);
            let member_of: Vec<String> = r.get(4);
            let role = ActualRole {
                name: name.clone(),
                can_login: r.get(1),
                protected: r.get(2),
                okta_id: sql::okta_id_from_comment(comment.as_deref()),
                member_of: member_of.into_iter().collect(),
                managed: r.get(5),
                master_inherits: r.get(6),
                untouchable: r.get(7),
            };
            (name, role)
        })
        .collect())
}

/// Run one user's steps inside a savepoint. A transient error aborts the delivery (`Err`); a permanent
/// one (say, a permission error) is rolled back to the savepoint and reported (`Ok(Err(message))`) so the
/// other users of the delivery still converge.
async fn run_steps(
    tx: &Transaction<'_>,
    plan: &UserPlan,
    marker: &str,
) -> Result<Result<(), String>, SyncError> {
    if plan.steps.is_empty() {
        return Ok(Ok(()));
    }
    let mut script = String::from(sql::USER_SAVEPOINT);
    for step in &plan.steps {
        let statements = sql::render_step(step, marker, &plan.okta_id)
            .map_err(|e| SyncError::Permanent(e.to_string()));
        match statements {
            Ok(s) => {
                for stmt in s {
                    script.push_str(";\n");
                    script.push_str(&stmt);
                }
            }
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    script.push_str(";\n");
    script.push_str(sql::RELEASE_USER_SAVEPOINT);
    match tx.batch_execute(&script).await {
        Ok(()) => Ok(Ok(())),
        Err(e) => {
            let err = classify_pg("apply", &e);
            if err.is_transient() {
                return Err(err);
            }
            tx.batch_execute(sql::ROLLBACK_USER_SAVEPOINT)
                .await
                .map_err(|e| classify_pg("rollback to savepoint", &e))?;
            Ok(Err(err.to_string()))
        }
    }
}

/// Write audit rows, in a transaction or on their own (one statement is atomic either way).
async fn insert_audit<C: tokio_postgres::GenericClient>(
    tx: &C,
    state: &sql::StateSql,
    delivery_id: &str,
    entries: &[AuditEntry],
) -> Result<(), SyncError> {
    if entries.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&AuditEntry) -> Option<String>| {
        entries.iter().map(f).collect::<Vec<Option<String>>>()
    };
    let uuids = col(|e| Some(e.event_uuids.join(",")));
    let actors = col(|e| Some(e.actor.clone()));
    let users = col(|e| e.okta_id.clone());
    let roles = col(|e| e.role.clone());
    let actions = col(|e| Some(e.action.clone()));
    let details = col(|e| e.detail.clone());
    let outcomes = col(|e| Some(e.outcome.as_str().to_owned()));
    let durations: Vec<f64> = entries.iter().map(|e| e.duration_ms).collect();
    tx.execute(
        &state.insert_audit,
        &[
            &delivery_id,
            &uuids,
            &actors,
            &users,
            &roles,
            &actions,
            &details,
            &outcomes,
            &durations,
        ],
    )
    .await
    .map_err(|e| classify_pg("write audit", &e))?;
    Ok(())
}

/// Terminate every session of `roles` and re-check until none is left (bounded): per role,
/// `(terminated, remaining)`. Two queries per round, whatever the number of roles.
async fn terminate_sessions(
    client: &Client,
    roles: &[String],
) -> Result<BTreeMap<String, (i64, i64)>, SyncError> {
    let mut result: BTreeMap<String, (i64, i64)> =
        roles.iter().map(|r| (r.clone(), (0, 0))).collect();
    let mut pending: Vec<String> = roles.to_vec();
    for attempt in 0..5 {
        if pending.is_empty() {
            break;
        }
        let rows = client
            .query(sql::TERMINATE_SESSIONS, &[&pending])
            .await
            .map_err(|e| classify_pg("terminate sessions", &e))?;
        for r in rows {
            if let Some(entry) = result.get_mut(&r.get::<_, String>(0)) {
                entry.0 += r.get::<_, i64>(1);
            }
        }
        let rows = client
            .query(sql::COUNT_SESSIONS, &[&pending])
            .await
            .map_err(|e| classify_pg("count sessions", &e))?;
        let left: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for role in &pending {
            if let Some(entry) = result.get_mut(role) {
                entry.1 = left.get(role).copied().unwrap_or(0);
            }
        }
        pending.retain(|r| left.contains_key(r));
        if !pending.is_empty() && attempt < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(result)
}
