//! The state tables on MySQL/MariaDB (InnoDB, in the `state_schema` database): seen deliveries and events,
//! facts, recorded roles and the audit trail. A fact only replaces an older one: each row keeps its stamp
//! as one comparable string ([`sql::stamp_text`]), and every upsert compares it before it assigns.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::error::my;
use super::sql::{self, list, placeholders, stamp_text};
use crate::audit::AuditEntry;
use crate::error::SyncError;
use crate::journal::{FactBatch, Stamp, UserFacts, UserStatus};
use crate::okta::{GroupRef, OktaEvent};
use crate::plan::Mapping;

/// Rows per multi-row statement (well under the protocol's 65,535 placeholders).
const ROWS_PER_STATEMENT: usize = 500;

/// The qualified state tables.
#[derive(Debug, Clone)]
pub struct Tables {
    pub users: String,
    pub memberships: String,
    pub deleted_groups: String,
    pub seen_deliveries: String,
    pub seen_events: String,
    pub audit: String,
}

impl Tables {
    pub fn new(schema: &str) -> Result<Self, sql::QuoteError> {
        let s = sql::quote_ident(schema)?;
        Ok(Self {
            users: format!("{s}.users"),
            memberships: format!("{s}.memberships"),
            deleted_groups: format!("{s}.deleted_groups"),
            seen_deliveries: format!("{s}.seen_deliveries"),
            seen_events: format!("{s}.seen_events"),
            audit: format!("{s}.audit"),
        })
    }
}

fn values<I: IntoIterator<Item = Value>>(items: I) -> Vec<Value> {
    items.into_iter().collect()
}

pub async fn claim_delivery(
    c: &mut Conn,
    t: &Tables,
    delivery_id: &str,
) -> Result<bool, SyncError> {
    c.exec_drop(
        format!(
            "INSERT IGNORE INTO {} (event_id) VALUES (?)",
            t.seen_deliveries
        ),
        (delivery_id,),
    )
    .await
    .map_err(my("claim delivery"))?;
    Ok(c.affected_rows() == 1)
}

pub async fn claim_events(
    c: &mut Conn,
    t: &Tables,
    events: &[OktaEvent],
) -> Result<HashSet<String>, SyncError> {
    let mut new = HashSet::new();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let uuids: Vec<Value> = chunk.iter().map(|e| e.uuid.clone().into()).collect();
        let seen: Vec<String> = c
            .exec(
                format!(
                    "SELECT uuid FROM {} WHERE uuid IN ({}) FOR UPDATE",
                    t.seen_events,
                    list(chunk.len())
                ),
                uuids,
            )
            .await
            .map_err(my("claim events"))?;
        let fresh: Vec<&OktaEvent> = chunk.iter().filter(|e| !seen.contains(&e.uuid)).collect();
        if fresh.is_empty() {
            continue;
        }
        let params = values(fresh.iter().flat_map(|e| {
            [
                Value::from(e.uuid.clone()),
                Value::from(e.kind.as_str()),
                Value::from(e.published.naive_utc()),
            ]
        }));
        c.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (uuid, event_type, published) VALUES {}",
                t.seen_events,
                placeholders(fresh.len(), 3)
            ),
            params,
        )
        .await
        .map_err(my("claim events"))?;
        new.extend(fresh.iter().map(|e| e.uuid.clone()));
    }
    Ok(new)
}

pub async fn record_group_deletion(
    c: &mut Conn,
    t: &Tables,
    group: &GroupRef,
    stamp: &Stamp,
) -> Result<Vec<String>, SyncError> {
    let stamp = stamp_text(stamp);
    c.exec_drop(
        format!(
            "INSERT INTO {} (group_id, stamp) VALUES (?, ?)
             ON DUPLICATE KEY UPDATE stamp = IF(stamp < VALUES(stamp), VALUES(stamp), stamp)",
            t.deleted_groups
        ),
        (&group.id, &stamp),
    )
    .await
    .map_err(my("record group deletion"))?;
    let users: Vec<String> = c
        .exec(
            format!(
                "SELECT okta_id FROM {} WHERE group_id = ? AND stamp < ? FOR UPDATE",
                t.memberships
            ),
            (&group.id, &stamp),
        )
        .await
        .map_err(my("end group memberships"))?;
    c.exec_drop(
        format!(
            "UPDATE {} SET member = FALSE, stamp = ? WHERE group_id = ? AND stamp < ?",
            t.memberships
        ),
        (&stamp, &group.id, &stamp),
    )
    .await
    .map_err(my("end group memberships"))?;
    Ok(users)
}

