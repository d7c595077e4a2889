//! The TOML configuration (`OKTA_RDS_SYNC_CONFIG`), as specified in DESIGN.md "Configuration contract".
//!
//! Parsing rejects unknown keys (a typo must not silently disable a safety option); [`Config::validate`]
//! then checks what types cannot, naming the offending key (`targets[1].port`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::naming::UsernameSource;

/// Environment variable holding the config path.
pub const CONFIG_ENV: &str = "OKTA_RDS_SYNC_CONFIG";
/// Environment variable that sets `hook.retry_queue_url` (the stack creates the queue, so the config file
/// cannot know its URL).
pub const RETRY_QUEUE_ENV: &str = "OKTA_RDS_SYNC_RETRY_QUEUE_URL";

/// Largest body accepted by default: Lambda's own synchronous payload limit is 6 MB, and a batch of a few
/// hundred Okta events is well under 2 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hook: HookConfig,
    #[serde(default)]
    pub okta: OktaConfig,
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Secret whose SecretString is the header value, or `{"current": "...", "previous": "..."}`.
    pub secret_arn: String,
    /// Header Okta sends the secret in (case-insensitive).
    #[serde(default = "default_header")]
    pub header: String,
    /// Optional durable fallback queue (used by the retry path).
    pub retry_queue_url: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long secrets are cached in memory.
    #[serde(default = "default_secret_ttl")]
    pub secret_ttl_seconds: u64,
    /// Wall-clock budget for applying one delivery to every target before it is queued instead; Okta gives
    /// up after 3 s, and queueing needs time too.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// How far an event's `published` time may be ahead of the receipt time. Later stamps are refused:
    /// facts are ordered by it, so a stamp in the future would outlive every real event.
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaConfig {
    #[serde(default)]
    pub username: UsernameSource,
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// The org, for the reconcile's API calls: `https://acme.okta.com`.
    pub org_url: Option<String>,
    /// Secret of the reconcile's service app: `{"client_id", "kid", "private_key"}`.
    pub api_secret_arn: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: String,
}

impl Default for OktaConfig {
    fn default() -> Self {
        Self {
            username: UsernameSource::default(),
            lowercase: true,
            org_url: None,
            api_secret_arn: None,
            scopes: default_scopes(),
        }
    }
}

