//! MySQL and MariaDB SQL text: quoting, the state tables, and the statements of each step.
//!
//! Pure: no I/O. Account and role names are string literals (`'name'@'%'`), quoted by [`quote_literal`]
//! and nothing else; the state schema (a database) and its tables are identifiers, quoted by
//! [`quote_ident`]. Connections run with `NO_BACKSLASH_ESCAPES` (checked at connect), so a literal is
//! exactly the text between quotes with `'` doubled. Values are bind parameters.

use crate::plan::Step;

/// The flavor of the server: the same protocol, different catalogs and a few statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL 8.0 / 8.4 (RDS for MySQL, Aurora MySQL 3).
    MySql,
    /// MariaDB 10.6+ (RDS for MariaDB).
    MariaDb,
}

impl Flavor {
    /// From `SELECT VERSION()`.
    pub fn from_version(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("empty name")]
    Empty,
    #[error("name contains NUL")]
    Nul,
    #[error("{0:?} is not an Okta id")]
    NotOktaId(String),
}

/// A string literal: `'` + text with `'` doubled + `'`. Used for every account and role name. Requires
/// `NO_BACKSLASH_ESCAPES` (set on every connection), so a backslash is just a backslash.
pub fn quote_literal(text: &str) -> Result<String, QuoteError> {
    if text.is_empty() {
        return Err(QuoteError::Empty);
    }
    if text.contains('\0') {
        return Err(QuoteError::Nul);
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// An account managed here: `'name'@'%'`.
pub fn account(name: &str) -> Result<String, QuoteError> {
    Ok(format!("{}@'%'", quote_literal(name)?))
}

/// A database or table identifier: backquoted, backquotes doubled.
pub fn quote_ident(name: &str) -> Result<String, QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::Empty);
    }
    if name.contains('\0') {
        return Err(QuoteError::Nul);
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// Prefix of the role each managed account gets as its one default role, holding the mapped roles: MariaDB
/// activates one default role at login, and on MySQL the same shape keeps the mapped roles active without
/// `SET ROLE`. The rest of the name is the user's Okta id, so the role also says whose account it is.
pub const USER_ROLE_PREFIX: &str = "ors_";

/// The per-user role of an Okta user.
pub fn user_role(okta_id: &str) -> String {
    format!("{USER_ROLE_PREFIX}{okta_id}")
}

/// The Okta id a per-user role names, if it is one.
pub fn okta_id_of_user_role(role: &str) -> Option<&str> {
    role.strip_prefix(USER_ROLE_PREFIX)
        .filter(|id| crate::okta::is_okta_id(id))
}

/// The session every connection runs with: literals as [`quote_literal`] writes them, strict writes,
/// bounded lock waits, and an idle connection closed by the server (rolling back anything left open).
pub fn session_settings(flavor: Flavor, lock_wait_seconds: u64) -> Vec<String> {
    let mut settings = vec![
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION'"
            .to_owned(),
        format!("SET SESSION lock_wait_timeout = {lock_wait_seconds}"),
        format!("SET SESSION innodb_lock_wait_timeout = {lock_wait_seconds}"),
        "SET SESSION wait_timeout = 600".to_owned(),
        "SET SESSION time_zone = '+00:00'".to_owned(),
    ];
    if flavor == Flavor::MariaDb {
        settings.push("SET SESSION max_statement_time = 10".to_owned());
    }
    settings
}

pub const SQL_MODE: &str = "SELECT @@SESSION.sql_mode";
pub const VERSION: &str = "SELECT VERSION(), CURRENT_USER()";
/// The longest user name the server accepts (MySQL 8: 32 characters; MariaDB: 80 or 128).
pub const USER_NAME_LIMIT: &str = "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'user' AND COLUMN_NAME = 'User'";
pub const PING: &str = "SELECT 1";

/// Statements of one step for the account of `okta_id`. `marker`: the marker role; `plugin`: the IAM
/// authentication plugin; `state_users`: the qualified state table recording who owns which account.
pub fn render_step(
    step: &Step,
    flavor: Flavor,
    marker: &str,
    plugin: &str,
    okta_id: &str,
) -> Result<Vec<String>, QuoteError> {
    if !crate::okta::is_okta_id(okta_id) {
        return Err(QuoteError::NotOktaId(okta_id.to_owned()));
    }
    let own_role = quote_literal(&user_role(okta_id))?;
    Ok(match step {
        Step::Create { role } => {
            let a = account(role)?;
            let mut s = vec![format!(
                "CREATE USER {a} IDENTIFIED WITH {} AS 'RDS' REQUIRE SSL ACCOUNT LOCK",
                quote_ident(plugin)?
            )];
            s.extend(scaffolding(flavor, &a, marker, &own_role)?);
            s
        }
        Step::Rename { from, to } => vec![format!(
            "RENAME USER {} TO {}",
            account(from)?,
            account(to)?
        )],
        Step::SetLogin { role, login } => {
            let a = account(role)?;
            let mut s = Vec::new();
            if *login {
                // A half-made account (cut short after CREATE USER) gets the rest before it is unlocked.
                s.extend(scaffolding(flavor, &a, marker, &own_role)?);
            }
            s.push(format!(
                "ALTER USER {a} ACCOUNT {}",
                if *login { "UNLOCK" } else { "LOCK" }
            ));
            s
        }
        Step::Grant { granted, .. } => vec![format!(
            "GRANT {} TO {}",
            role_name(flavor, granted)?,
            role_name(flavor, &user_role(okta_id))?
        )],
        Step::Revoke { granted, .. } => vec![format!(
            "REVOKE {} FROM {}",
            role_name(flavor, granted)?,
            role_name(flavor, &user_role(okta_id))?
        )],
        Step::EnableIam { role } => vec![format!(
            "ALTER USER {} IDENTIFIED WITH {} AS 'RDS' REQUIRE SSL",
            account(role)?,
            quote_ident(plugin)?
        )],
        // Offboarding keeps the plugin and locks the account (the planner never asks for this here).
        Step::DisableIam { role } => vec![format!("ALTER USER {} ACCOUNT LOCK", account(role)?)],
    })
}

/// A role as a grantee or granted: MariaDB roles have no host; MySQL roles are `'name'@'%'`.
fn role_name(flavor: Flavor, role: &str) -> Result<String, QuoteError> {
    match flavor {
        Flavor::MariaDb => quote_literal(role),
        Flavor::MySql => account(role),
    }
}

/// What makes an account ours and its mapped roles active at login: the marker role, and the per-user role
/// as its default role. Every statement is idempotent.
fn scaffolding(
    flavor: Flavor,
    account: &str,
    marker: &str,
    own_role: &str,
) -> Result<Vec<String>, QuoteError> {
    let marker = match flavor {
        Flavor::MariaDb => quote_literal(marker)?,
        Flavor::MySql => format!("{}@'%'", quote_literal(marker)?),
    };
    let own = match flavor {
        Flavor::MariaDb => own_role.to_owned(),
        Flavor::MySql => format!("{own_role}@'%'"),
    };
    Ok(vec![
        format!("CREATE ROLE IF NOT EXISTS {own}"),
        format!("GRANT {marker} TO {account}"),
        format!("GRANT {own} TO {account}"),
        match flavor {
            Flavor::MariaDb => format!("SET DEFAULT ROLE {own} FOR {account}"),
            Flavor::MySql => format!("SET DEFAULT ROLE {own} TO {account}"),
        },
    ])
}

/// Create the marker role if missing.
pub fn create_marker_role(flavor: Flavor, marker: &str) -> Result<String, QuoteError> {
    Ok(match flavor {
        Flavor::MariaDb => format!("CREATE ROLE IF NOT EXISTS {}", quote_literal(marker)?),
        Flavor::MySql => format!("CREATE ROLE IF NOT EXISTS {}@'%'", quote_literal(marker)?),
    })
}

/// DDL of the state tables (InnoDB, binary collation so ids compare byte by byte). Each fact's stamp is one
/// column, `published|uuid` with a fixed-width UTC time, so that "newer" is one comparison.
pub fn state_schema_ddl(schema: &str) -> Result<Vec<String>, QuoteError> {
    let s = quote_ident(schema)?;
    let table = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
    Ok(vec![
        format!("CREATE DATABASE IF NOT EXISTS {s} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.users (
                okta_id VARCHAR(64) PRIMARY KEY,
                login VARCHAR(1024), login_stamp VARCHAR(160),
                status VARCHAR(16), status_stamp VARCHAR(160),
                role_name VARCHAR(255),
                updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.memberships (
                okta_id VARCHAR(64) NOT NULL, group_id VARCHAR(64) NOT NULL, group_name VARCHAR(1024) NOT NULL,
                member BOOLEAN NOT NULL, stamp VARCHAR(160) NOT NULL,
                PRIMARY KEY (okta_id, group_id), KEY memberships_group (group_id)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.deleted_groups (
                group_id VARCHAR(64) PRIMARY KEY, stamp VARCHAR(160) NOT NULL) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.seen_deliveries (
                event_id VARCHAR(255) PRIMARY KEY,
                received_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.seen_events (
                uuid VARCHAR(128) PRIMARY KEY, event_type VARCHAR(128) NOT NULL, published DATETIME(6) NOT NULL,
                received_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) {table}"
        ),
        // A random salt for the per-user lock names: `GET_LOCK` names are one namespace for every account,
        // so a name an ordinary account could compute is a lock it could hold to stop an offboarding.
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.settings (
                name VARCHAR(64) PRIMARY KEY, value VARCHAR(255) NOT NULL) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.audit (
                id BIGINT AUTO_INCREMENT PRIMARY KEY,
                at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
                delivery_id VARCHAR(255), event_uuids TEXT, actor TEXT, okta_id VARCHAR(64), role_name VARCHAR(255),
                action VARCHAR(64) NOT NULL, detail TEXT, outcome VARCHAR(16) NOT NULL, duration_ms DOUBLE,
                KEY audit_okta_id (okta_id, at)) {table}"
        ),
    ])
}

/// A fact's stamp as one comparable string: `YYYY-MM-DDTHH:MM:SS.ffffffZ|uuid`.
pub fn stamp_text(stamp: &crate::journal::Stamp) -> String {
    format!(
        "{}|{}",
        stamp.published.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        stamp.uuid
    )
}

/// `n` groups of `(?, ?, …)` with `width` placeholders each, comma-separated.
pub fn placeholders(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; n].join(", ")
}

/// `?, ?, …` for an `IN (…)` list of `n` values.
pub fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_cannot_be_ended_early() {
        let table = [
            ("jane", "'jane'"),
            ("o'brien", "'o''brien'"),
            (
                "x'; DROP USER 'root'@'%'; --",
                "'x''; DROP USER ''root''@''%''; --'",
            ),
            ("back\\slash", "'back\\slash'"),
            ("zoë 🚀", "'zoë 🚀'"),
            ("\"dq\"", "'\"dq\"'"),
            ("`bt`", "'`bt`'"),
        ];
        for (input, want) in table {
            assert_eq!(quote_literal(input).unwrap(), want, "{input:?}");
            // Unquoting gives the input back, and no lone quote is left inside.
            let inner = &want[1..want.len() - 1];
            assert!(!inner.replace("''", "").contains('\''));
            assert_eq!(inner.replace("''", "'"), input);
        }
        assert_eq!(account("a'b").unwrap(), "'a''b'@'%'");
        assert_eq!(quote_ident("we`ird").unwrap(), "`we``ird`");
        assert_eq!(quote_literal(""), Err(QuoteError::Empty));
        assert_eq!(quote_literal("a\0b"), Err(QuoteError::Nul));
        assert_eq!(quote_ident("a\0"), Err(QuoteError::Nul));
    }

    #[test]
    fn steps_render_for_both_flavors() {
        let create = render_step(
            &Step::Create {
                role: "jane@acme.com".into(),
            },
            Flavor::MariaDb,
            "okta_rds_sync_managed",
            "pam",
            "00u1",
        )
        .unwrap();
        assert_eq!(
            create,
            vec![
                "CREATE USER 'jane@acme.com'@'%' IDENTIFIED WITH `pam` AS 'RDS' REQUIRE SSL ACCOUNT LOCK",
                "CREATE ROLE IF NOT EXISTS 'ors_00u1'",
                "GRANT 'okta_rds_sync_managed' TO 'jane@acme.com'@'%'",
                "GRANT 'ors_00u1' TO 'jane@acme.com'@'%'",
                "SET DEFAULT ROLE 'ors_00u1' FOR 'jane@acme.com'@'%'",
            ]
        );
        let grant = |flavor| {
            render_step(
                &Step::Grant {
                    granted: "app_ro".into(),
                    to: "j".into(),
                },
                flavor,
                "m",
                "AWSAuthenticationPlugin",
                "00u1",
            )
            .unwrap()
        };
        assert_eq!(grant(Flavor::MariaDb), vec!["GRANT 'app_ro' TO 'ors_00u1'"]);
        assert_eq!(
            grant(Flavor::MySql),
            vec!["GRANT 'app_ro'@'%' TO 'ors_00u1'@'%'"]
        );
        let lock = render_step(
            &Step::SetLogin {
                role: "j".into(),
                login: false,
            },
            Flavor::MySql,
            "m",
            "p",
            "00u1",
        )
        .unwrap();
        assert_eq!(lock, vec!["ALTER USER 'j'@'%' ACCOUNT LOCK"]);
        assert!(
            render_step(
                &Step::Create { role: "j".into() },
                Flavor::MySql,
                "m",
                "p",
                "00u'1"
            )
            .is_err()
        );
        assert_eq!(okta_id_of_user_role("ors_00u1"), Some("00u1"));
        assert_eq!(okta_id_of_user_role("ors_00u-1"), None);
        assert_eq!(okta_id_of_user_role("app_ro"), None);
    }

    #[test]
    fn stamps_compare_as_published_then_uuid() {
        use crate::journal::Stamp;
        let s = |t: &str, u: &str| {
            stamp_text(&Stamp {
                published: t.parse().unwrap(),
                uuid: u.into(),
            })
        };
        assert!(s("2026-03-02T14:05:10.903Z", "zz") < s("2026-03-02T14:05:11Z", "aa"));
        assert!(s("2026-03-02T14:05:10Z", "a") < s("2026-03-02T14:05:10Z", "b"));
        assert_eq!(
            s("2026-03-02T14:05:10Z", "u"),
            "2026-03-02T14:05:10.000000Z|u"
        );
    }
}
