//! The Okta side of people's IAM database logins: the Okta Expression Language value of the SAML
//! attribute that becomes the session tag `Username`, which must produce exactly the role name
//! okta-rds-sync derives from the login ([`Naming::role_name`]), because the IAM policy allows
//! `rds-db:connect` only on `dbuser:<resource id>/${aws:PrincipalTag/Username}`. The attribute is
//! [`ACCESS_CONTROL_ATTRIBUTE`] in Okta's IAM Identity Center app, and [`PRINCIPAL_TAG_ATTRIBUTE`] in an
//! Okta app federating straight to an IAM role (no Identity Center); both end as `aws:PrincipalTag/Username`.
//!
//! [`username_expression`] is the expression the README documents for each `[okta] username` /
//! `lowercase` setting, and [`evaluate`] a tiny evaluator of exactly the expressions it returns, mirroring
//! Okta's functions:
//! - `String.toLowerCase(s)`: Okta runs Java's `String.toLowerCase`. Okta documents no locale, so this
//!   mirrors the locale-independent Unicode mapping (Java's `Locale.ROOT`, which Rust's
//!   [`str::to_lowercase`] also implements, final sigma included). An Okta org in a Turkish or Azeri locale
//!   would map `I` to `ı`: a login with a capital `I` there would need `lowercase = false`.
//! - `String.substringBefore(s, sep)`: the part before the **first** occurrence of `sep`. What Okta returns
//!   when `sep` is absent is not documented; Okta's own example for "the part before `@`, else the whole
//!   field" guards it with `String.stringContains(s, "@") ? … : s`, so the documented expressions do the
//!   same, and [`Absent`] lets a test check that the result does not depend on it.
//! - `String.stringContains(s, sub)` and the conditional `c ? a : b`.

use crate::naming::{Naming, UsernameSource};

/// The SAML attribute of Okta's IAM Identity Center app that becomes the session tag `Username`
/// (Identity Center passes `AccessControl:<key>` attributes on as session tags, with ABAC enabled).
pub const ACCESS_CONTROL_ATTRIBUTE: &str =
    "https://aws.amazon.com/SAML/Attributes/AccessControl:Username";

/// The same for an Okta app federating straight to an IAM role (`AssumeRoleWithSAML`).
pub const PRINCIPAL_TAG_ATTRIBUTE: &str =
    "https://aws.amazon.com/SAML/Attributes/PrincipalTag:Username";

/// The Okta Expression Language value of [`PRINCIPAL_TAG_ATTRIBUTE`] for a naming setting.
pub fn username_expression(naming: &Naming) -> &'static str {
    match (naming.source, naming.lowercase) {
        (UsernameSource::Login, false) => "user.login",
        (UsernameSource::Login, true) => "String.toLowerCase(user.login)",
        (UsernameSource::LoginLocalPart, false) => {
            r#"String.stringContains(user.login, "@") ? String.substringBefore(user.login, "@") : user.login"#
        }
        (UsernameSource::LoginLocalPart, true) => {
            r#"String.stringContains(user.login, "@") ? String.toLowerCase(String.substringBefore(user.login, "@")) : String.toLowerCase(user.login)"#
        }
    }
}

/// What `String.substringBefore` returns when the separator is absent (Okta does not document it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The empty string.
    Empty,
    /// The whole input.
    Whole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Bool(bool),
}

/// Evaluates `expression` for a user whose `user.login` is `login`. Only the functions above, string
/// literals without escapes, and `user.login` are known; anything else is an error.
pub fn evaluate(expression: &str, login: &str, absent: Absent) -> Result<String, String> {
    let mut p = Parser {
        rest: expression,
        login,
        absent,
    };
    let v = p.expr()?;
    p.skip_ws();
    if !p.rest.is_empty() {
        return Err(format!("unexpected {:?}", p.rest));
    }
    match v {
        Value::Str(s) => Ok(s),
        Value::Bool(b) => Err(format!("the expression is a boolean ({b}), not a string")),
    }
}

