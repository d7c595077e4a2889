//! MySQL/MariaDB accounts as the planner sees them, the steps run against them, and the start-up checks.
//!
//! An account is ours when it holds the marker role and the per-user role `ors_<okta id>` (which also holds
//! its mapped roles and is its default role), or when the state records it for a user and it is still the
//! locked, role-less account a cut-short creation left behind.

use std::collections::{BTreeMap, BTreeSet};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::MySettings;
use super::error::{classify_my, my, server_code};
use super::sql::{self, Flavor, list};
use super::store;
use crate::error::SyncError;
use crate::plan::{ActualRole, UserPlan};

/// `(user, locked, plugin, authentication string, super)` of accounts `'<name>'@'%'`.
type AccountRow = (String, bool, String, String, bool);

async fn accounts(
    c: &mut Conn,
    flavor: Flavor,
    names: &[String],
) -> Result<Vec<AccountRow>, SyncError> {
    let query = match flavor {
        Flavor::MariaDb => format!(
            "SELECT u.User, COALESCE(JSON_VALUE(g.Priv, '$.account_locked'), 0) <> 0, u.plugin,
                    u.authentication_string, u.Super_priv = 'Y'
             FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host
             WHERE u.Host = '%' AND u.User IN ({})",
            list(names.len())
        ),
        Flavor::MySql => format!(
            "SELECT User, account_locked = 'Y', plugin, authentication_string, Super_priv = 'Y'
             FROM mysql.user WHERE Host = '%' AND User IN ({})",
            list(names.len())
        ),
    };
    let params: Vec<Value> = names.iter().map(|n| Value::from(n.clone())).collect();
    let rows: Vec<(String, i64, String, String, i64)> =
        c.exec(query, params).await.map_err(my("read accounts"))?;
    Ok(rows
        .into_iter()
        .map(|(u, locked, plugin, auth, sup)| (u, locked != 0, plugin, auth, sup != 0))
        .collect())
}

/// Roles granted to each of these grantees (accounts `'<name>'@'%'`, or MariaDB roles).
async fn granted_roles(
    c: &mut Conn,
    flavor: Flavor,
    grantees: &[String],
    roles_as_grantees: bool,
) -> Result<BTreeMap<String, BTreeSet<String>>, SyncError> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if grantees.is_empty() {
        return Ok(out);
    }
    let query = match flavor {
        Flavor::MariaDb => format!(
            "SELECT User, Role FROM mysql.roles_mapping WHERE Host = ? AND User IN ({})",
            list(grantees.len())
        ),
        Flavor::MySql => format!(
            "SELECT TO_USER, FROM_USER FROM mysql.role_edges WHERE TO_HOST = ? AND TO_USER IN ({})",
            list(grantees.len())
        ),
    };
    // MariaDB roles have an empty host; everything else here is '%'.
    let host = if flavor == Flavor::MariaDb && roles_as_grantees {
        ""
    } else {
        "%"
    };
    let mut params = vec![Value::from(host)];
    params.extend(grantees.iter().map(|g| Value::from(g.clone())));
    let rows: Vec<(String, String)> = c.exec(query, params).await.map_err(my("read roles"))?;
    for (grantee, role) in rows {
        out.entry(grantee).or_default().insert(role);
    }
    Ok(out)
}

/// The accounts with these names, as the planner needs them.
pub async fn read_roles(
    c: &mut Conn,
    flavor: Flavor,
    settings: &MySettings,
    master: &str,
    names: &[String],
) -> Result<BTreeMap<String, ActualRole>, SyncError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = accounts(c, flavor, names).await?;
    let found: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let direct = granted_roles(c, flavor, &found, false).await?;
    let recorded = store::owners(c, &settings.tables, &found).await?;
    let empty = BTreeSet::new();
    let okta_ids: BTreeMap<&str, String> = found
        .iter()
        .filter_map(|name| {
            let roles = direct.get(name).unwrap_or(&empty);
            let from_role = roles
                .iter()
                .find_map(|r| sql::okta_id_of_user_role(r))
                .map(str::to_owned);
            from_role
                .or_else(|| recorded.get(name).cloned())
                .map(|id| (name.as_str(), id))
        })
        .collect();
    let user_roles: Vec<String> = okta_ids.values().map(|id| sql::user_role(id)).collect();
    let mapped = granted_roles(c, flavor, &user_roles, true).await?;
    let plugin = settings.cfg.iam_plugin();
    Ok(rows
        .into_iter()
        .map(|(name, locked, account_plugin, auth, superuser)| {
            let roles = direct.get(&name).unwrap_or(&empty);
            let okta_id = okta_ids.get(name.as_str()).cloned();
            let marked = roles.contains(&settings.cfg.marker_role);
            // A creation cut short: recorded for the user, still locked, no role yet.
            let half_made = recorded.contains_key(&name) && roles.is_empty() && locked;
            let member_of = okta_id
                .as_deref()
                .and_then(|id| mapped.get(&sql::user_role(id)))
                .cloned()
                .unwrap_or_default();
            let role = ActualRole {
                name: name.clone(),
                managed: marked || half_made,
                okta_id,
                can_login: !locked,
                iam: account_plugin.eq_ignore_ascii_case(plugin) && auth == "RDS",
                member_of,
                protected: superuser || name == master || settings.roles.protected.contains(&name),
                untouchable: name == master || settings.roles.untouchable.contains(&name),
                master_inherits: false,
                recorded_for: recorded.get(&name).cloned(),
                held_by: BTreeSet::new(),
            };
            (name, role)
        })
        .collect())
}

