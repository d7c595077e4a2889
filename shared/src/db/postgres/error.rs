//! PostgreSQL errors, classified by what the caller should do about them.

use crate::error::{SqlStateKind, SyncError, classify_sqlstate};

/// Classify a PostgreSQL client error, keeping it as the source. Messages carry the server's text, never
/// credentials.
pub fn classify_pg(context: &str, e: tokio_postgres::Error) -> SyncError {
    let context = match e.as_db_error() {
        Some(db) => format!("{context}: {} ({})", db.message(), db.code().code()),
        None => context.to_owned(),
    };
    let kind = match e.code() {
        // No SQLSTATE: I/O, TLS, closed connection, timeout.
        None => SqlStateKind::Transient,
        Some(code) => classify_sqlstate(code.code()),
    };
    SyncError::from_kind(kind, context, e)
}

/// `map_err` adapter: `.map_err(pg("read roles"))`.
pub fn pg(context: &'static str) -> impl Fn(tokio_postgres::Error) -> SyncError {
    move |e| classify_pg(context, e)
}