struct Parser<'a> {
    rest: &'a str,
    login: &'a str,
    absent: Absent,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        match self.rest.strip_prefix(token) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at {:?}", self.rest))
        }
    }

    /// `term [ "?" expr ":" expr ]`
    fn expr(&mut self) -> Result<Value, String> {
        let cond = self.term()?;
        if !self.eat("?") {
            return Ok(cond);
        }
        let Value::Bool(c) = cond else {
            return Err("the condition of ?: is not a boolean".into());
        };
        let a = self.expr()?;
        self.expect(":")?;
        let b = self.expr()?;
        Ok(if c { a } else { b })
    }

    fn string(&mut self) -> Result<String, String> {
        match self.expr()? {
            Value::Str(s) => Ok(s),
            Value::Bool(_) => Err("expected a string, found a boolean".into()),
        }
    }

    fn literal(&mut self) -> Result<String, String> {
        self.expect("\"")?;
        let end = self
            .rest
            .find('"')
            .ok_or_else(|| "unterminated string".to_owned())?;
        let s = &self.rest[..end];
        if s.contains('\\') {
            return Err("escapes in string literals are not supported".into());
        }
        self.rest = &self.rest[end + 1..];
        Ok(s.to_owned())
    }

    fn term(&mut self) -> Result<Value, String> {
        if self.eat("user.login") {
            return Ok(Value::Str(self.login.to_owned()));
        }
        if self.eat("String.toLowerCase(") {
            let s = self.string()?;
            self.expect(")")?;
            return Ok(Value::Str(s.to_lowercase()));
        }
        if self.eat("String.substringBefore(") {
            let s = self.string()?;
            self.expect(",")?;
            let sep = self.literal()?;
            self.expect(")")?;
            return Ok(Value::Str(match s.find(&sep) {
                Some(i) => s[..i].to_owned(),
                None if self.absent == Absent::Whole => s,
                None => String::new(),
            }));
        }
        if self.eat("String.stringContains(") {
            let s = self.string()?;
            self.expect(",")?;
            let sub = self.literal()?;
            self.expect(")")?;
            return Ok(Value::Bool(s.contains(&sub)));
        }
        self.skip_ws();
        if self.rest.starts_with('"') {
            return Ok(Value::Str(self.literal()?));
        }
        Err(format!("unknown expression at {:?}", self.rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{NameRejected, POSTGRES_NAMES};

    const SETTINGS: [Naming; 4] = [
        Naming {
            source: UsernameSource::Login,
            lowercase: false,
        },
        Naming {
            source: UsernameSource::Login,
            lowercase: true,
        },
        Naming {
            source: UsernameSource::LoginLocalPart,
            lowercase: false,
        },
        Naming {
            source: UsernameSource::LoginLocalPart,
            lowercase: true,
        },
    ];

    /// What the naming code makes of a login, per setting (in the order of `SETTINGS`).
    #[derive(Debug)]
    enum Expect {
        Name(&'static str),
        /// The naming code refuses the login: no role exists, so whatever the expression gives (the
        /// test still evaluates it) names no database user.
        Rejected(NameRejected),
    }
    use Expect::{Name, Rejected};

    #[test]
    fn the_documented_expression_gives_the_role_name() {
        let table: Vec<(&str, [Expect; 4])> = vec![
            (
                "jane.doe@acme.com",
                [
                    Name("jane.doe@acme.com"),
                    Name("jane.doe@acme.com"),
                    Name("jane.doe"),
                    Name("jane.doe"),
                ],
            ),
            (
                "Jane.Doe@Acme.COM",
                [
                    Name("Jane.Doe@Acme.COM"),
                    Name("jane.doe@acme.com"),
                    Name("Jane.Doe"),
                    Name("jane.doe"),
                ],
            ),
            (
                "jane+db@acme.com",
                [
                    Name("jane+db@acme.com"),
                    Name("jane+db@acme.com"),
                    Name("jane+db"),
                    Name("jane+db"),
                ],
            ),
            (
                "ÅSA@x.se",
                [Name("ÅSA@x.se"), Name("åsa@x.se"), Name("ÅSA"), Name("åsa")],
            ),
            // Final sigma: Java and Rust both lowercase a word-final Σ to ς.
            (
                "ΟΔΥΣΣΕΑΣ@x.gr",
                [
                    Name("ΟΔΥΣΣΕΑΣ@x.gr"),
                    Name("οδυσσεας@x.gr"),
                    Name("ΟΔΥΣΣΕΑΣ"),
                    Name("οδυσσεας"),
                ],
            ),
            // No '@': the local part is the whole login (hence the stringContains guard).
            (
                "JDoe",
                [Name("JDoe"), Name("jdoe"), Name("JDoe"), Name("jdoe")],
            ),
            // Two '@': everything before the first.
            (
                "a.b@c@acme.com",
                [
                    Name("a.b@c@acme.com"),
                    Name("a.b@c@acme.com"),
                    Name("a.b"),
                    Name("a.b"),
                ],
            ),
            (
                "@acme.com",
                [
                    Name("@acme.com"),
                    Name("@acme.com"),
                    Rejected(NameRejected::Empty),
                    Rejected(NameRejected::Empty),
                ],
            ),
            (
                "Rds_Admin@acme.com",
                [
                    Rejected(NameRejected::ReservedPrefix("rds_")),
                    Rejected(NameRejected::ReservedPrefix("rds_")),
                    Rejected(NameRejected::ReservedPrefix("rds_")),
                    Rejected(NameRejected::ReservedPrefix("rds_")),
                ],
            ),
        ];
        for (login, expected) in &table {
            for (naming, expect) in SETTINGS.iter().zip(expected) {
                let expression = username_expression(naming);
                let role = naming.role_name(login, &POSTGRES_NAMES);
                for absent in [Absent::Empty, Absent::Whole] {
                    let tag = evaluate(expression, login, absent)
                        .unwrap_or_else(|e| panic!("{expression}: {e}"));
                    match expect {
                        Name(name) => {
                            assert_eq!(role.as_deref(), Ok(*name), "{login:?} {naming:?}");
                            assert_eq!(tag, *name, "{login:?} {expression} ({absent:?})");
                        }
                        Rejected(why) => {
                            assert_eq!(role.as_ref(), Err(why), "{login:?} {naming:?}")
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_documented_expressions() {
        assert_eq!(username_expression(&SETTINGS[0]), "user.login");
        assert_eq!(
            username_expression(&SETTINGS[1]),
            "String.toLowerCase(user.login)"
        );
        // The unguarded form depends on what Okta returns when '@' is absent; the guarded one does not.
        let bare = r#"String.substringBefore(user.login, "@")"#;
        assert_eq!(evaluate(bare, "JDoe", Absent::Empty).unwrap(), "");
        assert_eq!(evaluate(bare, "JDoe", Absent::Whole).unwrap(), "JDoe");
        assert_eq!(
            evaluate(
                r#"String.toLowerCase(String.substringBefore(user.login, "@"))"#,
                "Jane.Doe@Acme.com",
                Absent::Empty
            )
            .unwrap(),
            "jane.doe"
        );
    }

    #[test]
    fn the_evaluator_refuses_what_it_does_not_know() {
        for bad in [
            "user.email",
            "String.toUpperCase(user.login)",
            "String.toLowerCase(user.login",
            "user.login user.login",
            r#"String.stringContains(user.login, "@")"#,
            r#"user.login ? "a" : "b""#,
        ] {
            assert!(
                evaluate(bad, "jane@acme.com", Absent::Empty).is_err(),
                "{bad}"
            );
        }
    }
}