fn default_scopes() -> String {
    "okta.groups.read okta.users.read".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// RDS for PostgreSQL, Aurora PostgreSQL (14 or later).
    Postgres,
    /// RDS for MySQL 8.0/8.4, RDS for MariaDB 10.6+, Aurora MySQL.
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnOffboard {
    /// NOLOGIN, strip grants, kill sessions, keep the role (owned objects survive).
    #[default]
    Disable,
    /// Also drop the role (not implemented yet: rejected by validation).
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub engine: Engine,
    pub host: String,
    /// Default: 5432 (postgres), 3306 (mysql).
    pub port: Option<u16>,
    /// The database to connect to (postgres only: MySQL accounts are server-wide).
    pub database: Option<String>,
    /// RDS-managed master secret: `{"username": "...", "password": "..."}`.
    pub secret_arn: String,
    /// PEM bundle to trust instead of the bundled RDS CA bundle.
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub on_offboard: OnOffboard,
    /// Schema holding facts, seen ids and the audit trail.
    #[serde(default = "default_state_schema")]
    pub state_schema: String,
    /// NOLOGIN role every managed login role is a member of; only its members are ever altered.
    #[serde(default = "default_marker_role")]
    pub marker_role: String,
    /// PostgreSQL: the role that switches a login to IAM authentication (default `rds_iam`).
    pub iam_role: Option<String>,
    /// MySQL: the authentication plugin of IAM accounts, `IDENTIFIED WITH <iam_plugin> AS 'RDS'` (default
    /// `AWSAuthenticationPlugin`; tests use MariaDB's `pam`, which has the same statement shape).
    pub iam_plugin: Option<String>,
    /// Extra roles that must never be altered (the master user and RDS's own roles always are).
    #[serde(default)]
    pub protected_roles: Vec<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Users converged per transaction (each holds a row lock): bigger deliveries and reconcile runs are
    /// applied in batches of this size, so they never exhaust the server's lock table.
    #[serde(default = "default_users_per_transaction")]
    pub users_per_transaction: usize,
    /// Read replicas / Aurora readers (`host` or `host:port`, the writer's port by default): role changes
    /// replicate by themselves, sessions do not, so an offboarding ends the role's sessions on each of them
    /// too, in parallel with the writer.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Also find the readers through the RDS API (the writer instance's read replicas, or its Aurora
    /// cluster's reader instances), cached for a few minutes.
    #[serde(default)]
    pub discover_readers: bool,
    /// The instance or cluster `discover_readers` asks about, when the host is not its RDS endpoint (a
    /// custom DNS name, RDS Proxy, a tunnel).
    pub rds_identifier: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// Okta group id (`00g…`). Names are not accepted: anyone who can create or rename a group could take
    /// a name.
    pub okta_group: String,
    pub target: String,
    pub roles: Vec<String>,
    /// Allow granting a superuser / CREATEROLE / rds_superuser role (lets a person bypass IAM auth).
    #[serde(default)]
    pub allow_privileged: bool,
}

/// `host`, `host:port` or `[ipv6]:port` (the port defaults to `default_port`).
pub fn parse_endpoint(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("{text:?}: {why}; expected host or host:port");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err(bad("an IPv6 address goes in brackets, [::1]:5432")),
            None => (text, None),
        }
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return Err(bad("not a host name or address"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port must be between 1 and 65535"))?,
    };
    Ok((host.to_owned(), port))
}

fn default_header() -> String {
    "authorization".into()
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_secret_ttl() -> u64 {
    300
}
fn default_budget_ms() -> u64 {
    1500
}
fn default_max_clock_skew() -> u64 {
    120
}
fn yes() -> bool {
    true
}

fn default_state_schema() -> String {
    "okta_rds_sync".into()
}
fn default_marker_role() -> String {
    "okta_rds_sync_managed".into()
}

fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_users_per_transaction() -> usize {
    500
}

impl TargetConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.engine {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        })
    }

    /// The readers' `(host, port)`, in the order configured (validated by [`Config::validate`]).
    pub fn reader_endpoints(&self) -> Vec<(String, u16)> {
        self.readers
            .iter()
            .filter_map(|r| parse_endpoint(r, self.port()).ok())
            .collect()
    }

    /// The database a postgres target connects to (validated to be set).
    pub fn database(&self) -> &str {
        self.database.as_deref().unwrap_or("postgres")
    }

    /// PostgreSQL's IAM role.
    pub fn iam_role(&self) -> &str {
        self.iam_role.as_deref().unwrap_or("rds_iam")
    }

    /// MySQL's IAM authentication plugin.
    pub fn iam_plugin(&self) -> &str {
        self.iam_plugin
            .as_deref()
            .unwrap_or("AWSAuthenticationPlugin")
    }
}

/// A configuration problem; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// PostgreSQL's identifier limit, in bytes.
pub const PG_MAX_IDENT_BYTES: usize = 63;

