//! The state schema on PostgreSQL: claims, facts, recorded roles and the audit trail, through statements
//! prepared once per connection ([`Db`]), so each costs one round trip.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row, Statement};

use super::error::pg;
use super::sql::StateSql;
use crate::audit::AuditEntry;
use crate::error::SyncError;
use crate::journal::{FactBatch, Stamp, UserFacts, UserStatus};
use crate::okta::{GroupRef, OktaEvent};
use crate::plan::Mapping;

/// Statements prepared on one connection, by SQL text (prepared statements outlive transactions).
#[derive(Debug, Default)]
pub struct Statements(HashMap<String, Statement>);

/// A client (or transaction) and its connection's prepared statements.
pub struct Db<'a, C> {
    pub client: &'a C,
    pub statements: &'a mut Statements,
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Statements {
    /// Prepare these statements now, all in one round trip (the driver pipelines concurrent requests), so
    /// that no delivery pays a round trip to prepare one.
    pub async fn prepare_all(
        &mut self,
        client: &tokio_postgres::Client,
        sqls: &[&str],
    ) -> Result<(), SyncError> {
        let missing: Vec<&str> = sqls
            .iter()
            .copied()
            .filter(|s| !self.0.contains_key(*s))
            .collect();
        let prepared =
            futures_util::future::try_join_all(missing.iter().map(|sql| client.prepare(sql)))
                .await
                .map_err(pg("prepare"))?;
        self.0
            .extend(missing.into_iter().map(str::to_owned).zip(prepared));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<C: GenericClient> Db<'_, C> {
    async fn statement(&mut self, sql: &str) -> Result<Statement, SyncError> {
        if let Some(s) = self.statements.0.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(pg("prepare"))?;
        self.statements.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        what: &'static str,
    ) -> Result<Vec<Row>, SyncError> {
        let s = self.statement(sql).await?;
        self.client.query(&s, params).await.map_err(pg(what))
    }

    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        what: &'static str,
    ) -> Result<Row, SyncError> {
        let s = self.statement(sql).await?;
        self.client.query_one(&s, params).await.map_err(pg(what))
    }
}

/// The events as the claim's bind parameters: uuids, types, published.
type EventColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<DateTime<Utc>>);

fn event_columns(events: &[OktaEvent]) -> EventColumns<'_> {
    (
        events.iter().map(|e| e.uuid.as_str()).collect(),
        events.iter().map(|e| e.kind.as_str()).collect(),
        events.iter().map(|e| e.published).collect(),
    )
}

/// The claim's answer: `None` if the delivery was seen before, else the new event uuids.
fn claimed(row: &Row) -> Option<HashSet<String>> {
    let new: bool = row.get(0);
    let fresh: Vec<String> = row.get(1);
    new.then(|| fresh.into_iter().collect())
}

/// Claim a delivery and its events: `None` if the delivery was seen before, else the new event uuids.
async fn claim<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    delivery_id: &str,
    events: &[OktaEvent],
) -> Result<Option<HashSet<String>>, SyncError> {
    let (uuids, types, published) = event_columns(events);
    let row = db
        .query_one(
            &state.claim,
            &[&delivery_id, &uuids, &types, &published],
            "claim delivery",
        )
        .await?;
    Ok(claimed(&row))
}

/// Lock the rows of the users `ids` (made if new) until the unit ends. Row locks in the master's own state
/// table: an ordinary login can neither take nor block them (advisory locks share one namespace with every
/// login).
pub async fn lock_users<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    ids: &[String],
) -> Result<(), SyncError> {
    if ids.is_empty() {
        return Ok(());
    }
    db.query_one(&state.lock_users, &[&ids], LOCK_USERS).await?;
    Ok(())
}

/// What the lock statement is called in errors.
const LOCK_USERS: &str = "lock users";

/// [`claim`], and the row locks of the users `lock` ([`lock_users`]), in one flight: the driver pipelines the two
/// statements and the server runs them in order, the claim first (as when each waited for the other).
pub async fn claim_and_lock<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    delivery_id: &str,
    events: &[OktaEvent],
    lock: &[String],
) -> Result<Option<HashSet<String>>, SyncError> {
    if lock.is_empty() {
        return claim(db, state, delivery_id, events).await;
    }
    let (uuids, types, published) = event_columns(events);
    let (claim_statement, lock_statement) = (
        db.statement(&state.claim).await?,
        db.statement(&state.lock_users).await?,
    );
    let client = db.client;
    let (row, _) = futures_util::future::try_join(
        async {
            client
                .query_one(
                    &claim_statement,
                    &[&delivery_id, &uuids, &types, &published],
                )
                .await
                .map_err(pg("claim delivery"))
        },
        async {
            client
                .query_one(&lock_statement, &[&lock])
                .await
                .map_err(pg(LOCK_USERS))
        },
    )
    .await?;
    Ok(claimed(&row))
}