/// Upsert `(okta_id, value, stamp)` rows of one kind of user fact, newest stamp winning.
async fn upsert_user_facts(
    c: &mut Conn,
    t: &Tables,
    column: &str,
    rows: &[(&str, &str, String)],
) -> Result<(), SyncError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let params = values(
            chunk
                .iter()
                .flat_map(|(u, v, s)| [Value::from(*u), Value::from(*v), Value::from(s.clone())]),
        );
        // The stamp is assigned last: every earlier IF still compares against the old one.
        let newer = format!("({column}_stamp IS NULL OR {column}_stamp < VALUES({column}_stamp))");
        c.exec_drop(
            format!(
                "INSERT INTO {users} (okta_id, {column}, {column}_stamp) VALUES {rows}
                 ON DUPLICATE KEY UPDATE {column} = IF({newer}, VALUES({column}), {column}),
                   {column}_stamp = IF({newer}, VALUES({column}_stamp), {column}_stamp)",
                users = t.users,
                rows = placeholders(chunk.len(), 3)
            ),
            params,
        )
        .await
        .map_err(my("record facts"))?;
    }
    Ok(())
}

pub async fn write_facts(
    c: &mut Conn,
    t: &Tables,
    batch: &FactBatch,
    mapping: &Mapping,
) -> Result<(), SyncError> {
    let logins: Vec<(&str, &str, String)> = batch
        .logins
        .iter()
        .map(|(u, l, s)| (u.as_str(), l.as_str(), stamp_text(s)))
        .collect();
    upsert_user_facts(c, t, "login", &logins).await?;
    let statuses: Vec<(&str, &str, String)> = batch
        .statuses
        .iter()
        .map(|(u, st, s)| (u.as_str(), st.as_str(), stamp_text(s)))
        .collect();
    upsert_user_facts(c, t, "status", &statuses).await?;
    if batch.memberships.is_empty() {
        return Ok(());
    }
    // A membership stamped no later than its group's deletion is void; one of an unmapped group only
    // updates a recorded row.
    let groups: BTreeSet<&str> = batch.memberships.iter().map(|m| m.1.id.as_str()).collect();
    let deleted: BTreeMap<String, String> = c
        .exec(
            format!(
                "SELECT group_id, stamp FROM {} WHERE group_id IN ({})",
                t.deleted_groups,
                list(groups.len())
            ),
            values(groups.iter().map(|g| Value::from(*g))),
        )
        .await
        .map_err(my("read deleted groups"))?
        .into_iter()
        .collect();
    let users: BTreeSet<&str> = batch.memberships.iter().map(|m| m.0.as_str()).collect();
    let recorded: BTreeSet<(String, String)> = c
        .exec(
            format!(
                "SELECT okta_id, group_id FROM {} WHERE okta_id IN ({})",
                t.memberships,
                list(users.len())
            ),
            values(users.iter().map(|u| Value::from(*u))),
        )
        .await
        .map_err(my("read memberships"))?
        .into_iter()
        .collect();
    let rows: Vec<(&str, &GroupRef, bool, String)> = batch
        .memberships
        .iter()
        .map(|(u, g, member, s)| (u.as_str(), g, *member, stamp_text(s)))
        .filter(|(u, g, _, stamp)| {
            let void = deleted.get(&g.id).is_some_and(|d| d >= stamp);
            let known =
                mapping.group_is_mapped(g) || recorded.contains(&((*u).to_owned(), g.id.clone()));
            !void && known
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let params = values(chunk.iter().flat_map(|(u, g, member, s)| {
            [
                Value::from(*u),
                Value::from(g.id.clone()),
                Value::from(g.name.clone()),
                Value::from(*member),
                Value::from(s.clone()),
            ]
        }));
        let newer = "(stamp < VALUES(stamp))";
        c.exec_drop(
            format!(
                "INSERT INTO {} (okta_id, group_id, group_name, member, stamp) VALUES {}
                 ON DUPLICATE KEY UPDATE group_name = IF({newer}, VALUES(group_name), group_name),
                   member = IF({newer}, VALUES(member), member), stamp = IF({newer}, VALUES(stamp), stamp)",
                t.memberships,
                placeholders(chunk.len(), 5)
            ),
            params,
        )
        .await
        .map_err(my("record memberships"))?;
    }
    Ok(())
}

/// `(okta_id, login, status, role_name)`.
type UserRow = (String, Option<String>, Option<String>, Option<String>);

pub async fn read_facts(
    c: &mut Conn,
    t: &Tables,
    users: &[String],
) -> Result<BTreeMap<String, UserFacts>, SyncError> {
    let mut facts: BTreeMap<String, UserFacts> = BTreeMap::new();
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let ids = values(chunk.iter().map(|u| Value::from(u.clone())));
        let rows: Vec<UserRow> = c
            .exec(
                format!(
                    "SELECT okta_id, login, status, role_name FROM {} WHERE okta_id IN ({})",
                    t.users,
                    list(chunk.len())
                ),
                ids.clone(),
            )
            .await
            .map_err(my("read users"))?;
        for (okta_id, login, status, role_name) in rows {
            facts.insert(
                okta_id.clone(),
                UserFacts {
                    okta_id,
                    login,
                    status: status.as_deref().and_then(UserStatus::parse),
                    groups: Vec::new(),
                    role_name,
                },
            );
        }
        let rows: Vec<(String, String, String)> = c
            .exec(
                format!(
                    "SELECT m.okta_id, m.group_id, m.group_name FROM {} m
                     WHERE m.okta_id IN ({}) AND m.member
                       AND NOT EXISTS (SELECT 1 FROM {} d WHERE d.group_id = m.group_id AND d.stamp >= m.stamp)",
                    t.memberships,
                    list(chunk.len()),
                    t.deleted_groups
                ),
                ids,
            )
            .await
            .map_err(my("read memberships"))?;
        for (user, id, name) in rows {
            if let Some(f) = facts.get_mut(&user) {
                f.groups.push(GroupRef { id, name });
            }
        }
    }
    Ok(facts)
}

