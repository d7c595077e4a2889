//! PostgreSQL's catalog: roles as the planner sees them, steps run against them, and what they say after.

use std::collections::BTreeMap;

use tokio_postgres::Transaction;

use super::error::{classify_pg, pg};
use super::store::Db;
use super::{PgSettings, sql};
use crate::error::SyncError;
use crate::plan::{ActualRole, Step, UserPlan};

/// The roles with these names, and those recorded for these users (found by OID, whatever their name,
/// marker or comment now), as the planner needs them.
pub async fn read_roles(
    db: &mut Db<'_, Transaction<'_>>,
    settings: &PgSettings,
    names: &[String],
    users: &[String],
) -> Result<BTreeMap<String, ActualRole>, SyncError> {
    let rows = db
        .query(
            &settings.state.read_roles,
            &[
                &names,
                &settings.cfg.marker_role,
                &settings.roles.protected,
                &settings.roles.untouchable,
                &users,
            ],
            "read roles",
        )
        .await?;
    let iam = settings.cfg.iam_role();
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
                iam: member_of.iter().any(|m| m == iam),
                member_of: member_of.into_iter().filter(|m| m != iam).collect(),
                managed: r.get(5),
                master_inherits: r.get(6),
                untouchable: r.get(7),
                recorded_for: r.get(8),
                held_by: r.get::<_, Vec<String>>(9).into_iter().collect(),
            };
            (name, role)
        })
        .collect())
}

/// Every user's steps, rendered: a script of statements, or why there is none. A new role takes its
/// memberships and LOGIN in its `CREATE ROLE` (see [`sql::render_create`]).
fn render(settings: &PgSettings, plan: &UserPlan) -> Result<String, String> {
    let marker = &settings.cfg.marker_role;
    let iam = settings.cfg.iam_role();
    let mut statements = Vec::new();
    let mut steps: &[Step] = &plan.steps;
    if let Some((Step::Create { role }, rest)) = steps.split_first() {
        let folded = rest
            .iter()
            .take_while(|s| match s {
                Step::Grant { to, .. } => to == role,
                Step::EnableIam { role: r } => r == role,
                Step::SetLogin { role: r, login } => r == role && *login,
                _ => false,
            })
            .count();
        let mut member_of = vec![marker.as_str()];
        let mut login = false;
        for step in &rest[..folded] {
            match step {
                Step::Grant { granted, .. } => member_of.push(granted),
                Step::EnableIam { .. } => member_of.push(iam),
                _ => login = true,
            }
        }
        statements.extend(
            sql::render_create(role, login, &member_of, &plan.okta_id)
                .map_err(|e| e.to_string())?,
        );
        steps = &rest[folded..];
    }
    for step in steps {
        statements
            .extend(sql::render_step(step, marker, iam, &plan.okta_id).map_err(|e| e.to_string())?);
    }
    Ok(statements.join(";\n"))
}

/// Run every user's steps: all in one round trip inside one savepoint; if a statement fails, everything
/// is rolled back to before the first user and each user runs on their own, inside a savepoint of their
/// own, so one user's failure (a permission error, a name taken meanwhile) is reported for that user only.
/// A transient error aborts the unit (`Err`).
///
/// The batch has no savepoint per user: the fallback makes them useless there, and each is two more
/// statements and a subtransaction with its own XID (past 64 of them, other sessions' snapshots overflow
/// to `pg_subtrans`).
pub async fn run_steps(
    tx: &Transaction<'_>,
    settings: &PgSettings,
    plans: &[&UserPlan],
) -> Result<Vec<Result<(), String>>, SyncError> {
    let scripts: Vec<Result<String, String>> = plans
        .iter()
        .map(|p| {
            if p.steps.is_empty() {
                Ok(String::new())
            } else {
                render(settings, p)
            }
        })
        .collect();
    let runnable: Vec<&String> = scripts
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .filter(|s| !s.is_empty())
        .collect();
    if runnable.is_empty() {
        return Ok(scripts.into_iter().map(|s| s.map(|_| ())).collect());
    }
    let mut batch = String::from(sql::ALL_USERS_SAVEPOINT);
    for script in &runnable {
        batch.push_str(";\n");
        batch.push_str(script);
    }
    batch.push_str(";\n");
    batch.push_str(sql::RELEASE_ALL_USERS_SAVEPOINT);
    match tx.batch_execute(&batch).await {
        Ok(()) => return Ok(scripts.into_iter().map(|s| s.map(|_| ())).collect()),
        Err(e) => {
            let err = classify_pg("apply", e);
            if err.is_transient() {
                return Err(err);
            }
            tx.batch_execute(sql::ROLLBACK_ALL_USERS_SAVEPOINT)
                .await
                .map_err(pg("rollback to savepoint"))?;
        }
    }
    let mut outcomes = Vec::with_capacity(scripts.len());
    for script in scripts {
        outcomes.push(match script {
            Err(why) => Err(why),
            Ok(s) if s.is_empty() => Ok(()),
            Ok(s) => run_one(tx, &s).await?,
        });
    }
    Ok(outcomes)
}

