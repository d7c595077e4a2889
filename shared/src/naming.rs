//! Database role names derived from Okta logins.
//!
//! A name is never truncated or mangled: a login that cannot become a valid, unambiguous role name is
//! rejected (and the rejection audited by the caller). The IAM policy resource `dbuser:*/<name>` must match
//! the role name exactly, so the mapping is deliberately simple and predictable. What every engine refuses
//! (control, invisible and non-NFC text) is here; each engine adds its [`NameRules`] (length limit,
//! reserved names).

use serde::Deserialize;

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

/// How long a name may be: PostgreSQL counts bytes, MySQL characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLimit {
    Bytes(usize),
    Chars(usize),
}

impl NameLimit {
    /// The length of `name` in this limit's unit.
    pub fn measure(self, name: &str) -> usize {
        match self {
            NameLimit::Bytes(_) => name.len(),
            NameLimit::Chars(_) => name.chars().count(),
        }
    }

    pub fn max(self) -> usize {
        match self {
            NameLimit::Bytes(n) | NameLimit::Chars(n) => n,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            NameLimit::Bytes(_) => "bytes",
            NameLimit::Chars(_) => "characters",
        }
    }
}

impl std::fmt::Display for NameLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.max(), self.unit())
    }
}

/// An engine's rules for account names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRules {
    /// For messages: "PostgreSQL", "MySQL", "MariaDB".
    pub engine: &'static str,
    pub limit: NameLimit,
    /// Reserved prefixes, compared case-insensitively.
    pub reserved_prefixes: &'static [&'static str],
    /// Reserved names, compared case-insensitively.
    pub reserved_names: &'static [&'static str],
}

/// PostgreSQL on RDS: 63-byte identifiers; `pg_` (PostgreSQL's) and `rds_` (RDS's) prefixes.
pub const POSTGRES_NAMES: NameRules = NameRules {
    engine: "PostgreSQL",
    limit: NameLimit::Bytes(63),
    reserved_prefixes: &["pg_", "rds_"],
    reserved_names: &[
        "public",
        "none",
        "current_user",
        "session_user",
        "current_role",
        "postgres",
        "rdsadmin",
        "rdsrepladmin",
        "rdstopmgr",
        "rdsproxyadmin",
    ],
};

/// Why a login cannot be a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRejected {
    #[error("the login is empty")]
    Empty,
    #[error("the role name would be {length} {}; {engine} allows {limit}", .limit.unit())]
    TooLong {
        length: usize,
        limit: NameLimit,
        engine: &'static str,
    },
    #[error("the login contains a control character")]
    ControlCharacter,
    #[error(
        "the login contains an invisible or formatting character (U+{0:04X}: zero-width, bidi control, a \
         non-ASCII space, or a space at either end)"
    )]
    InvisibleCharacter(u32),
    #[error("the login is not in Unicode normalization form C (NFC)")]
    NotNormalized,
    #[error("role names starting with {0:?} are reserved by the database or RDS")]
    ReservedPrefix(&'static str),
    #[error("{0:?} is a reserved role name")]
    Reserved(String),
    #[error(
        "{0:?} is a protected role (the master user, okta-rds-sync's own roles, a mapped or protected role)"
    )]
    Protected(String),
}

/// Characters a role name must not contain because they are invisible or change how text is displayed:
/// Unicode format characters (Cf: zero-width space and joiners, bidi overrides and isolates, the BOM, soft
/// hyphen) and separators (Zs, Zl, Zp) other than the plain ASCII space (no-break, thin, ideographic …
/// spaces). Two logins that look identical must not be two different roles, and a name must read the
/// same in `\du`, an audit row and an IAM policy. A plain space is allowed inside a name, not at its ends.
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c != ' '
        && matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::SpaceSeparator
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

