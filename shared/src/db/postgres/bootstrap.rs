//! First use of a PostgreSQL target: create the marker role and the state schema, then refuse to run on a
//! target where that would be unsafe (no IAM role, a master that has its privileges, missing or privileged
//! mapped roles, a state schema someone else owns).

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use super::error::pg;
use super::sql;
use super::{PgSettings, catalog};
use crate::error::SyncError;

/// What bootstrap needs to know, read in one pipelined round trip (each query is sent unprepared with its
/// types, and all of them at once), so that a cold start on a current target costs one round trip here.
struct Survey {
    marker_exists: bool,
    /// The state schema exists, the master owns it and everything in it, and it is at this version.
    schema_current: bool,
    master_in_marked: Vec<String>,
    iam_exists: bool,
    master_inherits_iam: bool,
    mapped_found: BTreeSet<String>,
    privileged: BTreeSet<String>,
}

async fn survey(settings: &PgSettings, client: &Client) -> Result<Survey, SyncError> {
    let cfg = &settings.cfg;
    let (marker, iam) = (
        vec![cfg.marker_role.clone()],
        vec![cfg.iam_role().to_owned()],
    );
    let mapped: Vec<String> = settings.roles.mapped.iter().cloned().collect();
    let params: [[(&(dyn ToSql + Sync), Type); 1]; 7] = [
        [(&marker, Type::TEXT_ARRAY)],
        [(&cfg.state_schema, Type::TEXT)],
        [(&cfg.marker_role, Type::TEXT)],
        [(&iam, Type::TEXT_ARRAY)],
        [(&iam[0], Type::TEXT)],
        [(&mapped, Type::TEXT_ARRAY)],
        [(&mapped, Type::TEXT_ARRAY)],
    ];
    let (
        marker_rows,
        schema_rows,
        master_rows,
        iam_rows,
        inherits_rows,
        mapped_rows,
        privileged_rows,
    ) = tokio::try_join!(
        client.query_typed(sql::EXISTING_ROLES, &params[0]),
        client.query_typed(sql::STATE_SCHEMA_OWNERSHIP, &params[1]),
        client.query_typed(sql::MASTER_IN_MARKED_ROLES, &params[2]),
        client.query_typed(sql::EXISTING_ROLES, &params[3]),
        client.query_typed(sql::MASTER_INHERITS_ROLE, &params[4]),
        client.query_typed(sql::EXISTING_ROLES, &params[5]),
        client.query_typed(sql::PRIVILEGED_ROLES, &params[6]),
    )
    .map_err(pg("survey the target"))?;
    let names = |rows: &[tokio_postgres::Row]| -> BTreeSet<String> {
        rows.iter().map(|r| r.get(0)).collect()
    };
    let schema_current = schema_rows.first().is_some_and(|row| {
        let (owned, foreign, version): (bool, Vec<String>, Option<String>) =
            (row.get(0), row.get(2), row.get(3));
        owned && foreign.is_empty() && version.as_deref() == Some(sql::STATE_VERSION)
    });
    Ok(Survey {
        marker_exists: !marker_rows.is_empty(),
        schema_current,
        master_in_marked: master_rows.iter().map(|r| r.get(0)).collect(),
        iam_exists: !iam_rows.is_empty(),
        master_inherits_iam: inherits_rows.first().is_some_and(|r| r.get(0)),
        mapped_found: names(&mapped_rows),
        privileged: names(&privileged_rows),
    })
}

pub async fn bootstrap(settings: &PgSettings, client: &Client) -> Result<(), SyncError> {
    let cfg = &settings.cfg;
    let name = &cfg.name;
    let mut survey = survey(settings, client).await?;
    if !survey.marker_exists {
        let create = sql::create_marker_role(&cfg.marker_role)
            .map_err(|e| SyncError::permanent(e.to_string()))?;
        match client.batch_execute(&create).await {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            other => other.map_err(pg("create marker role"))?,
        }
    }
    if !survey.schema_current {
        // Concurrent cold starts may race to create the same objects: the loser retries once they exist.
        let mut attempt = 0;
        while let Err(e) = create_state_schema(settings, client).await {
            attempt += 1;
            if attempt >= 3 || !e.to_string().contains("already exists") {
                return Err(e);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    if !survey.master_in_marked.is_empty() {
        catalog::revoke_from_master(client, settings, &survey.master_in_marked).await?;
        survey.master_inherits_iam = client
            .query_one(sql::MASTER_INHERITS_ROLE, &[&cfg.iam_role()])
            .await
            .map_err(pg("master check"))?
            .get(0);
    }

    let iam = cfg.iam_role();
    if !survey.iam_exists {
        return Err(SyncError::permanent(format!(
            "target {name}: role {iam:?} does not exist (is IAM database authentication enabled?)"
        )));
    }
    if survey.master_inherits_iam {
        return Err(SyncError::permanent(format!(
            "target {name}: the master user has the privileges of {iam:?}; refusing to run (its password login \
             is disabled on RDS)"
        )));
    }
    settings.roles.check(
        name,
        |r| survey.mapped_found.contains(r),
        |r| survey.privileged.contains(r),
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
