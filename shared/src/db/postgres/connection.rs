//! The kept connection to a PostgreSQL target: TLS (verify-full with the RDS CA bundle or the target's
//! `ca_file`), the master credentials from Secrets Manager (re-read once when the password was rotated),
//! and the session options every connection pins (see [`sql::SESSION_OPTIONS`]).

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{classify_pg, pg};
use super::store::Statements;

/// A connection used this recently is not pinged before its next use.
const FRESH: Duration = Duration::from_secs(30);
use super::sql;
use crate::config::TargetConfig;
use crate::db::roles::connect_as_master;
use crate::error::SyncError;
use crate::secrets::{MasterCredentials, Secrets};

/// A connection and what was learned when it was made.
#[derive(Debug)]
pub struct Connection {
    pub client: Client,
    /// Statements prepared on this connection.
    pub statements: Statements,
    /// When it last answered: a connection used moments ago is not pinged before the next use.
    pub last_used: std::time::Instant,
    /// `server_version_num`, e.g. 170010.
    pub server_version: i32,
    /// The master user's name (from the secret): never a role name for a login.
    pub master: String,
}

/// The kept connection, and what it takes to make one.
#[derive(Default)]
pub struct Link {
    tls: Option<MakeRustlsConnect>,
    pub conn: Option<Connection>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Link {
    /// Whether a kept connection still answers (one used in the last half minute is trusted, unless the
    /// driver saw it close).
    pub async fn alive(&mut self) -> bool {
        let alive = match &self.conn {
            Some(c) if c.client.is_closed() => false,
            Some(c) if c.last_used.elapsed() < FRESH => true,
            Some(c) => c.client.simple_query(sql::PING).await.is_ok(),
            None => false,
        };
        if let Some(c) = self.conn.as_mut().filter(|_| alive) {
            c.last_used = std::time::Instant::now();
        }
        alive
    }

    /// Whether `error` shows the kept connection is gone: the driver saw it close, or the server ended the
    /// session (a `FATAL` error such as 57P01 after a restart, a failover or `pg_terminate_backend`).
    pub fn closed_by(&self, error: &SyncError) -> bool {
        let closed = self.conn.as_ref().is_none_or(|c| c.client.is_closed());
        let fatal = std::error::Error::source(error)
            .and_then(|e| e.downcast_ref::<tokio_postgres::Error>())
            .is_some_and(|e| {
                e.is_closed()
                    || e.as_db_error()
                        .is_some_and(|db| db.severity() == "FATAL" || db.severity() == "PANIC")
            });
        error.is_transient() && (closed || fatal)
    }

    /// Make a new connection, re-reading the master secret once if the password was rejected (rotation).
    pub async fn reconnect(
        &mut self,
        cfg: &TargetConfig,
        secrets: &Secrets,
    ) -> Result<&mut Connection, SyncError> {
        self.conn = None;
        let tls = match &self.tls {
            Some(tls) => tls.clone(),
            None => {
                let config = crate::tls::client_config(cfg.ca_file.as_deref())
                    .map_err(|e| SyncError::permanent(e.to_string()))?;
                self.tls.insert(MakeRustlsConnect::new(config)).clone()
            }
        };
        let conn = connect_as_master(cfg, secrets, |creds| {
            let tls = tls.clone();
            async move { connect(cfg, &creds, tls).await }
        })
        .await?;
        Ok(self.conn.insert(conn))
    }
}

/// Connect as the master over TLS with the pinned session options.
pub async fn connect(
    cfg: &TargetConfig,
    creds: &MasterCredentials,
    tls: MakeRustlsConnect,
) -> Result<Connection, SyncError> {
    let mut pg_config = tokio_postgres::Config::new();
    pg_config
        .host(&cfg.host)
        .port(cfg.port())
        .dbname(cfg.database())
        .user(&creds.username)
        .password(creds.password.as_bytes())
        .ssl_mode(SslMode::Require)
        .application_name("okta-rds-sync")
        .options(sql::SESSION_OPTIONS)
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms));
    let (client, connection) = pg_config
        .connect(tls)
        .await
        .map_err(|e| classify_pg("connect", e))?;
    let target = cfg.name.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%target, error = %e, "database connection closed");
        }
    });
    let started = client
        .simple_query(sql::SESSION_START)
        .await
        .map_err(pg("session settings"))?;
    // The last row is the check's: (master, version).
    let (as_master, server_version) = started
        .iter()
        .rev()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                row.try_get("master").ok().flatten() == Some("t"),
                row.try_get("version")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse::<i32>().ok()),
            )),
            _ => None,
        })
        .unwrap_or((false, None));
    let server_version = server_version
        .ok_or_else(|| SyncError::transient("session settings: no server version in the answer"))?;
    if !as_master {
        return Err(SyncError::permanent(format!(
            "target {}: the session does not run as the master user; refusing to continue",
            cfg.name
        )));
    }
    Ok(Connection {
        client,
        statements: Statements::default(),
        last_used: std::time::Instant::now(),
        server_version,
        master: creds.username.clone(),
    })
}
