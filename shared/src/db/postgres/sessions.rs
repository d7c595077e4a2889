//! Live sessions of PostgreSQL roles: signalled, then polled with short growing waits until none is left.
//!
//! `pg_terminate_backend(pid)` only signals; a terminated backend is gone in a millisecond or two, so the
//! session view is polled on [`Recheck`]'s short growing waits (each poll signals again whatever is still
//! there, such as a session that was just starting) instead of `pg_terminate_backend(pid, timeout)`, which
//! sleeps in 100 ms steps before it looks again.

use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::{Client, Row};

use super::sql;
use super::store::Db;
use crate::converge::SessionCounts;
use crate::db::recheck::Recheck;
use crate::error::SyncError;

/// Signal every session of `roles` and poll until none is left: per role, `(terminated, remaining)`.
pub async fn terminate(
    db: &mut Db<'_, Client>,
    roles: &[String],
) -> Result<SessionCounts, SyncError> {
    let mut recheck = Recheck::start();
    let mut signalled: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut left = signal(db, roles).await?;
    loop {
        for session in left.iter().filter(|s| s.signalled) {
            signalled
                .entry(session.role.clone())
                .or_default()
                .insert(session.pid);
        }
        if left.is_empty() {
            // Believed once settled, else confirmed by one more check then.
            if recheck.settled() {
                break;
            }
            recheck.settle().await;
        } else if left.iter().all(|s| !s.may) || !recheck.wait().await {
            // Sessions the master may not signal will not end by waiting, and past the deadline the ones
            // left are reported as remaining.
            break;
        }
        left = signal(db, roles).await?;
    }
    Ok(roles
        .iter()
        .map(|role| {
            let terminated = signalled.get(role).map_or(0, |p| p.len() as i64);
            let remaining = left.iter().filter(|s| &s.role == role).count() as i64;
            (role.clone(), (terminated, remaining))
        })
        .collect())
}

/// A session of one of the roles, as [`sql::TERMINATE_SESSIONS`] found it.
struct Session {
    pid: i32,
    role: String,
    /// The master may signal it.
    may: bool,
    signalled: bool,
}

impl From<&Row> for Session {
    fn from(row: &Row) -> Self {
        Self {
            pid: row.get(0),
            role: row.get(1),
            may: row.get(2),
            signalled: row.get(3),
        }
    }
}

/// Signal the sessions of `roles` that are still there (those the master may signal): each of them.
async fn signal(db: &mut Db<'_, Client>, roles: &[String]) -> Result<Vec<Session>, SyncError> {
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    Ok(db
        .query(sql::TERMINATE_SESSIONS, &[&roles], "terminate sessions")
        .await?
        .iter()
        .map(Session::from)
        .collect())
}

/// Live sessions per role (only roles that have some).
pub async fn count_per_role(
    db: &mut Db<'_, Client>,
    roles: &[String],
) -> Result<BTreeMap<String, i64>, SyncError> {
    Ok(db
        .query(sql::COUNT_SESSIONS, &[&roles], "count sessions")
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

impl crate::db::readers::SessionLink for super::connection::Link {
    async fn end_sessions(
        &mut self,
        cfg: &crate::config::TargetConfig,
        secrets: &crate::secrets::Secrets,
        roles: &[String],
    ) -> Result<SessionCounts, SyncError> {
        match try_end_sessions(self, cfg, secrets, roles).await {
            Err(e) if self.closed_by(&e) => {
                self.conn = None;
                try_end_sessions(self, cfg, secrets, roles).await
            }
            result => result,
        }
    }
}

/// On a reader: connect if needed (preparing the one statement), then signal and poll.
async fn try_end_sessions(
    link: &mut super::connection::Link,
    cfg: &crate::config::TargetConfig,
    secrets: &crate::secrets::Secrets,
    roles: &[String],
) -> Result<SessionCounts, SyncError> {
    if !link.alive().await {
        let conn = link.reconnect(cfg, secrets).await?;
        conn.statements
            .prepare_all(&conn.client, &[sql::TERMINATE_SESSIONS])
            .await?;
    }
    let conn = link
        .conn
        .as_mut()
        .ok_or_else(|| SyncError::transient("reader not connected"))?;
    terminate(
        &mut Db {
            client: &conn.client,
            statements: &mut conn.statements,
        },
        roles,
    )
    .await
}
