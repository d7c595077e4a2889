//! The state schema on PostgreSQL: seen deliveries and events, facts, recorded roles and the audit trail.
//! Every write takes arrays (`unnest`), so a delivery of any size costs a fixed number of round trips.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::error::pg;
use super::sql::StateSql;
use crate::audit::AuditEntry;
use crate::error::SyncError;
use crate::journal::{FactBatch, Stamp, UserFacts, UserStatus};
use crate::okta::{GroupRef, OktaEvent};
use crate::plan::Mapping;

pub async fn claim_delivery<C: GenericClient>(
    c: &C,
    state: &StateSql,
    delivery_id: &str,
) -> Result<bool, SyncError> {
    Ok(c.query_opt(&state.claim_delivery, &[&delivery_id])
        .await
        .map_err(pg("claim delivery"))?
        .is_some())
}

pub async fn claim_events<C: GenericClient>(
    c: &C,
    state: &StateSql,
    events: &[OktaEvent],
) -> Result<HashSet<String>, SyncError> {
    let uuids: Vec<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let published: Vec<DateTime<Utc>> = events.iter().map(|e| e.published).collect();
    let rows = c
        .query(&state.claim_events, &[&uuids, &types, &published])
        .await
        .map_err(pg("claim events"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

pub async fn record_group_deletion<C: GenericClient>(
    c: &C,
    state: &StateSql,
    group: &GroupRef,
    stamp: &Stamp,
) -> Result<Vec<String>, SyncError> {
    c.execute(
        &state.upsert_deleted_group,
        &[&group.id, &stamp.published, &stamp.uuid],
    )
    .await
    .map_err(pg("record group deletion"))?;
    let rows = c
        .query(
            &state.void_group_memberships,
            &[&group.id, &stamp.published, &stamp.uuid],
        )
        .await
        .map_err(pg("end group memberships"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// `(user, value, published, uuid)` columns of a fact batch, bound as arrays.
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

pub async fn write_facts<C: GenericClient>(
    c: &C,
    state: &StateSql,
    batch: &FactBatch,
    mapping: &Mapping,
) -> Result<(), SyncError> {
    if !batch.logins.is_empty() {
        let (u, l, p, id) = columns(
            batch
                .logins
                .iter()
                .map(|(u, l, s)| (u.as_str(), l.as_str(), s)),
        );
        c.execute(&state.upsert_logins, &[&u, &l, &p, &id])
            .await
            .map_err(pg("record logins"))?;
    }
    if !batch.statuses.is_empty() {
        let (u, st, p, id) = columns(
            batch
                .statuses
                .iter()
                .map(|(u, st, s)| (u.as_str(), st.as_str(), s)),
        );
        c.execute(&state.upsert_statuses, &[&u, &st, &p, &id])
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
        c.execute(
            &state.upsert_memberships,
            &[&users, &gids, &gnames, &member, &published, &uuids, &mapped],
        )
        .await
        .map_err(pg("record memberships"))?;
    }
    Ok(())
}

pub async fn read_facts<C: GenericClient>(
    c: &C,
    state: &StateSql,
    users: &[String],
) -> Result<BTreeMap<String, UserFacts>, SyncError> {
    let mut facts: BTreeMap<String, UserFacts> = BTreeMap::new();
    for r in c
        .query(&state.read_users, &[&users])
        .await
        .map_err(pg("read users"))?
    {
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
    for r in c
        .query(&state.read_memberships, &[&users])
        .await
        .map_err(pg("read memberships"))?
    {
        if let Some(f) = facts.get_mut(&r.get::<_, String>(0)) {
            f.groups.push(GroupRef {
                id: r.get(1),
                name: r.get(2),
            });
        }
    }
    Ok(facts)
}

pub async fn record_roles<C: GenericClient>(
    c: &C,
    state: &StateSql,
    roles: &[(String, String)],
) -> Result<(), SyncError> {
    if roles.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = roles.iter().map(|r| r.0.as_str()).collect();
    let names: Vec<&str> = roles.iter().map(|r| r.1.as_str()).collect();
    c.execute(&state.record_roles, &[&ids, &names])
        .await
        .map_err(pg("record roles"))?;
    Ok(())
}

/// Okta ids of the users a query returns (first column).
pub async fn okta_ids<C: GenericClient>(
    c: &C,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<String>, SyncError> {
    Ok(c.query(statement, params)
        .await
        .map_err(pg("read users"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Write audit rows, in a transaction or on their own (one statement is atomic either way).
pub async fn insert_audit<C: GenericClient>(
    c: &C,
    state: &StateSql,
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
    c.execute(
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
    .map_err(pg("write audit"))?;
    Ok(())
}
