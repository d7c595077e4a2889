//! Errors of applying a delivery to a target, classified by what the caller should do about them.

/// What went wrong on a target, and whether trying again later can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The database or an AWS service is unreachable, overloaded, out of a resource, failing over or timed
    /// out: retry later (the retry worker does, then the dead-letter queue keeps it).
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

/// How a PostgreSQL SQLSTATE is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStateKind {
    Transient,
    Auth,
    Permanent,
}

/// Classify a SQLSTATE. Transient: the connection (class 08), insufficient resources (class 53: disk full,
/// out of memory, lock table exhausted, too many connections), operator intervention (57: shutdown,
/// cancel, crash recovery), system errors (58), serialization failures and deadlocks (40001, 40P01), lock
/// timeouts (55P03) and a read-only server (25006, a failover in progress). Resource errors must never be
/// dropped as permanent: they pass, and a later attempt succeeds.
pub fn classify_sqlstate(code: &str) -> SqlStateKind {
    match code {
        "28P01" | "28000" => SqlStateKind::Auth,
        "40001" | "40P01" | "55P03" | "25006" => SqlStateKind::Transient,
        _ if ["08", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            SqlStateKind::Transient
        }
        _ => SqlStateKind::Permanent,
    }
}

/// Classify a PostgreSQL client error. Messages carry the server's text, never credentials.
pub fn classify_pg(context: &str, e: &tokio_postgres::Error) -> SyncError {
    let message = match e.as_db_error() {
        Some(db) => format!("{context}: {} ({})", db.message(), db.code().code()),
        None => format!("{context}: {e}"),
    };
    match e.code() {
        // No SQLSTATE: I/O, TLS, closed connection, timeout.
        None => SyncError::Transient(message),
        Some(code) => match classify_sqlstate(code.code()) {
            SqlStateKind::Transient => SyncError::Transient(message),
            SqlStateKind::Auth => SyncError::Auth(message),
            SqlStateKind::Permanent => SyncError::Permanent(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_what_to_do_about_them() {
        use SqlStateKind::*;
        let table = [
            ("53200", Transient), // out of shared memory: the lock table is exhausted
            ("53100", Transient), // disk full
            ("53000", Transient),
            ("53300", Transient), // too many connections
            ("53400", Transient),
            ("08006", Transient),
            ("57014", Transient), // statement timeout / cancel
            ("57P01", Transient), // admin shutdown (failover)
            ("57P03", Transient), // cannot connect now (recovery)
            ("58030", Transient), // I/O error
            ("40001", Transient),
            ("40P01", Transient),
            ("55P03", Transient),
            ("25006", Transient),
            ("28P01", Auth),
            ("28000", Auth),
            ("42501", Permanent), // insufficient privilege
            ("42704", Permanent), // undefined object (a mapped role dropped)
            ("0LP01", Permanent), // invalid grant operation
            ("XX000", Permanent),
        ];
        for (code, kind) in table {
            assert_eq!(classify_sqlstate(code), kind, "{code}");
        }
    }
}