impl Naming {
    /// The role name for a login, or why there is none. Never truncates or rewrites anything but the
    /// configured lowercasing: a login that cannot become a valid, unambiguous role name is refused.
    pub fn role_name(&self, login: &str, rules: &NameRules) -> Result<String, NameRejected> {
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
        if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
            return Err(NameRejected::InvisibleCharacter(u32::from(c)));
        }
        if name.starts_with(' ') || name.ends_with(' ') {
            return Err(NameRejected::InvisibleCharacter(0x20));
        }
        if !unicode_normalization::is_nfc(login) || !unicode_normalization::is_nfc(&name) {
            return Err(NameRejected::NotNormalized);
        }
        let length = rules.limit.measure(&name);
        if length > rules.limit.max() {
            return Err(NameRejected::TooLong {
                length,
                limit: rules.limit,
                engine: rules.engine,
            });
        }
        let folded = name.to_lowercase();
        if let Some(prefix) = rules
            .reserved_prefixes
            .iter()
            .find(|p| folded.starts_with(*p))
        {
            return Err(NameRejected::ReservedPrefix(prefix));
        }
        if rules.reserved_names.contains(&folded.as_str()) {
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
            (
                LOGIN,
                "pg_monitor",
                Err(NameRejected::ReservedPrefix("pg_")),
            ),
            (
                keep_case,
                "PG_X@acme.com",
                Err(NameRejected::ReservedPrefix("pg_")),
            ),
            (
                local,
                "rds_anything@acme.com",
                Err(NameRejected::ReservedPrefix("rds_")),
            ),
            (
                keep_case,
                "RDS_IAM",
                Err(NameRejected::ReservedPrefix("rds_")),
            ),
            (
                keep_case,
                "RDSADMIN",
                Err(NameRejected::Reserved("RDSADMIN".into())),
            ),
            (
                LOGIN,
                "rdstopmgr",
                Err(NameRejected::Reserved("rdstopmgr".into())),
            ),
            (local, "rdsmith@acme.com", Ok("rdsmith")),
            (
                LOGIN,
                "PUBLIC",
                Err(NameRejected::Reserved("public".into())),
            ),
            (
                keep_case,
                "Postgres",
                Err(NameRejected::Reserved("Postgres".into())),
            ),
            (LOGIN, "pgadmin@acme.com", Ok("pgadmin@acme.com")),
            (LOGIN, "rd.s@acme.com", Ok("rd.s@acme.com")),
            // Invisible and formatting characters: two logins that look alike must not be two roles.
            (
                LOGIN,
                "jane\u{200B}@acme.com",
                Err(NameRejected::InvisibleCharacter(0x200B)),
            ),
            (
                LOGIN,
                "jane\u{200D}@acme.com",
                Err(NameRejected::InvisibleCharacter(0x200D)),
            ),
            (
                LOGIN,
                "jane\u{202E}moc.emca@x",
                Err(NameRejected::InvisibleCharacter(0x202E)),
            ),
            (
                LOGIN,
                "jane\u{2066}@acme.com",
                Err(NameRejected::InvisibleCharacter(0x2066)),
            ),
            (
                LOGIN,
                "\u{FEFF}jane@acme.com",
                Err(NameRejected::InvisibleCharacter(0xFEFF)),
            ),
            (
                LOGIN,
                "ja\u{00AD}ne@acme.com",
                Err(NameRejected::InvisibleCharacter(0xAD)),
            ),
            (LOGIN, "jane doe@acme.com", Ok("jane doe@acme.com")),
            (
                LOGIN,
                "jane@acme.com ",
                Err(NameRejected::InvisibleCharacter(0x20)),
            ),
            (
                local,
                " jane@acme.com",
                Err(NameRejected::InvisibleCharacter(0x20)),
            ),
            (
                LOGIN,
                "jane\u{3000}@acme.com",
                Err(NameRejected::InvisibleCharacter(0x3000)),
            ),
            (
                LOGIN,
                "jane\u{00A0}@acme.com",
                Err(NameRejected::InvisibleCharacter(0xA0)),
            ),
            (
                LOGIN,
                "jane\u{2028}@acme.com",
                Err(NameRejected::InvisibleCharacter(0x2028)),
            ),
            // "é" as e + combining acute (NFD) is refused; the composed form (NFC) is accepted.
            (
                LOGIN,
                "jose\u{0301}@acme.com",
                Err(NameRejected::NotNormalized),
            ),
            (LOGIN, "jos\u{00E9}@acme.com", Ok("jos\u{00E9}@acme.com")),
        ];
        for (naming, login, expected) in cases {
            assert_eq!(
                naming.role_name(login, &POSTGRES_NAMES),
                expected.clone().map(String::from),
                "{login:?}"
            );
        }
    }

    #[test]
    fn names_over_63_bytes_are_rejected_not_truncated() {
        let exactly = format!("{}@acme.com", "a".repeat(63 - 9));
        assert_eq!(
            LOGIN.role_name(&exactly, &POSTGRES_NAMES).unwrap().len(),
            63
        );
        let long = format!("{}@acme.com", "a".repeat(200));
        assert_eq!(
            LOGIN.role_name(&long, &POSTGRES_NAMES),
            Err(NameRejected::TooLong {
                length: 209,
                limit: NameLimit::Bytes(63),
                engine: "PostgreSQL"
            })
        );
        // 32 two-byte characters = 64 bytes: bytes count, not characters.
        assert_eq!(
            LOGIN.role_name(&"é".repeat(32), &POSTGRES_NAMES),
            Err(NameRejected::TooLong {
                length: 64,
                limit: NameLimit::Bytes(63),
                engine: "PostgreSQL"
            })
        );
    }
}
