//! First use of a PostgreSQL target: create the marker role and the state schema, then refuse to run on a
//! target where that would be unsafe (no IAM role, a master that has its privileges, missing or privileged
//! mapped roles, a state schema someone else owns).

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::error::pg;
use super::sql;
use super::{PgSettings, catalog};
use crate::error::SyncError;

pub async fn bootstrap(settings: &PgSettings, client: &Client) -> Result<(), SyncError> {
    let cfg = &settings.cfg;
    let name = &cfg.name;
    let existing = |names: Vec<String>| async move {
        let rows = client
            .query(sql::EXISTING_ROLES, &[&names])
            .await
            .map_err(pg("read roles"))?;
        Ok::<BTreeSet<String>, SyncError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    };
    if existing(vec![cfg.marker_role.clone()]).await?.is_empty() {
        let create = sql::create_marker_role(&cfg.marker_role)
            .map_err(|e| SyncError::permanent(e.to_string()))?;
        match client.batch_execute(&create).await {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            other => other.map_err(pg("create marker role"))?,
        }
    }
    // Concurrent cold starts may race to create the same objects: the loser retries once they exist.
    let mut attempt = 0;
    while let Err(e) = create_state_schema(settings, client).await {
        attempt += 1;
        if attempt >= 3 || !e.to_string().contains("already exists") {
            return Err(e);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    catalog::heal_master(client, settings).await?;

    let iam = cfg.iam_role();
    if existing(vec![iam.to_owned()]).await?.is_empty() {
        return Err(SyncError::permanent(format!(
            "target {name}: role {iam:?} does not exist (is IAM database authentication enabled?)"
        )));
    }
    let master_inherits: bool = client
        .query_one(sql::MASTER_INHERITS_ROLE, &[&iam])
        .await
        .map_err(pg("master check"))?
        .get(0);
    if master_inherits {
        return Err(SyncError::permanent(format!(
            "target {name}: the master user has the privileges of {iam:?}; refusing to run (its password login \
             is disabled on RDS)"
        )));
    }
    let mapped: Vec<String> = settings.roles.mapped.iter().cloned().collect();
    let found = existing(mapped.clone()).await?;
    let privileged: BTreeSet<String> = client
        .query(sql::PRIVILEGED_ROLES, &[&mapped])
        .await
        .map_err(pg("privilege check"))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    settings.roles.check(
        name,
        |r| found.contains(r),
        |r| privileged.contains(r),
        "superuser, CREATEROLE, BYPASSRLS or rds_superuser",
    )
}

/// Create the state schema and its tables (idempotent; no advisory lock, which any login could hold to stop
/// every cold start), refusing a schema or table that the master does not own: whoever owns them could
/// make the master run their code.
async fn create_state_schema(settings: &PgSettings, client: &Client) -> Result<(), SyncError> {
    let cfg = &settings.cfg;
    if let Some(row) = client
        .query_opt(sql::STATE_SCHEMA_OWNERSHIP, &[&cfg.state_schema])
        .await
        .map_err(pg("state schema owner"))?
    {
        let (owned, foreign, version): (bool, Vec<String>, Option<String>) =
            (row.get(0), row.get(2), row.get(3));
        if owned && foreign.is_empty() && version.as_deref() == Some(sql::STATE_VERSION) {
            return Ok(());
        }
    }
    let ddl = sql::state_schema_ddl(&cfg.state_schema)
        .map_err(|e| SyncError::permanent(e.to_string()))?;
    let (create_schema, tables) = ddl
        .split_first()
        .ok_or_else(|| SyncError::permanent("state schema DDL is empty"))?;
    let script = format!("BEGIN; {create_schema}");
    let result = async {
        client
            .batch_execute(&script)
            .await
            .map_err(pg("create state schema"))?;
        let row = client
            .query_one(sql::STATE_SCHEMA_OWNERSHIP, &[&cfg.state_schema])
            .await
            .map_err(pg("state schema owner"))?;
        let (owned, owner, foreign): (bool, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        if !owned || !foreign.is_empty() {
            return Err(SyncError::permanent(format!(
                "target {}: state schema {:?} (owner {owner:?}, objects owned by others: {foreign:?}) is not \
                 owned by the master user only; refusing to use it",
                cfg.name, cfg.state_schema
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