impl Config {
    /// The path from `OKTA_RDS_SYNC_CONFIG`, or `config.toml` next to the executable.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os(CONFIG_ENV) {
            return PathBuf::from(p);
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("config.toml")))
            .unwrap_or_else(|| PathBuf::from("config.toml"))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate; `origin` only labels error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let hook = &self.hook;
        if hook.secret_arn.trim().is_empty() {
            return Err(invalid("hook.secret_arn", "must not be empty"));
        }
        if lambda_header_name_invalid(&hook.header) {
            return Err(invalid("hook.header", "must be a valid HTTP header name"));
        }
        if hook.max_body_bytes == 0 {
            return Err(invalid("hook.max_body_bytes", "must be greater than 0"));
        }
        if !(100..=2900).contains(&hook.budget_ms) {
            return Err(invalid(
                "hook.budget_ms",
                "must be between 100 and 2900 (Okta waits 3 s)",
            ));
        }
        if hook.max_clock_skew_seconds > 3600 {
            return Err(invalid(
                "hook.max_clock_skew_seconds",
                "must be at most 3600 (an event stamped later than that is a forgery or a broken clock)",
            ));
        }
        if let Some(url) = &self.okta.org_url
            && !is_org_url(url)
        {
            return Err(invalid(
                "okta.org_url",
                "must be exactly the org's base URL, https://<host> (like https://acme.okta.com): no user, \
                 port, path, query or fragment",
            ));
        }
        if self.targets.is_empty() {
            return Err(invalid(
                "targets",
                "at least one [[targets]] entry is required",
            ));
        }
        let mut names = BTreeSet::new();
        let mut servers = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = |field: &str| format!("targets[{i}].{field}");
            if t.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
            let postgres = t.engine == Engine::Postgres;
            if postgres && t.database.is_none() {
                return Err(invalid(
                    key("database"),
                    "is required for a postgres target",
                ));
            }
            if !postgres && t.database.is_some() {
                return Err(invalid(
                    key("database"),
                    "is not used by mysql targets (accounts are server-wide); remove it",
                ));
            }
            if !postgres && t.iam_role.is_some() {
                return Err(invalid(
                    key("iam_role"),
                    "is for postgres targets; a mysql target names its iam_plugin",
                ));
            }
            if postgres && t.iam_plugin.is_some() {
                return Err(invalid(
                    key("iam_plugin"),
                    "is for mysql targets; a postgres target names its iam_role",
                ));
            }
            if t.on_offboard == OnOffboard::Drop {
                return Err(invalid(
                    key("on_offboard"),
                    "\"drop\" is not supported yet; \"disable\" keeps the role locked and stripped",
                ));
            }
            if t.host.trim().is_empty() {
                return Err(invalid(key("host"), "must not be empty"));
            }
            if t.port == Some(0) {
                return Err(invalid(key("port"), "must be between 1 and 65535"));
            }
            if !servers.insert((
                t.engine == Engine::Postgres,
                t.host.to_ascii_lowercase(),
                t.port(),
            )) {
                return Err(invalid(
                    key("host"),
                    "another target names the same server: roles are server-wide, so two targets would undo \
                     each other's changes; map all its groups in one target",
                ));
            }
            if t.secret_arn.trim().is_empty() {
                return Err(invalid(key("secret_arn"), "must not be empty"));
            }
            for (field, value) in [
                ("database", t.database.as_deref()),
                ("state_schema", Some(t.state_schema.as_str())),
                ("marker_role", Some(t.marker_role.as_str())),
                ("iam_role", t.iam_role.as_deref()),
                ("iam_plugin", t.iam_plugin.as_deref()),
            ] {
                if let Some(value) = value {
                    check_identifier(&key(field), value)?;
                }
            }
            for (j, r) in t.protected_roles.iter().enumerate() {
                check_identifier(&key(&format!("protected_roles[{j}]")), r)?;
            }
            if let Some(ca) = &t.ca_file
                && !ca.is_file()
            {
                return Err(invalid(
                    key("ca_file"),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
            if t.connect_timeout_ms == 0 {
                return Err(invalid(key("connect_timeout_ms"), "must be greater than 0"));
            }
            let mut endpoints = BTreeSet::from([(t.host.to_ascii_lowercase(), t.port())]);
            for (j, reader) in t.readers.iter().enumerate() {
                let (host, port) = parse_endpoint(reader, t.port())
                    .map_err(|why| invalid(key(&format!("readers[{j}]")), why))?;
                if !endpoints.insert((host.to_ascii_lowercase(), port)) {
                    return Err(invalid(
                        key(&format!("readers[{j}]")),
                        format!("{reader:?} is the writer or another reader"),
                    ));
                }
            }
            if t.rds_identifier.is_some() && !t.discover_readers {
                return Err(invalid(
                    key("rds_identifier"),
                    "is only used with discover_readers = true",
                ));
            }
            if t.discover_readers {
                crate::db::discovery::Source::for_target(t)
                    .map_err(|why| invalid(key("discover_readers"), why))?;
            }
            if !(1..=5000).contains(&t.users_per_transaction) {
                return Err(invalid(
                    key("users_per_transaction"),
                    "must be between 1 and 5000 (each user holds a lock in the server's shared lock table)",
                ));
            }
        }
        for (i, g) in self.grants.iter().enumerate() {
            let key = |field: &str| format!("grants[{i}].{field}");
            if !crate::okta::is_group_id(&g.okta_group) {
                return Err(invalid(
                    key("okta_group"),
                    format!(
                        "{:?} is not an Okta group id (00g…). Groups are mapped by id only: a group's name can \
                         be taken by anyone who can create or rename a group. The id is in the group's Admin \
                         Console URL (/admin/group/00g…), or: GET /api/v1/groups?search=profile.name eq \"<name>\"",
                        g.okta_group
                    ),
                ));
            }
            let Some(target) = self.targets.iter().find(|t| t.name == g.target) else {
                return Err(invalid(
                    key("target"),
                    format!("no [[targets]] entry is named {:?}", g.target),
                ));
            };
            if g.roles.is_empty() {
                return Err(invalid(key("roles"), "must list at least one role"));
            }
            for (j, r) in g.roles.iter().enumerate() {
                let k = key(&format!("roles[{j}]"));
                check_identifier(&k, r)?;
                if *r == target.iam_role() || *r == target.marker_role {
                    return Err(invalid(
                        k,
                        format!("{r:?} is managed by okta-rds-sync itself"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The grants that apply to one target.
    pub fn grants_for<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a GrantConfig> + 'a {
        self.grants.iter().filter(move |g| g.target == target)
    }
}

fn check_identifier(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.len() > PG_MAX_IDENT_BYTES {
        return Err(invalid(
            key,
            format!("is longer than {PG_MAX_IDENT_BYTES} bytes"),
        ));
    }
    if value.contains('\0') {
        return Err(invalid(key, "must not contain NUL"));
    }
    Ok(())
}

/// `https://<host>` exactly (a domain name, no user, port, path, query or fragment), or a loopback
/// `http://127.0.0.1:<port>` / `http://localhost:<port>` for a local Okta emulator (tests, `make watch`):
/// the reconcile sends its client assertion and tokens there.
fn is_org_url(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    let bare = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path() == "/"
        && !text.ends_with("//");
    let host = url.host();
    let public = url.scheme() == "https"
        && url.port().is_none()
        && matches!(host, Some(url::Host::Domain(d)) if d.contains('.'));
    let loopback = url.scheme() == "http"
        && match host {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
    bare && (public || loopback)
}

/// RFC 9110 token characters only.
fn lambda_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[hook]
secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:okta-hook"

[[targets]]
name = "app-prod"
engine = "postgres"
host = "db.example"
database = "app"
secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:master"

[[grants]]
okta_group = "00g1abcdEFGHijkl0h8"
target = "app-prod"
roles = ["app_readonly"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.hook.header, "authorization");
        assert_eq!(c.hook.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.hook.max_clock_skew_seconds, 120);
        assert!(c.okta.lowercase);
        assert_eq!(c.okta.username, UsernameSource::Login);
        let t = &c.targets[0];
        assert_eq!((t.port(), t.on_offboard), (5432, OnOffboard::Disable));
        assert_eq!(t.state_schema, "okta_rds_sync");
        assert_eq!(t.marker_role, "okta_rds_sync_managed");
        assert_eq!(t.iam_role(), "rds_iam");
        assert_eq!(c.grants_for("app-prod").count(), 1);
    }

    #[test]
    fn readers_are_hosts_with_optional_ports() {
        let c = parse(&MINIMAL.replace(
            "database = \"app\"",
            "database = \"app\"\nreaders = [\"r1.example\", \"r2.example:5433\", \"[::1]:6432\", \"[fd00::2]\"]",
        ))
        .expect("valid");
        assert_eq!(
            c.targets[0].reader_endpoints(),
            vec![
                ("r1.example".to_owned(), 5432),
                ("r2.example".to_owned(), 5433),
                ("::1".to_owned(), 6432),
                ("fd00::2".to_owned(), 5432)
            ]
        );
        for bad in [
            "\"\"",
            "\"r1:0\"",
            "\"r1:99999\"",
            "\"r1:x\"",
            "\"::1:5432\"",
            "\"[::1\"",
            "\"r 1\"",
            "\"r1/x\"",
            "\"db.example\"",
            "\"DB.example:5432\"",
            "\"r1\", \"r1:5432\"",
        ] {
            let text = MINIMAL.replace(
                "database = \"app\"",
                &format!("database = \"app\"\nreaders = [{bad}]"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("targets[0].readers["), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace(
            "engine = \"postgres\"",
            "engine = \"postgres\"\nallow_privilegd = true",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("allow_privilegd"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            (
                MINIMAL.replace("target = \"app-prod\"", "target = \"nope\""),
                "grants[0].target",
            ),
            (
                MINIMAL.replace("roles = [\"app_readonly\"]", "roles = []"),
                "grants[0].roles",
            ),
            (
                MINIMAL.replace("roles = [\"app_readonly\"]", "roles = [\"rds_iam\"]"),
                "grants[0].roles[0]",
            ),
            (
                MINIMAL.replace("host = \"db.example\"", "host = \"\""),
                "targets[0].host",
            ),
            (
                MINIMAL.replace("engine = \"postgres\"", "engine = \"mysql\""),
                "targets[0].database",
            ),
            (
                MINIMAL.replace(
                    "database = \"app\"",
                    "iam_plugin = \"pam\"\ndatabase = \"app\"",
                ),
                "targets[0].iam_plugin",
            ),
            (
                MINIMAL
                    .replace("engine = \"postgres\"", "engine = \"mysql\"")
                    .replace("database = \"app\"", "iam_role = \"rds_iam\""),
                "targets[0].iam_role",
            ),
            (
                MINIMAL.replace(
                    "database = \"app\"",
                    &format!("database = \"{}\"", "d".repeat(64)),
                ),
                "targets[0].database",
            ),
            (
                MINIMAL.replace("[[targets]]", "[[targets]]\non_offboard = \"drop\""),
                "targets[0].on_offboard",
            ),
            (
                MINIMAL.replace("[hook]", "[hook]\nheader = \"bad header\""),
                "hook.header",
            ),
            (
                MINIMAL.replace("00g1abcdEFGHijkl0h8", "eng-prod-access"),
                "grants[0].okta_group",
            ),
            (
                MINIMAL.replace("00g1abcdEFGHijkl0h8", "00u1abcdEFGHijkl0h8"),
                "grants[0].okta_group",
            ),
            (
                MINIMAL.replace("[hook]", "[hook]\nbudget_ms = 5000"),
                "hook.budget_ms",
            ),
            (
                MINIMAL.replace("[hook]", "[hook]\nmax_clock_skew_seconds = 86400"),
                "hook.max_clock_skew_seconds",
            ),
            (
                MINIMAL.replace("[[targets]]", "[[targets]]\nusers_per_transaction = 0"),
                "targets[0].users_per_transaction",
            ),
            (
                format!("[okta]\norg_url = \"http://acme.okta.com\"\n{MINIMAL}"),
                "okta.org_url",
            ),
            (
                format!("[okta]\norg_url = \"https://acme.okta.com/oauth2\"\n{MINIMAL}"),
                "okta.org_url",
            ),
            (
                MINIMAL.replace(
                    "[[targets]]",
                    "[[targets]]\nca_file = \"/nonexistent/ca.pem\"",
                ),
                "targets[0].ca_file",
            ),
        ];
        for (text, key) in cases {
            let err = parse(&text).expect_err(key).to_string();
            assert!(err.contains(key), "expected {key} in {err}");
        }
    }

    #[test]
    fn org_urls_are_exactly_an_origin() {
        for good in [
            "https://acme.okta.com",
            "https://acme.okta.com/",
            "https://login.acme-corp.example",
            "http://127.0.0.1:8080",
            "http://localhost:9000/",
        ] {
            assert!(is_org_url(good), "{good}");
        }
        for bad in [
            "http://acme.okta.com",
            "https://acme.okta.com/oauth2",
            "https://acme.okta.com?x=1",
            "https://acme.okta.com#x",
            "https://user:pw@acme.okta.com",
            "https://acme.okta.com@evil.example",
            "https://acme.okta.com:8443",
            "https://10.0.0.1",
            "https://localhost",
            "http://10.0.0.1:80",
            "ftp://acme.okta.com",
            "acme.okta.com",
            "https://acme.okta.com/\\evil.example",
            "https://acme.okta.com//",
            "",
        ] {
            assert!(!is_org_url(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_targets_and_empty_targets_are_rejected() {
        let two = MINIMAL.replacen(
            "[[grants]]",
            &format!(
                "{}\n[[grants]]",
                &MINIMAL[MINIMAL.find("[[targets]]").unwrap()..MINIMAL.find("[[grants]]").unwrap()]
            ),
            1,
        );
        assert!(
            parse(&two)
                .unwrap_err()
                .to_string()
                .contains("targets[1].name")
        );
        let same_server = two
            .replacen("name = \"app-prod\"", "name = \"app-other\"", 2)
            .replacen("name = \"app-other\"", "name = \"app-prod\"", 1);
        assert!(
            parse(&same_server)
                .unwrap_err()
                .to_string()
                .contains("targets[1].host"),
            "{}",
            parse(&same_server).unwrap_err()
        );
        let none = "[hook]\nsecret_arn = \"x\"\ntargets = []\n";
        assert!(parse(none).unwrap_err().to_string().contains("targets"));
    }

    #[test]
    fn the_deployed_example_config_is_valid() {
        let text = include_str!("../../deploy/config/config.toml");
        let c = parse(text).expect("deploy/config/config.toml must stay valid");
        assert_eq!(c.targets[0].engine, Engine::Postgres);
    }

    #[test]
    fn unparsable_toml_reports_the_file() {
        let err = parse("[hook\n").unwrap_err().to_string();
        assert!(err.starts_with("config file test.toml"), "{err}");
    }
}
