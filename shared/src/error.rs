//! Errors of applying a delivery to a target, classified by what the caller should do about them.

use tokio_postgres::error::SqlState;

/// What went wrong on a target, and whether trying again later can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The database or an AWS service is unreachable, overloaded, failing over or timed out: retry later.
    #[error("transient: {0}")]
    Transient(String),
    /// The database rejected the master credentials (SQLSTATE 28P01 / 28000).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Bad configuration or a state no retry can fix.
    #[error("{0}")]
    Permanent(String),
}

impl SyncError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Transient(_))
    }
}

/// Classify a PostgreSQL client error. Messages carry the server's text, never credentials.
pub fn classify_pg(context: &str, e: &tokio_postgres::Error) -> SyncError {
    let message = match e.as_db_error() {
        Some(db) => format!("{context}: {} ({})", db.message(), db.code().code()),
        None => format!("{context}: {e}"),
    };
    let Some(code) = e.code() else {
        // No SQLSTATE: I/O, TLS, closed connection, timeout.
        return SyncError::Transient(message);
    };
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return SyncError::Auth(message);
    }
    let transient = code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code);
    if transient {
        SyncError::Transient(message)
    } else {
        SyncError::Permanent(message)
    }
}
