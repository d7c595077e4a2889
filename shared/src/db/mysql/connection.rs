//! The kept connection to a MySQL/MariaDB target: TLS that verifies the chain and host name against the RDS
//! CA bundle (or the target's `ca_file`) and nothing else, the master credentials (re-read once after a
//! rotation, error 1045), and the session every connection runs with ([`sql::session_settings`]).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use super::error::{classify_my, my};
use super::sql::{self, Flavor};
use crate::config::TargetConfig;
use crate::db::roles::connect_as_master;
use crate::error::SyncError;
use crate::naming::NameLimit;
use crate::secrets::{MasterCredentials, Secrets};

/// Longest wait for a row lock or a metadata lock, per statement.
const LOCK_WAIT_SECONDS: u64 = 2;

/// A connection and what was learned when it was made.
#[derive(Debug)]
pub struct Connection {
    pub conn: Conn,
    pub flavor: Flavor,
    /// The longest user name the server accepts.
    pub name_limit: NameLimit,
    /// The master user's name.
    pub master: String,
    /// `GET_LOCK` names this connection may still hold (released at the start of the next unit).
    pub locks_held: bool,
}

#[derive(Debug, Default)]
pub struct Link {
    pub conn: Option<Connection>,
}

impl Link {
    pub async fn alive(&mut self) -> bool {
        match &mut self.conn {
            Some(c) => c.conn.query_drop(sql::PING).await.is_ok(),
            None => false,
        }
    }

    /// Make a new connection, re-reading the master secret once if the password was rejected (rotation).
    pub async fn reconnect(
        &mut self,
        cfg: &TargetConfig,
        secrets: &Secrets,
    ) -> Result<&mut Connection, SyncError> {
        self.conn = None;
        let conn = connect_as_master(
            cfg,
            secrets,
            |creds| async move { connect(cfg, &creds).await },
        )
        .await?;
        Ok(self.conn.insert(conn))
    }
}

/// The CA certificates to trust: the target's file, or the bundled RDS CA bundle.
fn ssl_opts(cfg: &TargetConfig) -> Result<SslOpts, SyncError> {
    let pem = match &cfg.ca_file {
        Some(path) => std::fs::read(path).map_err(|e| {
            SyncError::permanent(format!("cannot read CA file {}: {e}", path.display()))
        })?,
        None => crate::tls::RDS_CA_BUNDLE.to_vec(),
    };
    // Fail early, with the file's name, on a bundle that has no certificate.
    crate::tls::parse_bundle(&pem, "CA bundle").map_err(|e| SyncError::permanent(e.to_string()))?;
    Ok(SslOpts::default()
        .with_root_certs(vec![pem.into()])
        .with_disable_built_in_roots(true))
}

/// Connect as the master over TLS, set up the session and learn the server.
pub async fn connect(
    cfg: &TargetConfig,
    creds: &MasterCredentials,
) -> Result<Connection, SyncError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port())
        .user(Some(creds.username.clone()))
        .pass(Some(creds.password.clone()))
        .prefer_socket(false)
        .ssl_opts(ssl_opts(cfg)?)
        .stmt_cache_size(64);
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let mut conn = match tokio::time::timeout(timeout, Conn::new(opts)).await {
        Ok(conn) => conn.map_err(|e| classify_my("connect", e))?,
        Err(_) => {
            return Err(SyncError::transient(format!(
                "connect: no answer within {timeout:?}"
            )));
        }
    };
    let (version, _current): (String, String) = conn
        .query_first(sql::VERSION)
        .await
        .map_err(my("server version"))?
        .ok_or_else(|| SyncError::transient("server version: no answer"))?;
    let flavor = Flavor::from_version(&version);
    for statement in sql::session_settings(flavor, LOCK_WAIT_SECONDS) {
        conn.query_drop(statement)
            .await
            .map_err(my("session settings"))?;
    }
    let mode: String = conn
        .query_first(sql::SQL_MODE)
        .await
        .map_err(my("sql_mode"))?
        .unwrap_or_default();
    if !mode.contains("NO_BACKSLASH_ESCAPES") {
        return Err(SyncError::permanent(format!(
            "target {}: the session's sql_mode {mode:?} lacks NO_BACKSLASH_ESCAPES; refusing to quote names",
            cfg.name
        )));
    }
    let limit: Option<u64> = conn
        .query_first(sql::USER_NAME_LIMIT)
        .await
        .map_err(my("user name limit"))?;
    let limit = usize::try_from(limit.unwrap_or(32)).unwrap_or(32);
    Ok(Connection {
        conn,
        flavor,
        name_limit: NameLimit::Chars(limit),
        master: creds.username.clone(),
        locks_held: false,
    })
}