pub async fn record_roles(
    c: &mut Conn,
    t: &Tables,
    roles: &[(String, String)],
) -> Result<(), SyncError> {
    for (okta_id, role) in roles {
        c.exec_drop(
            format!("UPDATE {} SET role_name = ? WHERE okta_id = ?", t.users),
            (role, okta_id),
        )
        .await
        .map_err(my("record roles"))?;
    }
    Ok(())
}

/// The Okta id recorded for each of these account names.
pub async fn owners(
    c: &mut Conn,
    t: &Tables,
    names: &[String],
) -> Result<BTreeMap<String, String>, SyncError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, String)> = c
        .exec(
            format!(
                "SELECT role_name, okta_id FROM {} WHERE role_name IN ({})",
                t.users,
                list(names.len())
            ),
            values(names.iter().map(|n| Value::from(n.clone()))),
        )
        .await
        .map_err(my("read owners"))?;
    Ok(rows.into_iter().collect())
}

pub async fn managed_users(c: &mut Conn, t: &Tables) -> Result<Vec<String>, SyncError> {
    c.query(format!(
        "SELECT okta_id FROM {} WHERE role_name IS NOT NULL",
        t.users
    ))
    .await
    .map_err(my("read managed users"))
}

pub async fn group_members(
    c: &mut Conn,
    t: &Tables,
    group_id: &str,
) -> Result<Vec<String>, SyncError> {
    c.exec(
        format!(
            "SELECT okta_id FROM {} WHERE group_id = ? AND member",
            t.memberships
        ),
        (group_id,),
    )
    .await
    .map_err(my("read group members"))
}

pub async fn insert_audit(
    c: &mut Conn,
    t: &Tables,
    delivery_id: &str,
    entries: &[AuditEntry],
) -> Result<(), SyncError> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let params = values(chunk.iter().flat_map(|e| {
            [
                Value::from(delivery_id),
                Value::from(e.event_uuids.join(",")),
                Value::from(e.actor.clone()),
                Value::from(e.okta_id.clone()),
                Value::from(e.role.clone()),
                Value::from(e.action.clone()),
                Value::from(e.detail.clone()),
                Value::from(e.outcome.as_str()),
                Value::from(e.duration_ms),
            ]
        }));
        c.exec_drop(
            format!(
                "INSERT INTO {} (delivery_id, event_uuids, actor, okta_id, role_name, action, detail, outcome,
                   duration_ms) VALUES {}",
                t.audit,
                placeholders(chunk.len(), 9)
            ),
            params,
        )
        .await
        .map_err(my("write audit"))?;
    }
    Ok(())
}