/// One user's script inside a savepoint.
async fn run_one(tx: &Transaction<'_>, script: &str) -> Result<Result<(), String>, SyncError> {
    let script = format!(
        "{};\n{script};\n{}",
        sql::USER_SAVEPOINT,
        sql::RELEASE_USER_SAVEPOINT
    );
    match tx.batch_execute(&script).await {
        Ok(()) => Ok(Ok(())),
        Err(e) => {
            let err = classify_pg("apply", e);
            if err.is_transient() {
                return Err(err);
            }
            tx.batch_execute(sql::ROLLBACK_USER_SAVEPOINT)
                .await
                .map_err(pg("rollback to savepoint"))?;
            Ok(Err(err.to_string()))
        }
    }
}

/// Of these revoking steps, those whose membership the catalog still shows (PostgreSQL 16+ revokes only
/// the revoking role's grant; another grantor's survives).
pub async fn steps_not_taken(
    db: &mut Db<'_, Transaction<'_>>,
    settings: &PgSettings,
    revokes: &[Step],
) -> Result<Vec<usize>, SyncError> {
    let pairs: Vec<(&str, &str)> = revokes
        .iter()
        .map(|s| match s {
            Step::Revoke { granted, from } => (from.as_str(), granted.as_str()),
            Step::DisableIam { role } => (role.as_str(), settings.cfg.iam_role()),
            _ => ("", ""),
        })
        .collect();
    let members: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let granted: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let remaining: Vec<(String, String)> = db
        .query(
            sql::REMAINING_MEMBERSHIPS,
            &[&members, &granted],
            "re-read memberships",
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(pairs
        .iter()
        .enumerate()
        .filter(|(_, (m, g))| remaining.iter().any(|(rm, rg)| rm == m && rg == g))
        .map(|(i, _)| i)
        .collect())
}

/// Revoke the master's inherited memberships in roles that carry the marker (PostgreSQL 14 lets a user
/// grant her own role to anyone): each would give the master the IAM role's privileges. Alarmed.
pub async fn heal_master<C: tokio_postgres::GenericClient>(
    c: &C,
    settings: &PgSettings,
) -> Result<(), SyncError> {
    let rows = c
        .query(sql::MASTER_IN_MARKED_ROLES, &[&settings.cfg.marker_role])
        .await
        .map_err(pg("master memberships"))?;
    let roles: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    revoke_from_master(c, settings, &roles).await
}

/// Revoke the master's memberships in these marked roles (see [`heal_master`]), each alarmed.
pub async fn revoke_from_master<C: tokio_postgres::GenericClient>(
    c: &C,
    settings: &PgSettings,
    roles: &[String],
) -> Result<(), SyncError> {
    for role in roles {
        let revoke = format!(
            "REVOKE {} FROM SESSION_USER",
            sql::quote_ident(role).map_err(|e| SyncError::permanent(e.to_string()))?
        );
        let result = c.batch_execute(&revoke).await;
        tracing::error!(
            db_target = %settings.cfg.name,
            role = %role,
            revoked = result.is_ok(),
            "the master user was a member of a managed role (it would inherit the IAM role and be locked out); \
             membership revoked"
        );
        result.map_err(pg("revoke the master's membership"))?;
    }
    Ok(())
}

/// Whether the changes of this transaction give the master the privileges of the IAM role (RDS would then
/// refuse its password).
pub async fn master_locked_out(
    tx: &Transaction<'_>,
    settings: &PgSettings,
) -> Result<bool, SyncError> {
    Ok(tx
        .query_one(sql::MASTER_INHERITS_ROLE, &[&settings.cfg.iam_role()])
        .await
        .map_err(|e| classify_pg("master check", e))?
        .get(0))
}
