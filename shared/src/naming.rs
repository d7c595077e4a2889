//! Database role names derived from Okta logins.
//!
//! A name is never truncated or mangled: a login that cannot become a valid, unambiguous role name is
//! rejected (and the rejection audited by the caller). The IAM policy resource `dbuser:*/<name>` must match
//! the role name exactly, so the mapping is deliberately simple and predictable.

use serde::Deserialize;

use crate::config::PG_MAX_IDENT_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UsernameSource {
    /// The whole Okta login, e.g. `jane.doe@acme.com`.
    #[default]
    Login,
    /// The part before `@`, e.g. `jane.doe`.
    LoginLocalPart,
}

/// How role names are made from logins.
#[derive(Debug, Clone, Copy)]
pub struct Naming {
    pub source: UsernameSource,
    pub lowercase: bool,
}

/// Why a login cannot be a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRejected {
    #[error("the login is empty")]
    Empty,
    #[error("the role name would be {0} bytes; PostgreSQL allows {PG_MAX_IDENT_BYTES}")]
    TooLong(usize),
    #[error("the login contains a control character")]
    ControlCharacter,
    #[error("role names starting with \"pg_\" are reserved by PostgreSQL")]
    ReservedPrefix,
    #[error("{0:?} is a reserved role name")]
    Reserved(String),
}

/// Names PostgreSQL or RDS reserve, which a login must never map onto.
const RESERVED: &[&str] = &[
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
    "rds_superuser",
    "rdsadmin",
    "rdsrepladmin",
    "rds_replication",
    "rds_password",
    "rds_iam",
    "rdstopmgr",
    "postgres",
];

impl Naming {
    pub fn role_name(&self, login: &str) -> Result<String, NameRejected> {
        let base = match self.source {
            UsernameSource::Login => login,
            UsernameSource::LoginLocalPart => login.split('@').next().unwrap_or(login),
        };
        let name = if self.lowercase {
            base.to_lowercase()
        } else {
            base.to_owned()
        };
        if name.is_empty() {
            return Err(NameRejected::Empty);
        }
        if name.chars().any(char::is_control) {
            return Err(NameRejected::ControlCharacter);
        }
        if name.len() > PG_MAX_IDENT_BYTES {
            return Err(NameRejected::TooLong(name.len()));
        }
        if name.to_lowercase().starts_with("pg_") {
            return Err(NameRejected::ReservedPrefix);
        }
        if RESERVED.contains(&name.to_lowercase().as_str()) {
            return Err(NameRejected::Reserved(name));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: Naming = Naming {
        source: UsernameSource::Login,
        lowercase: true,
    };

    #[test]
    fn table_of_logins() {
        let local = Naming {
            source: UsernameSource::LoginLocalPart,
            lowercase: true,
        };
        let keep_case = Naming {
            source: UsernameSource::Login,
            lowercase: false,
        };
        let cases: &[(Naming, &str, Result<&str, NameRejected>)] = &[
            (LOGIN, "Jane.Doe@Acme.com", Ok("jane.doe@acme.com")),
            (keep_case, "Jane.Doe@Acme.com", Ok("Jane.Doe@Acme.com")),
            (local, "Jane.Doe@Acme.com", Ok("jane.doe")),
            (local, "no-at-sign", Ok("no-at-sign")),
            (
                LOGIN,
                "o'brien\"; DROP ROLE x;--@acme.com",
                Ok("o'brien\"; drop role x;--@acme.com"),
            ),
            (LOGIN, "zoë.ünïcödé@acme.com", Ok("zoë.ünïcödé@acme.com")),
            (LOGIN, "", Err(NameRejected::Empty)),
            (local, "@acme.com", Err(NameRejected::Empty)),
            (
                LOGIN,
                "tab\there@acme.com",
                Err(NameRejected::ControlCharacter),
            ),
            (LOGIN, "nul\0@acme.com", Err(NameRejected::ControlCharacter)),
            (LOGIN, "pg_monitor", Err(NameRejected::ReservedPrefix)),
            (
                LOGIN,
                "PUBLIC",
                Err(NameRejected::Reserved("public".into())),
            ),
            (
                keep_case,
                "RDS_SUPERUSER",
                Err(NameRejected::Reserved("RDS_SUPERUSER".into())),
            ),
        ];
        for (naming, login, expected) in cases {
            assert_eq!(
                naming.role_name(login),
                expected.clone().map(String::from),
                "{login:?}"
            );
        }
    }

    #[test]
    fn names_over_63_bytes_are_rejected_not_truncated() {
        let exactly = format!("{}@acme.com", "a".repeat(63 - 9));
        assert_eq!(LOGIN.role_name(&exactly).unwrap().len(), 63);
        let long = format!("{}@acme.com", "a".repeat(200));
        assert_eq!(LOGIN.role_name(&long), Err(NameRejected::TooLong(209)));
        // 32 two-byte characters = 64 bytes: bytes count, not characters.
        assert_eq!(
            LOGIN.role_name(&"é".repeat(32)),
            Err(NameRejected::TooLong(64))
        );
    }
}