pub async fn record_group_deletion<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    group: &GroupRef,
    stamp: &Stamp,
) -> Result<Vec<String>, SyncError> {
    let params: [&(dyn ToSql + Sync); 3] = [&group.id, &stamp.published, &stamp.uuid];
    db.query(
        &state.upsert_deleted_group,
        &params,
        "record group deletion",
    )
    .await?;
    let rows = db
        .query(
            &state.void_group_memberships,
            &params,
            "end group memberships",
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Record a batch of facts in one statement (logins and statuses per user, memberships).
pub async fn write_facts<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    batch: &FactBatch,
    mapping: &Mapping,
) -> Result<(), SyncError> {
    if batch.logins.is_empty() && batch.statuses.is_empty() && batch.memberships.is_empty() {
        return Ok(());
    }
    let (lu, ll, lp, lid) = columns(
        batch
            .logins
            .iter()
            .map(|(u, l, s)| (u.as_str(), l.as_str(), s)),
    );
    let (su, st, sp, sid) = columns(
        batch
            .statuses
            .iter()
            .map(|(u, st, s)| (u.as_str(), st.as_str(), s)),
    );
    let m = &batch.memberships;
    let users: Vec<&str> = m.iter().map(|x| x.0.as_str()).collect();
    let gids: Vec<&str> = m.iter().map(|x| x.1.id.as_str()).collect();
    let gnames: Vec<&str> = m.iter().map(|x| x.1.name.as_str()).collect();
    let member: Vec<bool> = m.iter().map(|x| x.2).collect();
    let published: Vec<DateTime<Utc>> = m.iter().map(|x| x.3.published).collect();
    let uuids: Vec<&str> = m.iter().map(|x| x.3.uuid.as_str()).collect();
    let mapped: Vec<bool> = m.iter().map(|x| mapping.group_is_mapped(&x.1)).collect();
    db.query_one(
        &state.write_facts,
        &[
            &lu, &ll, &lp, &lid, &su, &st, &sp, &sid, &users, &gids, &gnames, &member, &published,
            &uuids, &mapped,
        ],
        "record facts",
    )
    .await?;
    Ok(())
}

/// `(user, value, published, uuid)` columns of user facts, bound as arrays.
type FactColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<DateTime<Utc>>, Vec<&'a str>);

fn columns<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a Stamp)>) -> FactColumns<'a> {
    let mut out: FactColumns<'a> = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (user, value, stamp) in rows {
        out.0.push(user);
        out.1.push(value);
        out.2.push(stamp.published);
        out.3.push(&stamp.uuid);
    }
    out
}

pub async fn read_facts<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    users: &[String],
) -> Result<BTreeMap<String, UserFacts>, SyncError> {
    let rows = db.query(&state.read_facts, &[&users], "read facts").await?;
    Ok(rows
        .iter()
        .map(|r| {
            let okta_id: String = r.get(0);
            let status: Option<String> = r.get(2);
            let ids: Vec<String> = r.get(4);
            let names: Vec<String> = r.get(5);
            let facts = UserFacts {
                okta_id: okta_id.clone(),
                login: r.get(1),
                status: status.as_deref().and_then(UserStatus::parse),
                groups: ids
                    .into_iter()
                    .zip(names)
                    .map(|(id, name)| GroupRef { id, name })
                    .collect(),
                role_name: r.get(3),
            };
            (okta_id, facts)
        })
        .collect())
}

/// Okta ids of the users a query returns (first column).
pub async fn okta_ids<C: GenericClient>(
    db: &mut Db<'_, C>,
    statement: &str,
    params: &Params<'_>,
) -> Result<Vec<String>, SyncError> {
    Ok(db
        .query(statement, params, "read users")
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The audit records as bind parameters (nine arrays, starting with the delivery id).
pub struct AuditColumns {
    uuids: Vec<Option<String>>,
    actors: Vec<Option<String>>,
    users: Vec<Option<String>>,
    roles: Vec<Option<String>>,
    actions: Vec<Option<String>>,
    details: Vec<Option<String>>,
    outcomes: Vec<Option<String>>,
    durations: Vec<f64>,
}

impl AuditColumns {
    pub fn new(entries: &[AuditEntry]) -> Self {
        let col = |f: fn(&AuditEntry) -> Option<String>| entries.iter().map(f).collect();
        Self {
            uuids: col(|e| Some(e.event_uuids.join(","))),
            actors: col(|e| Some(e.actor.clone())),
            users: col(|e| e.okta_id.clone()),
            roles: col(|e| e.role.clone()),
            actions: col(|e| Some(e.action.clone())),
            details: col(|e| e.detail.clone()),
            outcomes: col(|e| Some(e.outcome.as_str().to_owned())),
            durations: entries.iter().map(|e| e.duration_ms).collect(),
        }
    }

    /// The eight arrays after the delivery id.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.uuids,
            &self.actors,
            &self.users,
            &self.roles,
            &self.actions,
            &self.details,
            &self.outcomes,
            &self.durations,
        ]
    }
}

/// Write audit rows, in a transaction or on their own (one statement is atomic either way).
pub async fn insert_audit<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    delivery_id: &str,
    entries: &[AuditEntry],
) -> Result<(), SyncError> {
    if entries.is_empty() {
        return Ok(());
    }
    let columns = AuditColumns::new(entries);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&delivery_id];
    params.extend(columns.params());
    db.query(&state.insert_audit, &params, "write audit")
        .await?;
    Ok(())
}

/// Record the users' roles and the audit, and say whether the master now has the IAM role's privileges.
pub async fn finish<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: &StateSql,
    roles: &[(String, String)],
    delivery_id: &str,
    audit: &[AuditEntry],
    iam_role: &str,
) -> Result<bool, SyncError> {
    let ids: Vec<&str> = roles.iter().map(|r| r.0.as_str()).collect();
    let names: Vec<&str> = roles.iter().map(|r| r.1.as_str()).collect();
    let columns = AuditColumns::new(audit);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ids, &names, &delivery_id];
    params.extend(columns.params());
    params.push(&iam_role);
    let row = db
        .query_one(&state.finish, &params, "record roles and audit")
        .await?;
    Ok(row.get(1))
}