/// Run one user's steps, statement by statement (DDL commits on its own here, so every step is written to
/// be safe when cut short and to converge on the next run). A new account is recorded for its user before
/// it is created, so that a creation cut short is still recognized as ours.
pub async fn run_steps(
    c: &mut Conn,
    flavor: Flavor,
    settings: &MySettings,
    plan: &UserPlan,
) -> Result<Result<(), String>, SyncError> {
    for step in &plan.steps {
        let statements = match sql::render_step(
            step,
            flavor,
            &settings.cfg.marker_role,
            settings.cfg.iam_plugin(),
            &plan.okta_id,
        ) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let creating = match step {
            crate::plan::Step::Create { role } => Some(role),
            _ => None,
        };
        if let Some(role) = creating {
            c.exec_drop(
                format!(
                    "UPDATE {} SET role_name = ? WHERE okta_id = ? AND role_name IS NULL",
                    settings.tables.users
                ),
                (role, &plan.okta_id),
            )
            .await
            .map_err(my("record role"))?;
        }
        for (i, statement) in statements.iter().enumerate() {
            if let Err(e) = c.query_drop(statement).await {
                let code = server_code(&e);
                let err = classify_my("apply", e);
                if err.is_transient() {
                    return Err(err);
                }
                if let (Some(role), 0) = (creating, i) {
                    // Not created (the name is taken): the account is not ours after all.
                    c.exec_drop(
                        format!(
                            "UPDATE {} SET role_name = NULL WHERE okta_id = ? AND role_name = ?",
                            settings.tables.users
                        ),
                        (&plan.okta_id, role),
                    )
                    .await
                    .map_err(my("record role"))?;
                }
                tracing::debug!(?code, "step failed");
                return Ok(Err(err.to_string()));
            }
        }
    }
    Ok(Ok(()))
}

/// The start-up checks: the IAM plugin is active, mapped roles exist and are not privileged (unless
/// allowed).
pub async fn check_target(
    c: &mut Conn,
    flavor: Flavor,
    settings: &MySettings,
) -> Result<(), SyncError> {
    let name = &settings.cfg.name;
    let plugin = settings.cfg.iam_plugin();
    let status: Option<String> = c
        .exec_first(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = ?",
            (plugin,),
        )
        .await
        .map_err(my("read plugins"))?;
    if status.as_deref() != Some("ACTIVE") {
        return Err(SyncError::permanent(format!(
            "target {name}: authentication plugin {plugin:?} is not active (is IAM database authentication \
             enabled?)"
        )));
    }
    let mapped: Vec<String> = settings.roles.mapped.iter().cloned().collect();
    if mapped.is_empty() {
        return Ok(());
    }
    let (host_filter, is_role) = match flavor {
        Flavor::MariaDb => ("Host = ''", "is_role = 'Y'"),
        Flavor::MySql => ("Host = '%'", "TRUE"),
    };
    let rows: Vec<(String, i64)> = c
        .exec(
            format!(
                "SELECT User, (Super_priv = 'Y' OR Create_user_priv = 'Y' OR Grant_priv = 'Y') FROM mysql.user
                 WHERE {host_filter} AND {is_role} AND User IN ({})",
                list(mapped.len())
            ),
            mapped.iter().map(|m| Value::from(m.clone())).collect::<Vec<_>>(),
        )
        .await
        .map_err(my("read mapped roles"))?;
    let found: BTreeMap<String, bool> = rows.into_iter().map(|(u, p)| (u, p != 0)).collect();
    settings.roles.check(
        name,
        |r| found.contains_key(r),
        |r| found.get(r) == Some(&true),
        "SUPER, CREATE USER or GRANT OPTION",
    )
}
