//! Live connections of MySQL/MariaDB accounts: killed (`KILL CONNECTION`, or `mysql.rds_kill` for RDS's
//! master, which has no SUPER), then re-checked in the process list until none is left.

use std::collections::{BTreeMap, BTreeSet};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use mysql_async::{Value, params::Params};

use super::error::{my, server_code};
use super::sql::list;
use crate::converge::SessionCounts;
use crate::db::recheck::Recheck;
use crate::error::SyncError;

/// "You are not owner of thread" / access denied: the master needs RDS's procedure.
const NOT_ALLOWED: &[u16] = &[1095, 1227];
/// "Unknown thread id": already gone.
const UNKNOWN_THREAD: u16 = 1094;

/// `(connection id, user)` of the live connections of these accounts, but ours.
pub async fn live(c: &mut Conn, users: &[String]) -> Result<Vec<(u64, String)>, SyncError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let params: Vec<Value> = users.iter().map(|u| Value::from(u.clone())).collect();
    c.exec(
        format!(
            "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE USER IN ({}) AND ID <> CONNECTION_ID()",
            list(users.len())
        ),
        Params::Positional(params),
    )
    .await
    .map_err(my("read process list"))
}

async fn kill(c: &mut Conn, id: u64) -> Result<(), SyncError> {
    match c.query_drop(format!("KILL CONNECTION {id}")).await {
        Ok(()) => Ok(()),
        Err(e) if server_code(&e) == Some(UNKNOWN_THREAD) => Ok(()),
        Err(e) if server_code(&e).is_some_and(|code| NOT_ALLOWED.contains(&code)) => {
            match c.exec_drop("CALL mysql.rds_kill(?)", (id,)).await {
                Err(e) if server_code(&e) == Some(UNKNOWN_THREAD) => Ok(()),
                other => other.map_err(my("rds_kill")),
            }
        }
        Err(e) => Err(my("kill connection")(e)),
    }
}

/// Kill `ids` in one round trip: a multi-statement batch of `KILL CONNECTION` (or, for RDS's master, of
/// `mysql.rds_kill`). A batch stops at its first error, so on any other error every id is killed on its
/// own (an id already gone is fine).
async fn kill_all(c: &mut Conn, ids: &[u64]) -> Result<(), SyncError> {
    if ids.len() > 1 {
        let batch = |statement: &str| -> String {
            ids.iter()
                .map(|id| statement.replace("{id}", &id.to_string()))
                .collect()
        };
        match c.query_drop(batch("KILL CONNECTION {id};")).await {
            Ok(()) => return Ok(()),
            Err(e) if server_code(&e).is_some_and(|code| NOT_ALLOWED.contains(&code)) => {
                if c.query_drop(batch("CALL mysql.rds_kill({id});"))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            Err(_) => {}
        }
    }
    for id in ids {
        kill(c, *id).await?;
    }
    Ok(())
}

/// Kill every connection of `users` and re-check on [`Recheck`]'s waits until none is left:
/// per user, `(terminated, remaining)`.
pub async fn terminate(c: &mut Conn, users: &[String]) -> Result<SessionCounts, SyncError> {
    let mut result: SessionCounts = users.iter().map(|u| (u.clone(), (0, 0))).collect();
    let mut killed: BTreeSet<u64> = BTreeSet::new();
    let mut recheck = Recheck::start();
    let mut left = live(c, users).await?;
    loop {
        if left.is_empty() {
            // Believed once settled, else confirmed by one more check then.
            if recheck.settled() {
                break;
            }
            recheck.settle().await;
            left = live(c, users).await?;
            continue;
        }
        let ids: Vec<u64> = left.iter().map(|(id, _)| *id).collect();
        kill_all(c, &ids).await?;
        for (id, user) in &left {
            if killed.insert(*id)
                && let Some(entry) = result.get_mut(user)
            {
                entry.0 += 1;
            }
        }
        if !recheck.wait().await {
            break;
        }
        left = live(c, users).await?;
    }
    let mut remaining: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, user) in &left {
        *remaining.entry(user.as_str()).or_default() += 1;
    }
    for (user, entry) in &mut result {
        entry.1 = remaining.get(user.as_str()).copied().unwrap_or(0);
    }
    Ok(result)
}

impl crate::db::readers::SessionLink for super::connection::Link {
    /// [`Link::alive`](super::connection::Link::alive) pings, so a closed connection is replaced first.
    async fn end_sessions(
        &mut self,
        cfg: &crate::config::TargetConfig,
        secrets: &crate::secrets::Secrets,
        roles: &[String],
    ) -> Result<SessionCounts, SyncError> {
        if !self.alive().await {
            self.reconnect(cfg, secrets).await?;
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| SyncError::transient("reader not connected"))?;
        terminate(&mut conn.conn, roles).await
    }
}
