//! Live sessions of PostgreSQL roles: terminated, then re-checked until none is left.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;

use super::error::pg;
use super::sql;
use crate::converge::SessionCounts;
use crate::error::SyncError;

/// Terminate every session of `roles` and re-check until none is left (bounded): per role,
/// `(terminated, remaining)`. Two queries per round, whatever the number of roles.
pub async fn terminate(client: &Client, roles: &[String]) -> Result<SessionCounts, SyncError> {
    let mut result: SessionCounts = roles.iter().map(|r| (r.clone(), (0, 0))).collect();
    let mut pending: Vec<String> = roles.to_vec();
    for attempt in 0..5 {
        if pending.is_empty() {
            break;
        }
        let rows = client
            .query(sql::TERMINATE_SESSIONS, &[&pending])
            .await
            .map_err(pg("terminate sessions"))?;
        for r in rows {
            if let Some(entry) = result.get_mut(&r.get::<_, String>(0)) {
                entry.0 += r.get::<_, i64>(1);
            }
        }
        let left = count_per_role(client, &pending).await?;
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

/// Live sessions per role (only roles that have some).
pub async fn count_per_role(
    client: &Client,
    roles: &[String],
) -> Result<BTreeMap<String, i64>, SyncError> {
    Ok(client
        .query(sql::COUNT_SESSIONS, &[&roles])
        .await
        .map_err(pg("count sessions"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
